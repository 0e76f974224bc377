//! `/api/v1/users`: the caller's own profile, and user administration within a tenant.

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::web::Query;
use actix_web::{HttpResponse, delete, get, patch, post, put, web};
use serde::Deserialize;
use sovereign_auth::{Role, User, UserQuery, UserSort, UserUpdate};
use sovereign_core::pagination::PageRequest;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::routes::dto::UserPage;
use crate::state::AppState;

/// The whole profile. Only the name is a profile field: `role`, `tenant_id`, `is_active`,
/// `email_verified` (and any other field) are refused with 422.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePut {
    #[validate(length(max = 200))]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub full_name: String,
}

/// Part of the profile; unknown fields are refused with 422.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[validate(length(max = 200))]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub full_name: Option<String>,
}

/// An account's profile, replaced by an administrator.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPut {
    #[validate(length(max = 254))]
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[validate(length(max = 200))]
    #[schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub full_name: String,
}

/// A new role.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    pub role: Role,
}

/// Paging, search, filters and order.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// From 1.
    #[param(minimum = 1, maximum = 1_000_000)]
    pub page: Option<u32>,
    /// From 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Case-insensitive substring of the address or name; `%` and `_` match themselves.
    #[param(max_length = 200)]
    pub search: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
    /// One of `created_at`, `-created_at`, `email`, `-email`, `full_name`, `-full_name`.
    #[param(pattern = "^-?(created_at|email|full_name)$")]
    pub sort: Option<String>,
}

/// The caller's account. Served at `/api/v1/users/me` and, the same handler, at
/// `/api/v1/auth/me` (see [`ME_PATHS`]).
#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The account, and how this session was authenticated", body = Me),
        (status = 401, description = "`not_authenticated` or `invalid_token`"),
    )
)]
pub(crate) async fn me(user: CurrentUser) -> web::Json<Me> {
    web::Json(Me {
        authentication: user.principal.assurance.clone(),
        user: user.principal.user,
    })
}

/// The caller's account, with how the session was authenticated.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// `aal`, `amr` and `auth_time` of the session (as its access token states them); `null`
    /// for API keys.
    pub authentication: Option<sovereign_auth::Assurance>,
}

/// Where [`me`] is served: the profile's path, and the one the auth routes have always had.
/// The OpenAPI document declares the first and copies its operation to the second.
pub(crate) const ME_PATHS: [&str; 2] = ["/api/v1/users/me", "/api/v1/auth/me"];

/// Replaces the caller's profile.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    request_body = ProfilePut,
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 422, description = "`validation_failed`, including any field that is not a profile field"),
    )
)]
#[put("/api/v1/users/me")]
pub(super) async fn put_me(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<ProfilePut>,
) -> Result<web::Json<User>, ApiError> {
    let updated = state
        .accounts
        .update_profile(&user.principal, &body.into_inner().full_name)
        .await?;
    Ok(web::Json(updated))
}

/// Changes part of the caller's profile.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    request_body = ProfilePatch,
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 422, description = "`validation_failed`, including any field that is not a profile field"),
    )
)]
#[patch("/api/v1/users/me")]
pub(super) async fn patch_me(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<ProfilePatch>,
) -> Result<web::Json<User>, ApiError> {
    match body.into_inner().full_name {
        Some(name) => Ok(web::Json(
            state
                .accounts
                .update_profile(&user.principal, &name)
                .await?,
        )),
        None => Ok(web::Json(user.principal.user)),
    }
}

/// The tenant's accounts (administrators). A superadmin may name another tenant in
/// `X-Tenant-ID`.
#[utoipa::path(
    params(ListQuery),
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of accounts", body = UserPage),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 422, description = "`validation_failed`: page, limit or sort out of range"),
    )
)]
#[get("/api/v1/users")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: Query<ListQuery>,
) -> Result<web::Json<UserPage>, ApiError> {
    user.require(Role::Admin)?;
    let query = query.into_inner();
    let page = PageRequest::new(query.page, query.limit)
        .map_err(|(field, message)| sovereign_auth::AuthError::invalid(field, "range", message))?;
    let sort = query
        .sort
        .as_deref()
        .map(UserSort::parse)
        .transpose()?
        .unwrap_or_default();
    if query
        .search
        .as_ref()
        .is_some_and(|s| s.chars().count() > 200)
    {
        return Err(sovereign_auth::AuthError::invalid(
            "search",
            "length",
            "must have at most 200 characters",
        )
        .into());
    }
    let page = state
        .accounts
        .list_users(
            user.tenant.id,
            UserQuery {
                page,
                search: query.search,
                role: query.role,
                active: query.is_active,
                sort,
            },
        )
        .await?;
    Ok(web::Json(UserPage {
        items: page.items.into_iter().collect(),
        total: page.total,
        page: page.page,
        limit: page.limit,
    }))
}

/// One account of the tenant (administrators). Another tenant's account is 404.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 403, description = "`forbidden`"),
        (status = 404, description = "`not_found`"),
    )
)]
#[get("/api/v1/users/{id}")]
pub(super) async fn get_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<web::Json<User>, ApiError> {
    user.require(Role::Admin)?;
    let found = state
        .accounts
        .get_user(user.tenant.id, id.into_inner())
        .await?;
    Ok(web::Json(found))
}

/// Replaces an account's address and name (administrators).
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    request_body = UserPut,
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`email_taken`"),
    )
)]
#[put("/api/v1/users/{id}")]
pub(super) async fn put_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: Json<UserPut>,
) -> Result<web::Json<User>, ApiError> {
    let body = body.into_inner();
    let update = UserUpdate {
        email: Some(body.email),
        full_name: Some(body.full_name),
    };
    update_one(&state, &user, id.into_inner(), update).await
}

async fn update_one(
    state: &AppState,
    user: &CurrentUser,
    id: Uuid,
    update: UserUpdate,
) -> Result<web::Json<User>, ApiError> {
    let updated = state
        .accounts
        .update_user(&user.principal, user.tenant.id, id, update)
        .await?;
    Ok(web::Json(updated))
}

/// Changes an account's address or name (administrators).
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    request_body = UserUpdate,
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`email_taken`"),
    )
)]
#[patch("/api/v1/users/{id}")]
pub(super) async fn patch_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: Json<Unchecked<UserUpdate>>,
) -> Result<web::Json<User>, ApiError> {
    update_one(&state, &user, id.into_inner(), body.into_inner().0).await
}

/// Soft-deletes an account (administrators): its sessions and API keys are revoked at once.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`self_modification`"),
    )
)]
#[delete("/api/v1/users/{id}")]
pub(super) async fn delete_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .delete_user(&user.principal, user.tenant.id, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Reactivates an account (administrators).
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "`not_found`"),
    )
)]
#[post("/api/v1/users/{id}/activate")]
pub(super) async fn activate(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<web::Json<User>, ApiError> {
    let updated = state
        .accounts
        .set_active(&user.principal, user.tenant.id, id.into_inner(), true)
        .await?;
    Ok(web::Json(updated))
}

/// Deactivates an account (administrators): it cannot sign in, and its sessions end at once.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 404, description = "`not_found`"),
        (status = 409, description = "`self_modification`"),
    )
)]
#[post("/api/v1/users/{id}/deactivate")]
pub(super) async fn deactivate(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<web::Json<User>, ApiError> {
    let updated = state
        .accounts
        .set_active(&user.principal, user.tenant.id, id.into_inner(), false)
        .await?;
    Ok(web::Json(updated))
}

/// Changes an account's role (administrators; no higher than their own). Its sessions end, so
/// no token carries the old role.
#[utoipa::path(
    tag = "users",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    request_body = RoleRequest,
    responses(
        (status = 200, description = "The account", body = User),
        (status = 403, description = "`forbidden`: a role above the caller's"),
        (status = 404, description = "`not_found`"),
    )
)]
#[put("/api/v1/users/{id}/role")]
pub(super) async fn set_role(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
    body: Json<RoleRequest>,
) -> Result<web::Json<User>, ApiError> {
    let updated = state
        .accounts
        .set_role(
            &user.principal,
            user.tenant.id,
            id.into_inner(),
            body.into_inner().role,
        )
        .await?;
    Ok(web::Json(updated))
}
