//! A BERT-family sentence model (e.g. all-MiniLM-L6-v2) run in process with candle: tokenize,
//! encode, mean-pool over the attention mask, normalise. Inference runs on threads of its own at
//! a lower priority, never on the async workers, so requests that do not embed stay fast while
//! it works.
//!
//! Each inference thread is a one-thread rayon pool and takes whole batches: candle splits a
//! matrix product across the threads of the pool it runs in, which for a model this small costs
//! more than running batches side by side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use futures_util::future::BoxFuture;
use tokenizers::{Tokenizer, TruncationParams};

use super::{Embedder, normalize};
use crate::error::EmbedError;

/// About nice 10, like the password hashers (the crate maps its 0–99 scale onto nice
/// 19 … -20): the request workers win the CPU when both want it.
const INFERENCE_PRIORITY: u8 = 23;

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    dimension: usize,
    cls_pooling: bool,
}

/// The in-process sentence model. Cheap to share behind an `Arc`.
pub struct LocalEmbedder {
    model: Arc<Model>,
    /// One single-thread pool per inference thread.
    pools: Arc<Vec<rayon::ThreadPool>>,
    batch_size: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("dir", &self.dir)
            .field("dimension", &self.model.dimension)
            .field("threads", &self.pools.len())
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

fn load_error(what: &str, e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Load(format!("{what}: {e}"))
}

fn model_error(e: impl std::fmt::Display) -> EmbedError {
    EmbedError::Model(e.to_string())
}

impl LocalEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (and, when
    /// present, sentence-transformers' `sentence_bert_config.json` for the sequence length and
    /// `1_Pooling/config.json` for the pooling). `threads` run inference; texts go through the
    /// model `batch_size` at a time, grouped by length so little padding is computed.
    pub fn load(dir: &Path, threads: usize, batch_size: usize) -> Result<Self, EmbedError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name))
                .map_err(|e| load_error(&dir.join(name).display().to_string(), e))
        };
        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| load_error("config.json", e))?;
        let dimension = serde_json::from_slice::<serde_json::Value>(&read("config.json")?)
            .ok()
            .and_then(|v| v.get("hidden_size")?.as_u64())
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| load_error("config.json", "no hidden_size"))?;
        let max_len = std::fs::read(dir.join("sentence_bert_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("max_seq_length")?.as_u64())
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(512);
        let cls_pooling = std::fs::read(dir.join("1_Pooling/config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("pooling_mode_cls_token")?.as_bool())
            .unwrap_or(false);
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load_error("tokenizer.json", e))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_len,
                ..TruncationParams::default()
            }))
            .map_err(|e| load_error("tokenizer.json", e))?;
        tokenizer.with_padding(None);
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| load_error("model.safetensors", e))?;
        let bert = BertModel::load(vb, &config).map_err(|e| load_error("model.safetensors", e))?;
        let pools = (0..threads.max(1))
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("embed-{i}"))
                    .start_handler(|_| lower_priority())
                    .build()
                    .map_err(|e| load_error("inference threads", e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            model: Arc::new(Model {
                bert,
                tokenizer,
                dimension,
                cls_pooling,
            }),
            pools: Arc::new(pools),
            batch_size: batch_size.max(1),
            dir: dir.to_owned(),
        })
    }

    /// Embeds on the model's threads and waits for the result, blocking the caller (outside
    /// async code, and not on an inference thread; the async `embed` does not block).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_on(&self.model, &self.pools, texts, self.batch_size)
    }
}

fn lower_priority() {
    if let Ok(priority) = INFERENCE_PRIORITY.try_into()
        && let Err(e) = thread_priority::set_current_thread_priority(
            thread_priority::ThreadPriority::Crossplatform(priority),
        )
    {
        tracing::debug!(error = ?e, "cannot lower the inference thread's priority");
    }
}

/// Tokenizes on the calling thread, then sends the batches (grouped by length, so each pads to
/// a length close to all its texts) round-robin to the inference threads and gathers them.
fn embed_on(
    model: &Arc<Model>,
    pools: &[rayon::ThreadPool],
    texts: &[String],
    batch_size: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let encodings = Arc::new(
        model
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(model_error)?,
    );
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| encodings[i].get_ids().len());
    let batches: Vec<Vec<usize>> = order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let (done, results) = std::sync::mpsc::channel();
    for (k, chunk) in batches.iter().enumerate() {
        let (model, encodings, done, chunk) = (
            Arc::clone(model),
            Arc::clone(&encodings),
            done.clone(),
            chunk.clone(),
        );
        pools[k % pools.len()].spawn(move || {
            let _ = done.send((k, model.forward(&chunk, &encodings)));
        });
    }
    drop(done);
    let mut out = vec![Vec::new(); texts.len()];
    let mut received = 0;
    for (k, rows) in results {
        received += 1;
        for (&i, row) in batches[k].iter().zip(rows?) {
            out[i] = row;
        }
    }
    if received < batches.len() {
        return Err(EmbedError::Model("an inference thread stopped".to_owned()));
    }
    Ok(out)
}

impl Model {
    /// One padded batch through the encoder, pooled and normalised.
    fn forward(
        &self,
        chunk: &[usize],
        encodings: &[tokenizers::Encoding],
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = chunk
            .iter()
            .map(|&i| encodings[i].get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = Vec::with_capacity(chunk.len() * len);
        let mut mask = Vec::with_capacity(chunk.len() * len);
        for &i in chunk {
            let e = &encodings[i];
            ids.extend_from_slice(e.get_ids());
            mask.extend_from_slice(e.get_attention_mask());
            let pad = len - e.get_ids().len();
            ids.extend(std::iter::repeat_n(0u32, pad));
            mask.extend(std::iter::repeat_n(0u32, pad));
        }
        let shape = (chunk.len(), len);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu).map_err(model_error)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu).map_err(model_error)?;
        let types = ids.zeros_like().map_err(model_error)?;
        let hidden = self
            .bert
            .forward(&ids, &types, Some(&mask))
            .map_err(model_error)?;
        let pooled = if self.cls_pooling {
            hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1))
        } else {
            mean_pool(&hidden, &mask)
        }
        .map_err(model_error)?;
        let mut rows: Vec<Vec<f32>> = pooled.to_vec2().map_err(model_error)?;
        for row in &mut rows {
            normalize(row);
        }
        Ok(rows)
    }
}

/// The mean of the token vectors the attention mask keeps.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f32::MAX)?;
    summed.broadcast_div(&counts)
}

impl Embedder for LocalEmbedder {
    fn name(&self) -> String {
        format!(
            "local:{}",
            self.dir.file_name().map_or_else(
                || self.dir.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            )
        )
    }

    fn dimension(&self) -> usize {
        self.model.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        let (model, pools) = (Arc::clone(&self.model), Arc::clone(&self.pools));
        let texts = texts.to_vec();
        let batch = self.batch_size;
        Box::pin(async move {
            // The coordinating thread only tokenizes and waits; the model runs on `pools`.
            tokio::task::spawn_blocking(move || embed_on(&model, &pools, &texts, batch))
                .await
                .map_err(|_| EmbedError::Model("the embedding task stopped".to_owned()))?
        })
    }
}
