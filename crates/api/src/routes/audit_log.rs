//! The audit log: `GET /api/v1/audit`, for a tenant's administrators (a superadmin reads any
//! tenant's by naming it in `X-Tenant-ID`).

use actix_web::{get, web};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sovereign_auth::Role;
use sovereign_events::audit::{AuditPage, AuditQuery};
use utoipa::IntoParams;
use uuid::Uuid;

use crate::auth::CurrentUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Filters (combined with AND) and the page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// The account that acted (also through its API keys).
    pub actor: Option<Uuid>,
    /// An event type (`account.role_changed`), or an area ending in a dot (`account.`).
    #[param(max_length = 100)]
    pub action: Option<String>,
    /// What was acted on, exactly: `user:<id>`, `api_key:<id>`, `<bucket>/<key>`.
    #[param(max_length = 1100)]
    pub target: Option<String>,
    /// From this time on (RFC 3339, inclusive).
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Before this time (RFC 3339, exclusive).
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 100)]
    pub cursor: Option<String>,
    /// From 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The tenant's audit log, newest first: who did what to what, from where, and whether it
/// succeeded. Sign-ins, failed sign-ins, refresh-token reuse, sign-outs, password, factor,
/// identity, role and status changes, deleted accounts, API keys. Entries never hold a secret,
/// token or password, and no one can change or remove one.
#[utoipa::path(
    params(AuditParams),
    tag = "audit",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of entries", body = AuditPage),
        (status = 403, description = "`forbidden`: administrators only"),
        (status = 422, description = "`validation_failed`: a filter, the cursor or the limit is invalid"),
    )
)]
#[get("/api/v1/audit")]
pub(super) async fn list(
    state: web::Data<AppState>,
    user: CurrentUser,
    query: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    user.require(Role::Admin)?;
    let q = query.into_inner();
    let page = sovereign_events::audit::read(
        &state.db,
        user.tenant.id,
        AuditQuery {
            actor: q.actor,
            action: q.action,
            target: q.target,
            since: q.since,
            until: q.until,
            cursor: q.cursor,
            limit: q.limit.unwrap_or(50),
            oldest_first: false,
        },
    )
    .await?;
    Ok(web::Json(page))
}
