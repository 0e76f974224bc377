//! The vector service: collections and points in PostgreSQL, searched through pgvector.
//!
//! [`Vectors`] and what every operation needs (the embedder, the settings) are here; the
//! operations continue in one module per kind of work, each with its own `impl Vectors`:
//! `collections` (create, list, read, delete, index builds, health), `points` (upsert, read,
//! delete, payload updates) and `search` (search, recommend, plans). `targets` holds the cache
//! of collection descriptions and the retry that keeps it safe; `checks` the validation of
//! input; `sql` the rows and SQL text the operations share.

mod checks;
mod collections;
mod points;
mod search;
mod sql;
mod targets;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sovereign_db::Db;
use uuid::Uuid;

use crate::embed::Embedder;
use crate::error::{EmbedError, VectorError};
use crate::settings::VectorSettings;

pub use collections::VectorHealth;
use targets::Target;

/// Most ids one read or delete may name, and most examples of a recommendation.
pub const MAX_IDS: usize = 1000;
pub const MAX_EXAMPLES: usize = 64;

/// Vector search for every tenant. Each call names its tenant, and runs in a transaction
/// scoped to it, so row-level security decides which collections exist. Cheap to clone.
#[derive(Clone)]
pub struct Vectors {
    db: Db,
    embedder: Arc<dyn Embedder>,
    settings: VectorSettings,
    /// Collections recently used, by tenant and name, so a search costs one transaction. An
    /// entry can only be stale in ways that fail safely and are retried with a fresh read: a
    /// deleted collection's partition is gone ("relation does not exist"), and payload indexes
    /// are only ever added (a filter on a key indexed elsewhere is re-checked).
    targets: moka::future::Cache<(Uuid, String), Arc<Target>>,
}

/// How long a collection's description is reused without reading it again.
const TARGET_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Vectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vectors")
            .field("embedder", &self.embedder.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Vectors {
    /// Embeds `texts`, timing the embedder for the metrics.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, VectorError> {
        let started = Instant::now();
        let result = self.embedder.embed(texts).await;
        metrics::histogram!("sovereign_embedder_duration_seconds", "embedder" => self.embedder.name())
            .record(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    /// The service as the settings describe it, with their embedder. Loading the local model
    /// reads its files, so call this once, at start-up.
    pub fn from_settings(db: Db, settings: &VectorSettings) -> Result<Self, EmbedError> {
        let embedder = crate::embed::from_settings(&settings.embedder)?;
        Ok(Self::new(db, embedder, settings.clone()))
    }

    /// The embedder that turns texts into vectors.
    #[must_use]
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn new(db: Db, embedder: Arc<dyn Embedder>, settings: VectorSettings) -> Self {
        Self {
            db,
            embedder,
            settings,
            targets: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TARGET_TTL)
                .build(),
        }
    }

    fn check_embedder(&self, target: &Target) -> Result<(), VectorError> {
        if self.embedder.dimension() == target.dimension() {
            Ok(())
        } else {
            Err(VectorError::EmbedderMismatch {
                embedder: self.embedder.dimension(),
                collection: target.dimension(),
            })
        }
    }
}
