//! Typed settings, loaded once from the environment (and an optional `.env` file) and passed
//! down. There is no global: whoever needs a setting receives it.
//!
//! Loading reports every problem at once, each with a suggestion, so an operator fixes the whole
//! configuration in one go. Variable names follow the earlier Python version where it had them
//! (`DATABASE_URL`, `VALKEY_URL`/`REDIS_URL`, `SECRET_KEY`, `BACKEND_CORS_ORIGINS`, …).
//!
//! Every variable is declared as a [`SettingSpec`]; [`documented_settings`] lists them, and a
//! test keeps `docs/configuration.md` in step with that list.

mod reader;
mod secret;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::quota::Quota;

pub use reader::{DefaultValue, SettingIssue, SettingSpec};
pub use secret::SecretUrl;

use reader::{Reader, SettingValue};

macro_rules! spec {
    ($ident:ident, $name:literal, $default:expr, $description:literal) => {
        static $ident: SettingSpec = SettingSpec {
            name: $name,
            default: $default,
            description: $description,
            secret: false,
        };
    };
    ($ident:ident, $name:literal, $default:expr, $description:literal, secret) => {
        static $ident: SettingSpec = SettingSpec {
            name: $name,
            default: $default,
            description: $description,
            secret: true,
        };
    };
}

use DefaultValue::{Computed, Required, Unset, Value};

spec!(
    ENVIRONMENT,
    "ENVIRONMENT",
    Value("development"),
    "Deployment environment: `development`, `staging` or `production`. Staging and production enforce a strong `SECRET_KEY`, JSON logs and no `DEBUG`."
);
spec!(
    DEBUG,
    "DEBUG",
    Value("false"),
    "Verbose diagnostics: raises the default log level to `debug`. Refused in production."
);
spec!(
    HOST,
    "HOST",
    Value("127.0.0.1"),
    "Address the HTTP server binds to. Use `0.0.0.0` in a container; keep the loopback address behind a reverse proxy on the same host."
);
spec!(
    PORT,
    "PORT",
    Value("8000"),
    "TCP port the HTTP server listens on."
);
spec!(
    WORKERS,
    "WORKERS",
    Computed("number of CPUs"),
    "Number of HTTP worker threads."
);
spec!(
    SHUTDOWN_TIMEOUT_SECONDS,
    "SHUTDOWN_TIMEOUT_SECONDS",
    Value("30"),
    "On SIGTERM/SIGINT, how long in-flight requests may take to finish before connections are closed."
);
spec!(
    JSON_BODY_LIMIT_BYTES,
    "JSON_BODY_LIMIT_BYTES",
    Value("1048576"),
    "Largest JSON request body accepted; larger bodies get `413 payload_too_large`."
);
spec!(
    JSON_BULK_LIMIT_BYTES,
    "JSON_BULK_LIMIT_BYTES",
    Value("33554432"),
    "Largest JSON body of the bulk routes (vector upserts: 1,000 points of 384 numbers are about 4 MB)."
);
spec!(
    PAYLOAD_LIMIT_BYTES,
    "PAYLOAD_LIMIT_BYTES",
    Value("2097152"),
    "Largest non-JSON request body (forms, raw bytes) accepted."
);
spec!(
    DATABASE_URL,
    "DATABASE_URL",
    Required,
    "PostgreSQL URL the server connects with, as its runtime role (not the schema owner, not a superuser); e.g. `postgres://sovereign_api:PASSWORD@127.0.0.1:5432/sovereign`.",
    secret
);
spec!(
    DATABASE_OWNER_URL,
    "DATABASE_OWNER_URL",
    Computed("`DATABASE_URL`"),
    "PostgreSQL URL `sovereign migrate` connects with: the role that owns the schema.",
    secret
);
spec!(
    DATABASE_ADMIN_URL,
    "DATABASE_ADMIN_URL",
    Computed("`DATABASE_OWNER_URL`"),
    "PostgreSQL URL tenant administration (`sovereign tenant …`) connects with: a member of `sovereign_tenant_admin`, the only role that may create or change tenants.",
    secret
);
spec!(
    DATABASE_POOL_MAX_SIZE,
    "DATABASE_POOL_MAX_SIZE",
    Value("16"),
    "Most connections the server keeps open to PostgreSQL."
);
spec!(
    DATABASE_POOL_WAIT_TIMEOUT_MS,
    "DATABASE_POOL_WAIT_TIMEOUT_MS",
    Value("1000"),
    "How long a request waits for a free connection before it gets `503 database_unavailable`."
);
spec!(
    DATABASE_CONNECT_TIMEOUT_MS,
    "DATABASE_CONNECT_TIMEOUT_MS",
    Value("2000"),
    "How long opening a new connection may take."
);
spec!(
    DATABASE_RECYCLE_TIMEOUT_MS,
    "DATABASE_RECYCLE_TIMEOUT_MS",
    Value("1000"),
    "How long checking a pooled connection before reuse may take."
);
spec!(
    DATABASE_STATEMENT_TIMEOUT_MS,
    "DATABASE_STATEMENT_TIMEOUT_MS",
    Value("5000"),
    "Longest a single statement or transaction may run, enforced by PostgreSQL and by the client."
);
spec!(
    VALKEY_URL,
    "VALKEY_URL",
    Unset,
    "Valkey/Redis URL (`redis://`, `valkey://`, `unix://`; TLS `rediss://` is not supported). Wins over `REDIS_URL`. Unset: an in-process cache serves one instance.",
    secret
);
spec!(
    REDIS_URL,
    "REDIS_URL",
    Unset,
    "Same as `VALKEY_URL`, accepted for compatibility.",
    secret
);
spec!(
    CACHE_PREFIX,
    "CACHE_PREFIX",
    Value("sovereign"),
    "Namespace of every cache key and channel (`<prefix>:…`, tenant data under `<prefix>:t:<tenant>:…`), so several deployments can share one Redis."
);
spec!(
    CACHE_TIMEOUT_MS,
    "CACHE_TIMEOUT_MS",
    Value("250"),
    "Bound on each Redis round trip, including the wait for a pooled connection. A stopped Redis costs at most this, then calls are short-circuited for half a second."
);
spec!(
    CACHE_CONNECT_TIMEOUT_MS,
    "CACHE_CONNECT_TIMEOUT_MS",
    Value("1000"),
    "Bound on opening a new Redis connection."
);
spec!(
    CACHE_POOL_MAX_SIZE,
    "CACHE_POOL_MAX_SIZE",
    Value("16"),
    "Most pooled Redis connections (each one is multiplexed)."
);
spec!(
    CACHE_MEMORY_CAPACITY,
    "CACHE_MEMORY_CAPACITY",
    Value("100000"),
    "Most entries the in-process cache keeps when no Redis URL is set."
);
spec!(
    TRUSTED_PROXIES,
    "TRUSTED_PROXIES",
    Unset,
    "Comma-separated addresses or CIDRs of reverse proxies (e.g. `127.0.0.1,10.0.0.0/8`). `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` are honoured only from these peers; the client address is the right-most hop that is not one of them. Unset: the socket peer is the client."
);
spec!(
    RATE_LIMIT_ENABLED,
    "RATE_LIMIT_ENABLED",
    Value("true"),
    "Whether requests are rate limited."
);
spec!(
    RATE_LIMIT_API,
    "RATE_LIMIT_API",
    Value("600/minute"),
    "Quota per client address on every route except `/health` and `/ready`, as LIMIT/PERIOD (`600/minute`, `20/10s`, `5000/hour`); bursts up to LIMIT."
);
spec!(
    RATE_LIMIT_AUTH,
    "RATE_LIMIT_AUTH",
    Value("20/minute"),
    "Quota per client address on the authentication routes that take a password or token (register, login, token, refresh, password and verification flows), in addition to `RATE_LIMIT_API`."
);
spec!(
    RATE_LIMIT_FALLBACK_DIVISOR,
    "RATE_LIMIT_FALLBACK_DIVISOR",
    Value("4"),
    "While Redis is failing, each instance enforces its quotas divided by this, in process: degraded, never unlimited."
);
spec!(
    SECRET_KEY,
    "SECRET_KEY",
    Computed("random per process in development; required otherwise"),
    "HMAC key for signing tokens: at least 32 bytes of random text (`openssl rand -base64 48`).",
    secret
);
spec!(
    ACCESS_TOKEN_EXPIRE_MINUTES,
    "ACCESS_TOKEN_EXPIRE_MINUTES",
    Value("15"),
    "Lifetime of access tokens, in minutes (1 to 1440)."
);
spec!(
    REFRESH_TOKEN_EXPIRE_DAYS,
    "REFRESH_TOKEN_EXPIRE_DAYS",
    Value("7"),
    "Lifetime of refresh tokens (sessions), in days (1 to 365)."
);
spec!(
    JWT_ISSUER,
    "JWT_ISSUER",
    Value("sovereign"),
    "`iss` of the access tokens this server issues, and the only issuer it accepts."
);
spec!(
    JWT_AUDIENCE,
    "JWT_AUDIENCE",
    Value("sovereign-api"),
    "`aud` of the access tokens this server issues, and the only audience it accepts."
);
spec!(
    JWT_PRIVATE_KEY_FILE,
    "JWT_PRIVATE_KEY_FILE",
    Unset,
    "An Ed25519 private key (PKCS#8 PEM, `openssl genpkey -algorithm ed25519`). When set, access tokens are signed with EdDSA instead of HS256, and `/.well-known/jwks.json` publishes the public keys."
);
spec!(
    JWT_PUBLIC_KEY_FILES,
    "JWT_PUBLIC_KEY_FILES",
    Unset,
    "Extra Ed25519 public keys (PEM files, comma-separated) whose tokens are still accepted: the previous keys during a rotation. Needs `JWT_PRIVATE_KEY_FILE`."
);
spec!(
    BCRYPT_COST,
    "BCRYPT_COST",
    Value("12"),
    "bcrypt work factor for password hashes (10 to 16; lower values are accepted only in development)."
);
spec!(
    PASSWORD_MIN_LENGTH,
    "PASSWORD_MIN_LENGTH",
    Value("12"),
    "Shortest password accepted, in characters (8 to 64). Up to 256 characters are accepted; there are no composition rules."
);
spec!(
    PASSWORD_HASH_CONCURRENCY,
    "PASSWORD_HASH_CONCURRENCY",
    Computed("number of CPUs"),
    "Threads that hash passwords (at a lowered CPU priority); further logins queue, so a login storm cannot starve the server."
);
spec!(
    PASSWORD_RESET_EXPIRE_MINUTES,
    "PASSWORD_RESET_EXPIRE_MINUTES",
    Value("30"),
    "Lifetime of password-reset tokens, in minutes (5 to 1440)."
);
spec!(
    EMAIL_VERIFY_EXPIRE_HOURS,
    "EMAIL_VERIFY_EXPIRE_HOURS",
    Value("48"),
    "Lifetime of email-verification tokens, in hours (1 to 720)."
);
spec!(
    RATE_LIMIT_ACCOUNT,
    "RATE_LIMIT_ACCOUNT",
    Value("10/minute"),
    "Quota per account on login, refresh, password reset and email verification, whatever the client address."
);
spec!(
    PUBLIC_URL,
    "PUBLIC_URL",
    Value("http://localhost:8000"),
    "Base URL of the web client, for links in mail: `{PUBLIC_URL}/reset-password?token=…` and `{PUBLIC_URL}/verify-email?token=…`."
);
spec!(
    SMTP_HOST,
    "SMTP_HOST",
    Unset,
    "Mail server for password-reset and verification mail. Unset: mail is written to the log instead (development)."
);
spec!(SMTP_PORT, "SMTP_PORT", Value("587"), "Mail server port.");
spec!(
    SMTP_TLS,
    "SMTP_TLS",
    Value("starttls"),
    "`starttls`, `tls` (implicit TLS, usually port 465) or `none` (a relay on localhost only)."
);
spec!(
    SMTP_USER,
    "SMTP_USER",
    Unset,
    "Mail server user name, if it requires authentication."
);
spec!(
    SMTP_PASSWORD,
    "SMTP_PASSWORD",
    Unset,
    "Mail server password.",
    secret
);
spec!(
    EMAILS_FROM,
    "EMAILS_FROM",
    Value("Sovereign <no-reply@localhost>"),
    "Sender of the mail the server sends, as `Name <address>` or an address."
);
spec!(
    BACKEND_CORS_ORIGINS,
    "BACKEND_CORS_ORIGINS",
    Unset,
    "Origins allowed to call the API from a browser: a comma-separated list or a JSON array, e.g. `https://app.example.com,https://admin.example.com`."
);
spec!(
    CORS_ALLOW_CREDENTIALS,
    "CORS_ALLOW_CREDENTIALS",
    Value("true"),
    "Whether browsers may send credentials cross-origin. Cannot be combined with a `*` origin."
);
spec!(
    ENABLE_MULTI_TENANT,
    "ENABLE_MULTI_TENANT",
    Value("false"),
    "Serve several tenants, chosen by token or `X-Tenant-ID`. Off: everything lives in the default tenant."
);
spec!(
    ENABLE_VECTOR,
    "ENABLE_VECTOR",
    Value("true"),
    "Serve the vector search API."
);
spec!(
    ENABLE_WEBSOCKETS,
    "ENABLE_WEBSOCKETS",
    Value("true"),
    "Serve realtime websocket channels."
);
spec!(
    VECTOR_EMBEDDER,
    "VECTOR_EMBEDDER",
    Value("hash"),
    "How text is embedded for vector search: `hash` (deterministic, offline; for development and tests), `openai` (any OpenAI-compatible `/v1/embeddings` server: Ollama, vLLM, text-embeddings-inference, OpenAI) or `local` (a BERT-family sentence model run in process from `EMBEDDING_MODEL_DIR`)."
);
spec!(
    EMBEDDING_DIMENSIONS,
    "EMBEDDING_DIMENSIONS",
    Value("384"),
    "Vector length the `hash` embedder produces (the other embedders report their own)."
);
spec!(
    EMBEDDING_URL,
    "EMBEDDING_URL",
    Unset,
    "Base URL of the OpenAI-compatible server, up to and including `/v1`, e.g. `http://127.0.0.1:11434/v1`. Required with `VECTOR_EMBEDDER=openai`."
);
spec!(
    EMBEDDING_MODEL,
    "EMBEDDING_MODEL",
    Value("text-embedding-3-small"),
    "Model name sent to the OpenAI-compatible server."
);
spec!(
    EMBEDDING_API_KEY,
    "EMBEDDING_API_KEY",
    Unset,
    "Bearer token for the OpenAI-compatible server, when it needs one.",
    secret
);
spec!(
    EMBEDDING_TIMEOUT_MS,
    "EMBEDDING_TIMEOUT_MS",
    Value("10000"),
    "Time limit of one request to the embedding server."
);
spec!(
    EMBEDDING_BATCH_SIZE,
    "EMBEDDING_BATCH_SIZE",
    Value("32"),
    "Texts per request to the embedding server, and per forward pass of the local model."
);
spec!(
    EMBEDDING_RETRIES,
    "EMBEDDING_RETRIES",
    Value("3"),
    "Retries (with exponential backoff) of an embedding request that failed for a transient reason: connection errors, timeouts, 429 and 5xx."
);
spec!(
    EMBEDDING_MODEL_DIR,
    "EMBEDDING_MODEL_DIR",
    Unset,
    "Directory of the `local` model: `config.json`, `tokenizer.json` and `model.safetensors` (e.g. all-MiniLM-L6-v2). Required with `VECTOR_EMBEDDER=local`."
);
spec!(
    EMBEDDING_THREADS,
    "EMBEDDING_THREADS",
    Computed("half the CPU count, at least 1"),
    "Threads the `local` model runs on, apart from the request workers."
);
spec!(
    VECTOR_EF_SEARCH,
    "VECTOR_EF_SEARCH",
    Value("100"),
    "Default HNSW candidate list size of a search (`hnsw.ef_search`); a search may set its own `ef`. Higher finds more true neighbours, more slowly."
);
spec!(
    VECTOR_MAX_BATCH,
    "VECTOR_MAX_BATCH",
    Value("1000"),
    "Most points one upsert request may carry."
);
spec!(
    VECTOR_INDEX_MEMORY,
    "VECTOR_INDEX_MEMORY",
    Value("512MB"),
    "`maintenance_work_mem` of an index build. An HNSW graph that fits builds several times faster."
);
spec!(
    VECTOR_INDEX_TIMEOUT_SECONDS,
    "VECTOR_INDEX_TIMEOUT_SECONDS",
    Value("3600"),
    "Time limit of one index build."
);
spec!(
    REALTIME_HISTORY_SIZE,
    "REALTIME_HISTORY_SIZE",
    Value("100"),
    "Messages each realtime channel keeps, so a client that reconnects gets what it missed."
);
spec!(
    REALTIME_HISTORY_TTL_SECONDS,
    "REALTIME_HISTORY_TTL_SECONDS",
    Value("3600"),
    "How long a channel's history lives after its last message."
);
spec!(
    REALTIME_MAX_SUBSCRIPTIONS,
    "REALTIME_MAX_SUBSCRIPTIONS",
    Value("100"),
    "Channels one websocket connection may subscribe to."
);
spec!(
    REALTIME_MAX_CONNECTIONS_PER_USER,
    "REALTIME_MAX_CONNECTIONS_PER_USER",
    Value("20"),
    "Websocket connections one user may hold on one instance."
);
spec!(
    REALTIME_MAX_MESSAGE_BYTES,
    "REALTIME_MAX_MESSAGE_BYTES",
    Value("16384"),
    "Largest payload of a realtime message, in bytes of JSON."
);
spec!(
    REALTIME_MAX_FRAME_BYTES,
    "REALTIME_MAX_FRAME_BYTES",
    Value("65536"),
    "Largest websocket frame (and message, continuations included) a client may send; a larger one closes the connection with 1009."
);
spec!(
    REALTIME_OUTBOUND_QUEUE,
    "REALTIME_OUTBOUND_QUEUE",
    Value("256"),
    "Frames queued for one connection; a client that falls this far behind is disconnected (close code 4008)."
);
spec!(
    RATE_LIMIT_REALTIME_PUBLISH,
    "RATE_LIMIT_REALTIME_PUBLISH",
    Value("20/1s"),
    "Quota per user on publishing through a websocket."
);
spec!(
    REALTIME_PING_INTERVAL_MS,
    "REALTIME_PING_INTERVAL_MS",
    Value("25000"),
    "How often the server pings each websocket; below the 60 s idle timeout of common proxies."
);
spec!(
    REALTIME_PONG_TIMEOUT_MS,
    "REALTIME_PONG_TIMEOUT_MS",
    Value("10000"),
    "How long after a ping a pong may take before the connection is closed (code 4009)."
);
spec!(
    REALTIME_PRESENCE_TTL_SECONDS,
    "REALTIME_PRESENCE_TTL_SECONDS",
    Value("30"),
    "How long a presence entry outlives an instance that stopped renewing it (a crash)."
);
spec!(
    REALTIME_RECHECK_SECONDS,
    "REALTIME_RECHECK_SECONDS",
    Value("300"),
    "How often every websocket's credential is checked against the database even without a revocation message."
);
spec!(
    REALTIME_TICKET_TTL_SECONDS,
    "REALTIME_TICKET_TTL_SECONDS",
    Value("30"),
    "Lifetime of a single-use websocket ticket."
);
spec!(
    METRICS_ADDR,
    "METRICS_ADDR",
    Value("127.0.0.1:9464"),
    "Address of the Prometheus `/metrics` listener, apart from the API; `off` disables it. Outside loopback it needs `METRICS_TOKEN`."
);
spec!(
    METRICS_TOKEN,
    "METRICS_TOKEN",
    Unset,
    "Bearer token `/metrics` requires when set (required when `METRICS_ADDR` is not a loopback address).",
    secret
);
spec!(
    DOCS_ENABLED,
    "DOCS_ENABLED",
    Computed("`true`, except in production"),
    "Serve the interactive API docs at `/docs` and the document at `/api/v1/openapi.json`."
);
spec!(
    LOG_LEVEL,
    "LOG_LEVEL",
    Computed("`info` (`debug` when `DEBUG` is on)"),
    "Log filter: a level (`info`) or per-crate directives (`info,sovereign_db=debug`)."
);
spec!(
    LOG_FORMAT,
    "LOG_FORMAT",
    Value("auto"),
    "`json`, `pretty`, or `auto`: readable in development, JSON in staging and production."
);

/// Where the service runs; stricter rules apply outside development.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    #[default]
    Development,
    Staging,
    Production,
}

impl Environment {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    #[must_use]
    pub fn is_development(self) -> bool {
        self == Self::Development
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Ok(Self::Development),
            "staging" | "stage" => Ok(Self::Staging),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected development, staging or production".to_owned()),
        }
    }
}

impl SettingValue for Environment {
    const EXPECTED: &'static str = "development, staging or production";
    fn parse_setting(text: &str) -> Result<Self, String> {
        text.parse()
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Decided by the environment.
    #[default]
    Auto,
    /// One JSON object per line, for log shippers.
    Json,
    /// Human-readable, for terminals.
    Pretty,
}

impl SettingValue for LogFormat {
    const EXPECTED: &'static str = "json, pretty or auto";
    fn parse_setting(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

/// The complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub debug: bool,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub cache: CacheSettings,
    pub network: NetworkSettings,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub cors: CorsSettings,
    pub features: FeatureFlags,
    pub vector: VectorSettings,
    pub realtime: RealtimeSettings,
    pub metrics: MetricsSettings,
    pub log: LogSettings,
}

/// Websocket channels.
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub max_subscriptions: usize,
    pub max_connections_per_user: usize,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub outbound_queue: usize,
    pub publish_quota: Quota,
    pub ping_interval: Duration,
    pub pong_timeout: Duration,
    pub presence_ttl: Duration,
    pub recheck_interval: Duration,
    pub ticket_ttl: Duration,
}

/// The Prometheus endpoint.
#[derive(Clone)]
pub struct MetricsSettings {
    /// `None`: no metrics listener.
    pub addr: Option<std::net::SocketAddr>,
    pub token: Option<SecretString>,
}

impl fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSettings")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub json_limit: usize,
    pub bulk_json_limit: usize,
    pub payload_limit: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The runtime role's connection.
    pub url: SecretUrl,
    /// The schema owner's connection, for migrations.
    pub owner_url: SecretUrl,
    /// Tenant administration's login (a member of `sovereign_tenant_admin`, or the owner).
    pub admin_url: SecretUrl,
    pub pool_max_size: usize,
    pub pool_wait_timeout: Duration,
    pub connect_timeout: Duration,
    pub recycle_timeout: Duration,
    pub statement_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Valkey/Redis; `None` selects the in-process cache.
    pub url: Option<SecretUrl>,
    pub prefix: String,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub pool_max_size: usize,
    pub memory_capacity: u64,
}

/// How the server sees its network: which peers may speak for clients.
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Per client address, on every route but the probes.
    pub api: Quota,
    /// Per client address, on authentication routes.
    pub auth: Quota,
    pub fallback_divisor: u32,
}

#[derive(Clone)]
pub struct AuthSettings {
    pub secret_key: SecretString,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub issuer: String,
    pub audience: String,
    /// Ed25519 signing key (PKCS#8 PEM text); `None` signs with HS256 from `secret_key`.
    pub private_key_pem: Option<SecretString>,
    /// Ed25519 public keys (PEM text) still accepted, for rotation.
    pub extra_public_keys_pem: Vec<String>,
    pub bcrypt_cost: u32,
    pub password_min_length: usize,
    pub hash_concurrency: usize,
    pub password_reset_ttl: Duration,
    pub email_verify_ttl: Duration,
    /// Per account, on login, refresh, reset and verification.
    pub account_quota: Quota,
    pub public_url: String,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("secret_key", &"[redacted]")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field(
                "private_key_pem",
                &self.private_key_pem.as_ref().map(|_| "[redacted]"),
            )
            .field("extra_public_keys", &self.extra_public_keys_pem.len())
            .field("bcrypt_cost", &self.bcrypt_cost)
            .field("password_min_length", &self.password_min_length)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("account_quota", &self.account_quota)
            .finish_non_exhaustive()
    }
}

/// How mail leaves the server.
#[derive(Clone)]
pub struct MailSettings {
    /// `None`: mail is logged, not sent.
    pub smtp: Option<SmtpSettings>,
    pub from: String,
}

impl fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MailSettings")
            .field("smtp", &self.smtp)
            .field("from", &self.from)
            .finish()
    }
}

#[derive(Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub user: Option<String>,
    pub password: Option<SecretString>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Transport security towards the mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpTls {
    #[default]
    StartTls,
    Tls,
    None,
}

impl SettingValue for SmtpTls {
    const EXPECTED: &'static str = "starttls, tls or none";
    fn parse_setting(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "starttls" => Ok(Self::StartTls),
            "tls" | "ssl" => Ok(Self::Tls),
            "none" | "off" | "plain" => Ok(Self::None),
            _ => Err(format!("expected {}", Self::EXPECTED)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// Normalised origins (`scheme://host[:port]`), or `["*"]`.
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureFlags {
    pub multi_tenant: bool,
    pub vector: bool,
    pub websockets: bool,
    pub docs: bool,
}

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

/// Vector search and its embedder.
#[derive(Clone)]
pub struct VectorSettings {
    pub embedder: EmbedderKind,
    /// Output length of the `hash` embedder.
    pub dimensions: usize,
    /// `openai`: base URL up to `/v1`.
    pub embedding_url: Option<Url>,
    pub embedding_model: String,
    pub embedding_api_key: Option<SecretString>,
    pub embedding_timeout: Duration,
    pub embedding_batch_size: usize,
    pub embedding_retries: u32,
    /// `local`: the model directory.
    pub model_dir: Option<std::path::PathBuf>,
    pub embedding_threads: usize,
    pub ef_search: u32,
    pub max_batch: usize,
    /// `maintenance_work_mem` of index builds, in PostgreSQL's notation (`512MB`).
    pub index_memory: String,
    pub index_timeout: Duration,
}

impl fmt::Debug for VectorSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VectorSettings")
            .field("embedder", &self.embedder)
            .field("dimensions", &self.dimensions)
            .field(
                "embedding_url",
                &self.embedding_url.as_ref().map(Url::as_str),
            )
            .field("embedding_model", &self.embedding_model)
            .field(
                "embedding_api_key",
                &self.embedding_api_key.as_ref().map(|_| "[redacted]"),
            )
            .field("embedding_timeout", &self.embedding_timeout)
            .field("embedding_batch_size", &self.embedding_batch_size)
            .field("embedding_retries", &self.embedding_retries)
            .field("model_dir", &self.model_dir)
            .field("embedding_threads", &self.embedding_threads)
            .field("ef_search", &self.ef_search)
            .field("max_batch", &self.max_batch)
            .field("index_memory", &self.index_memory)
            .field("index_timeout", &self.index_timeout)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// An `EnvFilter` directive string.
    pub filter: String,
    /// Never `Auto`: resolved from the environment at load time.
    pub format: LogFormat,
}

/// Settings that loaded, with warnings worth logging at start-up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<SettingIssue>,
}

/// Every problem that keeps the configuration from loading.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<SettingIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "invalid configuration: {n} problem{}",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

/// Values that must never be used as `SECRET_KEY` outside development.
const KNOWN_WEAK_SECRETS: &[&str] = &[
    "changeme",
    "change-me",
    "change_me",
    "changethis",
    "secret",
    "secret-key",
    "secret_key",
    "your-secret-key",
    "your-secret-key-here",
    "your_secret_key_here",
    "supersecret",
    "development",
    "sovereign",
    "password",
];

/// Minimum `SECRET_KEY` length in bytes (256 bits, RFC 8725 §3.5).
pub const MIN_SECRET_KEY_BYTES: usize = 32;

impl Settings {
    /// Loads settings from the process environment, reading `.env` in the working directory
    /// first when it exists (real environment variables win).
    pub fn load() -> Result<Loaded, ConfigError> {
        let mut vars: HashMap<String, String> = HashMap::new();
        let mut dotenv_problem = None;
        match dotenvy::from_path_iter(".env") {
            Ok(iter) => {
                for item in iter {
                    match item {
                        Ok((k, v)) => {
                            vars.insert(k, v);
                        }
                        Err(e) => {
                            dotenv_problem = Some(e.to_string());
                            break;
                        }
                    }
                }
            }
            Err(e) if e.not_found() => {}
            Err(e) => dotenv_problem = Some(e.to_string()),
        }
        // `std::env::vars` panics on a variable that is not UTF-8; none of ours can be, so any
        // such variable is someone else's and is skipped.
        vars.extend(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        );
        let result = Self::from_vars(vars);
        match (dotenv_problem, result) {
            (None, result) => result,
            (Some(message), result) => {
                let issue = SettingIssue {
                    setting: ".env",
                    message: format!("could not be read: {message}"),
                    suggestion: Some("fix the line it names, or remove the file".to_owned()),
                };
                let mut problems = vec![issue];
                if let Err(e) = result {
                    problems.extend(e.problems);
                }
                Err(ConfigError { problems })
            }
        }
    }

    /// Loads settings from the given variables only (tests use this; nothing global is read).
    pub fn from_vars<I, K, V>(vars: I) -> Result<Loaded, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut r = Reader::new(&vars);
        let settings = read_settings(&mut r);
        if r.problems.is_empty()
            && let Some(settings) = settings
        {
            Ok(Loaded {
                settings,
                warnings: r.warnings,
            })
        } else {
            Err(ConfigError {
                problems: r.problems,
            })
        }
    }
}

/// Every setting Sovereign reads, in the order it reads them.
#[must_use]
pub fn documented_settings() -> Vec<SettingSpec> {
    let vars = HashMap::new();
    let mut r = Reader::new(&vars);
    let _ = read_settings(&mut r);
    r.specs.into_iter().copied().collect()
}

/// Reads and validates everything. Returns `None` only when a required value is missing; every
/// problem is recorded in the reader.
fn read_settings(r: &mut Reader<'_>) -> Option<Settings> {
    let environment: Environment = r.value(&ENVIRONMENT);
    let strict = !environment.is_development();
    let debug: bool = r.value(&DEBUG);
    if debug && environment == Environment::Production {
        r.problem(
            DEBUG.name,
            "DEBUG is on in production",
            "unset DEBUG (or set it to false); use LOG_LEVEL=debug briefly if you need more logs"
                .to_owned(),
        );
    }

    let server = read_server(r);
    let database = read_database(r);
    let cache = read_cache(r);
    let network = read_network(r);
    let rate_limit = read_rate_limit(r);
    let auth = read_auth(r, environment);
    let mail = read_mail(r, environment);
    let cors = read_cors(r, strict);

    let features = FeatureFlags {
        multi_tenant: r.value(&ENABLE_MULTI_TENANT),
        vector: r.value(&ENABLE_VECTOR),
        websockets: r.value(&ENABLE_WEBSOCKETS),
        docs: r
            .optional(&DOCS_ENABLED)
            .unwrap_or(environment != Environment::Production),
    };

    let vector = read_vector(r, features.vector);
    let realtime = read_realtime(r);
    let metrics = read_metrics(r);
    let log = read_log(r, environment, debug);

    Some(Settings {
        environment,
        debug,
        server,
        database: database?,
        cache,
        network,
        rate_limit,
        auth,
        mail,
        cors,
        features,
        vector,
        realtime,
        metrics,
        log,
    })
}

fn read_vector(r: &mut Reader<'_>, enabled: bool) -> VectorSettings {
    let embedder: EmbedderKind = r.value(&VECTOR_EMBEDDER);
    let dimensions = r.bounded(&EMBEDDING_DIMENSIONS, 1, 2000);
    let embedding_url: Option<Url> = r.optional(&EMBEDDING_URL);
    let embedding_model: String = r.value(&EMBEDDING_MODEL);
    let embedding_api_key = r
        .raw(&EMBEDDING_API_KEY)
        .map(|k| SecretString::from(k.to_owned()));
    let embedding_timeout = Duration::from_millis(r.bounded(&EMBEDDING_TIMEOUT_MS, 100, 600_000));
    let embedding_batch_size = r.bounded(&EMBEDDING_BATCH_SIZE, 1, 2048);
    let embedding_retries = r.bounded(&EMBEDDING_RETRIES, 0, 10);
    let model_dir = r.raw(&EMBEDDING_MODEL_DIR).map(std::path::PathBuf::from);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let embedding_threads = r
        .optional::<usize>(&EMBEDDING_THREADS)
        .unwrap_or((cpus / 2).max(1));
    if embedding_threads == 0 || embedding_threads > 256 {
        r.problem(
            EMBEDDING_THREADS.name,
            format!("{embedding_threads} is out of range"),
            "set EMBEDDING_THREADS from 1 to 256".to_owned(),
        );
    }
    if enabled && embedder == EmbedderKind::OpenAi && embedding_url.is_none() {
        r.problem(
            EMBEDDING_URL.name,
            "is required with VECTOR_EMBEDDER=openai".to_owned(),
            "set EMBEDDING_URL to the server's base URL, e.g. http://127.0.0.1:11434/v1".to_owned(),
        );
    }
    if enabled && embedder == EmbedderKind::Local && model_dir.is_none() {
        r.problem(
            EMBEDDING_MODEL_DIR.name,
            "is required with VECTOR_EMBEDDER=local".to_owned(),
            "set EMBEDDING_MODEL_DIR to a directory with config.json, tokenizer.json and model.safetensors".to_owned(),
        );
    }
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
    VectorSettings {
        embedder,
        dimensions,
        embedding_url,
        embedding_model,
        embedding_api_key,
        embedding_timeout,
        embedding_batch_size,
        embedding_retries,
        model_dir,
        embedding_threads,
        ef_search: r.bounded(&VECTOR_EF_SEARCH, 1, 1000),
        max_batch: r.bounded(&VECTOR_MAX_BATCH, 1, 10_000),
        index_memory,
        index_timeout: Duration::from_secs(r.bounded(&VECTOR_INDEX_TIMEOUT_SECONDS, 1, 86_400)),
    }
}

fn read_realtime(r: &mut Reader<'_>) -> RealtimeSettings {
    let ping_interval = Duration::from_millis(r.bounded(&REALTIME_PING_INTERVAL_MS, 100, 300_000));
    if ping_interval >= Duration::from_secs(60) {
        r.problem(
            REALTIME_PING_INTERVAL_MS.name,
            "pings 60 s or more apart let proxies close idle connections".to_owned(),
            "use an interval below your proxy's read timeout (nginx: 60 s), e.g. 25000".to_owned(),
        );
    }
    RealtimeSettings {
        history_size: r.bounded(&REALTIME_HISTORY_SIZE, 1, 100_000),
        history_ttl: Duration::from_secs(r.bounded(&REALTIME_HISTORY_TTL_SECONDS, 1, 7 * 86_400)),
        max_subscriptions: r.bounded(&REALTIME_MAX_SUBSCRIPTIONS, 1, 10_000),
        max_connections_per_user: r.bounded(&REALTIME_MAX_CONNECTIONS_PER_USER, 1, 100_000),
        max_message_bytes: r.bounded(&REALTIME_MAX_MESSAGE_BYTES, 16, 1 << 20),
        max_frame_bytes: r.bounded(&REALTIME_MAX_FRAME_BYTES, 1024, 16 << 20),
        outbound_queue: r.bounded(&REALTIME_OUTBOUND_QUEUE, 2, 1 << 20),
        publish_quota: r
            .optional::<Quota>(&RATE_LIMIT_REALTIME_PUBLISH)
            .or_else(|| Quota::new(20, Duration::from_secs(1)))
            .unwrap_or(Quota::ONE_PER_SECOND),
        ping_interval,
        pong_timeout: Duration::from_millis(r.bounded(&REALTIME_PONG_TIMEOUT_MS, 100, 300_000)),
        presence_ttl: Duration::from_secs(r.bounded(&REALTIME_PRESENCE_TTL_SECONDS, 1, 3600)),
        recheck_interval: Duration::from_secs(r.bounded(&REALTIME_RECHECK_SECONDS, 1, 86_400)),
        ticket_ttl: Duration::from_secs(r.bounded(&REALTIME_TICKET_TTL_SECONDS, 1, 300)),
    }
}

fn read_metrics(r: &mut Reader<'_>) -> MetricsSettings {
    let text: String = r.value(&METRICS_ADDR);
    let token = r
        .raw(&METRICS_TOKEN)
        .filter(|t| !t.is_empty())
        .map(|t| SecretString::from(t.to_owned()));
    let addr = if text.eq_ignore_ascii_case("off") || text.is_empty() {
        None
    } else {
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                r.problem(
                    METRICS_ADDR.name,
                    format!("`{text}` is not an address and port"),
                    "use an address such as 127.0.0.1:9464, or `off`".to_owned(),
                );
                None
            }
        }
    };
    if let Some(addr) = addr
        && !addr.ip().is_loopback()
        && token.is_none()
    {
        r.problem(
            METRICS_ADDR.name,
            format!("metrics on {addr} would be open to the network"),
            "set METRICS_TOKEN, or listen on a loopback address".to_owned(),
        );
    }
    MetricsSettings { addr, token }
}

fn read_server(r: &mut Reader<'_>) -> ServerSettings {
    let host: String = r.value(&HOST);
    if host.contains("://") || host.contains('/') {
        r.problem(
            HOST.name,
            format!("`{host}` is not a host name or address"),
            "set HOST to an address such as 127.0.0.1 or 0.0.0.0, without a scheme".to_owned(),
        );
    }
    let port: u16 = r.value(&PORT);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let workers = match r.optional::<usize>(&WORKERS) {
        Some(w) if (1..=512).contains(&w) => w,
        Some(w) => {
            r.problem(
                WORKERS.name,
                format!("{w} is out of range"),
                format!("set WORKERS from 1 to 512, or unset it to use the CPU count ({cpus})"),
            );
            cpus
        }
        None => cpus,
    };
    ServerSettings {
        host,
        port,
        workers,
        shutdown_timeout: Duration::from_secs(r.bounded(&SHUTDOWN_TIMEOUT_SECONDS, 0, 3600)),
        json_limit: r.bounded(&JSON_BODY_LIMIT_BYTES, 1024, 256 << 20),
        bulk_json_limit: r.bounded(&JSON_BULK_LIMIT_BYTES, 1024, 1 << 30),
        payload_limit: r.bounded(&PAYLOAD_LIMIT_BYTES, 1024, 1 << 30),
    }
}

fn read_database(r: &mut Reader<'_>) -> Option<DatabaseSettings> {
    let url = read_postgres_url(r, &DATABASE_URL);
    let owner_url = read_postgres_url(r, &DATABASE_OWNER_URL);
    let admin_url = read_postgres_url(r, &DATABASE_ADMIN_URL);
    let millis = |r: &mut Reader<'_>, spec| Duration::from_millis(r.bounded(spec, 1, 600_000));
    let pool_max_size = r.bounded(&DATABASE_POOL_MAX_SIZE, 1, 1000);
    let pool_wait_timeout = millis(r, &DATABASE_POOL_WAIT_TIMEOUT_MS);
    let connect_timeout = millis(r, &DATABASE_CONNECT_TIMEOUT_MS);
    let recycle_timeout = millis(r, &DATABASE_RECYCLE_TIMEOUT_MS);
    let statement_timeout = millis(r, &DATABASE_STATEMENT_TIMEOUT_MS);
    let url = url?;
    Some(DatabaseSettings {
        admin_url: admin_url
            .or_else(|| owner_url.clone())
            .unwrap_or_else(|| url.clone()),
        owner_url: owner_url.unwrap_or_else(|| url.clone()),
        url,
        pool_max_size,
        pool_wait_timeout,
        connect_timeout,
        recycle_timeout,
        statement_timeout,
    })
}

fn read_postgres_url(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<SecretUrl> {
    let url: Url = r.optional(spec)?;
    let url = SecretUrl::new(url);
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        r.problem(
            spec.name,
            format!("`{}` is not a PostgreSQL URL", url.redacted()),
            "use postgres://USER:PASSWORD@HOST:PORT/DATABASE".to_owned(),
        );
        return None;
    }
    let has_socket_host = url.query_pairs().any(|(k, _)| k == "host");
    if url.host_str().is_none_or(str::is_empty) && !has_socket_host {
        r.problem(
            spec.name,
            format!("`{}` names no host", url.redacted()),
            "add a host (postgres://USER@127.0.0.1:5432/DB) or a socket (?host=/var/run/postgresql)"
                .to_owned(),
        );
        return None;
    }
    Some(url)
}

fn read_cache(r: &mut Reader<'_>) -> CacheSettings {
    let valkey = read_redis_url(r, &VALKEY_URL);
    let redis = read_redis_url(r, &REDIS_URL);
    if let (Some(v), Some(rd)) = (&valkey, &redis)
        && v.expose() != rd.expose()
    {
        r.warning(
            REDIS_URL.name,
            "both VALKEY_URL and REDIS_URL are set and differ; using VALKEY_URL",
            "unset one of them".to_owned(),
        );
    }
    let prefix: String = r.value(&CACHE_PREFIX);
    if prefix.is_empty()
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        r.problem(
            CACHE_PREFIX.name,
            format!("`{prefix}` is not a usable key prefix"),
            "use letters, digits, `-`, `_`, `.` or `:`, e.g. sovereign or acme:prod".to_owned(),
        );
    }
    let millis = |r: &mut Reader<'_>, spec| Duration::from_millis(r.bounded(spec, 1, 60_000));
    CacheSettings {
        url: valkey.or(redis),
        prefix,
        timeout: millis(r, &CACHE_TIMEOUT_MS),
        connect_timeout: millis(r, &CACHE_CONNECT_TIMEOUT_MS),
        pool_max_size: r.bounded(&CACHE_POOL_MAX_SIZE, 1, 1000),
        memory_capacity: r.bounded(&CACHE_MEMORY_CAPACITY, 1, 100_000_000),
    }
}

fn read_network(r: &mut Reader<'_>) -> NetworkSettings {
    let raw = r.raw(&TRUSTED_PROXIES).unwrap_or_default();
    let mut trusted_proxies = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parsed = item
            .parse::<IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => r.problem(
                TRUSTED_PROXIES.name,
                format!("`{item}` is not an IP address or CIDR"),
                "write addresses or networks such as 127.0.0.1, ::1 or 10.0.0.0/8".to_owned(),
            ),
        }
    }
    NetworkSettings { trusted_proxies }
}

/// A quota setting, or `default` per minute.
fn quota_or(r: &mut Reader<'_>, spec: &'static SettingSpec, default: u32) -> Quota {
    r.optional::<Quota>(spec)
        .or_else(|| Quota::per_minute(default))
        .unwrap_or(Quota::ONE_PER_SECOND)
}

fn read_rate_limit(r: &mut Reader<'_>) -> RateLimitSettings {
    RateLimitSettings {
        enabled: r.value(&RATE_LIMIT_ENABLED),
        api: quota_or(r, &RATE_LIMIT_API, 600),
        auth: quota_or(r, &RATE_LIMIT_AUTH, 20),
        fallback_divisor: r.bounded(&RATE_LIMIT_FALLBACK_DIVISOR, 1, 1000),
    }
}

fn read_redis_url(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<SecretUrl> {
    let url = SecretUrl::new(r.optional::<Url>(spec)?);
    const SCHEMES: &[&str] = &["redis", "valkey", "unix", "redis+unix", "valkey+unix"];
    if SCHEMES.contains(&url.scheme()) {
        Some(url)
    } else if matches!(url.scheme(), "rediss" | "valkeys") {
        r.problem(
            spec.name,
            format!(
                "`{}` asks for TLS, which this build does not support for Redis",
                url.redacted()
            ),
            "reach Redis over a private network or a Unix socket, or through a local TLS tunnel \
             (stunnel, spiped), with redis://"
                .to_owned(),
        );
        None
    } else {
        r.problem(
            spec.name,
            format!("`{}` is not a Redis/Valkey URL", url.redacted()),
            "use redis://[:PASSWORD@]HOST:6379[/DB], valkey://… or unix:///path/to/redis.sock"
                .to_owned(),
        );
        None
    }
}

fn read_auth(r: &mut Reader<'_>, environment: Environment) -> AuthSettings {
    let secret_key = match r.raw(&SECRET_KEY) {
        Some(key) => {
            check_secret_key(r, key, environment);
            SecretString::from(key.to_owned())
        }
        None if environment.is_development() => {
            r.warning(
                SECRET_KEY.name,
                "not set; using a random key for this process, so tokens end with a restart",
                "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned(),
            );
            SecretString::from(random_secret())
        }
        None => {
            r.problem(
                SECRET_KEY.name,
                format!("is required in {environment}"),
                "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned(),
            );
            SecretString::from(String::new())
        }
    };
    let access_token_ttl =
        Duration::from_secs(60 * r.bounded(&ACCESS_TOKEN_EXPIRE_MINUTES, 1, 1440));
    let refresh_token_ttl =
        Duration::from_secs(86_400 * r.bounded(&REFRESH_TOKEN_EXPIRE_DAYS, 1, 365));
    let issuer: String = r.value(&JWT_ISSUER);
    let audience: String = r.value(&JWT_AUDIENCE);
    let private_key_pem = read_pem_file(r, &JWT_PRIVATE_KEY_FILE).map(SecretString::from);
    let extra_public_keys_pem: Vec<String> = r
        .raw(&JWT_PUBLIC_KEY_FILES)
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|path| read_file(r, &JWT_PUBLIC_KEY_FILES, &path))
        .collect();
    if !extra_public_keys_pem.is_empty() && private_key_pem.is_none() {
        r.problem(
            JWT_PUBLIC_KEY_FILES.name,
            "extra verification keys need an Ed25519 signing key",
            "set JWT_PRIVATE_KEY_FILE too, or unset JWT_PUBLIC_KEY_FILES".to_owned(),
        );
    }
    let bcrypt_cost = if environment.is_development() {
        let cost = r.bounded(&BCRYPT_COST, 4, 16);
        if cost < 10 {
            r.warning(
                BCRYPT_COST.name,
                format!("{cost} is below 10: fine for tests, refused in staging and production"),
                "unset BCRYPT_COST to use 12".to_owned(),
            );
        }
        cost
    } else {
        r.bounded(&BCRYPT_COST, 10, 16)
    };
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let hash_concurrency = r
        .optional::<usize>(&PASSWORD_HASH_CONCURRENCY)
        .unwrap_or(cpus);
    if !(1..=256).contains(&hash_concurrency) {
        r.problem(
            PASSWORD_HASH_CONCURRENCY.name,
            format!("{hash_concurrency} is out of range"),
            format!("set it from 1 to 256, or unset it to use the CPU count ({cpus})"),
        );
    }
    let public_url = r
        .optional::<Url>(&PUBLIC_URL)
        .map_or_else(|| "http://localhost:8000".to_owned(), |u| u.to_string());
    AuthSettings {
        secret_key,
        access_token_ttl,
        refresh_token_ttl,
        issuer,
        audience,
        private_key_pem,
        extra_public_keys_pem,
        bcrypt_cost,
        password_min_length: r.bounded(&PASSWORD_MIN_LENGTH, 8, 64),
        hash_concurrency: hash_concurrency.clamp(1, 256),
        password_reset_ttl: Duration::from_secs(
            60 * r.bounded(&PASSWORD_RESET_EXPIRE_MINUTES, 5, 1440),
        ),
        email_verify_ttl: Duration::from_secs(3600 * r.bounded(&EMAIL_VERIFY_EXPIRE_HOURS, 1, 720)),
        account_quota: quota_or(r, &RATE_LIMIT_ACCOUNT, 10),
        public_url: public_url.trim_end_matches('/').to_owned(),
    }
}

/// The text of the file a setting names; a problem when it cannot be read.
fn read_pem_file(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<String> {
    let path = r.raw(spec)?.to_owned();
    read_file(r, spec, &path)
}

fn read_file(r: &mut Reader<'_>, spec: &'static SettingSpec, path: &str) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("-----BEGIN ") => Some(text),
        Ok(_) => {
            r.problem(
                spec.name,
                format!("`{path}` is not a PEM file"),
                "create one with `openssl genpkey -algorithm ed25519 -out jwt.pem`".to_owned(),
            );
            None
        }
        Err(e) => {
            r.problem(
                spec.name,
                format!("cannot read `{path}`: {e}"),
                "give the path of a readable PEM file".to_owned(),
            );
            None
        }
    }
}

fn read_mail(r: &mut Reader<'_>, environment: Environment) -> MailSettings {
    let from: String = r.value(&EMAILS_FROM);
    if !from.contains('@') {
        r.problem(
            EMAILS_FROM.name,
            format!("`{from}` has no address"),
            "use `Name <address@example.com>` or an address".to_owned(),
        );
    }
    let host = r.raw(&SMTP_HOST).map(str::to_owned);
    let port: u16 = r.value(&SMTP_PORT);
    let tls: SmtpTls = r.value(&SMTP_TLS);
    let user = r.raw(&SMTP_USER).map(str::to_owned);
    let password = r
        .raw(&SMTP_PASSWORD)
        .map(|p| SecretString::from(p.to_owned()));
    let smtp = host.map(|host| {
        if tls == SmtpTls::None && environment == Environment::Production {
            let local = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !local {
                r.problem(
                    SMTP_TLS.name,
                    format!("mail to `{host}` would travel unencrypted"),
                    "use SMTP_TLS=starttls or tls; `none` is for a relay on localhost".to_owned(),
                );
            }
        }
        SmtpSettings {
            host,
            port,
            tls,
            user,
            password,
        }
    });
    MailSettings { smtp, from }
}

fn check_secret_key(r: &mut Reader<'_>, key: &str, environment: Environment) {
    let suggestion = || "set SECRET_KEY to the output of `openssl rand -base64 48`".to_owned();
    let mut weaknesses = Vec::new();
    if key.len() < MIN_SECRET_KEY_BYTES {
        weaknesses.push(format!(
            "is {} bytes long; at least {MIN_SECRET_KEY_BYTES} are needed",
            key.len()
        ));
    }
    let lowered = key.to_ascii_lowercase();
    if KNOWN_WEAK_SECRETS
        .iter()
        .any(|weak| lowered.trim_matches(|c: char| !c.is_ascii_alphanumeric()) == *weak)
    {
        weaknesses.push("is a well-known placeholder value".to_owned());
    }
    let mut distinct: Vec<char> = key.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if key.len() >= MIN_SECRET_KEY_BYTES && distinct.len() < 10 {
        weaknesses.push("uses fewer than 10 distinct characters, so it is not random".to_owned());
    }
    for weakness in weaknesses {
        if environment.is_development() {
            r.warning(SECRET_KEY.name, weakness, suggestion());
        } else {
            r.problem(SECRET_KEY.name, weakness, suggestion());
        }
    }
}

fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_cors(r: &mut Reader<'_>, strict: bool) -> CorsSettings {
    let raw = r.raw(&BACKEND_CORS_ORIGINS).unwrap_or_default();
    let allow_credentials: bool = r.value(&CORS_ALLOW_CREDENTIALS);
    let items: Vec<String> = if raw.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(raw) {
            Ok(items) => items,
            Err(e) => {
                r.problem(
                    BACKEND_CORS_ORIGINS.name,
                    format!("looks like a JSON array but is not one: {e}"),
                    r#"write ["https://a.example","https://b.example"] or a comma-separated list"#
                        .to_owned(),
                );
                Vec::new()
            }
        }
    } else {
        raw.split(',').map(str::to_owned).collect()
    };
    let mut origins = Vec::new();
    for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        match normalise_origin(item) {
            Ok(origin) => {
                if !origins.contains(&origin) {
                    origins.push(origin);
                }
            }
            Err(why) => r.problem(
                BACKEND_CORS_ORIGINS.name,
                format!("`{item}` is not an origin: {why}"),
                "write origins as scheme://host[:port], e.g. https://app.example.com".to_owned(),
            ),
        }
    }
    let wildcard = origins.iter().any(|o| o == "*");
    if wildcard && allow_credentials {
        r.problem(
            BACKEND_CORS_ORIGINS.name,
            "`*` cannot be combined with credentials: browsers refuse it, and it would let any site act as the user",
            "list the allowed origins explicitly, or set CORS_ALLOW_CREDENTIALS=false".to_owned(),
        );
    } else if wildcard && strict {
        r.warning(
            BACKEND_CORS_ORIGINS.name,
            "`*` lets any web site call the API from a browser",
            "list the allowed origins explicitly".to_owned(),
        );
    }
    if wildcard && origins.len() > 1 {
        origins.retain(|o| o == "*");
    }
    CorsSettings {
        allowed_origins: origins,
        allow_credentials,
    }
}

/// `https://App.example.com:443/` → `https://app.example.com`.
fn normalise_origin(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok("*".to_owned());
    }
    let url = Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the scheme must be http or https".to_owned());
    }
    if url.host_str().is_none() {
        return Err("it names no host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("it must not contain credentials".to_owned());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("an origin has no path, query or fragment".to_owned());
    }
    Ok(url.origin().ascii_serialization())
}

fn read_log(r: &mut Reader<'_>, environment: Environment, debug: bool) -> LogSettings {
    let filter = r
        .optional::<String>(&LOG_LEVEL)
        .unwrap_or_else(|| if debug { "debug" } else { "info" }.to_owned());
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&filter) {
        r.problem(
            LOG_LEVEL.name,
            format!("`{filter}` is not a log filter: {e}"),
            "use a level (error, warn, info, debug, trace) or directives like info,sovereign_db=debug"
                .to_owned(),
        );
    }
    let format = match r.value::<LogFormat>(&LOG_FORMAT) {
        LogFormat::Auto if environment.is_development() => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Json,
        explicit => explicit,
    };
    LogSettings { filter, format }
}

impl AuthSettings {
    /// The signing key's bytes.
    #[must_use]
    pub fn secret_key_bytes(&self) -> &[u8] {
        self.secret_key.expose_secret().as_bytes()
    }
}

#[cfg(test)]
mod tests;
