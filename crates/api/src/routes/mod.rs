//! Route registration. Routes and their OpenAPI entries are registered together, so the
//! document cannot miss a route.

mod system;
mod tenants;

use utoipa_actix_web::service_config::ServiceConfig;

/// Registers every documented route.
pub(crate) fn register(cfg: &mut ServiceConfig<'_>) {
    cfg.service(system::index)
        .service(system::health)
        .service(system::ready)
        .service(tenants::current);
}
