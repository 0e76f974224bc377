use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager,
};
use futures_util::FutureExt;
use scoped_futures::ScopedBoxFuture;
use sovereign_core::settings::SecretUrl;
use uuid::Uuid;

use crate::connect::{ConnectOptions, connect};
use crate::settings::{DatabaseSettings, PoolSettings};
use crate::{DbError, TENANT_SETTING};

/// A pooled connection; returns to the pool when dropped.
pub type Conn = deadpool::Object<AsyncPgConnection>;

/// A snapshot of the pool, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Of those, idle.
    pub available: usize,
    /// Tasks waiting for a connection.
    pub waiting: usize,
}

/// The database handle: a connection pool with bounded waits. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: deadpool::Pool<AsyncPgConnection>,
    config: PoolSettings,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("Db")
            .field("config", &self.config)
            .field("size", &status.size)
            .field("available", &status.available)
            .finish()
    }
}

/// Who the server is connected as, and whether that role could defeat row-level security.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RoleReport {
    #[diesel(sql_type = Text)]
    pub role: String,
    #[diesel(sql_type = Bool)]
    pub superuser: bool,
    #[diesel(sql_type = Bool)]
    pub bypass_rls: bool,
    /// Tables, views and sequences outside the system schemas owned by this role or a role it
    /// is a member of, plus the current database if it owns that.
    #[diesel(sql_type = BigInt)]
    pub owned_objects: i64,
}

impl RoleReport {
    /// Whether the role can see past row-level security.
    #[must_use]
    pub fn is_privileged(&self) -> bool {
        self.superuser || self.bypass_rls || self.owned_objects > 0
    }
}

impl Db {
    /// Builds the pool. No connection is opened until one is needed, so the server starts (and
    /// reports itself not ready) while the database is down.
    pub fn new(url: &SecretUrl, config: PoolSettings) -> Result<Self, DbError> {
        let options = ConnectOptions {
            connect_timeout: config.connect_timeout,
            statement_timeout: Some(config.statement_timeout),
            keepalive: None,
        };
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = Box::new(move |url| connect(url, options).boxed());
        manager_config.recycling_method = RecyclingMethod::Verified;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            url.expose(),
            manager_config,
        );
        let pool = deadpool::Pool::builder(manager)
            .max_size(config.max_size)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.recycle_timeout))
            .runtime(::deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| DbError::Config(e.to_string()))?;
        Ok(Self { pool, config })
    }

    /// Builds the pool for the runtime role described by the settings.
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Self, DbError> {
        Self::new(&settings.url, settings.pool)
    }

    /// The pool's size now: (open connections, idle ones, tasks waiting for one).
    #[must_use]
    pub fn pool_status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// A connection from the pool, within the wait and connect timeouts.
    pub async fn conn(&self) -> Result<Conn, DbError> {
        let started = Instant::now();
        let conn = self.pool.get().await;
        metrics::histogram!("sovereign_db_pool_acquire_seconds")
            .record(started.elapsed().as_secs_f64());
        conn.map_err(|e| {
            use ::deadpool::managed::{PoolError, TimeoutType};
            let why = match &e {
                PoolError::Timeout(TimeoutType::Wait) => "no free connection in time".to_owned(),
                PoolError::Timeout(TimeoutType::Create) => "connecting timed out".to_owned(),
                PoolError::Timeout(TimeoutType::Recycle) => "connection check timed out".to_owned(),
                other => other.to_string(),
            };
            DbError::Unavailable(why)
        })
    }

    /// Runs `work` in a transaction on a pooled connection: committed when it returns `Ok`,
    /// rolled back on `Err`. The whole transaction is bounded by the statement timeout; when
    /// it runs out, the connection is discarded rather than reused with an open transaction.
    ///
    /// ```no_run
    /// # use sovereign_db::{Db, DbError, RunQueryDsl, ScopedFutureExt};
    /// # async fn example(db: &Db) -> Result<(), DbError> {
    /// let rows = db
    ///     .transaction(|conn| {
    ///         async move {
    ///             let n = diesel::sql_query("SELECT 1").execute(conn).await?;
    ///             Ok::<_, DbError>(n)
    ///         }
    ///         .scope_boxed()
    ///     })
    ///     .await?;
    /// assert_eq!(rows, 1);
    /// # Ok(()) }
    /// ```
    pub async fn transaction<'a, R, E, F>(&self, work: F) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, Result<R, E>>
            + Send
            + 'a,
        E: From<DbError> + From<diesel::result::Error> + Send + 'a,
        R: Send + 'a,
    {
        let mut conn = self.conn().await?;
        let limit = self.config.statement_timeout;
        match tokio::time::timeout(limit, conn.transaction(async move |c| work(c).await)).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Timeout.into()),
        }
    }

    /// Like [`Db::tenant_transaction`], for the rare maintenance work that may take longer than
    /// the statement timeout (building an index): the transaction and each of its statements
    /// are bounded by `limit` instead.
    pub async fn long_tenant_transaction<'a, R, E, F>(
        &self,
        tenant: Uuid,
        limit: Duration,
        work: F,
    ) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, Result<R, E>>
            + Send
            + 'a,
        E: From<DbError> + From<diesel::result::Error> + Send + 'a,
        R: Send + 'a,
    {
        let settings = vec![("statement_timeout", format!("{}ms", limit.as_millis()))];
        self.scoped_transaction(tenant, settings, limit, work).await
    }

    /// Runs `work` in a transaction scoped to `tenant`: its first statement sets
    /// [`TENANT_SETTING`] transaction-locally, so row-level security shows, and accepts, only
    /// that tenant's rows. This is the only way request code reaches tenant-owned tables; outside
    /// it they show no rows and refuse writes. The setting ends with the transaction (commit,
    /// rollback, or a cancelled request whose connection is then discarded), so a pooled
    /// connection never carries one tenant's scope into another request.
    pub async fn tenant_transaction<'a, R, E, F>(&self, tenant: Uuid, work: F) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, Result<R, E>>
            + Send
            + 'a,
        E: From<DbError> + From<diesel::result::Error> + Send + 'a,
        R: Send + 'a,
    {
        self.tenant_transaction_with(tenant, Vec::new(), work).await
    }

    /// Like [`Db::tenant_transaction`], with more transaction-local settings (planner or
    /// extension parameters such as `hnsw.ef_search`) set in the same statement as the tenant,
    /// so they cost no extra round trip.
    pub async fn tenant_transaction_with<'a, R, E, F>(
        &self,
        tenant: Uuid,
        settings: Vec<(&'static str, String)>,
        work: F,
    ) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, Result<R, E>>
            + Send
            + 'a,
        E: From<DbError> + From<diesel::result::Error> + Send + 'a,
        R: Send + 'a,
    {
        self.scoped_transaction(tenant, settings, self.config.statement_timeout, work)
            .await
    }

    /// The tenant-scoped transaction, bounded by `limit` as a whole.
    async fn scoped_transaction<'a, R, E, F>(
        &self,
        tenant: Uuid,
        settings: Vec<(&'static str, String)>,
        limit: Duration,
        work: F,
    ) -> Result<R, E>
    where
        F: for<'r> FnOnce(&'r mut AsyncPgConnection) -> ScopedBoxFuture<'a, 'r, Result<R, E>>
            + Send
            + 'a,
        E: From<DbError> + From<diesel::result::Error> + Send + 'a,
        R: Send + 'a,
    {
        // BEGIN and the settings travel as one simple-query batch: one round trip, not three.
        // The values are quoted as literals (a UUID, and settings from the caller's code).
        let mut begin = format!(
            "BEGIN; SELECT set_config('{TENANT_SETTING}', {}, true)",
            quote_literal(&tenant.to_string())
        );
        for (name, value) in &settings {
            begin.push_str(&format!(
                ", set_config({}, {}, true)",
                quote_literal(name),
                quote_literal(value)
            ));
        }
        let mut conn = self.conn().await?;
        let run = async move {
            // The transaction manager tracks this transaction like one it opened itself: a
            // cancelled request leaves a connection the pool discards, never one reused with
            // an open transaction (or a tenant) in it.
            AnsiTransactionManager::begin_transaction_sql(&mut *conn, &begin)
                .await
                .map_err(DbError::from)?;
            match work(&mut conn).await {
                Ok(value) => {
                    AnsiTransactionManager::commit_transaction(&mut *conn)
                        .await
                        .map_err(DbError::from)?;
                    Ok(value)
                }
                Err(error) => {
                    // The work's error matters more than a failed rollback (which leaves the
                    // connection broken, so the pool drops it).
                    let _ = AnsiTransactionManager::rollback_transaction(&mut *conn).await;
                    Err(error)
                }
            }
        };
        match tokio::time::timeout(limit, run).await {
            Ok(result) => result,
            Err(_) => Err(DbError::Timeout.into()),
        }
    }

    /// Round-trip latency of `SELECT 1`, including getting a connection, bounded by `budget`.
    pub async fn health(&self, budget: Duration) -> Result<Duration, DbError> {
        let started = Instant::now();
        let check = async {
            let mut conn = self.conn().await?;
            diesel::sql_query("SELECT 1").execute(&mut conn).await?;
            Ok::<_, DbError>(started.elapsed())
        };
        tokio::time::timeout(budget, check)
            .await
            .map_err(|_| DbError::Timeout)?
    }

    /// Reports the role the pool connects as (see [`RoleReport::is_privileged`]).
    pub async fn runtime_role(&self) -> Result<RoleReport, DbError> {
        let mut conn = self.conn().await?;
        let report = diesel::sql_query(
            "SELECT r.rolname::text AS role, r.rolsuper AS superuser, r.rolbypassrls AS bypass_rls,
                    (SELECT count(*) FROM pg_class c
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
                        AND n.nspname NOT LIKE 'pg_toast%'
                        AND pg_has_role(r.oid, c.relowner, 'MEMBER'))
                  + (SELECT count(*) FROM pg_database d
                      WHERE d.datname = current_database()
                        AND pg_has_role(r.oid, d.datdba, 'MEMBER')) AS owned_objects
               FROM pg_roles r
              WHERE r.rolname = current_user",
        )
        .get_result::<RoleReport>(&mut conn)
        .await?;
        Ok(report)
    }
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
