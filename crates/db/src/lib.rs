#![doc = include_str!("../README.md")]

mod connect;
mod error;
pub mod migrations;
mod pool;
pub mod schema;
mod settings;

pub use connect::connect_dedicated;
pub use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
pub use error::DbError;
pub use pool::{Conn, Db, PoolStatus, RoleReport};
pub use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};
pub use settings::{DatabaseSettings, PoolSettings};

/// Name of the group role the server's login role must belong to. Migrations grant it the
/// privileges the server needs, and no more.
pub const RUNTIME_GROUP_ROLE: &str = "sovereign_app";

/// Name of the group role that alone may create and change tenants (the cross-tenant path;
/// see `docs/tenancy.md`).
pub const TENANT_ADMIN_ROLE: &str = "sovereign_tenant_admin";

/// The transaction-local setting row-level security policies compare `tenant_id` with
/// (through the SQL function `sovereign_current_tenant()`).
pub const TENANT_SETTING: &str = "app.tenant_id";
