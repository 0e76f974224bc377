//! The domain services, built from the settings in one place: the server runs on
//! [`Services::start`], and the command line's one-off commands on [`Services::for_command`].

use std::sync::Arc;

use sovereign_auth::{Accounts, LogMailer, Mailer};
use sovereign_cache::{Cache, RateLimiter};
use sovereign_core::Environment;
use sovereign_db::Db;
use sovereign_events::Dispatcher;
use sovereign_realtime::Hub;
use sovereign_storage::Storage;
use sovereign_tenancy::TenantAdmin;
use sovereign_vector::Vectors;

use crate::server::StartError;
use crate::settings::Settings;

/// Every service a handler can reach, shared by all workers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub db: Db,
    /// The application's cache (Redis/Valkey, or in-process); tenant data goes through
    /// [`Cache::tenant`].
    pub cache: Cache,
    pub limiter: Arc<RateLimiter>,
    pub accounts: Accounts,
    /// Tenant administration, over `DATABASE_ADMIN_URL` (superadmin routes and commands only).
    pub tenant_admin: TenantAdmin,
    /// Vector search; `None` when `ENABLE_VECTOR` is off.
    pub vectors: Option<Vectors>,
    /// Realtime channels; `None` when `ENABLE_WEBSOCKETS` is off.
    pub hub: Option<Hub>,
    /// File storage; `None` when `ENABLE_FILE_UPLOADS` is off.
    pub storage: Option<Storage>,
    /// The event dispatcher this instance runs (competing for the one term of the deployment);
    /// `None` when `EVENTS_DISPATCH` is off, and for one-off commands.
    pub dispatcher: Option<Dispatcher>,
}

impl Services {
    /// Everything the server runs on. Checks the database role (refused in production when it
    /// could bypass row-level security) and reports the cache, but starts while either is down.
    /// `mailer` replaces the one the settings describe (tests use an in-memory outbox).
    pub async fn start(
        settings: &Settings,
        mailer: Option<Arc<dyn Mailer>>,
    ) -> Result<Self, StartError> {
        let db = Db::from_settings(&settings.database)?;
        check_runtime_role(&db, settings.environment).await?;
        let cache = Cache::new(&settings.cache)?;
        match cache.health().await {
            Ok(health) => tracing::info!(backend = health.backend.as_str(), "cache ready"),
            Err(e) => {
                tracing::warn!(error = %e, "cache unreachable at start-up; serving degraded, /ready reports it");
            }
        }
        let limiter = Arc::new(RateLimiter::new(&cache, settings.cache.fallback_divisor));
        let mailer = match mailer {
            Some(mailer) => mailer,
            None => sovereign_auth::mailer::from_settings(&settings.mail)?,
        };
        let accounts = Accounts::from_settings(
            &settings.auth,
            db.clone(),
            cache.clone(),
            settings.rate_limit.enabled.then(|| Arc::clone(&limiter)),
            mailer,
        )
        .await?;
        let vectors = if settings.vector.enabled {
            let vectors = Vectors::from_settings(db.clone(), &settings.vector)?;
            tracing::info!(
                embedder = vectors.embedder().name(),
                dimension = vectors.embedder().dimension(),
                "vector search enabled"
            );
            Some(vectors)
        } else {
            None
        };
        let hub = if settings.realtime.enabled {
            Some(Hub::start(&cache, Arc::clone(&limiter), settings.realtime.clone()).await)
        } else {
            None
        };
        let storage = storage_of(&db, settings)?;
        if let Err(e) = sovereign_events::audit::ensure_partitions(&db).await {
            tracing::warn!(error = %e, "could not make the audit log's partitions ahead; the dispatcher retries hourly");
        }
        let dispatcher = settings.events.dispatch.then(|| {
            Dispatcher::new(
                db.clone(),
                settings.database.url.clone(),
                settings.database.pool,
                settings.events,
                Vec::new(),
            )
        });
        Ok(Self {
            tenant_admin: TenantAdmin::from_settings(&settings.database)?,
            db,
            cache,
            limiter,
            accounts,
            vectors,
            hub,
            storage,
            dispatcher,
        })
    }

    /// What a one-off command needs: the database, tenant administration and accounts with an
    /// in-process cache (nothing is throttled), mail written to the log, and file storage. No
    /// hub, no embedder.
    pub async fn for_command(settings: &Settings) -> Result<Self, StartError> {
        let db = Db::from_settings(&settings.database)?;
        let cache = Cache::in_memory(&settings.cache.prefix);
        let limiter = Arc::new(RateLimiter::new(&cache, settings.cache.fallback_divisor));
        let accounts = Accounts::from_settings(
            &settings.auth,
            db.clone(),
            cache.clone(),
            None,
            Arc::new(LogMailer::default()),
        )
        .await?;
        let storage = storage_of(&db, settings)?;
        Ok(Self {
            tenant_admin: TenantAdmin::from_settings(&settings.database)?,
            db,
            cache,
            limiter,
            accounts,
            vectors: None,
            hub: None,
            storage,
            dispatcher: None,
        })
    }
}

/// File storage, when enabled, with URLs signed by a key derived from `SECRET_KEY`.
fn storage_of(db: &Db, settings: &Settings) -> Result<Option<Storage>, StartError> {
    if !settings.storage.enabled {
        return Ok(None);
    }
    Ok(Some(Storage::new(
        db.clone(),
        settings.storage.clone(),
        settings.auth.secret_key_bytes(),
    )?))
}

/// The runtime role must not be able to see past row-level security. Refused in production,
/// a loud warning elsewhere; skipped (with a warning) when the database is unreachable.
async fn check_runtime_role(db: &Db, environment: Environment) -> Result<(), StartError> {
    match db.runtime_role().await {
        Ok(report) if report.is_privileged() => {
            let mut why = Vec::new();
            if report.superuser {
                why.push("superuser".to_owned());
            }
            if report.bypass_rls {
                why.push("BYPASSRLS".to_owned());
            }
            if report.owned_objects > 0 {
                why.push(format!("owns {} objects", report.owned_objects));
            }
            let error = StartError::PrivilegedRole {
                role: report.role,
                why: why.join(", "),
            };
            if environment.is_production() {
                return Err(error);
            }
            tracing::warn!("{error}");
        }
        Ok(report) => tracing::info!(role = %report.role, "database role checked"),
        Err(e) => tracing::warn!(error = %e, "database unreachable at start-up; /ready reports it"),
    }
    Ok(())
}
