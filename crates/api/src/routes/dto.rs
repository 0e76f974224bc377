//! Response bodies shared by the account routes, with their OpenAPI schemas. Domain types stay
//! free of OpenAPI; these mirror them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sovereign_auth::{ApiKeyInfo, Role, Scope, SessionInfo, TokenPair, User};
use sovereign_tenancy::{Tenant, TenantStatus};
use utoipa::ToSchema;
use uuid::Uuid;

/// What an account may do: `user < admin < superadmin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    User,
    Admin,
    Superadmin,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
            Role::Superadmin => Self::Superadmin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::User => Self::User,
            RoleName::Admin => Self::Admin,
            RoleName::Superadmin => Self::Superadmin,
        }
    }
}

/// What an API key may do: `read` (GET) and/or `write` (everything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopeName {
    Read,
    Write,
}

impl From<Scope> for ScopeName {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Read => Self::Read,
            Scope::Write => Self::Write,
        }
    }
}

impl From<ScopeName> for Scope {
    fn from(scope: ScopeName) -> Self {
        match scope {
            ScopeName::Read => Self::Read,
            ScopeName::Write => Self::Write,
        }
    }
}

/// An account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f",
    "tenant_id": "00000000-0000-0000-0000-000000000001",
    "email": "ada@example.com",
    "full_name": "Ada Lovelace",
    "role": "user",
    "is_active": true,
    "email_verified": false,
    "created_at": "2026-11-25T10:00:00Z",
    "updated_at": "2026-11-25T10:00:00Z"
}))]
pub struct UserOut {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub full_name: String,
    pub role: RoleName,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<User> for UserOut {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            tenant_id: u.tenant_id,
            email: u.email,
            full_name: u.full_name,
            role: u.role.into(),
            is_active: u.is_active,
            email_verified: u.email_verified,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Tokens from a sign-in or a refresh.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9…",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_token": "sovrt_000000000000000000000000000000016f9c…",
    "refresh_expires_in": 604800,
    "session_id": "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f"
}))]
pub struct TokenOut {
    /// A JWT (`typ: at+jwt`); send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque and single use: exchange it at `/api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the session ends.
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

impl From<TokenPair> for TokenOut {
    fn from(p: TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            token_type: p.token_type.to_owned(),
            expires_in: p.expires_in,
            refresh_token: p.refresh_token,
            refresh_expires_in: p.refresh_expires_in,
            session_id: p.session_id,
        }
    }
}

/// A signed-in device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionOut {
    pub id: Uuid,
    pub user_agent: String,
    pub ip: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl From<SessionInfo> for SessionOut {
    fn from(s: SessionInfo) -> Self {
        Self {
            id: s.id,
            user_agent: s.user_agent,
            ip: s.ip,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            current: s.current,
        }
    }
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: Uuid,
    pub name: String,
    /// The key's first characters, to tell keys apart.
    #[schema(example = "sovak_…3f9a1c2e")]
    pub prefix: String,
    pub role: RoleName,
    pub scopes: Vec<ScopeName>,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyInfo> for ApiKeyOut {
    fn from(k: ApiKeyInfo) -> Self {
        Self {
            id: k.id,
            name: k.name,
            prefix: k.prefix,
            role: k.role.into(),
            scopes: k.scopes.into_iter().map(ScopeName::from).collect(),
            user_id: k.user_id,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// A request that was accepted; what happens next is told by mail, if anything.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    pub status: String,
    pub detail: String,
}

impl Accepted {
    pub fn new(detail: &str) -> Self {
        Self {
            status: "accepted".to_owned(),
            detail: detail.to_owned(),
        }
    }
}

/// A tenant, as its administrators see it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TenantOut {
    pub id: Uuid,
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corp")]
    pub name: String,
    /// `active` or `suspended`.
    #[schema(example = "active")]
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantOut {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id,
            slug: t.slug,
            name: t.name,
            status: match t.status {
                TenantStatus::Active => "active",
                TenantStatus::Suspended => "suspended",
            }
            .to_owned(),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// One page of accounts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserOut>,
    /// Matching accounts in all pages.
    pub total: i64,
    pub page: u32,
    pub limit: u32,
}
