//! Tenants, and the rules that decide which tenant a request acts for.
//!
//! Isolation itself is not here: it is PostgreSQL row-level security. Every tenant-owned table
//! has `tenant_id`, `ENABLE` and `FORCE ROW LEVEL SECURITY` and a policy comparing `tenant_id`
//! with the transaction's tenant, which only [`sovereign_db::Db::tenant_transaction`] sets. A
//! query outside it sees no rows and cannot write any. See `docs/tenancy.md`.
//!
//! This crate owns the registry (`tenants`), [`TenantRef`] parsing, the pure resolution rules
//! ([`resolution`]), [`resolve`] (the rules around one lookup) and [`TenantAdmin`], the only
//! code that creates or changes tenants.

mod error;
mod model;
pub mod resolution;
mod store;

pub use error::TenancyError;
pub use model::{
    DEFAULT_TENANT_ID, DEFAULT_TENANT_SLUG, MAX_SLUG_LEN, Tenant, TenantRef, TenantStatus,
};
pub use resolution::{ActingTenant, TenantClaims};
pub use store::{MAX_NAME_LEN, TenantAdmin, find, resolve};
