//! `/api/v1/storage`: buckets and the objects in them. Uploads are streamed to the backend
//! (never held whole in memory), downloads streamed back with `ETag` and `Range`. User content
//! is never rendered as a page of this origin: `Content-Disposition: attachment` unless the type
//! is on a short list of inert media, `nosniff`, and a sandboxing CSP. The rules are
//! `sovereign_storage`'s; who may do what is decided here: administrators manage buckets and
//! every object, users write and read their own objects, public buckets are readable by anyone.

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::http::{StatusCode, header};
use actix_web::web::Query;
use actix_web::{FromRequest, HttpRequest, HttpResponse, delete, get, patch, post, put, web};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sovereign_auth::Role;
use sovereign_realtime::Channel;
use sovereign_storage::{
    Bucket, Destination, NewBucket, ObjectChanges, ObjectInfo, ObjectPage, Put, Storage,
    StorageError, Usage,
};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{CurrentUser, MaybeUser};
use crate::error::ApiError;
use crate::extract::{Json, Unchecked};
use crate::state::AppState;
use crate::tenant::CurrentTenant;

pub(super) fn storage(state: &AppState) -> Result<&Storage, ApiError> {
    state.storage.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "feature_disabled",
            "File storage is not enabled on this server.",
        )
        .with_suggestion("set ENABLE_FILE_UPLOADS=true")
    })
}

/// The account whose objects `user` is limited to: their own, unless an administrator (`None`:
/// every object of the tenant).
pub(super) fn only_own(user: &CurrentUser) -> Option<Uuid> {
    (user.principal.role < Role::Admin).then_some(user.principal.user.id)
}

/// A bucket and an object in it, if `user` may read it: the bucket is public, the caller an
/// administrator or the object's owner. Otherwise `object_not_found`, as if it were not there.
pub(super) async fn may_read(
    store: &Storage,
    user: &CurrentUser,
    bucket: &str,
    key: &str,
) -> Result<(Bucket, ObjectInfo), ApiError> {
    let found = store.bucket(user.tenant.id, bucket).await?;
    let info = store.head(user.tenant.id, bucket, key).await?;
    if found.public || only_own(user).is_none_or(|me| info.owner_id == Some(me)) {
        Ok((found, info))
    } else {
        Err(StorageError::ObjectNotFound.into())
    }
}

/// Publishes an object event on the tenant's `storage:<bucket>` channel (when realtime runs);
/// a failure is logged, never the request's.
async fn announce(state: &AppState, tenant: Uuid, bucket: &str, event: serde_json::Value) {
    let Some(hub) = &state.hub else { return };
    let Ok(channel) = Channel::parse(&format!("storage:{bucket}")) else {
        return;
    };
    let Ok(payload) = serde_json::value::to_raw_value(&event) else {
        return;
    };
    if let Err(e) = hub.publish_as_server(tenant, &channel, &payload).await {
        tracing::warn!(error = %e, %channel, "storage event not published");
    }
}

/// `object.created` (also for replacements, copies and completed uploads).
pub(super) async fn announce_created(
    state: &AppState,
    tenant: Uuid,
    bucket: &str,
    info: &ObjectInfo,
) {
    let event = serde_json::json!({
        "type": "object.created",
        "bucket": bucket,
        "key": info.key,
        "size": info.size,
        "content_type": info.content_type,
        "sha256": info.sha256,
        "owner_id": info.owner_id,
    });
    announce(state, tenant, bucket, event).await;
}

async fn announce_deleted(state: &AppState, tenant: Uuid, bucket: &str, key: &str) {
    let event = serde_json::json!({"type": "object.deleted", "bucket": bucket, "key": key});
    announce(state, tenant, bucket, event).await;
}

/// Types shown inline (inert media); everything else downloads as an attachment.
const INLINE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
    "video/mp4",
    "video/webm",
    "audio/mpeg",
    "audio/ogg",
    "audio/wav",
    "text/plain",
];

/// The tenant's buckets.
#[derive(Serialize, ToSchema)]
pub struct BucketList {
    pub buckets: Vec<Bucket>,
}

/// A page of a bucket's objects.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this.
    #[serde(default)]
    pub prefix: String,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<i64>,
}

/// The tenant's buckets (signed in).
#[utoipa::path(tag = "storage", security(("bearer" = [])), responses((status = 200, description = "Buckets", body = BucketList)))]
#[get("/api/v1/storage/buckets")]
pub(super) async fn list_buckets(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<BucketList>, ApiError> {
    let buckets = storage(&state)?.buckets(user.tenant.id).await?;
    Ok(web::Json(BucketList { buckets }))
}

/// Creates a bucket (administrators).
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    request_body = NewBucket,
    responses(
        (status = 201, description = "Created", body = Bucket),
        (status = 409, description = "`bucket_exists`"),
    )
)]
#[post("/api/v1/storage/buckets")]
pub(super) async fn create_bucket(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<NewBucket>>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    let bucket = storage(&state)?
        .create_bucket(user.tenant.id, &body.into_inner().0)
        .await?;
    Ok(HttpResponse::Created().json(bucket))
}

/// Deletes an empty bucket (administrators).
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`bucket_not_found`"),
        (status = 409, description = "`bucket_not_empty`"),
    )
)]
#[delete("/api/v1/storage/buckets/{bucket}")]
pub(super) async fn delete_bucket(
    state: web::Data<AppState>,
    user: CurrentUser,
    bucket: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    storage(&state)?
        .delete_bucket(user.tenant.id, &bucket)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// A bucket's objects by prefix, in key order: all of them for administrators, the caller's own
/// for users.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket"), ListQuery),
    responses((status = 200, description = "A page", body = ObjectPage))
)]
#[get("/api/v1/storage/buckets/{bucket}/objects")]
pub(super) async fn list_objects(
    state: web::Data<AppState>,
    user: CurrentUser,
    bucket: web::Path<String>,
    query: Query<ListQuery>,
) -> Result<web::Json<ObjectPage>, ApiError> {
    let owner = only_own(&user);
    let page = storage(&state)?
        .list(
            user.tenant.id,
            &bucket,
            &query.prefix,
            query.after.as_deref(),
            query.limit.unwrap_or(100),
            owner,
        )
        .await?;
    Ok(web::Json(page))
}

/// Writes an object from the request body, streamed: `Content-Type` is its type;
/// `If-None-Match: *` refuses an existing key. Users write new keys and their own objects.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket"), ("key" = String, Path, description = "The object key (may contain `/`)")),
    request_body(content = super::dto::Binary, content_type = "application/octet-stream"),
    responses(
        (status = 201, description = "Stored", body = ObjectInfo),
        (status = 403, description = "`not_owner` or `quota_exceeded`"),
        (status = 409, description = "`object_exists` (with `If-None-Match: *`)"),
        (status = 413, description = "`object_too_large`"),
        (status = 422, description = "`content_type_not_allowed` or an invalid key"),
    )
)]
#[put("/api/v1/storage/buckets/{bucket}/objects/{key:.*}")]
pub(super) async fn put_object(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (bucket, key) = path.into_inner();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let create_only = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let put = Put {
        content_type,
        owner: Some(user.principal.user.id),
        metadata: serde_json::Map::new(),
        create_only,
        only_owner: only_own(&user),
        length: req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok()),
    };
    let info = storage(&state)?
        .put(user.tenant.id, &bucket, &key, put, body.boxed_local())
        .await?;
    announce_created(&state, user.tenant.id, &bucket, &info).await;
    Ok(HttpResponse::Created().json(info))
}

/// A signed download URL's token.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// The token of a signed URL (`POST …/signed-urls`): no other credential needed.
    pub token: Option<String>,
}

/// An object's bytes (whole, or one `Range`), with `ETag`. Public buckets and signed URLs need
/// no credentials; otherwise administrators read everything, users their own objects.
#[utoipa::path(
    tag = "storage",
    params(("bucket" = String, Path, description = "The bucket"), ("key" = String, Path, description = "The object key"), ReadQuery),
    responses(
        (status = 200, description = "The bytes"),
        (status = 206, description = "The requested range"),
        (status = 304, description = "Not modified (`If-None-Match`)"),
        (status = 403, description = "`invalid_signature` or `signed_url_expired`"),
        (status = 404, description = "`object_not_found` or `bucket_not_found`"),
        (status = 416, description = "`range_not_satisfiable`"),
    )
)]
#[get("/api/v1/storage/buckets/{bucket}/objects/{key:.*}")]
pub(super) async fn get_object(
    state: web::Data<AppState>,
    req: HttpRequest,
    user: MaybeUser,
    query: Query<ReadQuery>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (bucket, key) = path.into_inner();
    let store = storage(&state)?;
    let signed = match &query.token {
        Some(token) => Some(store.verify_read(token, &bucket, &key)?),
        None => None,
    };
    // A signed URL names its tenant; otherwise the caller's, or the one the request names.
    let tenant_id = match (&signed, &user.0) {
        (Some((id, _)), _) => *id,
        (None, Some(u)) => u.tenant.id,
        (None, None) => CurrentTenant::extract(&req).await?.0.id,
    };
    let found = store.bucket(tenant_id, &bucket).await?;
    let info = store.head(tenant_id, &bucket, &key).await?;
    if signed
        .as_ref()
        .is_some_and(|(_, sha256)| *sha256 != info.sha256)
    {
        // Written again since the URL was signed: not the object it was given for.
        return Err(StorageError::ObjectNotFound.into());
    }
    let allowed = signed.is_some()
        || found.public
        || user.0.as_ref().is_some_and(|u| {
            u.principal.role >= Role::Admin || info.owner_id == Some(u.principal.user.id)
        });
    if !allowed {
        return Err(if user.0.is_none() {
            sovereign_auth::AuthError::NotAuthenticated.into()
        } else {
            StorageError::ObjectNotFound.into()
        });
    }
    let etag = format!("\"{}\"", info.sha256);
    if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag))
            .finish());
    }
    let size = u64::try_from(info.size).unwrap_or(0);
    let range = match req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
    {
        None => None,
        Some(text) => Some(parse_range(text, size).ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                "The range is not one satisfiable `bytes=` range of this object.",
            )
        })?),
    };
    let (_, stream) = store.get(tenant_id, &bucket, &key, range.clone()).await?;
    let essence = info
        .content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let disposition = if INLINE_TYPES.contains(&essence.as_str()) {
        "inline"
    } else {
        "attachment"
    };
    let mut response = match &range {
        Some(r) => {
            let mut b = HttpResponse::PartialContent();
            b.insert_header((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end.saturating_sub(1)),
            ));
            b
        }
        None => HttpResponse::Ok(),
    };
    Ok(response
        .insert_header((header::CONTENT_TYPE, info.content_type.clone()))
        .insert_header((header::ETAG, etag))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; sandbox",
        ))
        .insert_header((
            header::CACHE_CONTROL,
            if found.public && signed.is_none() {
                "public, max-age=60"
            } else {
                "private, no-cache"
            },
        ))
        .streaming(stream.map(|chunk| chunk.map_err(actix_web::error::ErrorServiceUnavailable))))
}

/// Deletes an object (administrators, or the object's owner).
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket"), ("key" = String, Path, description = "The object key")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`object_not_found`"),
    )
)]
#[delete("/api/v1/storage/buckets/{bucket}/objects/{key:.*}")]
pub(super) async fn delete_object(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (bucket, key) = path.into_inner();
    let owner = only_own(&user);
    storage(&state)?
        .delete(user.tenant.id, &bucket, &key, owner)
        .await?;
    announce_deleted(&state, user.tenant.id, &bucket, &key).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Objects deleted by prefix.
#[derive(Serialize, ToSchema)]
pub struct Deleted {
    pub deleted: u64,
}

/// Which objects to delete.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PrefixQuery {
    /// Every key starting with this (required; empty: the whole bucket, administrators only).
    pub prefix: String,
}

/// Deletes every object under a prefix: all of them for administrators, the caller's own for
/// users. One `objects.deleted` event says how many.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket"), PrefixQuery),
    responses((status = 200, description = "How many went", body = Deleted))
)]
#[delete("/api/v1/storage/buckets/{bucket}/objects")]
pub(super) async fn delete_prefix(
    state: web::Data<AppState>,
    user: CurrentUser,
    bucket: web::Path<String>,
    query: Query<PrefixQuery>,
) -> Result<web::Json<Deleted>, ApiError> {
    let owner = only_own(&user);
    if query.prefix.is_empty() && owner.is_some() {
        return Err(StorageError::invalid(
            "prefix",
            "required",
            "must not be empty: name the folder to delete",
        )
        .into());
    }
    let deleted = storage(&state)?
        .delete_prefix(user.tenant.id, &bucket, &query.prefix, owner)
        .await?;
    if deleted > 0 {
        let event = serde_json::json!({
            "type": "objects.deleted", "bucket": *bucket, "prefix": query.prefix, "count": deleted,
        });
        announce(&state, user.tenant.id, &bucket, event).await;
    }
    Ok(web::Json(Deleted { deleted }))
}

/// Changes an object's metadata or content type (administrators, or the object's owner).
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The bucket"), ("key" = String, Path, description = "The object key")),
    request_body = ObjectChanges,
    responses(
        (status = 200, description = "The object", body = ObjectInfo),
        (status = 404, description = "`object_not_found`"),
        (status = 422, description = "`content_type_not_allowed`"),
    )
)]
#[patch("/api/v1/storage/buckets/{bucket}/objects/{key:.*}")]
pub(super) async fn update_object(
    state: web::Data<AppState>,
    user: CurrentUser,
    path: web::Path<(String, String)>,
    body: Json<Unchecked<ObjectChanges>>,
) -> Result<web::Json<ObjectInfo>, ApiError> {
    let (bucket, key) = path.into_inner();
    let owner = only_own(&user);
    let info = storage(&state)?
        .update(user.tenant.id, &bucket, &key, body.into_inner().0, owner)
        .await?;
    let event = serde_json::json!({"type": "object.updated", "bucket": bucket, "key": info.key});
    announce(&state, user.tenant.id, &bucket, event).await;
    Ok(web::Json(info))
}

/// A copy or a move.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"from": "drafts/a.txt", "to": "final/a.txt"}))]
pub struct Transfer {
    /// The source key, in this bucket.
    pub from: String,
    /// The destination key.
    pub to: String,
    /// The destination bucket (default: this one).
    #[serde(default)]
    pub to_bucket: Option<String>,
    /// Refuse if the destination exists.
    #[serde(default)]
    pub create_only: bool,
}

fn destination(user: &CurrentUser, transfer: &Transfer) -> Destination {
    Destination {
        bucket: transfer.to_bucket.clone(),
        key: transfer.to.clone(),
        create_only: transfer.create_only,
        only_owner: only_own(user),
        owner: Some(user.principal.user.id),
    }
}

/// Copies an object the caller may read; the copy is the caller's. The store copies the bytes.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The source bucket")),
    request_body = Transfer,
    responses(
        (status = 201, description = "The copy", body = ObjectInfo),
        (status = 404, description = "`object_not_found` or `bucket_not_found`"),
        (status = 409, description = "`object_exists` (with `create_only`)"),
    )
)]
#[post("/api/v1/storage/buckets/{bucket}/copy")]
pub(super) async fn copy_object(
    state: web::Data<AppState>,
    user: CurrentUser,
    bucket: web::Path<String>,
    body: Json<Unchecked<Transfer>>,
) -> Result<HttpResponse, ApiError> {
    let transfer = body.into_inner().0;
    let store = storage(&state)?;
    may_read(store, &user, &bucket, &transfer.from).await?;
    let to = destination(&user, &transfer);
    let target = to.bucket.clone().unwrap_or_else(|| bucket.to_string());
    let info = store
        .copy(user.tenant.id, &bucket, &transfer.from, to)
        .await?;
    announce_created(&state, user.tenant.id, &target, &info).await;
    Ok(HttpResponse::Created().json(info))
}

/// Moves (renames) an object: administrators any, users their own. No byte is copied.
#[utoipa::path(
    tag = "storage",
    security(("bearer" = [])),
    params(("bucket" = String, Path, description = "The source bucket")),
    request_body = Transfer,
    responses(
        (status = 200, description = "The object at its new key", body = ObjectInfo),
        (status = 404, description = "`object_not_found` or `bucket_not_found`"),
        (status = 409, description = "`object_exists` (with `create_only`)"),
    )
)]
#[post("/api/v1/storage/buckets/{bucket}/move")]
pub(super) async fn move_object(
    state: web::Data<AppState>,
    user: CurrentUser,
    bucket: web::Path<String>,
    body: Json<Unchecked<Transfer>>,
) -> Result<web::Json<ObjectInfo>, ApiError> {
    let transfer = body.into_inner().0;
    let to = destination(&user, &transfer);
    let target = to.bucket.clone().unwrap_or_else(|| bucket.to_string());
    let info = storage(&state)?
        .rename(user.tenant.id, &bucket, &transfer.from, to)
        .await?;
    announce_deleted(&state, user.tenant.id, &bucket, &transfer.from).await;
    announce_created(&state, user.tenant.id, &target, &info).await;
    Ok(web::Json(info))
}

/// The tenant's storage usage and quota (administrators).
#[utoipa::path(tag = "storage", security(("bearer" = [])), responses((status = 200, description = "Usage", body = Usage)))]
#[get("/api/v1/storage/usage")]
pub(super) async fn usage(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<Usage>, ApiError> {
    user.require(Role::Admin)?;
    Ok(web::Json(storage(&state)?.usage(user.tenant.id).await?))
}

/// One `bytes=` range of an object of `size` bytes, as a half-open range; `None` when it is not
/// one satisfiable range.
fn parse_range(text: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = text.strip_prefix("bytes=")?.trim();
    if spec.contains(',') || size == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (first, "") => (first.parse().ok()?, size),
        (first, last) => {
            let (a, b): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            if b < a {
                return None;
            }
            (a, b.saturating_add(1).min(size))
        }
    };
    (start < end && start < size).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10), Some(0..5));
        assert_eq!(parse_range("bytes=6-", 10), Some(6..10));
        assert_eq!(parse_range("bytes=-3", 10), Some(7..10));
        assert_eq!(parse_range("bytes=5-100", 10), Some(5..10));
        for bad in [
            "bytes=10-",
            "bytes=4-2",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=x-1",
        ] {
            assert_eq!(parse_range(bad, 10), None, "{bad}");
        }
    }
}
