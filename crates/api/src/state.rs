use std::ops::Deref;
use std::sync::Arc;

use crate::services::Services;
use crate::settings::Settings;

/// What every handler can reach, shared by all workers: the settings and the services
/// (`state.db`, `state.accounts`, … through [`Deref`]).
#[derive(Debug, Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub services: Services,
}

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.services
    }
}
