//! Points: upsert them, read them by id, delete them, and change their payloads.

use std::collections::{BTreeMap, HashSet};

use diesel::QueryableByName;
use diesel::sql_types::{Array, Jsonb, Nullable, Text};
use serde_json::{Map, Value};
use sovereign_core::FieldError;
use sovereign_db::{DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::Vectors;
use super::checks::{check_text, check_vector, checked_ids, divided, payload_json, point_id};
use super::sql::{Version, bind_all, parse_vector, vector_text};
use super::targets::Target;
use crate::embed::normalize;
use crate::error::VectorError;
use crate::filter::{self, Bind};
use crate::model::{Affected, Distance, PayloadUpdate, Point, PointInput, PointSelector};

#[derive(QueryableByName)]
struct PointRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    payload: Option<Value>,
    #[diesel(sql_type = Nullable<Text>)]
    vector: Option<String>,
}

/// A value bound to a placeholder of a change (a delete or a payload update).
enum SelectionBind {
    Ids(Vec<String>),
    Filter(Bind),
    /// A payload's JSON text, cast to `jsonb` by the statement.
    Payload(String),
}

// Each operation reads the collection through the cache of targets; when the cached description
// turns out stale, it is dropped and the operation runs once more on a fresh read
// (`Vectors::fresh_on_stale`). Each run borrows the caller's input.
impl Vectors {
    /// Inserts or replaces points in one transaction: all or none. Texts are embedded first.
    pub async fn upsert(
        &self,
        tenant: Uuid,
        name: &str,
        points: Vec<PointInput>,
    ) -> Result<Affected, VectorError> {
        let points = points.as_slice();
        self.fresh_on_stale(tenant, name, || self.upsert_once(tenant, name, points))
            .await
    }

    /// The points with these ids that exist, in the order asked.
    pub async fn points(
        &self,
        tenant: Uuid,
        name: &str,
        ids: &[String],
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<Point>, VectorError> {
        self.fresh_on_stale(tenant, name, || {
            self.points_once(tenant, name, ids, with_payload, with_vector)
        })
        .await
    }

    /// Deletes the points named by id, or matching a filter.
    pub async fn delete_points(
        &self,
        tenant: Uuid,
        name: &str,
        selector: &PointSelector,
    ) -> Result<Affected, VectorError> {
        self.fresh_on_stale(tenant, name, || {
            self.delete_points_once(tenant, name, selector)
        })
        .await
    }

    /// Merges `payload` into the selected points' payloads (`overwrite`: replaces them).
    pub async fn set_payload(
        &self,
        tenant: Uuid,
        name: &str,
        update: PayloadUpdate,
        overwrite: bool,
    ) -> Result<Affected, VectorError> {
        let update = &update;
        self.fresh_on_stale(tenant, name, || {
            self.set_payload_once(tenant, name, update, overwrite)
        })
        .await
    }

    /// One run of [`Vectors::upsert`].
    async fn upsert_once(
        &self,
        tenant: Uuid,
        name: &str,
        points: &[PointInput],
    ) -> Result<Affected, VectorError> {
        if points.is_empty() || points.len() > self.settings.max_batch {
            return Err(VectorError::invalid(
                "points",
                "invalid_length",
                format!("give 1 to {} points", self.settings.max_batch),
            ));
        }
        let target = self.target(tenant, name).await?;
        let no_payload = Map::new();
        let mut errors = Vec::new();
        let mut texts = Vec::new();
        // Each point's id, the vector it came with (none: a text to embed), its payload's JSON.
        let mut rows: Vec<(String, Option<&[f32]>, String)> = Vec::with_capacity(points.len());
        for (i, point) in points.iter().enumerate() {
            let id = point_id(&point.id, &format!("points[{i}].id"), &mut errors);
            let payload = payload_json(
                point.payload.as_ref().unwrap_or(&no_payload),
                &format!("points[{i}].payload"),
                &mut errors,
            );
            match (&point.vector, &point.text) {
                (Some(v), None) => rows.push((id, Some(v), payload)),
                (None, Some(text)) => {
                    check_text(text, &format!("points[{i}].text"), &mut errors);
                    texts.push((rows.len(), text));
                    rows.push((id, None, payload));
                }
                _ => errors.push(FieldError::new(
                    format!("points[{i}]"),
                    "vector_or_text",
                    "give exactly one of `vector` and `text`",
                )),
            }
        }
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        // pgvector's text of each vector as stored; those of texts once they are embedded.
        let mut stored = rows
            .iter()
            .enumerate()
            .map(|(i, (_, vector, _))| {
                vector
                    .map(|v| {
                        let divisor = check_vector(&target, v, &format!("points[{i}].vector"))?;
                        Ok(vector_text(divided(v, divisor)))
                    })
                    .transpose()
            })
            .collect::<Result<Vec<Option<String>>, VectorError>>()?;
        if !texts.is_empty() {
            self.check_embedder(&target)?;
            let inputs: Vec<String> = texts.iter().map(|&(_, t)| t.clone()).collect();
            let vectors = self.embed(&inputs).await?;
            for ((row, _), mut v) in texts.into_iter().zip(vectors) {
                if target.collection.distance == Distance::Cosine {
                    normalize(&mut v);
                }
                stored[row] = Some(vector_text(v.into_iter()));
            }
        }
        // The last of several points with one id wins, as if they were sent one by one.
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(rows.len());
        let mut vectors = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        for ((id, _, payload), vector) in rows.into_iter().zip(stored).rev() {
            if seen.insert(id.clone()) {
                ids.push(id);
                vectors.push(vector.unwrap_or_else(|| vector_text(std::iter::empty())));
                payloads.push(payload);
            }
        }
        let sql = format!(
            "INSERT INTO {table} (tenant_id, collection_id, id, embedding, payload)
             SELECT sovereign_current_tenant(), $1, t.id, t.v::vector, t.p::jsonb
               FROM unnest($2::text[], $3::text[], $4::text[]) AS t(id, v, p)
             ON CONFLICT (collection_id, id) DO UPDATE
                SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload, updated_at = now()",
            table = target.table()
        );
        let collection = target.collection.id;
        let n = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let n = diesel::sql_query(sql)
                        .bind::<diesel::sql_types::Uuid, _>(collection)
                        .bind::<Array<Text>, _>(ids)
                        .bind::<Array<Text>, _>(vectors)
                        .bind::<Array<Text>, _>(payloads)
                        .execute(conn)
                        .await?;
                    // The first load big enough gets planner statistics at once (see the
                    // migration): without them the planner would not use the HNSW index.
                    diesel::sql_query("SELECT sovereign_vector_analyze($1, true)::text AS version")
                        .bind::<diesel::sql_types::Uuid, _>(collection)
                        .load::<Version>(conn)
                        .await?;
                    Ok::<_, DbError>(n)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Affected { points: n as u64 })
    }

    /// One run of [`Vectors::points`].
    async fn points_once(
        &self,
        tenant: Uuid,
        name: &str,
        ids: &[String],
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<Point>, VectorError> {
        let ids = checked_ids(ids, "ids")?;
        let target = self.target(tenant, name).await?;
        let sql = format!(
            "SELECT id, {payload} AS payload, {vector} AS vector FROM {table} WHERE id = ANY($1)",
            payload = if with_payload {
                "payload"
            } else {
                "NULL::jsonb"
            },
            vector = if with_vector {
                "embedding::text"
            } else {
                "NULL::text"
            },
            table = target.table(),
        );
        let wanted = &ids;
        let rows: Vec<PointRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::sql_query(sql)
                        .bind::<Array<Text>, _>(wanted)
                        .load(conn)
                        .await
                        .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut by_id: BTreeMap<String, Point> = rows
            .into_iter()
            .map(|r| {
                (
                    r.id.clone(),
                    Point {
                        id: r.id,
                        payload: r.payload,
                        vector: r.vector.as_deref().map(parse_vector),
                    },
                )
            })
            .collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// One run of [`Vectors::delete_points`].
    async fn delete_points_once(
        &self,
        tenant: Uuid,
        name: &str,
        selector: &PointSelector,
    ) -> Result<Affected, VectorError> {
        let target = self.target(tenant, name).await?;
        let (condition, binds) = self.selection(&target, selector, 1)?;
        let sql = format!("DELETE FROM {} WHERE {condition}", target.table());
        self.change(tenant, sql, binds).await
    }

    /// One run of [`Vectors::set_payload`].
    async fn set_payload_once(
        &self,
        tenant: Uuid,
        name: &str,
        update: &PayloadUpdate,
        overwrite: bool,
    ) -> Result<Affected, VectorError> {
        let mut errors = Vec::new();
        let payload = payload_json(&update.payload, "payload", &mut errors);
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        let target = self.target(tenant, name).await?;
        let (condition, mut binds) = self.selection(&target, &update.points, 2)?;
        let sql = format!(
            "UPDATE {} SET payload = {}, updated_at = now() WHERE {condition}",
            target.table(),
            if overwrite {
                "$1::jsonb"
            } else {
                "payload || $1::jsonb"
            }
        );
        binds.insert(0, SelectionBind::Payload(payload));
        self.change(tenant, sql, binds).await
    }

    /// The `WHERE` condition of a selector, its placeholders from `$first` (after `$1`, the
    /// collection id is never bound: the partition is the collection).
    fn selection(
        &self,
        target: &Target,
        selector: &PointSelector,
        first: usize,
    ) -> Result<(String, Vec<SelectionBind>), VectorError> {
        match (&selector.ids, &selector.filter) {
            (Some(ids), None) => {
                let ids = checked_ids(ids, "ids")?;
                Ok((
                    format!("id = ANY(${first}::text[])"),
                    vec![SelectionBind::Ids(ids)],
                ))
            }
            (None, Some(f)) => {
                let compiled =
                    filter::compile(f, &target.collection.payload_indexes, "filter", first)
                        .map_err(VectorError::Invalid)?;
                Ok((
                    compiled.sql,
                    compiled
                        .binds
                        .into_iter()
                        .map(SelectionBind::Filter)
                        .collect(),
                ))
            }
            _ => Err(VectorError::invalid(
                "ids",
                "ids_or_filter",
                "give exactly one of `ids` and `filter`",
            )),
        }
    }

    async fn change(
        &self,
        tenant: Uuid,
        sql: String,
        binds: Vec<SelectionBind>,
    ) -> Result<Affected, VectorError> {
        let n = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let mut query = diesel::sql_query(sql).into_boxed();
                    for bind in binds {
                        query = match bind {
                            SelectionBind::Ids(ids) => query.bind::<Array<Text>, _>(ids),
                            SelectionBind::Filter(b) => bind_all(query, vec![b]),
                            SelectionBind::Payload(json) => query.bind::<Text, _>(json),
                        };
                    }
                    query.execute(conn).await.map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Affected { points: n as u64 })
    }
}
