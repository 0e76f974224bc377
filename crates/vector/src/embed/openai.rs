//! Any server speaking OpenAI's `POST /v1/embeddings`: Ollama, vLLM,
//! text-embeddings-inference, LocalAI, OpenAI itself.

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sovereign_core::settings::SecretUrl;

use super::Embedder;
use crate::error::EmbedError;
use crate::settings::EmbedderSettings;

/// First retry delay; doubled on each further retry, capped by [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The client of one embeddings endpoint.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: reqwest::Client,
    endpoint: SecretUrl,
    model: String,
    api_key: Option<SecretString>,
    dimension: usize,
    batch_size: usize,
    retries: u32,
}

impl std::fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("dimension", &self.dimension)
            .field("batch_size", &self.batch_size)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    index: usize,
}

/// One failed attempt: worth retrying or not.
enum Attempt {
    Transient(String, Option<Duration>),
    Fatal(EmbedError),
}

impl OpenAiEmbedder {
    /// The client the settings describe: `url` (required), model, key, dimension, time limit,
    /// batch size and retries. The kind of embedder the settings name is not looked at.
    pub fn new(settings: &EmbedderSettings) -> Result<Self, EmbedError> {
        let base_url = settings
            .url
            .as_ref()
            .ok_or_else(|| EmbedError::Load("EMBEDDING_URL is not set".to_owned()))?;
        let mut base = base_url.expose().trim_end_matches('/').to_owned();
        base.push_str("/embeddings");
        let endpoint =
            SecretUrl::parse(&base).map_err(|e| EmbedError::Load(format!("EMBEDDING_URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("sovereign/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EmbedError::Load(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            endpoint,
            model: settings.model.clone(),
            api_key: settings.api_key.clone(),
            dimension: settings.dimensions,
            batch_size: settings.batch_size.max(1),
            retries: settings.retries,
        })
    }

    async fn batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            match self.attempt(texts).await {
                Ok(vectors) => return Ok(vectors),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Transient(why, retry_after)) => {
                    if attempt >= self.retries {
                        return Err(EmbedError::Upstream(format!(
                            "{why} (after {} attempts)",
                            attempt + 1
                        )));
                    }
                    attempt += 1;
                    let wait = retry_after.unwrap_or(backoff).min(MAX_BACKOFF);
                    tracing::warn!(endpoint = %self.endpoint, attempt, wait_ms = wait.as_millis(), why, "embedding request failed; retrying");
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, Attempt> {
        let mut request = self
            .client
            .post(self.endpoint.expose())
            .json(&EmbeddingsRequest {
                model: &self.model,
                input: texts,
                encoding_format: "float",
            });
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                "timed out".to_owned()
            } else if e.is_connect() {
                "cannot connect".to_owned()
            } else {
                // The error's text would include the URL, which may carry credentials.
                format!("request failed: {}", e.without_url())
            };
            Attempt::Transient(why, None)
        })?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.text().await.unwrap_or_default();
            let snippet: String = body.chars().take(200).collect();
            let why = format!("HTTP {status}: {snippet}");
            return Err(if status.as_u16() == 429 || status.is_server_error() {
                Attempt::Transient(why, retry_after)
            } else {
                Attempt::Fatal(EmbedError::Upstream(why))
            });
        }
        let body: EmbeddingsResponse = response
            .json()
            .await
            .map_err(|e| Attempt::Fatal(EmbedError::Protocol(e.without_url().to_string())))?;
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for item in body.data {
            if item.embedding.len() != self.dimension {
                return Err(Attempt::Fatal(EmbedError::Protocol(format!(
                    "vectors of {} dimensions; EMBEDDING_DIMENSIONS says {}",
                    item.embedding.len(),
                    self.dimension
                ))));
            }
            match slots.get_mut(item.index) {
                Some(slot @ None) => *slot = Some(item.embedding),
                _ => {
                    return Err(Attempt::Fatal(EmbedError::Protocol(format!(
                        "unexpected index {}",
                        item.index
                    ))));
                }
            }
        }
        slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| Attempt::Fatal(EmbedError::Protocol("missing embeddings".to_owned())))
    }
}

impl Embedder for OpenAiEmbedder {
    fn name(&self) -> String {
        format!("openai:{}", self.model)
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(texts.len());
            for chunk in texts.chunks(self.batch_size) {
                out.extend(self.batch(chunk).await?);
            }
            Ok(out)
        })
    }
}
