//! The HTTP settings — the listener, request limits, trusted proxies, rate limits, CORS, the
//! docs and the metrics listener — and [`Settings`], the whole configuration: these plus every
//! domain crate's own group, read in one pass so that every problem is reported at once.

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use sovereign_auth::{AuthSettings, MailSettings};
use sovereign_cache::CacheSettings;
use sovereign_core::settings::DefaultValue::{Computed, Unset, Value};
use sovereign_core::settings::{
    ConfigError, Documented, Environment, Loaded, ReadSettings, Reader, cpus, with_defaults,
};
use sovereign_core::telemetry::LogSettings;
use sovereign_core::{Quota, setting};
use sovereign_db::DatabaseSettings;
use sovereign_events::EventsSettings;
use sovereign_realtime::RealtimeSettings;
use sovereign_storage::StorageSettings;
use sovereign_tenancy::TenancySettings;
use sovereign_vector::VectorSettings;
use url::Url;

setting!(
    HOST,
    "HOST",
    Value("127.0.0.1"),
    "Address the HTTP server binds to. Use `0.0.0.0` in a container; keep the loopback address behind a reverse proxy on the same host."
);
setting!(
    PORT,
    "PORT",
    Value("8000"),
    "TCP port the HTTP server listens on."
);
setting!(
    WORKERS,
    "WORKERS",
    Computed("number of CPUs"),
    "Number of HTTP worker threads."
);
setting!(
    SHUTDOWN_TIMEOUT_SECONDS,
    "SHUTDOWN_TIMEOUT_SECONDS",
    Value("30"),
    "On SIGTERM/SIGINT, how long in-flight requests may take to finish before connections are closed."
);
setting!(
    JSON_BODY_LIMIT_BYTES,
    "JSON_BODY_LIMIT_BYTES",
    Value("1048576"),
    "Largest JSON request body accepted; larger bodies get `413 payload_too_large`."
);
setting!(
    JSON_BULK_LIMIT_BYTES,
    "JSON_BULK_LIMIT_BYTES",
    Value("33554432"),
    "Largest JSON body of the bulk routes (vector upserts: 1,000 points of 384 numbers are about 4 MB)."
);
setting!(
    PAYLOAD_LIMIT_BYTES,
    "PAYLOAD_LIMIT_BYTES",
    Value("2097152"),
    "Largest non-JSON request body (forms, raw bytes) accepted."
);
setting!(
    DOCS_ENABLED,
    "DOCS_ENABLED",
    Computed("`true`, except in production"),
    "Serve the interactive API docs at `/docs` and the document at `/api/v1/openapi.json`."
);
setting!(
    TRUSTED_PROXIES,
    "TRUSTED_PROXIES",
    Unset,
    "Comma-separated addresses or CIDRs of reverse proxies (e.g. `127.0.0.1,10.0.0.0/8`). `X-Forwarded-For`, `Forwarded` and `X-Forwarded-Proto` are honoured only from these peers; the client address is the right-most hop that is not one of them. Unset: the socket peer is the client."
);
setting!(
    RATE_LIMIT_ENABLED,
    "RATE_LIMIT_ENABLED",
    Value("true"),
    "Whether requests are rate limited."
);
setting!(
    RATE_LIMIT_API,
    "RATE_LIMIT_API",
    Value("600/minute"),
    "Quota per client address on every route except `/health` and `/ready`, as LIMIT/PERIOD (`600/minute`, `20/10s`, `5000/hour`); bursts up to LIMIT."
);
setting!(
    RATE_LIMIT_AUTH,
    "RATE_LIMIT_AUTH",
    Value("20/minute"),
    "Quota per client address on the authentication routes that take a password or token (register, login, token, refresh, password and verification flows), in addition to `RATE_LIMIT_API`."
);
setting!(
    BACKEND_CORS_ORIGINS,
    "BACKEND_CORS_ORIGINS",
    Unset,
    "Origins allowed to call the API from a browser: a comma-separated list or a JSON array, e.g. `https://app.example.com,https://admin.example.com`."
);
setting!(
    CORS_ALLOW_CREDENTIALS,
    "CORS_ALLOW_CREDENTIALS",
    Value("true"),
    "Whether browsers may send credentials cross-origin. Cannot be combined with a `*` origin."
);
setting!(
    METRICS_ADDR,
    "METRICS_ADDR",
    Value("127.0.0.1:9464"),
    "Address of the Prometheus `/metrics` listener, apart from the API; `off` disables it. Outside loopback it needs `METRICS_TOKEN`."
);
setting!(
    METRICS_TOKEN,
    "METRICS_TOKEN",
    Unset,
    "Bearer token `/metrics` requires when set (required when `METRICS_ADDR` is not a loopback address).",
    secret
);
/// The complete, validated configuration: each crate's group, composed.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub log: LogSettings,
    pub server: ServerSettings,
    pub network: NetworkSettings,
    pub rate_limit: RateLimitSettings,
    pub cors: CorsSettings,
    pub metrics: MetricsSettings,
    pub database: DatabaseSettings,
    pub cache: CacheSettings,
    pub tenancy: TenancySettings,
    pub auth: AuthSettings,
    pub mail: MailSettings,
    pub vector: VectorSettings,
    pub realtime: RealtimeSettings,
    pub storage: StorageSettings,
    pub events: EventsSettings,
}

impl ReadSettings for Settings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        // Every group is read before any `?`, so every problem is recorded.
        let log = LogSettings::read(r);
        let server = ServerSettings::read(r);
        let network = NetworkSettings::read(r);
        let rate_limit = RateLimitSettings::read(r);
        let cors = CorsSettings::read(r);
        let metrics = MetricsSettings::read(r);
        let database = DatabaseSettings::read(r);
        let cache = CacheSettings::read(r);
        let tenancy = TenancySettings::read(r);
        let auth = AuthSettings::read(r);
        let mail = MailSettings::read(r);
        let vector = VectorSettings::read(r);
        let realtime = RealtimeSettings::read(r);
        let storage = StorageSettings::read(r);
        let events = EventsSettings::read(r);
        Some(Self {
            environment: r.environment(),
            log: log?,
            server: server?,
            network: network?,
            rate_limit: rate_limit?,
            cors: cors?,
            metrics: metrics?,
            database: database?,
            cache: cache?,
            tenancy: tenancy?,
            auth: auth?,
            mail: mail?,
            vector: vector?,
            realtime: realtime?,
            storage: storage?,
            events: events?,
        })
    }
}

impl Settings {
    /// Loads the configuration from the process environment (and `.env`).
    pub fn load() -> Result<Loaded<Self>, ConfigError> {
        sovereign_core::settings::load()
    }

    /// Loads the configuration from the given variables only.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Loaded<Self>, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        sovereign_core::settings::from_vars(vars)
    }

    /// Every setting the server reads, in order, by section.
    #[must_use]
    pub fn documented() -> Vec<Documented> {
        sovereign_core::settings::documented::<Self>()
    }
}

/// The HTTP listener, its workers and request-size limits, and the docs.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub json_limit: usize,
    pub bulk_json_limit: usize,
    pub payload_limit: usize,
    /// Serve `/docs` and `/api/v1/openapi.json`.
    pub docs: bool,
}

/// How the server sees its network: which peers may speak for clients.
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    pub trusted_proxies: Vec<IpNet>,
}

/// Rate limits per client address.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitSettings {
    pub enabled: bool,
    /// Per client address, on every route but the probes.
    pub api: Quota,
    /// Per client address, on authentication routes.
    pub auth: Quota,
}

/// Which browser origins may call the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSettings {
    /// Normalised origins (`scheme://host[:port]`), or `["*"]`.
    pub allowed_origins: Vec<String>,
    pub allow_credentials: bool,
}

/// The Prometheus endpoint.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    /// `None`: no metrics listener.
    pub addr: Option<SocketAddr>,
    pub token: Option<SecretString>,
}

impl ReadSettings for ServerSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(read_server(r))
    }
}

/// The documented defaults.
impl Default for ServerSettings {
    fn default() -> Self {
        with_defaults(read_server)
    }
}

impl ReadSettings for NetworkSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(read_network(r))
    }
}

impl ReadSettings for RateLimitSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Rate limits");
        Some(Self {
            enabled: r.value(&RATE_LIMIT_ENABLED),
            api: r.value(&RATE_LIMIT_API),
            auth: r.value(&RATE_LIMIT_AUTH),
        })
    }
}

impl ReadSettings for CorsSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Browsers (CORS)");
        Some(read_cors(r))
    }
}

impl ReadSettings for MetricsSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Metrics");
        Some(read_metrics(r))
    }
}

fn read_server(r: &mut Reader<'_>) -> ServerSettings {
    r.section("HTTP server");
    let host: String = r.value(&HOST);
    if host.contains("://") || host.contains('/') {
        r.problem(
            HOST.name,
            format!("`{host}` is not a host name or address"),
            "set HOST to an address such as 127.0.0.1 or 0.0.0.0, without a scheme".to_owned(),
        );
    }
    let port: u16 = r.value(&PORT);
    let cpus = cpus();
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
        shutdown_timeout: r.seconds(&SHUTDOWN_TIMEOUT_SECONDS, 0, 3600),
        json_limit: r.bounded(&JSON_BODY_LIMIT_BYTES, 1024, 256 << 20),
        bulk_json_limit: r.bounded(&JSON_BULK_LIMIT_BYTES, 1024, 1 << 30),
        payload_limit: r.bounded(&PAYLOAD_LIMIT_BYTES, 1024, 1 << 30),
        docs: r
            .optional(&DOCS_ENABLED)
            .unwrap_or(!r.environment().is_production()),
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

fn read_cors(r: &mut Reader<'_>) -> CorsSettings {
    let strict = !r.environment().is_development();
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

fn read_metrics(r: &mut Reader<'_>) -> MetricsSettings {
    let text: String = r.value(&METRICS_ADDR);
    let token = r.secret(&METRICS_TOKEN);
    let addr = if text.eq_ignore_ascii_case("off") || text.is_empty() {
        None
    } else {
        match text.parse::<SocketAddr>() {
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

#[cfg(test)]
mod tests;
