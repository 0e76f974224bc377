#![doc = include_str!("../README.md")]

pub mod embed;
mod error;
pub mod filter;
pub mod model;
mod settings;
mod store;
mod wire;

pub use embed::{Embedder, HashEmbedder, LocalEmbedder, OpenAiEmbedder};
pub use error::{EmbedError, VectorError};
pub use filter::{Condition, Filter, Match, Range};
pub use model::{
    Affected, Collection, Distance, Example, HnswConfig, IndexRequest, IndexState, NewCollection,
    PayloadKind, PayloadUpdate, Point, PointInput, PointSelector, QueryOptions, RecommendRequest,
    ScoredPoint, SearchRequest,
};
pub use settings::{EmbedderKind, EmbedderSettings, VectorSettings};
pub use store::{MAX_EXAMPLES, MAX_IDS, VectorHealth, Vectors};
pub use wire::NoOtherFields;
