//! Who is on a connection: the tenant, the user, the role it acts with and the credential it
//! authenticated with.

use chrono::{DateTime, Utc};
use sovereign_auth::Role;
use uuid::Uuid;

/// How a connection authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialRef {
    Session(Uuid),
    ApiKey(Uuid),
}

/// Who is on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub tenant: Uuid,
    pub user: Uuid,
    /// The role the connection acts with (an API key's may be below its owner's).
    pub role: Role,
    pub credential: CredentialRef,
    /// False for an API key without the write scope: it may subscribe, not publish.
    pub can_write: bool,
    /// When the credential expires; the transport closes the connection then.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Identity {
    /// The identity of an authenticated principal acting in `tenant` (its own, or — for a
    /// superadmin — the one it named), until `expires_at`.
    #[must_use]
    pub fn of(
        principal: &sovereign_auth::Principal,
        tenant: Uuid,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            tenant,
            user: principal.user.id,
            role: principal.role,
            credential: match principal.credential {
                sovereign_auth::Credential::Session { id } => CredentialRef::Session(id),
                sovereign_auth::Credential::ApiKey { id, .. } => CredentialRef::ApiKey(id),
            },
            can_write: principal
                .require_scope(sovereign_auth::Scope::Write)
                .is_ok(),
            expires_at,
        }
    }
}
