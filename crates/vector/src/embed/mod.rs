//! Embedders turn text into vectors. Three providers, chosen by `VECTOR_EMBEDDER`:
//! [`HashEmbedder`] (deterministic, offline), [`OpenAiEmbedder`] (any OpenAI-compatible
//! `/v1/embeddings` server) and [`LocalEmbedder`] (a BERT-family sentence model run in process).

mod hash;
mod local;
pub mod openai;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use hash::HashEmbedder;
pub use local::LocalEmbedder;
pub use openai::OpenAiEmbedder;

use crate::error::EmbedError;
use crate::settings::{EmbedderKind, EmbedderSettings};

/// Longest text one point or query may carry, in characters.
pub const MAX_TEXT_CHARS: usize = 8192;

/// Turns texts into vectors of one fixed dimension.
pub trait Embedder: Send + Sync + 'static {
    /// A short name for logs and health reports: `hash`, `openai:<model>`, `local:<dir>`.
    fn name(&self) -> String;
    /// Length of every vector it returns.
    fn dimension(&self) -> usize;
    /// One vector per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String])
    -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// The embedder the settings ask for. Loading the local model reads its files, so call this
/// once at start-up.
pub fn from_settings(settings: &EmbedderSettings) -> Result<Arc<dyn Embedder>, EmbedError> {
    Ok(match settings.kind {
        EmbedderKind::Hash => Arc::new(HashEmbedder::new(settings.dimensions)),
        EmbedderKind::OpenAi => Arc::new(OpenAiEmbedder::new(settings)?),
        EmbedderKind::Local => {
            let dir = settings
                .model_dir
                .as_deref()
                .ok_or_else(|| EmbedError::Load("EMBEDDING_MODEL_DIR is not set".to_owned()))?;
            Arc::new(LocalEmbedder::load(
                dir,
                settings.threads,
                settings.batch_size,
            )?)
        }
    })
}

/// The length [`normalize`] divides `v` by; `None` when there is none to divide by: `v` is all
/// zeros (or too long to measure in `f32`).
pub(crate) fn length(v: &[f32]) -> Option<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    (norm > 0.0 && norm.is_finite()).then_some(norm)
}

/// Scales `v` to unit length; `false` (and `v` untouched) when it is all zeros.
pub(crate) fn normalize(v: &mut [f32]) -> bool {
    let Some(norm) = length(v) else {
        return false;
    };
    for x in v.iter_mut() {
        *x /= norm;
    }
    true
}
