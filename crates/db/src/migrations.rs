//! The schema migrations in `migrations/`, embedded in the binary.
//!
//! Migrations run as the schema owner (`DATABASE_OWNER_URL`), never as the server's runtime role.
//! Runs are serialised across processes with an advisory lock, so several instances starting
//! together cannot apply the same migration twice.
//!
//! diesel's migration harness is synchronous; it runs over an async connection wrapped for
//! blocking use, on tokio's blocking pool, which works on any runtime flavour.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use sovereign_core::settings::SecretUrl;

use crate::connect::{ConnectOptions, connect};

/// Every migration in `migrations/`, compiled in.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Key of the session-level advisory lock held while migrating (ASCII "SOVMIGR8").
const MIGRATION_LOCK_KEY: i64 = 0x534F_564D_4947_5238;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("cannot connect to the database to migrate it: {0}")]
    Connect(#[from] diesel::ConnectionError),
    #[error("migration failed: {0}")]
    Run(String),
    #[error("the migration task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Which migrations to revert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revert {
    /// The most recent `n`.
    Last(usize),
    /// Every applied migration.
    All,
}

/// One migration and whether it has been applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationStatus {
    pub name: String,
    pub applied: bool,
}

type Wrapper = AsyncConnectionWrapper<AsyncPgConnection>;

/// Opens an owner connection and runs `work` with the harness on the blocking pool, holding the
/// migration lock.
async fn with_harness<T, F>(owner_url: &SecretUrl, work: F) -> Result<T, MigrationError>
where
    F: FnOnce(&mut Wrapper) -> Result<T, String> + Send + 'static,
    T: Send + 'static,
{
    let conn = connect(
        owner_url.expose(),
        ConnectOptions {
            connect_timeout: CONNECT_TIMEOUT,
            statement_timeout: None,
            keepalive: None,
        },
    )
    .await?;
    tokio::task::spawn_blocking(move || {
        let mut wrapper = Wrapper::from(conn);
        wrapper
            .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
            .map_err(|e| e.to_string())?;
        let result = work(&mut wrapper);
        // The lock is session-level: closing the connection releases it even if this fails.
        let _ = wrapper.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"));
        result
    })
    .await?
    .map_err(MigrationError::Run)
}

/// Applies every pending migration; returns the names applied, oldest first.
pub async fn run_pending(owner_url: &SecretUrl) -> Result<Vec<String>, MigrationError> {
    with_harness(owner_url, |conn| {
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map_err(|e| e.to_string())?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Reverts migrations, newest first; returns the names reverted in that order.
pub async fn revert(owner_url: &SecretUrl, which: Revert) -> Result<Vec<String>, MigrationError> {
    with_harness(owner_url, move |conn| {
        let mut reverted = Vec::new();
        loop {
            if let Revert::Last(n) = which
                && reverted.len() >= n
            {
                break;
            }
            let applied = conn.applied_migrations().map_err(|e| e.to_string())?;
            if applied.is_empty() {
                break;
            }
            let version = conn
                .revert_last_migration(MIGRATIONS)
                .map_err(|e| e.to_string())?;
            reverted.push(version.to_string());
        }
        Ok(reverted)
    })
    .await
}

/// Every known migration, oldest first, with whether it is applied.
pub async fn status(owner_url: &SecretUrl) -> Result<Vec<MigrationStatus>, MigrationError> {
    with_harness(owner_url, |conn| {
        let applied = conn.applied_migrations().map_err(|e| e.to_string())?;
        let known = MigrationSource::<Pg>::migrations(&MIGRATIONS).map_err(|e| e.to_string())?;
        Ok(known
            .iter()
            .map(|m| MigrationStatus {
                name: m.name().to_string(),
                applied: applied.contains(&m.name().version()),
            })
            .collect())
    })
    .await
}
