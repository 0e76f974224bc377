//! SQL the operations share: the rows of collections they read, a collection's partition,
//! vectors in pgvector's text form, and binding a compiled filter's values.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, Bool, Double, Integer, Jsonb, Text, Timestamptz};
use serde_json::Value;
use uuid::Uuid;

use crate::filter::{Bind, PayloadKind};
use crate::model::{Collection, Distance, HnswConfig, IndexState};

#[derive(QueryableByName)]
pub(super) struct CollectionRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    dimension: i32,
    #[diesel(sql_type = Text)]
    distance: String,
    #[diesel(sql_type = Integer)]
    hnsw_m: i32,
    #[diesel(sql_type = Integer)]
    hnsw_ef_construction: i32,
    #[diesel(sql_type = Jsonb)]
    payload_indexes: Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    index_ready: bool,
    #[diesel(sql_type = Bool)]
    index_building: bool,
}

/// The columns of a [`CollectionRow`], from `vector_collections c`.
pub(super) const COLLECTION_COLUMNS: &str = "c.id, c.name, c.dimension, c.distance, c.hnsw_m, \
     c.hnsw_ef_construction, c.payload_indexes, c.created_at, c.updated_at, \
     to_regclass(quote_ident(sovereign_vector_partition(c.id) || '_hnsw')) IS NOT NULL AS index_ready, \
     EXISTS (SELECT FROM pg_stat_progress_create_index p \
              WHERE p.relid = to_regclass(quote_ident(sovereign_vector_partition(c.id)))) AS index_building";

impl CollectionRow {
    pub(super) fn into_collection(self) -> Collection {
        let payload_indexes = self
            .payload_indexes
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), PayloadKind::parse(v.as_str()?)?)))
                    .collect()
            })
            .unwrap_or_default();
        Collection {
            id: self.id,
            name: self.name,
            dimension: u32::try_from(self.dimension).unwrap_or(0),
            distance: Distance::parse(&self.distance).unwrap_or(Distance::Cosine),
            hnsw: HnswConfig {
                m: u16::try_from(self.hnsw_m).unwrap_or(16),
                ef_construction: u16::try_from(self.hnsw_ef_construction).unwrap_or(64),
            },
            index: if self.index_ready {
                IndexState::Ready
            } else if self.index_building {
                IndexState::Building
            } else {
                IndexState::None
            },
            payload_indexes,
            points: None,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// A one-column answer named `version`: pgvector's version, or what a database function
/// returned, cast to text.
#[derive(QueryableByName)]
pub(super) struct Version {
    #[diesel(sql_type = Text)]
    pub(super) version: String,
}

/// The quoted name of a collection's partition of `vector_points`.
pub(super) fn partition(collection: Uuid) -> String {
    format!("\"vector_points_{}\"", collection.simple())
}

/// pgvector's text form of a vector.
pub(super) fn vector_text(v: impl ExactSizeIterator<Item = f32>) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

/// A vector from pgvector's text form.
pub(super) fn parse_vector(text: &str) -> Vec<f32> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

/// Binds a compiled filter's values, in order.
pub(super) fn bind_all(
    mut query: BoxedSqlQuery<'static, Pg, SqlQuery>,
    binds: Vec<Bind>,
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
    for bind in binds {
        query = match bind {
            Bind::Json(v) => query.bind::<Jsonb, _>(v),
            Bind::JsonArray(v) => query.bind::<Array<Jsonb>, _>(v),
            Bind::Float(v) => query.bind::<Double, _>(v),
        };
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_go_to_text_and_back() {
        let v = [1.0_f32, -0.25, 3.5e-8];
        let text = vector_text(v.iter().copied());
        assert_eq!(text, "[1,-0.25,0.000000035]");
        assert_eq!(parse_vector(&text), v);
        assert_eq!(vector_text(std::iter::empty()), "[]");
    }
}
