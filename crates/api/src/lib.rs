//! Sovereign's HTTP layer: the only crate that knows HTTP.
//!
//! It composes the domain crates into an actix-web application: routes registered together with
//! their OpenAPI entries, extractors whose failures are problem bodies, the request-context
//! middleware (request id, log line, panic safety), and the server builder tests start on
//! port 0. Domain errors arrive as [`sovereign_core::Diagnostic`]s and are mapped to statuses in
//! exactly one place, [`error::status_for`].

pub mod auth;
mod docs;
pub mod edge;
pub mod error;
pub mod extract;
mod fallback;
pub mod healthcheck;
pub mod metrics;
mod middleware;
pub mod openapi;
mod rate_limit;
pub mod request_id;
mod routes;
mod server;
pub mod services;
pub mod settings;
mod state;
pub mod tenant;

pub use docs::OPENAPI_PATH;
pub use error::{ApiError, PROBLEM_JSON, Problem};
pub use server::{Application, BuildOptions, RouteHook, StartError};
pub use services::Services;
pub use settings::Settings;
pub use state::AppState;
