//! The tenant a request acts for.

use actix_web::{HttpResponse, delete, get, patch, post, web};
use serde::{Deserialize, Serialize};
use sovereign_auth::Role;
use sovereign_auth::revocation::Revocation;
use sovereign_tenancy::{Tenant, TenantAdmin, TenantRef, TenantStatus};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::{CurrentUser, MaybeUser};
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;
use crate::tenant::{CurrentTenant, TenantHeader};

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
    params(TenantHeader),
    responses(
        (status = 200, description = "The resolved tenant", body = TenantInfo),
        (status = 400, description = "`invalid_tenant`: X-Tenant-ID is malformed; `tenant_required`: it is missing"),
        (status = 403, description = "`tenant_suspended`, or `tenant_mismatch`: the header names another tenant than the credentials"),
        (status = 404, description = "`tenant_not_found`: no tenant has this slug or id"),
    )
)]
#[get("/api/v1/tenants/current")]
pub(super) async fn current(
    req: actix_web::HttpRequest,
    user: MaybeUser,
) -> Result<web::Json<TenantInfo>, ApiError> {
    let tenant = match user.0 {
        Some(user) => user.tenant,
        None => {
            use actix_web::FromRequest;
            CurrentTenant::extract(&req).await?.0
        }
    };
    Ok(web::Json(TenantInfo {
        id: tenant.id,
        slug: tenant.slug,
        name: tenant.name,
    }))
}

/// A tenant to create.
#[derive(serde::Deserialize, validator::Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"slug": "acme", "name": "Acme Corp"}))]
pub struct CreateTenant {
    /// A DNS label: lowercase letters, digits and inner hyphens, at most 63 characters.
    #[validate(length(max = 63))]
    #[schema(pattern = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub slug: String,
    /// 1 to 200 characters, not only spaces (leading and trailing spaces are dropped).
    #[validate(length(max = 200))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"
    )]
    pub name: String,
}

/// A tenant's new name.
#[derive(serde::Deserialize, validator::Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameTenant {
    /// 1 to 200 characters, not only spaces (leading and trailing spaces are dropped).
    #[validate(length(max = 200))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"
    )]
    pub name: String,
}

fn admin(state: &AppState, user: &CurrentUser) -> Result<TenantAdmin, ApiError> {
    user.require(Role::Superadmin)?;
    Ok(state.tenant_admin.clone())
}

fn reference(text: &str) -> Result<TenantRef, ApiError> {
    TenantRef::parse(text).map_err(|_| {
        ApiError::of_kind(
            sovereign_core::ErrorKind::NotFound,
            "tenant_not_found",
            "No tenant has this slug or id.",
        )
    })
}

/// Every tenant (superadmins).
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tenants, oldest first", body = Vec<Tenant>),
        (status = 403, description = "`forbidden`: superadministrators only"),
    )
)]
#[get("/api/v1/tenants")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<Tenant>>, ApiError> {
    let tenants = admin(&state, &user)?.list().await?;
    Ok(web::Json(tenants.into_iter().collect()))
}

/// Creates a tenant (superadmins).
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, description = "Created", body = Tenant),
        (status = 409, description = "`tenant_exists`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[post("/api/v1/tenants")]
pub(super) async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<CreateTenant>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let tenant = admin(&state, &user)?.create(&body.slug, &body.name).await?;
    tracing::info!(security_event = "tenant_created", tenant_id = %tenant.id, by = %user.principal.user.id, "tenant created");
    Ok(HttpResponse::Created().json(tenant))
}

/// One tenant, by id or slug (superadmins).
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "UUID or slug")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "`tenant_not_found`"),
    )
)]
#[get("/api/v1/tenants/{id}")]
pub(super) async fn get_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<web::Json<Tenant>, ApiError> {
    let tenant = admin(&state, &user)?.get(&reference(&id)?).await?;
    Ok(web::Json(tenant))
}

/// Renames a tenant (superadmins).
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "UUID or slug")),
    request_body = RenameTenant,
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "`tenant_not_found`"),
    )
)]
#[patch("/api/v1/tenants/{id}")]
pub(super) async fn rename(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
    body: Json<RenameTenant>,
) -> Result<web::Json<Tenant>, ApiError> {
    let tenant = admin(&state, &user)?
        .rename(&reference(&id)?, &body.into_inner().name)
        .await?;
    Ok(web::Json(tenant))
}

/// Deletes a suspended tenant and everything it owns (superadmins). The default tenant cannot
/// be deleted.
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "UUID or slug")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`tenant_not_found`"),
        (status = 422, description = "`validation_failed`: still active, or the default tenant"),
    )
)]
#[delete("/api/v1/tenants/{id}")]
pub(super) async fn delete_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tenant = admin(&state, &user)?.delete(&reference(&id)?).await?;
    tracing::info!(security_event = "tenant_deleted", tenant_id = %tenant.id, by = %user.principal.user.id, "tenant deleted");
    state.accounts.announce(Revocation::Tenant(tenant.id)).await;
    Ok(HttpResponse::NoContent().finish())
}

async fn set_status(
    state: &AppState,
    user: &CurrentUser,
    id: &str,
    status: TenantStatus,
) -> Result<web::Json<Tenant>, ApiError> {
    let admin = admin(state, user)?;
    let reference = reference(id)?;
    if status == TenantStatus::Suspended
        && admin.get(&reference).await?.id == user.principal.user.tenant_id
    {
        return Err(sovereign_auth::AuthError::SelfModification("suspend the tenant of").into());
    }
    let tenant = admin.set_status(&reference, status).await?;
    tracing::info!(security_event = "tenant_status", tenant_id = %tenant.id, status = status.as_str(), by = %user.principal.user.id, "tenant status changed");
    state.accounts.announce(Revocation::Tenant(tenant.id)).await;
    Ok(web::Json(tenant))
}

/// Suspends a tenant (superadmins): every request for it is refused at once; its data stays.
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "UUID or slug")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "`tenant_not_found`"),
        (status = 409, description = "`self_modification`: your own tenant"),
    )
)]
#[post("/api/v1/tenants/{id}/suspend")]
pub(super) async fn suspend(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<web::Json<Tenant>, ApiError> {
    set_status(&state, &user, &id, TenantStatus::Suspended).await
}

/// Reactivates a tenant (superadmins).
#[utoipa::path(
    tag = "tenancy",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "UUID or slug")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, description = "`tenant_not_found`"),
    )
)]
#[post("/api/v1/tenants/{id}/activate")]
pub(super) async fn activate(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<String>,
) -> Result<web::Json<Tenant>, ApiError> {
    set_status(&state, &user, &id, TenantStatus::Active).await
}
