//! Writing events: [`emit`] inside the transaction of the change they announce.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sovereign_db::schema::events;
use sovereign_db::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::catalogue::EventType;
use crate::origin;

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An account, signed in with a session (or the account an event is about, when it acted
    /// without one: signing up, signing in).
    User { id: Uuid },
    /// An account acting through one of its API keys.
    ApiKey { id: Uuid, key_id: Uuid },
    /// The server itself (a sweeper, the webhook sender), or an operator at the command line.
    System,
}

impl Actor {
    pub(crate) fn columns(self) -> (&'static str, Option<Uuid>, Option<Uuid>) {
        match self {
            Self::User { id } => ("user", Some(id), None),
            Self::ApiKey { id, key_id } => ("api_key", Some(id), Some(key_id)),
            Self::System => ("system", None, None),
        }
    }

    pub(crate) fn from_columns(kind: &str, id: Option<Uuid>, key: Option<Uuid>) -> Self {
        match (kind, id, key) {
            ("user", Some(id), _) => Self::User { id },
            ("api_key", Some(id), Some(key_id)) => Self::ApiKey { id, key_id },
            _ => Self::System,
        }
    }
}

/// Whether what an event records succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// An event about to be written. Its data must never hold a secret, token or password: it is
/// shown to administrators, sent to webhooks and kept in the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    kind: String,
    audit: bool,
    actor: Actor,
    subject: Option<String>,
    outcome: Outcome,
    data: serde_json::Value,
}

impl NewEvent {
    /// An event of a catalogued type (audited when the catalogue says so).
    #[must_use]
    pub fn new(kind: EventType, actor: Actor) -> Self {
        Self {
            kind: kind.name().to_owned(),
            audit: kind.audited(),
            actor,
            subject: None,
            outcome: Outcome::Success,
            data: serde_json::Value::Object(serde_json::Map::new()),
        }
    }

    /// What the event is about: `user:<id>`, `<bucket>/<key>`, a collection's name.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The event's details (a JSON object).
    #[must_use]
    pub fn data(mut self, data: serde_json::Value) -> Self {
        self.data = data;
        self
    }

    /// Records a refusal rather than a success.
    #[must_use]
    pub fn failed(mut self) -> Self {
        self.outcome = Outcome::Failure;
        self
    }
}

/// Writes `event` for `tenant` on `conn`, which must be inside the transaction of the change the
/// event announces (scoped to `tenant`: row-level security refuses any other): it is dispatched
/// only if that transaction commits, and is then never lost. Records the current
/// [`origin`](crate::origin). Returns the event's id.
pub async fn emit(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    event: NewEvent,
) -> Result<Uuid, diesel::result::Error> {
    let origin = origin::current();
    let id = Uuid::now_v7();
    let (actor_kind, actor_id, actor_key_id) = event.actor.columns();
    diesel::insert_into(events::table)
        .values((
            events::tenant_id.eq(tenant),
            events::event_id.eq(id),
            events::type_.eq(event.kind),
            events::subject.eq(event.subject),
            events::actor_kind.eq(actor_kind),
            events::actor_id.eq(actor_id),
            events::actor_key_id.eq(actor_key_id),
            events::outcome.eq(event.outcome.as_str()),
            events::data.eq(event.data),
            events::request_id.eq(&origin.request_id),
            events::ip.eq(origin.ip.map(|ip| ip.to_string())),
            events::user_agent.eq(origin.user_agent_stored()),
            events::audit.eq(event.audit),
        ))
        .execute(conn)
        .await?;
    metrics::counter!("sovereign_events_emitted_total").increment(1);
    Ok(id)
}

/// An event as the dispatcher hands it on (and as webhooks and subscribers receive it). The
/// client's address and user agent stay in the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// The event's id (UUIDv7), the same in every place it is delivered.
    pub id: Uuid,
    /// Its place in its tenant's order of writing (increasing, not contiguous).
    pub sequence: i64,
    pub tenant_id: Uuid,
    /// `<area>.<what>`: a catalogued type, or `db.insert|update|delete` from the change feed.
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: Option<String>,
    pub actor: Actor,
    pub outcome: Outcome,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
    pub request_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// The columns [`Event`] is read from.
#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
pub(crate) struct EventRow {
    id: i64,
    tenant_id: Uuid,
    event_id: Uuid,
    #[diesel(column_name = type_)]
    kind: String,
    subject: Option<String>,
    actor_kind: String,
    actor_id: Option<Uuid>,
    actor_key_id: Option<Uuid>,
    outcome: String,
    data: serde_json::Value,
    request_id: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<EventRow> for Event {
    fn from(row: EventRow) -> Self {
        Self {
            id: row.event_id,
            sequence: row.id,
            tenant_id: row.tenant_id,
            kind: row.kind,
            subject: row.subject,
            actor: Actor::from_columns(&row.actor_kind, row.actor_id, row.actor_key_id),
            outcome: if row.outcome == "failure" {
                Outcome::Failure
            } else {
                Outcome::Success
            },
            data: row.data,
            request_id: row.request_id,
            created_at: row.created_at,
        }
    }
}
