use std::sync::Arc;

use sovereign_core::Settings;
use sovereign_db::Db;

/// What every handler can reach, shared by all workers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
}
