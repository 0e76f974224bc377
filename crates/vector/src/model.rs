//! The data of vector search: collections, points, and the requests that read them.
//!
//! These types are plain serde structs; with the `openapi` feature they also describe
//! themselves as OpenAPI schemas, so the HTTP layer publishes them as they are.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::wire::{NoOtherFields, whole};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::filter::Filter;
/// The filter language owns the types of payload keys (they decide which conditions a key
/// supports); a collection lists its indexed keys with them, so they are found here too.
pub use crate::filter::PayloadKind;

/// Longest point id, in characters.
pub const MAX_POINT_ID_CHARS: usize = 128;
/// Largest payload of one point, serialised, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Most results one search may return (`limit`), and the deepest page (`offset`).
pub const MAX_LIMIT: u32 = 1000;
pub const MAX_OFFSET: u32 = 10_000;
/// Largest dimension: what pgvector's HNSW index accepts for `vector`.
pub const MAX_DIMENSION: u32 = 2000;

/// How closeness is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Distance {
    /// Cosine similarity; `score` is in [-1, 1], higher is closer. Vectors are stored
    /// normalised to unit length (so `with_vector` returns the unit vector).
    Cosine,
    /// Euclidean distance; `score` is the distance, lower is closer.
    L2,
    /// Inner product; `score` is the product, higher is closer.
    Dot,
}

impl Distance {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cosine => "cosine",
            Self::L2 => "l2",
            Self::Dot => "dot",
        }
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "cosine" => Some(Self::Cosine),
            "l2" => Some(Self::L2),
            "dot" => Some(Self::Dot),
            _ => None,
        }
    }
}

/// HNSW index parameters (pgvector's `m` and `ef_construction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HnswConfig {
    /// Links per node, 2–100. More: better recall, bigger index, slower build.
    #[cfg_attr(feature = "openapi", schema(minimum = 2, maximum = 100, example = 16))]
    #[serde(default = "default_m", deserialize_with = "whole::number")]
    pub m: u16,
    /// Candidate list size while building, 4–1000 and at least 2·m.
    #[cfg_attr(feature = "openapi", schema(minimum = 4, maximum = 1000, example = 64))]
    #[serde(
        default = "default_ef_construction",
        deserialize_with = "whole::number"
    )]
    pub ef_construction: u16,
}

fn default_m() -> u16 {
    16
}
fn default_ef_construction() -> u16 {
    64
}

impl Default for HnswConfig {
    fn default() -> Self {
        Self {
            m: default_m(),
            ef_construction: default_ef_construction(),
        }
    }
}

/// A collection to create.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "articles", "dimension": 384, "distance": "cosine", "hnsw": {"m": 16, "ef_construction": 64}
})))]
#[serde(deny_unknown_fields)]
pub struct NewCollection {
    /// Unique within the tenant: letters, digits, `_` and `-`, at most 64, starting with a
    /// letter or digit.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
    )]
    pub name: String,
    /// Length of every vector, 1–2000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2000))]
    #[serde(deserialize_with = "whole::number")]
    pub dimension: u32,
    #[serde(default = "default_distance")]
    pub distance: Distance,
    #[serde(default)]
    pub hnsw: HnswConfig,
    /// Build the HNSW index later (`POST …/index`), after a bulk load: loading is then several
    /// times faster. Until then, searches are exact.
    #[serde(default)]
    pub defer_index: bool,
}

fn default_distance() -> Distance {
    Distance::Cosine
}

/// The state of a collection's vector index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum IndexState {
    /// No index: searches are exact (a scan).
    None,
    /// An index build is running.
    Building,
    /// Searches use the HNSW index.
    Ready,
}

/// A collection and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Collection {
    pub id: Uuid,
    pub name: String,
    pub dimension: u32,
    pub distance: Distance,
    pub hnsw: HnswConfig,
    pub index: IndexState,
    /// Indexed payload keys, usable in filters.
    pub payload_indexes: BTreeMap<String, PayloadKind>,
    /// Number of points (exact); present when one collection is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What to index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"kind": "payload", "key": "category", "type": "keyword"})))]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum IndexRequest {
    /// The collection's HNSW index, with the parameters it was created with.
    Hnsw,
    /// A payload key, so filters may use it.
    Payload {
        /// A key of the payload object, or a dotted path into nested objects (`meta.lang`):
        /// up to 4 identifiers of letters, digits and `_`.
        #[cfg_attr(
            feature = "openapi",
            schema(pattern = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$")
        )]
        key: String,
        #[serde(rename = "type")]
        kind: PayloadKind,
    },
}

/// A point id as the document describes it: a UUID or any string of 1–128 printable
/// characters (the server checks the same rule on every id it reads).
#[cfg(feature = "openapi")]
#[derive(utoipa::ToSchema)]
#[schema(pattern = r"^[^\u0000-\u001f\u007f-\u009f]{1,128}$", example = "doc-1")]
pub struct PointId(pub String);

/// A point to insert or replace: a vector, or a text to embed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PointInput {
    /// A UUID or any string of 1–128 printable characters; unique in the collection.
    #[cfg_attr(feature = "openapi", schema(value_type = PointId))]
    pub id: String,
    /// Exactly one of `vector` and `text`.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Embedded with the server's embedder; the text itself is not stored. Not blank, at
    /// most 8,192 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 8192, pattern = r"^[^\u0000]*[^\u0000\s][^\u0000]*$")
    )]
    pub text: Option<String>,
    /// Any JSON object, at most 64 KiB.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Option<Map<String, Value>>,
}

/// A stored point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoredPoint {
    pub id: String,
    /// Similarity for cosine and dot (higher is closer), distance for l2 (lower is closer).
    pub score: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// Options shared by search and recommend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueryOptions {
    /// Only points matching this filter (on indexed payload keys).
    #[serde(default)]
    pub filter: Option<Filter>,
    /// Results to return, 1–1000.
    #[serde(default = "default_limit", deserialize_with = "whole::number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub limit: u32,
    /// Results to skip, at most 10,000.
    #[serde(default, deserialize_with = "whole::number")]
    #[cfg_attr(feature = "openapi", schema(maximum = 10000))]
    pub offset: u32,
    /// Cosine and dot: the lowest score returned. L2: the largest distance returned.
    #[serde(default)]
    pub score_threshold: Option<f32>,
    #[serde(default = "yes")]
    pub with_payload: bool,
    #[serde(default)]
    pub with_vector: bool,
    /// HNSW candidate list size (`hnsw.ef_search`) for this query, 1–1000; the server's
    /// `VECTOR_EF_SEARCH` when absent. Raised to `limit + offset` when smaller.
    #[serde(default, deserialize_with = "whole::optional")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub ef: Option<u32>,
    /// Compare with every point instead of using the index: exact, and slow on big collections.
    #[serde(default)]
    pub exact: bool,
}

fn default_limit() -> u32 {
    10
}
fn yes() -> bool {
    true
}

impl Default for QueryOptions {
    fn default() -> Self {
        Self {
            filter: None,
            limit: default_limit(),
            offset: 0,
            score_threshold: None,
            with_payload: true,
            with_vector: false,
            ef: None,
            exact: false,
        }
    }
}

/// A nearest-neighbour search, by vector or by text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "text": "how do I reset my password?", "limit": 5,
    "filter": {"must": [{"key": "category", "match": {"value": "help"}}]}
})))]
pub struct SearchRequest {
    /// Exactly one of `vector` and `text`.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    /// Embedded with the server's embedder. Not blank, at most 8,192 characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 8192, pattern = r"^[^\u0000]*[^\u0000\s][^\u0000]*$")
    )]
    pub text: Option<String>,
    #[serde(flatten)]
    pub options: QueryOptions,
    #[serde(flatten, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub no_other_fields: NoOtherFields,
}

/// A point given by id, or a vector.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Example {
    #[cfg_attr(feature = "openapi", schema(value_type = PointId))]
    Id(String),
    Vector(Vec<f32>),
}

/// Points like the positive examples and unlike the negative ones. The query is
/// `2·mean(positive) − mean(negative)` (or the mean of the positives without negatives); the
/// examples given by id are left out of the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"positive": ["doc-1"], "negative": ["doc-7"], "limit": 5})))]
pub struct RecommendRequest {
    /// 1–64 examples.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 64))]
    pub positive: Vec<Example>,
    /// 0–64 examples.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 64))]
    pub negative: Vec<Example>,
    #[serde(flatten)]
    pub options: QueryOptions,
    #[serde(flatten, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub no_other_fields: NoOtherFields,
}

/// Which points a change applies to: exactly one of `ids` and `filter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"ids": ["doc-1", "doc-2"]})))]
#[serde(deny_unknown_fields)]
pub struct PointSelector {
    /// 1–1,000 ids.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Option<Vec<PointId>>, min_items = 1, max_items = 1000)
    )]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    pub filter: Option<Filter>,
}

/// A payload change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"ids": ["doc-1"], "payload": {"reviewed": true}})))]
pub struct PayloadUpdate {
    #[serde(flatten)]
    pub points: PointSelector,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Map<String, Value>,
    #[serde(flatten, skip_serializing)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub no_other_fields: NoOtherFields,
}

/// How many points a change touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Affected {
    pub points: u64,
}
