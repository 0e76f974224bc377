//! Bodies that exist only for HTTP and are shared by several routes: envelopes such as a page
//! of accounts or an acknowledgement. Domain types that cross the wire (`User`, `Tenant`,
//! `TokenPair`, …) are not copied here: their crates derive their schemas behind an `openapi`
//! feature (see docs/ARCHITECTURE.md, "Wire types").

use serde::{Deserialize, Serialize};
use sovereign_auth::User;
use utoipa::ToSchema;

/// A request that was accepted; what happens next is told by mail, if anything.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: String,
    pub detail: String,
}

impl Accepted {
    pub fn new(detail: &str) -> Self {
        Self {
            status: "accepted".to_owned(),
            detail: detail.to_owned(),
        }
    }
}

/// One page of accounts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<User>,
    /// Matching accounts in all pages.
    pub total: i64,
    pub page: u32,
    pub limit: u32,
}

/// Raw bytes, streamed (`application/octet-stream`): documented as a binary string, which
/// clients send as a `Blob`.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(#[expect(dead_code, reason = "a schema only, never built")] Vec<u8>);
