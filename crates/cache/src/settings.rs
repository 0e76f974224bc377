//! The cache settings: Redis/Valkey or the in-process backend, the key prefix, time limits, and
//! how much stricter the rate limiter gets while Redis is failing.

use std::time::Duration;

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Unset, Value};
use sovereign_core::settings::{ReadSettings, Reader, SecretUrl, SettingSpec, with_defaults};

setting!(
    VALKEY_URL,
    "VALKEY_URL",
    Unset,
    "Valkey/Redis URL (`redis://`, `valkey://`, `unix://`; TLS `rediss://` is not supported). Wins over `REDIS_URL`. Unset: an in-process cache serves one instance.",
    secret
);
setting!(
    REDIS_URL,
    "REDIS_URL",
    Unset,
    "Same as `VALKEY_URL`, accepted for compatibility.",
    secret
);
setting!(
    CACHE_PREFIX,
    "CACHE_PREFIX",
    Value("sovereign"),
    "Namespace of every cache key and channel (`<prefix>:…`, tenant data under `<prefix>:t:<tenant>:…`), so several deployments can share one Redis."
);
setting!(
    CACHE_TIMEOUT_MS,
    "CACHE_TIMEOUT_MS",
    Value("250"),
    "Bound on each Redis round trip, including the wait for a pooled connection. A stopped Redis costs at most this, then calls are short-circuited for half a second."
);
setting!(
    CACHE_CONNECT_TIMEOUT_MS,
    "CACHE_CONNECT_TIMEOUT_MS",
    Value("1000"),
    "Bound on opening a new Redis connection."
);
setting!(
    CACHE_POOL_MAX_SIZE,
    "CACHE_POOL_MAX_SIZE",
    Value("16"),
    "Most pooled Redis connections (each one is multiplexed)."
);
setting!(
    CACHE_MEMORY_CAPACITY,
    "CACHE_MEMORY_CAPACITY",
    Value("100000"),
    "Most entries the in-process cache keeps when no Redis URL is set."
);
setting!(
    RATE_LIMIT_FALLBACK_DIVISOR,
    "RATE_LIMIT_FALLBACK_DIVISOR",
    Value("4"),
    "While Redis is failing, each instance enforces its quotas divided by this, in process: degraded, never unlimited."
);

/// How to build a [`crate::Cache`] and its [`crate::RateLimiter`].
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `redis://`, `valkey://` or `unix://`; `None` for the in-process backend.
    pub url: Option<SecretUrl>,
    /// Namespace of every key and channel, e.g. `sovereign` gives `sovereign:<key>`.
    pub prefix: String,
    /// Bound on each Redis round trip, including the wait for a pooled connection.
    pub timeout: Duration,
    /// Bound on opening a new Redis connection.
    pub connect_timeout: Duration,
    /// Most pooled Redis connections (each is multiplexed).
    pub pool_max_size: usize,
    /// Most entries the in-process backend keeps; the least useful are evicted beyond it.
    pub memory_capacity: u64,
    /// While Redis fails, quotas are enforced per instance divided by this.
    pub fallback_divisor: u32,
}

impl ReadSettings for CacheSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self::from_reader(r))
    }
}

/// The documented defaults: the in-process backend.
impl Default for CacheSettings {
    fn default() -> Self {
        with_defaults(Self::from_reader)
    }
}

impl CacheSettings {
    fn from_reader(r: &mut Reader<'_>) -> Self {
        r.section("Cache");
        let valkey = redis_url(r, &VALKEY_URL);
        let redis = redis_url(r, &REDIS_URL);
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
        Self {
            url: valkey.or(redis),
            prefix,
            timeout: r.millis(&CACHE_TIMEOUT_MS, 1, 60_000),
            connect_timeout: r.millis(&CACHE_CONNECT_TIMEOUT_MS, 1, 60_000),
            pool_max_size: r.bounded(&CACHE_POOL_MAX_SIZE, 1, 1000),
            memory_capacity: r.bounded(&CACHE_MEMORY_CAPACITY, 1, 100_000_000),
            fallback_divisor: r.bounded(&RATE_LIMIT_FALLBACK_DIVISOR, 1, 1000),
        }
    }
}

fn redis_url(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<SecretUrl> {
    let url = r.secret_url(spec)?;
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

#[cfg(test)]
mod tests {
    use sovereign_core::settings::from_vars;

    use super::*;

    #[test]
    fn valkey_wins_and_foreign_or_tls_urls_are_problems() {
        let s = from_vars::<CacheSettings, _, _, _>([
            ("VALKEY_URL", "redis://a:6379"),
            ("REDIS_URL", "redis://b:6379"),
        ])
        .unwrap();
        assert!(s.settings.url.unwrap().expose().contains("//a:6379"));
        assert_eq!(s.warnings[0].setting, "REDIS_URL");
        for bad in ["http://cache:6379", "rediss://cache:6379"] {
            let e = from_vars::<CacheSettings, _, _, _>([("REDIS_URL", bad)]).unwrap_err();
            assert_eq!(e.problems[0].setting, "REDIS_URL", "{bad}");
        }
    }

    #[test]
    fn defaults_are_the_in_process_backend() {
        let s = CacheSettings::default();
        assert!(s.url.is_none());
        assert_eq!(s.prefix, "sovereign");
        assert_eq!(s.timeout, Duration::from_millis(250));
        assert_eq!(s.fallback_divisor, 4);
    }
}
