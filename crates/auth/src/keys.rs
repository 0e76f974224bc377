//! API keys: long-lived credentials for programs, bound to a tenant, an owner and a role no
//! higher than the owner's. The secret is shown once; only its SHA-256 is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use sovereign_db::schema::{api_keys, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::EventType;
use uuid::Uuid;

use crate::audit;
use crate::model::{ApiKeyInfo, ApiKeyRow, Credential, Principal, Role, Scope, User, UserRow};
use crate::opaque::{self, Kind};
use crate::revocation::{Entry, Revocation};
use crate::{Accounts, AuthError, Authenticated};

/// Longest key lifetime.
pub const MAX_KEY_DAYS: i64 = 3650;

/// Most scopes a key to create may list (repeats included).
pub const MAX_KEY_SCOPES: usize = 10;

/// A key to create.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "nightly export", "scopes": ["read"], "expires_at": "2027-06-01T00:00:00Z"
})))]
pub struct NewApiKey {
    /// 1 to 100 printable characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 100,
            pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\u0000-\\u001f\\u007f-\\u009f\\s][^\\u0000-\\u001f\\u007f-\\u009f]*$"
        )
    )]
    pub name: String,
    /// Defaults to the creator's role; may not exceed it.
    pub role: Option<Role>,
    /// Defaults to `["read", "write"]`; repeats count once.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10))]
    pub scopes: Option<Vec<Scope>>,
    /// When the key stops working; at most 10 years away. Never, if absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A created key: its listing, and the secret, shown this once and never recoverable.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    /// Send it as `X-API-Key: <key>` or `Authorization: Bearer <key>`; never in a URL.
    #[cfg_attr(
        feature = "openapi",
        schema(
            example = "sovak_00000000000000000000000000000001_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
        )
    )]
    pub key: String,
}

/// A live key and its owner: id, role, scopes, expiry, and the owner's row.
type KeyOwnerRow = (
    Uuid,
    String,
    Vec<Option<String>>,
    Option<DateTime<Utc>>,
    UserRow,
);

impl Accounts {
    /// Creates an API key for the caller. Only a signed-in session may create keys.
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        new: NewApiKey,
    ) -> Result<CreatedApiKey, AuthError> {
        principal.session_id()?;
        // A key outlives the session: creating one is a sensitive operation.
        principal.require_recent()?;
        let name = new.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::invalid(
                "name",
                "length",
                "must have 1 to 100 printable characters",
            ));
        }
        let role = new.role.unwrap_or(principal.role);
        principal.may_grant(role)?;
        if new
            .scopes
            .as_ref()
            .is_some_and(|s| s.len() > MAX_KEY_SCOPES)
        {
            return Err(AuthError::invalid(
                "scopes",
                "length",
                format!("must list at most {MAX_KEY_SCOPES} scopes"),
            ));
        }
        let mut scopes = new
            .scopes
            .unwrap_or_else(|| vec![Scope::Read, Scope::Write]);
        scopes.sort_by_key(|s| s.as_str());
        scopes.dedup();
        if scopes.is_empty() {
            return Err(AuthError::invalid(
                "scopes",
                "empty",
                "must name at least one scope",
            ));
        }
        if let Some(at) = new.expires_at {
            let now = Utc::now();
            if at <= now || at > now + chrono::Duration::days(MAX_KEY_DAYS) {
                return Err(AuthError::invalid(
                    "expires_at",
                    "range",
                    format!("must be in the future, at most {MAX_KEY_DAYS} days away"),
                ));
            }
        }
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let minted = opaque::mint(Kind::ApiKey, tenant);
        let prefix = opaque::display_prefix(&minted.token);
        let scope_names: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
        let by = audit::actor(principal);
        let key_id = Uuid::now_v7();
        let row = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let data = json!({ "name": name, "role": role, "scopes": scope_names });
                    let row = diesel::insert_into(api_keys::table)
                        .values((
                            api_keys::id.eq(key_id),
                            api_keys::tenant_id.eq(tenant),
                            api_keys::user_id.eq(user),
                            api_keys::name.eq(name),
                            api_keys::prefix.eq(prefix),
                            api_keys::key_hash.eq(minted.digest.to_vec()),
                            api_keys::role.eq(role.as_str()),
                            api_keys::scopes.eq(scope_names),
                            api_keys::expires_at.eq(new.expires_at),
                        ))
                        .returning(ApiKeyRow::as_returning())
                        .get_result(conn)
                        .await?;
                    let subject = format!("api_key:{key_id}");
                    audit::record(conn, tenant, EventType::ApiKeyCreated, by, subject, data)
                        .await?;
                    Ok::<_, AuthError>(row)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "api_key_created", user_id = %user, role = %role, "API key created");
        Ok(CreatedApiKey {
            info: ApiKeyInfo::try_from(row)?,
            key: minted.token,
        })
    }

    /// The caller's keys, newest first, revoked ones included.
    pub async fn list_api_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyInfo>, AuthError> {
        let user = principal.user.id;
        let rows = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move {
                    api_keys::table
                        .filter(api_keys::user_id.eq(user))
                        .order(api_keys::created_at.desc())
                        .limit(1000)
                        .select(ApiKeyRow::as_select())
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        rows.into_iter().map(ApiKeyInfo::try_from).collect()
    }

    /// Revokes a key: the caller's own, or — for an administrator — any key of the tenant whose
    /// role does not exceed theirs. Anything else is not found.
    pub async fn revoke_api_key(&self, principal: &Principal, id: Uuid) -> Result<(), AuthError> {
        let (user, role) = (principal.user.id, principal.role);
        let admin = principal.require(Role::Admin).is_ok();
        let allowed: Vec<&'static str> = [Role::User, Role::Admin, Role::Superadmin]
            .into_iter()
            .filter(|r| *r <= role)
            .map(Role::as_str)
            .collect();
        let by = audit::actor(principal);
        let tenant = principal.user.tenant_id;
        let revoked = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let target = diesel::update(api_keys::table)
                        .filter(api_keys::id.eq(id))
                        .filter(api_keys::revoked_at.is_null())
                        .into_boxed();
                    let target = if admin {
                        target.filter(
                            api_keys::user_id
                                .eq(user)
                                .or(api_keys::role.eq_any(allowed)),
                        )
                    } else {
                        target.filter(api_keys::user_id.eq(user))
                    };
                    let revoked = target
                        .set(api_keys::revoked_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    if revoked > 0 {
                        let subject = format!("api_key:{id}");
                        audit::record(
                            conn,
                            tenant,
                            EventType::ApiKeyRevoked,
                            by,
                            subject,
                            json!({}),
                        )
                        .await?;
                    }
                    Ok::<_, AuthError>(revoked)
                }
                .scope_boxed()
            })
            .await?;
        if revoked == 0 {
            return Err(AuthError::NotFound("API key"));
        }
        tracing::info!(security_event = "api_key_revoked", key_id = %id, by = %user, "API key revoked");
        self.announce(Revocation::ApiKey(id)).await;
        Ok(())
    }

    pub(crate) async fn authenticate_api_key(
        &self,
        key: &str,
        remembered: bool,
    ) -> Result<Authenticated, AuthError> {
        let (tenant_id, digest) =
            opaque::parse(Kind::ApiKey, key).ok_or(AuthError::InvalidToken("not an API key"))?;
        if remembered
            && let Some(entry) = self.remembered_key(digest).await
            && entry.expires_at.is_none_or(|at| at > Utc::now())
        {
            return Ok(Authenticated {
                principal: entry.principal,
                tenant: entry.tenant,
                expires_at: entry.expires_at,
            });
        }
        let found = self
            .db()
            .tenant_transaction(tenant_id, |conn| {
                async move {
                    let found: Option<KeyOwnerRow> = api_keys::table
                        .inner_join(users::table.on(users::id.eq(api_keys::user_id)))
                        .filter(api_keys::key_hash.eq(digest.to_vec()))
                        .filter(api_keys::revoked_at.is_null())
                        .filter(
                            api_keys::expires_at
                                .is_null()
                                .or(api_keys::expires_at.gt(diesel::dsl::now)),
                        )
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select((
                            api_keys::id,
                            api_keys::role,
                            api_keys::scopes,
                            api_keys::expires_at,
                            UserRow::as_select(),
                        ))
                        .first(conn)
                        .await
                        .optional()?;
                    if let Some((id, ..)) = &found {
                        diesel::update(api_keys::table.find(*id))
                            .set(api_keys::last_used_at.eq(diesel::dsl::now))
                            .execute(conn)
                            .await?;
                    }
                    Ok::<_, AuthError>(found)
                }
                .scope_boxed()
            })
            .await?;
        let (id, key_role, scopes, expires_at, row) =
            found.ok_or(AuthError::InvalidToken("unknown, expired or revoked key"))?;
        let user = User::try_from(row)?;
        let key_role: Role = key_role.parse()?;
        let scopes = Scope::from_stored(&scopes);
        let tenant = self.active_tenant(tenant_id).await?;
        let principal = Principal {
            role: key_role.min(user.role),
            user,
            credential: Credential::ApiKey { id, scopes },
            assurance: None,
        };
        self.remember_key(
            digest,
            Entry {
                principal: principal.clone(),
                tenant: tenant.clone(),
                api_key: Some(id),
                expires_at,
            },
        )
        .await;
        Ok(Authenticated {
            principal,
            tenant,
            expires_at,
        })
    }
}

/// Revokes every API key of `user` (on deletion).
pub(crate) async fn revoke_keys_of(
    conn: &mut sovereign_db::AsyncPgConnection,
    user: Uuid,
) -> Result<(), AuthError> {
    diesel::update(api_keys::table)
        .filter(api_keys::user_id.eq(user))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}
