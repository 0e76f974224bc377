#![doc = include_str!("../README.md")]

pub mod auth;
mod docs;
pub mod edge;
pub mod error;
pub mod extract;
mod fallback;
pub mod healthcheck;
pub mod metrics;
mod middleware;
mod nul;
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
