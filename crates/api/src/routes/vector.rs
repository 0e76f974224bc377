//! `/api/v1/vector`: collections, points, search and recommendations (sovereign-vector).
//!
//! Every user of a tenant reads and searches its collections; administrators create, fill,
//! index and delete them. API keys need the `read` scope for reads (search and recommend
//! included, although they are POSTs) and `write` for changes.

#![expect(
    unused_qualifications,
    reason = "utoipa's actix extras spell out the path of a documented query type"
)]

use actix_web::web::Query;
use actix_web::{HttpResponse, delete, get, post, put, web};
use serde::{Deserialize, Serialize};
use sovereign_auth::Role;
use sovereign_vector::{
    Affected, Collection, IndexRequest, NewCollection, PayloadUpdate, Point, PointInput,
    PointSelector, RecommendRequest, ScoredPoint, SearchRequest, Vectors,
};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{CurrentUser, Reader};
use crate::error::ApiError;
use crate::extract::{BulkJson, Json, Unchecked};
use crate::state::AppState;

fn vectors(state: &AppState) -> Result<&Vectors, ApiError> {
    state.vectors.as_ref().ok_or_else(|| {
        ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "feature_disabled",
            "Vector search is not enabled on this server.",
        )
        .with_suggestion("set ENABLE_VECTOR=true")
    })
}

/// Points to insert or replace.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"points": [
    {"id": "doc-1", "vector": [0.1, 0.2, 0.3], "payload": {"category": "news", "year": 2024}},
    {"id": "doc-2", "text": "Text is embedded by the server's embedder", "payload": {"category": "blog"}}
]}))]
#[serde(deny_unknown_fields)]
pub struct UpsertPoints {
    /// 1 to `VECTOR_MAX_BATCH` (1,000) points, stored in one transaction: all or none.
    pub points: Vec<PointInput>,
}

/// The collections of the caller's tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionList {
    pub collections: Vec<Collection>,
}

/// Search results, closest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<ScoredPoint>,
}

/// Points found by id, in the order asked; missing ids are left out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PointList {
    pub points: Vec<Point>,
}

/// Which points to read.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PointsQuery {
    /// Comma-separated ids, each of 1–128 printable characters (at most 1,000; ids containing
    /// commas cannot be read this way).
    #[param(
        pattern = r"^[^,\u0000-\u001f\u007f-\u009f]{1,128}(,[^,\u0000-\u001f\u007f-\u009f]{1,128}){0,999}$"
    )]
    pub ids: String,
    /// Include payloads (default true).
    pub with_payload: Option<bool>,
    /// Include vectors (default false).
    pub with_vector: Option<bool>,
}

/// Whether to wait for an index build.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct IndexQuery {
    /// Answer when the index is built (200) instead of at once (202).
    pub wait: Option<bool>,
}

/// The collections of the caller's tenant, by name.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The collections", body = CollectionList),
        (status = 401, description = "`not_authenticated`"),
    )
)]
#[get("/api/v1/vector/collections")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
) -> Result<web::Json<CollectionList>, ApiError> {
    let collections = vectors(&state)?.list_collections(user.tenant.id).await?;
    Ok(web::Json(CollectionList { collections }))
}

/// Creates a collection (administrators). Its HNSW index is created with it unless
/// `defer_index` asks to build it after a bulk load.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    request_body = NewCollection,
    responses(
        (status = 201, description = "Created", body = Collection),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 409, description = "`collection_exists`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[post("/api/v1/vector/collections")]
pub(super) async fn create(
    state: web::Data<AppState>,
    user: CurrentUser,
    body: Json<Unchecked<NewCollection>>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    let collection = vectors(&state)?
        .create_collection(user.tenant.id, &body.into_inner().0)
        .await?;
    Ok(HttpResponse::Created().json(collection))
}

/// One collection: its parameters, index state, indexed payload keys and point count.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    responses(
        (status = 200, description = "The collection", body = Collection),
        (status = 404, description = "`collection_not_found`"),
    )
)]
#[get("/api/v1/vector/collections/{name}")]
pub(super) async fn get_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
) -> Result<web::Json<Collection>, ApiError> {
    Ok(web::Json(
        vectors(&state)?.collection(user.tenant.id, &name).await?,
    ))
}

/// Deletes a collection and its points (administrators).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
    )
)]
#[delete("/api/v1/vector/collections/{name}")]
pub(super) async fn delete_one(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    vectors(&state)?
        .delete_collection(user.tenant.id, &name)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Builds the HNSW index, or indexes a payload key so filters can use it (administrators).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name"), IndexQuery),
    request_body = IndexRequest,
    responses(
        (status = 200, description = "Built (`wait=true`)", body = Collection),
        (status = 202, description = "Building; `index` reads `building` until done", body = Collection),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed`: a malformed key"),
    )
)]
#[post("/api/v1/vector/collections/{name}/index")]
pub(super) async fn index(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    query: Query<IndexQuery>,
    body: Json<Unchecked<IndexRequest>>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    let wait = query.wait.unwrap_or(false);
    let collection = vectors(&state)?
        .create_index(user.tenant.id, &name, body.into_inner().0, wait)
        .await?;
    Ok(if wait {
        HttpResponse::Ok().json(collection)
    } else {
        HttpResponse::Accepted().json(collection)
    })
}

/// Inserts or replaces points (administrators): vectors, or texts the server embeds.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = UpsertPoints,
    responses(
        (status = 200, description = "Stored", body = Affected),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
        (status = 413, description = "`payload_too_large`: over `JSON_BULK_LIMIT_BYTES`"),
        (status = 422, description = "`validation_failed`, `dimension_mismatch` or `embedder_dimension_mismatch`"),
        (status = 503, description = "`embedding_unavailable`"),
    )
)]
#[put("/api/v1/vector/collections/{name}/points")]
pub(super) async fn upsert(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    body: BulkJson<Unchecked<UpsertPoints>>,
) -> Result<web::Json<Affected>, ApiError> {
    user.require(Role::Admin)?;
    let affected = vectors(&state)?
        .upsert(user.tenant.id, &name, body.into_inner().0.points)
        .await?;
    Ok(web::Json(affected))
}

/// Reads points by id.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name"), PointsQuery),
    responses(
        (status = 200, description = "The points found", body = PointList),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[get("/api/v1/vector/collections/{name}/points")]
pub(super) async fn get_points(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    query: Query<PointsQuery>,
) -> Result<web::Json<PointList>, ApiError> {
    let ids: Vec<String> = query.ids.split(',').map(str::to_owned).collect();
    let points = vectors(&state)?
        .points(
            user.tenant.id,
            &name,
            &ids,
            query.with_payload.unwrap_or(true),
            query.with_vector.unwrap_or(false),
        )
        .await?;
    Ok(web::Json(PointList { points }))
}

/// Deletes points by id or by filter (administrators).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = PointSelector,
    responses(
        (status = 200, description = "Deleted", body = Affected),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[post("/api/v1/vector/collections/{name}/points/delete")]
pub(super) async fn delete_points(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    body: Json<Unchecked<PointSelector>>,
) -> Result<web::Json<Affected>, ApiError> {
    user.require(Role::Admin)?;
    let affected = vectors(&state)?
        .delete_points(user.tenant.id, &name, &body.into_inner().0)
        .await?;
    Ok(web::Json(affected))
}

/// Merges keys into the payloads of the selected points (administrators).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = PayloadUpdate,
    responses(
        (status = 200, description = "Changed", body = Affected),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[post("/api/v1/vector/collections/{name}/points/payload")]
pub(super) async fn merge_payload(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    body: Json<Unchecked<PayloadUpdate>>,
) -> Result<web::Json<Affected>, ApiError> {
    set_payload(state, user, name, body, false).await
}

/// Replaces the payloads of the selected points (administrators).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = PayloadUpdate,
    responses(
        (status = 200, description = "Changed", body = Affected),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed`"),
    )
)]
#[put("/api/v1/vector/collections/{name}/points/payload")]
pub(super) async fn overwrite_payload(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    body: Json<Unchecked<PayloadUpdate>>,
) -> Result<web::Json<Affected>, ApiError> {
    set_payload(state, user, name, body, true).await
}

async fn set_payload(
    state: web::Data<AppState>,
    user: CurrentUser,
    name: web::Path<String>,
    body: Json<Unchecked<PayloadUpdate>>,
    overwrite: bool,
) -> Result<web::Json<Affected>, ApiError> {
    user.require(Role::Admin)?;
    let affected = vectors(&state)?
        .set_payload(user.tenant.id, &name, body.into_inner().0, overwrite)
        .await?;
    Ok(web::Json(affected))
}

/// The nearest points to a vector, or to a text embedded by the server, optionally filtered
/// on indexed payload keys.
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Results, closest first", body = SearchResults),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed` (e.g. `key_not_indexed` in `errors`), `dimension_mismatch` or `embedder_dimension_mismatch`"),
        (status = 503, description = "`embedding_unavailable`"),
    )
)]
#[post("/api/v1/vector/collections/{name}/search")]
pub(super) async fn search(
    state: web::Data<AppState>,
    Reader(user): Reader,
    name: web::Path<String>,
    body: Json<Unchecked<SearchRequest>>,
) -> Result<web::Json<SearchResults>, ApiError> {
    let results = vectors(&state)?
        .search(user.tenant.id, &name, body.into_inner().0)
        .await?;
    Ok(web::Json(SearchResults { results }))
}

/// Points like the positive examples and unlike the negative ones (ids or vectors).
#[utoipa::path(
    tag = "vector",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The collection's name")),
    request_body = RecommendRequest,
    responses(
        (status = 200, description = "Results, closest first", body = SearchResults),
        (status = 404, description = "`collection_not_found`"),
        (status = 422, description = "`validation_failed` (e.g. `point_not_found` in `errors`)"),
    )
)]
#[post("/api/v1/vector/collections/{name}/recommend")]
pub(super) async fn recommend(
    state: web::Data<AppState>,
    Reader(user): Reader,
    name: web::Path<String>,
    body: Json<Unchecked<RecommendRequest>>,
) -> Result<web::Json<SearchResults>, ApiError> {
    let results = vectors(&state)?
        .recommend(user.tenant.id, &name, body.into_inner().0)
        .await?;
    Ok(web::Json(SearchResults { results }))
}
