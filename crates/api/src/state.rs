use std::sync::Arc;

use sovereign_auth::Accounts;
use sovereign_cache::{Cache, RateLimiter};
use sovereign_core::Settings;
use sovereign_db::Db;
use sovereign_realtime::Hub;
use sovereign_tenancy::TenantAdmin;
use sovereign_vector::Vectors;

/// What every handler can reach, shared by all workers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    /// The application's cache (Redis/Valkey, or in-process); tenant data goes through
    /// [`Cache::tenant`].
    pub cache: Cache,
    pub limiter: Arc<RateLimiter>,
    pub accounts: Accounts,
    /// Tenant administration, over `DATABASE_ADMIN_URL` (superadmin routes only).
    pub tenant_admin: TenantAdmin,
    /// Vector search; `None` when `ENABLE_VECTOR` is off.
    pub vectors: Option<Vectors>,
    /// Realtime channels; `None` when `ENABLE_WEBSOCKETS` is off.
    pub hub: Option<Hub>,
}
