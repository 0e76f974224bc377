//! The vector search settings: the embedder and its provider's parameters, search defaults,
//! batch limits and index builds.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Computed, Unset, Value};
use sovereign_core::settings::{
    ReadSettings, Reader, SecretUrl, SettingValue, cpus, with_defaults,
};

setting!(
    ENABLE_VECTOR,
    "ENABLE_VECTOR",
    Value("true"),
    "Serve the vector search API."
);
setting!(
    VECTOR_EMBEDDER,
    "VECTOR_EMBEDDER",
    Value("hash"),
    "How text is embedded for vector search: `hash` (deterministic, offline; for development and tests), `openai` (any OpenAI-compatible `/v1/embeddings` server: Ollama, vLLM, text-embeddings-inference, OpenAI) or `local` (a BERT-family sentence model run in process from `EMBEDDING_MODEL_DIR`)."
);
setting!(
    EMBEDDING_DIMENSIONS,
    "EMBEDDING_DIMENSIONS",
    Value("384"),
    "Vector length the `hash` embedder produces (the other embedders report their own)."
);
setting!(
    EMBEDDING_URL,
    "EMBEDDING_URL",
    Unset,
    "Base URL of the OpenAI-compatible server, up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`. Required with `VECTOR_EMBEDDER=openai`.",
    secret
);
setting!(
    EMBEDDING_MODEL,
    "EMBEDDING_MODEL",
    Value("text-embedding-3-small"),
    "Model name sent to the OpenAI-compatible server."
);
setting!(
    EMBEDDING_API_KEY,
    "EMBEDDING_API_KEY",
    Unset,
    "Bearer token for the OpenAI-compatible server, when it needs one.",
    secret
);
setting!(
    EMBEDDING_TIMEOUT_MS,
    "EMBEDDING_TIMEOUT_MS",
    Value("10000"),
    "Time limit of one request to the embedding server."
);
setting!(
    EMBEDDING_BATCH_SIZE,
    "EMBEDDING_BATCH_SIZE",
    Value("32"),
    "Texts per request to the embedding server, and per forward pass of the local model."
);
setting!(
    EMBEDDING_RETRIES,
    "EMBEDDING_RETRIES",
    Value("3"),
    "Retries (with exponential backoff) of an embedding request that failed for a transient reason: connection errors, timeouts, 429 and 5xx."
);
setting!(
    EMBEDDING_MODEL_DIR,
    "EMBEDDING_MODEL_DIR",
    Unset,
    "Directory of the `local` model: `config.json`, `tokenizer.json` and `model.safetensors` (e.g. all-MiniLM-L6-v2). Required with `VECTOR_EMBEDDER=local`."
);
setting!(
    EMBEDDING_THREADS,
    "EMBEDDING_THREADS",
    Computed("half the CPU count, at least 1"),
    "Threads the `local` model runs on, apart from the request workers."
);
setting!(
    VECTOR_EF_SEARCH,
    "VECTOR_EF_SEARCH",
    Value("100"),
    "Default HNSW candidate list size of a search (`hnsw.ef_search`); a search may set its own `ef`. Higher finds more true neighbours, more slowly."
);
setting!(
    VECTOR_MAX_BATCH,
    "VECTOR_MAX_BATCH",
    Value("1000"),
    "Most points one upsert request may carry."
);
setting!(
    VECTOR_INDEX_MEMORY,
    "VECTOR_INDEX_MEMORY",
    Value("512MB"),
    "`maintenance_work_mem` of an index build. An HNSW graph that fits builds several times faster."
);
setting!(
    VECTOR_INDEX_TIMEOUT_SECONDS,
    "VECTOR_INDEX_TIMEOUT_SECONDS",
    Value("3600"),
    "Time limit of one index build."
);
/// Which embedder turns text into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbedderKind {
    /// Feature hashing: deterministic and offline.
    #[default]
    Hash,
    /// An OpenAI-compatible `/v1/embeddings` server.
    OpenAi,
    /// A sentence model run in process.
    Local,
}

impl SettingValue for EmbedderKind {
    const EXPECTED: &'static str = "hash, openai or local";
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "hash" => Ok(Self::Hash),
            "openai" => Ok(Self::OpenAi),
            "local" => Ok(Self::Local),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

/// Vector search: whether it is served, its limits and defaults, and its embedder.
#[derive(Debug, Clone)]
pub struct VectorSettings {
    /// `ENABLE_VECTOR`: whether the API serves vector search.
    pub enabled: bool,
    /// Default `hnsw.ef_search`.
    pub ef_search: u32,
    /// Most points per upsert.
    pub max_batch: usize,
    /// `maintenance_work_mem` of index builds, in PostgreSQL's notation (`512MB`).
    pub index_memory: String,
    pub index_timeout: Duration,
    pub embedder: EmbedderSettings,
}

/// Which embedder, and how each provider is reached or run.
#[derive(Debug, Clone)]
pub struct EmbedderSettings {
    pub kind: EmbedderKind,
    /// Output length of the `hash` embedder; the length `openai` responses must have.
    pub dimensions: usize,
    /// `openai`: base URL up to `/v1` (may carry credentials: never shown).
    pub url: Option<SecretUrl>,
    pub model: String,
    pub api_key: Option<SecretString>,
    /// `openai`: time limit of one request.
    pub timeout: Duration,
    /// Texts per request (`openai`) or forward pass (`local`).
    pub batch_size: usize,
    pub retries: u32,
    /// `local`: the model directory.
    pub model_dir: Option<PathBuf>,
    /// `local`: threads the model runs on.
    pub threads: usize,
}

impl ReadSettings for VectorSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self::from_reader(r))
    }
}

/// The documented defaults: enabled, with the `hash` embedder.
impl Default for VectorSettings {
    fn default() -> Self {
        with_defaults(Self::from_reader)
    }
}

impl Default for EmbedderSettings {
    fn default() -> Self {
        VectorSettings::default().embedder
    }
}

impl VectorSettings {
    fn from_reader(r: &mut Reader<'_>) -> Self {
        r.section("Vector search");
        let enabled: bool = r.value(&ENABLE_VECTOR);
        let embedder = read_embedder(r, enabled);
        let ef_search = r.bounded(&VECTOR_EF_SEARCH, 1, 1000);
        let max_batch = r.bounded(&VECTOR_MAX_BATCH, 1, 10_000);
        let index_memory: String = r.value(&VECTOR_INDEX_MEMORY);
        let memory_ok = index_memory
            .trim_end_matches(|c: char| c.is_ascii_alphabetic())
            .parse::<u64>()
            .is_ok()
            && matches!(
                index_memory.trim_start_matches(|c: char| c.is_ascii_digit()),
                "kB" | "MB" | "GB"
            );
        if !memory_ok {
            r.problem(
                VECTOR_INDEX_MEMORY.name,
                format!("`{index_memory}` is not a memory size"),
                "use PostgreSQL's notation: a whole number followed by kB, MB or GB, e.g. 512MB"
                    .to_owned(),
            );
        }
        Self {
            enabled,
            ef_search,
            max_batch,
            index_memory,
            index_timeout: r.seconds(&VECTOR_INDEX_TIMEOUT_SECONDS, 1, 86_400),
            embedder,
        }
    }
}

fn read_embedder(r: &mut Reader<'_>, enabled: bool) -> EmbedderSettings {
    let kind: EmbedderKind = r.value(&VECTOR_EMBEDDER);
    let dimensions = r.bounded(&EMBEDDING_DIMENSIONS, 1, 2000);
    let url = r.secret_url(&EMBEDDING_URL);
    let model: String = r.value(&EMBEDDING_MODEL);
    let api_key = r.secret(&EMBEDDING_API_KEY);
    let timeout = r.millis(&EMBEDDING_TIMEOUT_MS, 100, 600_000);
    let batch_size = r.bounded(&EMBEDDING_BATCH_SIZE, 1, 2048);
    let retries = r.bounded(&EMBEDDING_RETRIES, 0, 10);
    let model_dir = r.raw(&EMBEDDING_MODEL_DIR).map(PathBuf::from);
    let threads = r
        .optional::<usize>(&EMBEDDING_THREADS)
        .unwrap_or((cpus() / 2).max(1));
    if threads == 0 || threads > 256 {
        r.problem(
            EMBEDDING_THREADS.name,
            format!("{threads} is out of range"),
            "set EMBEDDING_THREADS from 1 to 256".to_owned(),
        );
    }
    if let Some(url) = &url
        && !matches!(url.scheme(), "http" | "https")
    {
        r.problem(
            EMBEDDING_URL.name,
            format!("`{}` is not an http(s) URL", url.redacted()),
            "set EMBEDDING_URL to the server's base URL, e.g. http://127.0.0.1:11434/v1".to_owned(),
        );
    }
    if enabled && kind == EmbedderKind::OpenAi && url.is_none() {
        r.problem(
            EMBEDDING_URL.name,
            "is required with VECTOR_EMBEDDER=openai".to_owned(),
            "set EMBEDDING_URL to the server's base URL, e.g. http://127.0.0.1:11434/v1".to_owned(),
        );
    }
    if enabled && kind == EmbedderKind::Local && model_dir.is_none() {
        r.problem(
            EMBEDDING_MODEL_DIR.name,
            "is required with VECTOR_EMBEDDER=local".to_owned(),
            "set EMBEDDING_MODEL_DIR to a directory with config.json, tokenizer.json and model.safetensors".to_owned(),
        );
    }
    EmbedderSettings {
        kind,
        dimensions,
        url,
        model,
        api_key,
        timeout,
        batch_size,
        retries,
        model_dir,
        threads: threads.clamp(1, 256),
    }
}

#[cfg(test)]
mod tests {
    use sovereign_core::settings::from_vars;

    use super::*;

    #[test]
    fn the_embedding_url_is_a_secret_never_shown() {
        let s = from_vars::<VectorSettings, _, _, _>([
            ("VECTOR_EMBEDDER", "openai"),
            ("EMBEDDING_URL", "https://user:hunter2@embed.example/v1"),
        ])
        .unwrap()
        .settings;
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("embed.example"), "{shown}");
        assert!(s.embedder.url.unwrap().expose().contains("hunter2"));
        let bad = from_vars::<VectorSettings, _, _, _>([(
            "EMBEDDING_URL",
            "ftp://user:hunter2@embed.example/v1",
        )])
        .unwrap_err();
        assert!(!bad.to_string().contains("hunter2"), "{bad}");
    }

    #[test]
    fn providers_need_their_settings_only_when_vector_search_is_on() {
        let e = from_vars::<VectorSettings, _, _, _>([("VECTOR_EMBEDDER", "openai")]).unwrap_err();
        assert_eq!(e.problems[0].setting, "EMBEDDING_URL");
        let e = from_vars::<VectorSettings, _, _, _>([("VECTOR_EMBEDDER", "local")]).unwrap_err();
        assert_eq!(e.problems[0].setting, "EMBEDDING_MODEL_DIR");
        assert!(
            from_vars::<VectorSettings, _, _, _>([
                ("VECTOR_EMBEDDER", "openai"),
                ("ENABLE_VECTOR", "false")
            ])
            .is_ok()
        );
        let e =
            from_vars::<VectorSettings, _, _, _>([("VECTOR_INDEX_MEMORY", "lots")]).unwrap_err();
        assert_eq!(e.problems[0].setting, "VECTOR_INDEX_MEMORY");
    }

    #[test]
    fn defaults_are_the_hash_embedder() {
        let s = VectorSettings::default();
        assert!(s.enabled);
        assert_eq!(s.embedder.kind, EmbedderKind::Hash);
        assert_eq!(s.embedder.dimensions, 384);
        assert_eq!(s.ef_search, 100);
        assert_eq!(s.max_batch, 1000);
    }
}
