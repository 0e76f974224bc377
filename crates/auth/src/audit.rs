//! Recording what happens to accounts: each change writes its event (and audit entry) in the
//! transaction that makes it, through [`sovereign_events::emit`].

use serde_json::Value;
use sovereign_db::AsyncPgConnection;
use sovereign_events::{Actor, EventType, NewEvent};
use uuid::Uuid;

use crate::AuthError;
use crate::model::{Credential, Principal};

/// Who acts, as the event records it.
pub(crate) fn actor(principal: &Principal) -> Actor {
    match &principal.credential {
        Credential::ApiKey { id, .. } => Actor::ApiKey {
            id: principal.user.id,
            key_id: *id,
        },
        Credential::Session { .. } => Actor::User {
            id: principal.user.id,
        },
    }
}

/// The subject of an event about an account.
pub(crate) fn user(id: Uuid) -> String {
    format!("user:{id}")
}

/// Writes one event in the transaction on `conn` (scoped to `tenant`).
pub(crate) async fn record(
    conn: &mut AsyncPgConnection,
    tenant: Uuid,
    kind: EventType,
    actor: Actor,
    subject: String,
    data: Value,
) -> Result<(), AuthError> {
    sovereign_events::emit(
        conn,
        tenant,
        NewEvent::new(kind, actor).subject(subject).data(data),
    )
    .await?;
    Ok(())
}

/// Writes one refusal in a transaction of its own: nothing else is written when a sign-in fails.
pub(crate) async fn record_failure(
    db: &sovereign_db::Db,
    tenant: Uuid,
    actor: Actor,
    subject: Option<String>,
    data: Value,
) -> Result<(), AuthError> {
    use sovereign_db::ScopedFutureExt;
    db.tenant_transaction(tenant, |conn| {
        async move {
            let mut event = NewEvent::new(EventType::AccountSignInFailed, actor)
                .data(data)
                .failed();
            if let Some(subject) = subject {
                event = event.subject(subject);
            }
            sovereign_events::emit(conn, tenant, event).await?;
            Ok::<_, AuthError>(())
        }
        .scope_boxed()
    })
    .await
}
