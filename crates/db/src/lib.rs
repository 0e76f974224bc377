//! Sovereign's PostgreSQL layer.
//!
//! Owns the connection pool ([`Db`]), the embedded migrations ([`migrations`]), the shared
//! `schema.rs`, the transaction helper everyone uses ([`Db::transaction`]) and the database health
//! check. Every wait is bounded: acquiring a connection, opening one, recycling one and running a
//! transaction each have a timeout, so an outage becomes a fast [`DbError::Unavailable`], never a
//! hung request.
//!
//! This crate must never know about HTTP, and must never read settings from the environment: it
//! receives them.

mod connect;
mod error;
pub mod migrations;
mod pool;
pub mod schema;

pub use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
pub use error::DbError;
pub use pool::{Conn, Db, PoolConfig, RoleReport};
pub use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};

/// Name of the group role the server's login role must belong to. Migrations grant it the
/// privileges the server needs, and no more.
pub const RUNTIME_GROUP_ROLE: &str = "sovereign_app";
