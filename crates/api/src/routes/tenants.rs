//! The tenant a request acts for.

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::Problem;
use crate::tenant::CurrentTenant;

/// A tenant's public identity.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantInfo {
    #[schema(example = "0192f6a0-7c3e-7b1a-9d2f-4a5b6c7d8e9f")]
    pub id: Uuid,
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corp")]
    pub name: String,
}

/// The tenant this request acts for: from the credentials once authenticated, otherwise from
/// `X-Tenant-ID` (slug or UUID). With multi-tenancy off, always the default tenant. Lets a
/// client check a tenant exists and is active before signing in.
#[utoipa::path(
    tag = "tenancy",
    params(("X-Tenant-ID" = Option<String>, Header, description = "The tenant's slug or UUID; required before authentication when multi-tenancy is on", example = "acme")),
    responses(
        (status = 200, description = "The resolved tenant", body = TenantInfo),
        (status = 400, description = "`invalid_tenant`: X-Tenant-ID is malformed; `tenant_required`: it is missing", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`tenant_suspended`, or `tenant_mismatch`: the header names another tenant than the credentials", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`tenant_not_found`: no tenant has this slug or id", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/tenants/current")]
pub(super) async fn current(tenant: CurrentTenant) -> web::Json<TenantInfo> {
    let tenant = tenant.0;
    web::Json(TenantInfo {
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
    })
}
