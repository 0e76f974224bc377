//! Direct uploads and signed URLs under `/api/v1/storage`. An upload is declared (key, size,
//! type), its parts sent to the URLs it lists — presigned `PUT`s to the S3 store, or this
//! server's signed part URLs on the local disk — then completed; asking for it again lists what
//! arrived and gives fresh URLs for the rest. Signed download URLs let anyone holding one read
//! one object until it expires (for sharing, and for `<img src>`).

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::{HttpRequest, HttpResponse, delete, get, post, put, web};
use chrono::Utc;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sovereign_auth::Scope;
use sovereign_storage::{NewUpload, ObjectInfo, StorageError, Upload};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::storage::{announce_created, may_read, only_own, storage};
use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::state::AppState;

/// Longest life of a signed download URL (7 days).
const MAX_SIGNED_SECONDS: u64 = 7 * 86_400;

/// The URL base the caller reached this server by (`scheme://host`).
fn base_of(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}", info.scheme(), info.host())
}

/// `base` + `/api/v1/…/segments…` with each segment percent-encoded, and `token` as the query.
fn signed_url(base: &str, segments: &[&str], token: &str) -> Result<String, ApiError> {
    let bad_host = || {
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_host",
            "The request's Host does not make a URL to sign.",
        )
    };
    let mut url = url::Url::parse(base).map_err(|_| bad_host())?;
    url.path_segments_mut()
        .map_err(|()| bad_host())?
        .extend(segments);
    url.query_pairs_mut().append_pair("token", token);
    Ok(url.into())
}

/// Makes this server's part URLs from their tokens.
fn with_urls(mut upload: Upload, base: &str) -> Result<Upload, ApiError> {
    let id = upload.id.to_string();
    for part in &mut upload.parts {
        if let Some(token) = part.token.take() {
            let number = part.number.to_string();
            part.url = Some(signed_url(
                base,
                &["api", "v1", "storage", "uploads", &id, "parts", &number],
                &token,
            )?);
        }
    }
    Ok(upload)
}

/// The upload, if the caller may see it: its creator, or an administrator.
async fn owned_upload(state: &AppState, user: &CurrentUser, id: Uuid) -> Result<(), ApiError> {
    let owner = storage(state)?.upload_owner(user.tenant.id, id).await?;
    if only_own(user).is_none_or(|me| owner == Some(me)) {
        Ok(())
    } else {
        Err(StorageError::UploadNotFound.into())
    }
}

/// Declares a direct upload: checked against the bucket (type, size) and the quota at once;
/// the answer lists every part with the URL to `PUT` it to, valid until `expires_at`.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket")),
    request_body = NewUpload,
    responses(
        (status = 201, description = "The upload and its part URLs", body = Upload),
        (status = 403, description = "`quota_exceeded`"),
        (status = 413, description = "`object_too_large`"),
        (status = 422, description = "`content_type_not_allowed`, an invalid key or part size"),
    )
)]
#[post("/api/v1/storage/buckets/{bucket}/uploads")]
pub(super) async fn create_upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: CurrentUser,
    bucket: web::Path<String>,
    body: Json<Unchecked<NewUpload>>,
) -> Result<HttpResponse, ApiError> {
    let upload = storage(&state)?
        .create_upload(
            user.tenant.id,
            &bucket,
            body.into_inner().0,
            Some(user.principal.user.id),
        )
        .await?;
    Ok(HttpResponse::Created().json(with_urls(upload, &base_of(&req))?))
}

/// An upload: which parts arrived, and fresh URLs for the others (resume with these); its
/// expiry is renewed.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 200, description = "The upload", body = Upload),
        (status = 404, description = "`upload_not_found`"),
    )
)]
#[get("/api/v1/storage/uploads/{id}")]
pub(super) async fn get_upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<web::Json<Upload>, ApiError> {
    // It hands out URLs that write: an API key needs the write scope, as to create one.
    user.principal.require_scope(Scope::Write)?;
    owned_upload(&state, &user, *id).await?;
    let upload = storage(&state)?.upload(user.tenant.id, *id).await?;
    Ok(web::Json(with_urls(upload, &base_of(&req))?))
}

/// The token of a signed URL.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The signature the URL was given with.
    pub token: String,
}

/// Receives one part of a direct upload (the signed URL is the credential): exactly the
/// part's size, streamed.
#[utoipa::path(
    tag = "storage",
    params(
        ("id" = Uuid, Path, description = "The upload"),
        ("part" = u32, Path, description = "The part, from 1"),
        TokenQuery,
    ),
    request_body(content = super::dto::Binary, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Received"),
        (status = 403, description = "`invalid_signature` or `signed_url_expired`"),
        (status = 404, description = "`upload_not_found`"),
        (status = 413, description = "`object_too_large`: longer than the part"),
        (status = 422, description = "Shorter than the part"),
    )
)]
#[put("/api/v1/storage/uploads/{id}/parts/{part}")]
pub(super) async fn put_upload_part(
    state: web::Data<AppState>,
    path: web::Path<(Uuid, u32)>,
    query: web::Query<TokenQuery>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, part) = path.into_inner();
    storage(&state)?
        .put_part(&query.token, id, part, body.boxed_local())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Completes a direct upload once every part arrived: the object appears (replacing one at its
/// key, unless the upload was create-only), checked and counted like any write.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 201, description = "The object", body = ObjectInfo),
        (status = 404, description = "`upload_not_found`"),
        (status = 409, description = "`upload_incomplete` (which parts), `upload_completing` (another completion runs) or `object_exists`"),
    )
)]
#[post("/api/v1/storage/uploads/{id}/complete")]
pub(super) async fn complete_upload(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    owned_upload(&state, &user, *id).await?;
    let only_owner = only_own(&user);
    let (bucket, info) = storage(&state)?
        .complete_upload(user.tenant.id, *id, only_owner)
        .await?;
    announce_created(&state, user.tenant.id, &bucket, &info).await;
    Ok(HttpResponse::Created().json(info))
}

/// Abandons a direct upload: its parts are removed.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The upload")),
    responses(
        (status = 204, description = "Aborted"),
        (status = 404, description = "`upload_not_found`"),
    )
)]
#[delete("/api/v1/storage/uploads/{id}")]
pub(super) async fn abort_upload(
    state: web::Data<AppState>,
    user: CurrentUser,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    owned_upload(&state, &user, *id).await?;
    storage(&state)?.abort_upload(user.tenant.id, *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A signed download URL to make.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"key": "reports/q3.pdf", "expires_in": 300}))]
pub struct NewSignedUrl {
    pub key: String,
    /// Seconds it stays valid: 1 to 604800 (7 days); default 300.
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A signed download URL.
#[derive(Serialize, ToSchema)]
pub struct SignedUrl {
    /// `GET` it without credentials (in an `<img src>`, a link) until `expires_at`.
    pub url: String,
    pub expires_at: chrono::DateTime<Utc>,
}

/// Signs a download URL for an object the caller may read.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket")),
    request_body = NewSignedUrl,
    responses(
        (status = 201, description = "The URL", body = SignedUrl),
        (status = 404, description = "`object_not_found` or `bucket_not_found`"),
    )
)]
#[post("/api/v1/storage/buckets/{bucket}/signed-urls")]
pub(super) async fn sign_url(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: CurrentUser,
    bucket: web::Path<String>,
    body: Json<Unchecked<NewSignedUrl>>,
) -> Result<HttpResponse, ApiError> {
    let NewSignedUrl { key, expires_in } = body.into_inner().0;
    let seconds = expires_in.unwrap_or(300);
    if !(1..=MAX_SIGNED_SECONDS).contains(&seconds) {
        return Err(StorageError::invalid(
            "expires_in",
            "out_of_range",
            format!("must be 1 to {MAX_SIGNED_SECONDS} seconds"),
        )
        .into());
    }
    let store = storage(&state)?;
    let (found, info) = may_read(store, &user, &bucket, &key).await?;
    let expires_at = Utc::now() + chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(300));
    let token = store
        .sign_read(user.tenant.id, &found.name, &info.key, expires_at)
        .await?;
    let mut segments = vec!["api", "v1", "storage", "buckets", &found.name, "objects"];
    segments.extend(info.key.split('/'));
    let url = signed_url(&base_of(&req), &segments, &token)?;
    Ok(HttpResponse::Created().json(SignedUrl { url, expires_at }))
}
