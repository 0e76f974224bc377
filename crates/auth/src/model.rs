//! Users, roles, sessions and keys as the rest of the code sees them.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use sovereign_db::schema::{api_keys, sessions, users};
use uuid::Uuid;

use crate::AuthError;

/// What an account may do. Ordered: `User < Admin < Superadmin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary account of its tenant.
    User,
    /// Administers the users of its own tenant.
    Admin,
    /// Administers tenants, and may act in any tenant.
    Superadmin,
}

impl Role {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
            Self::Superadmin => "superadmin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Self, AuthError> {
        match s {
            "user" => Ok(Self::User),
            "admin" => Ok(Self::Admin),
            "superadmin" => Ok(Self::Superadmin),
            _ => Err(AuthError::invalid(
                "role",
                "unknown_role",
                "must be user, admin or superadmin",
            )),
        }
    }
}

/// An account. Handlers receive a loaded one, never a bag of claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f",
    "tenant_id": "00000000-0000-0000-0000-000000000001",
    "email": "ada@example.com",
    "full_name": "Ada Lovelace",
    "role": "user",
    "is_active": true,
    "email_verified": false,
    "created_at": "2026-11-25T10:00:00Z",
    "updated_at": "2026-11-25T10:00:00Z"
})))]
pub struct User {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: Role,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub(crate) struct UserRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: String,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = AuthError;
    fn try_from(row: UserRow) -> Result<Self, AuthError> {
        Ok(Self {
            id: row.id,
            tenant_id: row.tenant_id,
            email: row.email,
            full_name: row.full_name,
            role: row.role.parse()?,
            is_active: row.is_active,
            email_verified: row.email_verified,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// One signed-in device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    pub id: Uuid,
    pub user_agent: String,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session of the request that listed it.
    pub current: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions, check_for_backend(diesel::pg::Pg))]
pub(crate) struct SessionRow {
    pub id: Uuid,
    pub user_agent: String,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// What an API key may do besides its role's limits: `read` (GET) and/or `write` (everything
/// else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Safe methods (GET).
    Read,
    /// Everything that changes state.
    Write,
}

impl Scope {
    /// Scopes as stored in `api_keys.scopes`, unknown names dropped.
    pub(crate) fn from_stored(stored: &[Option<String>]) -> Vec<Self> {
        stored
            .iter()
            .flatten()
            .filter_map(|s| Self::parse(s))
            .collect()
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
        }
    }

    /// A stored scope name; `None` for anything unknown.
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            _ => None,
        }
    }
}

/// An API key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    #[cfg_attr(feature = "openapi", schema(example = "sovak_…3f9a1c2e"))]
    pub prefix: String,
    pub role: Role,
    pub scopes: Vec<Scope>,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys, check_for_backend(diesel::pg::Pg))]
pub(crate) struct ApiKeyRow {
    pub id: Uuid,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub scopes: Vec<Option<String>>,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiKeyRow> for ApiKeyInfo {
    type Error = AuthError;
    fn try_from(row: ApiKeyRow) -> Result<Self, AuthError> {
        Ok(Self {
            id: row.id,
            name: row.name,
            prefix: format!("sovak_…{}", row.prefix),
            role: row.role.parse()?,
            scopes: Scope::from_stored(&row.scopes),
            user_id: row.user_id,
            created_at: row.created_at,
            expires_at: row.expires_at,
            last_used_at: row.last_used_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An access token of this session.
    Session { id: Uuid },
    /// An API key.
    ApiKey { id: Uuid, scopes: Vec<Scope> },
}

/// An authenticated caller: the loaded, active account, how it signed in, and the role it acts
/// with (an API key's role may be lower than its owner's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: User,
    pub credential: Credential,
    pub role: Role,
    /// How the session was authenticated (from its access token); `None` for API keys.
    pub assurance: Option<Assurance>,
}

/// Authenticator assurance level (NIST SP 800-63B): one factor, or two.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Aal {
    Aal1,
    Aal2,
}

impl Aal {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aal1 => "aal1",
            Self::Aal2 => "aal2",
        }
    }

    pub(crate) fn parse(text: &str) -> Self {
        if text == "aal2" {
            Self::Aal2
        } else {
            Self::Aal1
        }
    }
}

/// How a session was authenticated. Set only by the server; access tokens carry it as `aal`,
/// `amr` and `auth_time`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assurance {
    pub aal: Aal,
    /// Methods used (RFC 8176 names where one exists): `pwd` password, `otp` TOTP code, `rc`
    /// recovery code.
    pub amr: Vec<String>,
    /// When the user last proved who they are (seconds since the epoch).
    pub auth_time: i64,
}

impl Assurance {
    /// A password sign-in, now.
    #[must_use]
    pub fn password() -> Self {
        Self {
            aal: Aal::Aal1,
            amr: vec!["pwd".to_owned()],
            auth_time: Utc::now().timestamp(),
        }
    }
}

impl Principal {
    /// The one role check: `Forbidden` unless the caller acts with at least `minimum`.
    pub fn require(&self, minimum: Role) -> Result<(), AuthError> {
        if self.role >= minimum {
            Ok(())
        } else {
            Err(AuthError::Forbidden(match minimum {
                Role::User => "signed-in users only",
                Role::Admin => "administrators only",
                Role::Superadmin => "superadministrators only",
            }))
        }
    }

    /// Whether an API key's scopes allow the operation (sessions have every scope).
    pub fn require_scope(&self, scope: Scope) -> Result<(), AuthError> {
        match &self.credential {
            Credential::ApiKey { scopes, .. } if !scopes.contains(&scope) => {
                Err(AuthError::Forbidden(match scope {
                    Scope::Read => "this API key lacks the read scope",
                    Scope::Write => "this API key lacks the write scope",
                }))
            }
            _ => Ok(()),
        }
    }

    /// The session, for operations only a signed-in session may perform.
    pub fn session_id(&self) -> Result<Uuid, AuthError> {
        match self.credential {
            Credential::Session { id } => Ok(id),
            Credential::ApiKey { .. } => Err(AuthError::SessionRequired),
        }
    }

    /// Whether this caller may manage an account of role `target` (activate, change, delete):
    /// administrators manage users and administrators of their tenant; only a superadmin
    /// manages a superadmin.
    pub fn may_manage(&self, target: Role) -> Result<(), AuthError> {
        self.require(Role::Admin)?;
        if target > self.role {
            return Err(AuthError::Forbidden(
                "only a superadministrator manages a superadministrator",
            ));
        }
        Ok(())
    }

    /// Whether this caller may give role `role` (to an account or a key).
    pub fn may_grant(&self, role: Role) -> Result<(), AuthError> {
        if role > self.role {
            return Err(AuthError::Forbidden(
                "a role higher than your own cannot be granted",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, credential: Credential) -> Principal {
        let now = Utc::now();
        Principal {
            user: User {
                id: Uuid::nil(),
                tenant_id: Uuid::nil(),
                email: "a@example.com".to_owned(),
                full_name: String::new(),
                role,
                is_active: true,
                email_verified: false,
                created_at: now,
                updated_at: now,
            },
            credential,
            role,
            assurance: None,
        }
    }

    #[test]
    fn roles_are_ordered_and_checked_in_one_place() {
        let session = Credential::Session { id: Uuid::nil() };
        let user = principal(Role::User, session.clone());
        let admin = principal(Role::Admin, session.clone());
        let superadmin = principal(Role::Superadmin, session);
        assert!(user.require(Role::Admin).is_err());
        assert!(admin.require(Role::Admin).is_ok());
        assert!(admin.require(Role::Superadmin).is_err());
        assert!(admin.may_manage(Role::Admin).is_ok());
        assert!(admin.may_manage(Role::Superadmin).is_err());
        assert!(user.may_manage(Role::User).is_err());
        assert!(admin.may_grant(Role::Superadmin).is_err());
        assert!(superadmin.may_grant(Role::Superadmin).is_ok());
    }

    #[test]
    fn api_key_scopes_limit_methods() {
        let key = principal(
            Role::Admin,
            Credential::ApiKey {
                id: Uuid::nil(),
                scopes: vec![Scope::Read],
            },
        );
        assert!(key.require_scope(Scope::Read).is_ok());
        assert!(key.require_scope(Scope::Write).is_err());
        assert!(matches!(key.session_id(), Err(AuthError::SessionRequired)));
    }
}
