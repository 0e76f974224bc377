//! The database settings: where to connect, as which role, and every time limit of the pool.

use std::time::Duration;

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Computed, Required, Value};
use sovereign_core::settings::{ReadSettings, Reader, SecretUrl, SettingSpec, with_defaults};

setting!(
    DATABASE_URL,
    "DATABASE_URL",
    Required,
    "PostgreSQL URL the server connects with, as its runtime role (not the schema owner, not a superuser); e.g. `postgres://sovereign_api:PASSWORD@127.0.0.1:5432/sovereign`.",
    secret
);
setting!(
    DATABASE_OWNER_URL,
    "DATABASE_OWNER_URL",
    Computed("`DATABASE_URL`"),
    "PostgreSQL URL `sovereign migrate` connects with: the role that owns the schema.",
    secret
);
setting!(
    DATABASE_ADMIN_URL,
    "DATABASE_ADMIN_URL",
    Computed("`DATABASE_OWNER_URL`"),
    "PostgreSQL URL tenant administration (`sovereign tenant …`) connects with: a member of `sovereign_tenant_admin`, the only role that may create or change tenants.",
    secret
);
setting!(
    DATABASE_POOL_MAX_SIZE,
    "DATABASE_POOL_MAX_SIZE",
    Value("16"),
    "Most connections the server keeps open to PostgreSQL."
);
setting!(
    DATABASE_POOL_WAIT_TIMEOUT_MS,
    "DATABASE_POOL_WAIT_TIMEOUT_MS",
    Value("1000"),
    "How long a request waits for a free connection before it gets `503 database_unavailable`."
);
setting!(
    DATABASE_CONNECT_TIMEOUT_MS,
    "DATABASE_CONNECT_TIMEOUT_MS",
    Value("2000"),
    "How long opening a new connection may take."
);
setting!(
    DATABASE_RECYCLE_TIMEOUT_MS,
    "DATABASE_RECYCLE_TIMEOUT_MS",
    Value("1000"),
    "How long checking a pooled connection before reuse may take."
);
setting!(
    DATABASE_STATEMENT_TIMEOUT_MS,
    "DATABASE_STATEMENT_TIMEOUT_MS",
    Value("5000"),
    "Longest a single statement or transaction may run, enforced by PostgreSQL and by the client."
);

/// Where the database is, as which roles, and the pool's limits.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The runtime role's connection.
    pub url: SecretUrl,
    /// The schema owner's connection, for migrations.
    pub owner_url: SecretUrl,
    /// Tenant administration's login (a member of `sovereign_tenant_admin`, or the owner).
    pub admin_url: SecretUrl,
    pub pool: PoolSettings,
}

/// Pool sizing and every time limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_size: usize,
    /// Waiting for a free connection.
    pub wait_timeout: Duration,
    /// Opening a new connection.
    pub connect_timeout: Duration,
    /// Checking a pooled connection before reuse.
    pub recycle_timeout: Duration,
    /// One statement (server-side) and one [`crate::Db::transaction`] (client-side).
    pub statement_timeout: Duration,
}

impl ReadSettings for DatabaseSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        r.section("Database");
        let url = postgres_url(r, &DATABASE_URL);
        let owner_url = postgres_url(r, &DATABASE_OWNER_URL);
        let admin_url = postgres_url(r, &DATABASE_ADMIN_URL);
        let pool = PoolSettings::from_reader(r);
        let url = url?;
        Some(Self {
            admin_url: admin_url
                .or_else(|| owner_url.clone())
                .unwrap_or_else(|| url.clone()),
            owner_url: owner_url.unwrap_or_else(|| url.clone()),
            url,
            pool,
        })
    }
}

impl ReadSettings for PoolSettings {
    fn read(r: &mut Reader<'_>) -> Option<Self> {
        Some(Self::from_reader(r))
    }
}

/// The documented defaults.
impl Default for PoolSettings {
    fn default() -> Self {
        with_defaults(Self::from_reader)
    }
}

impl PoolSettings {
    fn from_reader(r: &mut Reader<'_>) -> Self {
        Self {
            max_size: r.bounded(&DATABASE_POOL_MAX_SIZE, 1, 1000),
            wait_timeout: r.millis(&DATABASE_POOL_WAIT_TIMEOUT_MS, 1, 600_000),
            connect_timeout: r.millis(&DATABASE_CONNECT_TIMEOUT_MS, 1, 600_000),
            recycle_timeout: r.millis(&DATABASE_RECYCLE_TIMEOUT_MS, 1, 600_000),
            statement_timeout: r.millis(&DATABASE_STATEMENT_TIMEOUT_MS, 1, 600_000),
        }
    }
}

fn postgres_url(r: &mut Reader<'_>, spec: &'static SettingSpec) -> Option<SecretUrl> {
    let url = r.secret_url(spec)?;
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

#[cfg(test)]
mod tests {
    use sovereign_core::settings::{defaults, from_vars};

    use super::*;

    #[test]
    fn defaults_parse_and_owner_and_admin_default_to_the_runtime_url() {
        assert_eq!(defaults::<PoolSettings>().unwrap(), PoolSettings::default());
        assert_eq!(PoolSettings::default().max_size, 16);
        let s = from_vars::<DatabaseSettings, _, _, _>([(
            "DATABASE_URL",
            "postgres://app:pw@127.0.0.1:5432/sovereign",
        )])
        .unwrap()
        .settings;
        assert_eq!(s.owner_url, s.url);
        assert_eq!(s.admin_url, s.url);
        assert_eq!(s.pool.wait_timeout, Duration::from_millis(1000));
    }

    #[test]
    fn a_missing_or_foreign_url_is_a_problem() {
        let missing = from_vars::<DatabaseSettings, _, String, String>([]).unwrap_err();
        assert_eq!(missing.problems[0].setting, "DATABASE_URL");
        let mysql = from_vars::<DatabaseSettings, _, _, _>([(
            "DATABASE_URL",
            "mysql://root:hunter2@localhost/app",
        )])
        .unwrap_err();
        assert!(!mysql.to_string().contains("hunter2"));
    }
}
