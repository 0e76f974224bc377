//! The audit log: reading it (a tenant's administrators, superadmins in any tenant), exporting
//! it, and its partitions. Entries are written by the outbox's insert trigger, never here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sovereign_db::schema::audit_log;
use sovereign_db::{Db, DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::EventsError;
use crate::outbox::{Actor, Outcome};

/// Most entries one page returns.
pub const MAX_LIMIT: i64 = 1000;

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    /// The id of the event it records.
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub actor: Actor,
    /// The event type, e.g. `account.role_changed`.
    pub action: String,
    /// What was acted on: `user:<id>`, `api_key:<id>`, `<bucket>/<key>`, a collection's name.
    pub target: Option<String>,
    pub outcome: Outcome,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_log)]
struct AuditRow {
    id: Uuid,
    tenant_id: Uuid,
    created_at: DateTime<Utc>,
    actor_kind: String,
    actor_id: Option<Uuid>,
    actor_key_id: Option<Uuid>,
    action: String,
    target: Option<String>,
    outcome: String,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    data: serde_json::Value,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            tenant_id: row.tenant_id,
            created_at: row.created_at,
            actor: Actor::from_columns(&row.actor_kind, row.actor_id, row.actor_key_id),
            action: row.action,
            target: row.target,
            outcome: if row.outcome == "failure" {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            ip: row.ip,
            user_agent: row.user_agent,
            request_id: row.request_id,
            data: row.data,
        }
    }
}

/// Which entries to read. Every filter is optional; they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// The account that acted (also through its API keys).
    pub actor: Option<Uuid>,
    /// An exact type (`account.role_changed`), or an area ending in a dot (`account.`).
    pub action: Option<String>,
    pub target: Option<String>,
    /// From this time on (inclusive).
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive).
    pub until: Option<DateTime<Utc>>,
    /// The cursor a previous page returned.
    pub cursor: Option<String>,
    /// Entries per page, 1 to [`MAX_LIMIT`].
    pub limit: i64,
    /// Oldest first (exports); newest first otherwise.
    pub oldest_first: bool,
}

/// One page of entries, newest first (or oldest first for an export).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// `<created_at in microseconds>.<id>`: where a page ended.
fn cursor_of(entry: &AuditEntry) -> String {
    format!("{}.{}", entry.created_at.timestamp_micros(), entry.id)
}

fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), EventsError> {
    let bad = || EventsError::invalid("cursor", "is not a cursor this list returned");
    let (micros, id) = cursor.split_once('.').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((at, id))
}

/// A page of `tenant`'s audit log.
pub async fn read(db: &Db, tenant: Uuid, query: AuditQuery) -> Result<AuditPage, EventsError> {
    if !(1..=MAX_LIMIT).contains(&query.limit) {
        return Err(EventsError::invalid(
            "limit",
            format!("must be from 1 to {MAX_LIMIT}"),
        ));
    }
    if let Some(action) = &query.action
        && (action.is_empty() || action.len() > 100)
    {
        return Err(EventsError::invalid(
            "action",
            "must have 1 to 100 characters",
        ));
    }
    let after = query.cursor.as_deref().map(parse_cursor).transpose()?;
    let limit = query.limit;
    let rows: Vec<AuditRow> = db
        .tenant_transaction(tenant, |conn| {
            async move {
                let mut q = audit_log::table.select(AuditRow::as_select()).into_boxed();
                if let Some(actor) = query.actor {
                    q = q.filter(audit_log::actor_id.eq(actor));
                }
                if let Some(action) = query.action {
                    if let Some(area) = action.strip_suffix('.') {
                        q = q.filter(audit_log::action.like(format!("{}.%", escape_like(area))));
                    } else {
                        q = q.filter(audit_log::action.eq(action));
                    }
                }
                if let Some(target) = query.target {
                    q = q.filter(audit_log::target.eq(target));
                }
                if let Some(since) = query.since {
                    q = q.filter(audit_log::created_at.ge(since));
                }
                if let Some(until) = query.until {
                    q = q.filter(audit_log::created_at.lt(until));
                }
                if query.oldest_first {
                    if let Some((at, id)) = after {
                        q = q.filter(
                            audit_log::created_at
                                .gt(at)
                                .or(audit_log::created_at.eq(at).and(audit_log::id.gt(id))),
                        );
                    }
                    q = q.order((audit_log::created_at.asc(), audit_log::id.asc()));
                } else {
                    if let Some((at, id)) = after {
                        q = q.filter(
                            audit_log::created_at
                                .lt(at)
                                .or(audit_log::created_at.eq(at).and(audit_log::id.lt(id))),
                        );
                    }
                    q = q.order((audit_log::created_at.desc(), audit_log::id.desc()));
                }
                q.limit(limit + 1).load(conn).await.map_err(DbError::from)
            }
            .scope_boxed()
        })
        .await?;
    let mut items: Vec<AuditEntry> = rows.into_iter().map(AuditEntry::from).collect();
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let next_cursor = if more {
        items.last().map(cursor_of)
    } else {
        None
    };
    Ok(AuditPage { items, next_cursor })
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Makes the audit log's partitions for this month and the next two, if missing. The server
/// calls it at start and daily; the runtime role may (it can create partitions, never drop one).
pub async fn ensure_partitions(db: &Db) -> Result<(), EventsError> {
    let mut conn = db.conn().await?;
    diesel::sql_query("SELECT sovereign_audit_partitions(2)")
        .execute(&mut conn)
        .await
        .map_err(DbError::from)?;
    Ok(())
}

/// Drops the audit log's months that ended before `before`, and names them. Needs a connection
/// as the owner of the partitions (the schema owner): the runtime role cannot.
pub async fn prune(owner: &Db, before: DateTime<Utc>) -> Result<Vec<String>, EventsError> {
    #[derive(QueryableByName)]
    struct Dropped {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let mut conn = owner.conn().await?;
    let dropped: Vec<Dropped> = diesel::sql_query("SELECT sovereign_audit_prune($1) AS name")
        .bind::<diesel::sql_types::Timestamptz, _>(before)
        .load(&mut conn)
        .await
        .map_err(DbError::from)?;
    Ok(dropped.into_iter().map(|d| d.name).collect())
}
