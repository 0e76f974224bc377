//! `/api/v1/api-keys`: long-lived credentials for programs.

use actix_web::{HttpResponse, delete, get, post, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sovereign_auth::NewApiKey;
use utoipa::ToSchema;
use uuid::Uuid;
use validator::Validate;

use crate::auth::CurrentUser;
use crate::error::{ApiError, Problem};
use crate::extract::Json;
use crate::routes::dto::{ApiKeyOut, RoleName, ScopeName};
use crate::state::AppState;

/// A key to create.
#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "nightly export", "scopes": ["read"], "expires_at": "2027-06-01T00:00:00Z"}))]
pub struct CreateApiKey {
    #[validate(length(min = 1, max = 100))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*\\S[^\\u0000-\\u001f\\u007f-\\u009f]*$"
    )]
    pub name: String,
    /// Defaults to the caller's role; may not exceed it.
    pub role: Option<RoleName>,
    /// Defaults to `["read", "write"]`; repeats count once.
    #[validate(length(min = 1, max = 10))]
    #[schema(min_items = 1, max_items = 10)]
    pub scopes: Option<Vec<ScopeName>>,
    /// When the key stops working; at most 10 years away. Never, if absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A created key. `key` is shown this once and cannot be recovered.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKeyOut {
    #[serde(flatten)]
    pub info: ApiKeyOut,
    /// Send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`; never in a URL.
    #[schema(
        example = "sovak_00000000000000000000000000000001_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
    )]
    pub key: String,
}

/// Creates an API key acting as the caller, with a role no higher than the caller's. Needs a
/// signed-in session (a key cannot create keys).
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = CreateApiKey,
    responses(
        (status = 201, description = "Created; the secret is in `key`", body = CreatedApiKeyOut),
        (status = 403, description = "`forbidden` (role above the caller's) or `session_required`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/api-keys")]
pub(super) async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<CreateApiKey>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let created = state
        .accounts
        .create_api_key(
            &user.principal,
            NewApiKey {
                name: body.name,
                role: body.role.map(Into::into),
                scopes: body.scopes.map(|s| s.into_iter().map(Into::into).collect()),
                expires_at: body.expires_at,
            },
        )
        .await?;
    Ok(HttpResponse::Created().json(CreatedApiKeyOut {
        info: created.info.into(),
        key: created.key,
    }))
}

/// The caller's API keys, newest first (revoked ones included, with `revoked_at`).
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "Keys", body = Vec<ApiKeyOut>))
)]
#[get("/api/v1/api-keys")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Vec<ApiKeyOut>>, ApiError> {
    let keys = state.accounts.list_api_keys(&user.principal).await?;
    Ok(web::Json(keys.into_iter().map(ApiKeyOut::from).collect()))
}

/// Revokes a key: one's own, or (administrators) any key of the tenant up to their role.
#[utoipa::path(
    tag = "api-keys",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api/v1/api-keys/{id}")]
pub(super) async fn revoke(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    state
        .accounts
        .revoke_api_key(&user.principal, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
