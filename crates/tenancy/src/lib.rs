#![doc = include_str!("../README.md")]

mod error;
mod model;
pub mod resolution;
mod settings;
mod store;

pub use error::TenancyError;
pub use model::{
    DEFAULT_TENANT_ID, DEFAULT_TENANT_SLUG, MAX_SLUG_LEN, Tenant, TenantRef, TenantStatus,
};
pub use resolution::{ActingTenant, TenantClaims};
pub use settings::TenancySettings;
pub use store::{MAX_NAME_LEN, TenantAdmin, find, resolve};
