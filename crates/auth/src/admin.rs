//! User administration within a tenant, and the account's own profile.

use diesel::pg::Pg;
use diesel::prelude::*;
use serde_json::json;
use sovereign_core::pagination::{Page, PageRequest};
use sovereign_db::schema::users;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::EventType;
use uuid::Uuid;

use crate::accounts::{normalize_email, normalize_name};
use crate::audit;
use crate::keys::revoke_keys_of;
use crate::model::{Principal, Role, User, UserRow};
use crate::revocation::Revocation;
use crate::sessions::{RevokeWhere, revoke_sessions};
use crate::{Accounts, AuthError};

/// Orders a user list may be sorted by (an allow-list; nothing else reaches SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserSort {
    #[default]
    CreatedAsc,
    CreatedDesc,
    EmailAsc,
    EmailDesc,
    NameAsc,
    NameDesc,
}

impl UserSort {
    /// The accepted spellings.
    pub const ACCEPTED: &'static str =
        "created_at, -created_at, email, -email, full_name, -full_name";

    pub fn parse(text: &str) -> Result<Self, AuthError> {
        Ok(match text {
            "created_at" => Self::CreatedAsc,
            "-created_at" => Self::CreatedDesc,
            "email" => Self::EmailAsc,
            "-email" => Self::EmailDesc,
            "full_name" => Self::NameAsc,
            "-full_name" => Self::NameDesc,
            _ => {
                return Err(AuthError::invalid(
                    "sort",
                    "unknown_sort",
                    format!("must be one of {}", Self::ACCEPTED),
                ));
            }
        })
    }
}

/// Filters and paging for [`Accounts::list_users`].
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub page: PageRequest,
    /// Matches anywhere in the email address or the full name, case-insensitively. `%`, `_`
    /// and `\` match themselves.
    pub search: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
    pub sort: UserSort,
}

/// Changes an administrator may make to an account's profile; a new address is unverified.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserUpdate {
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: Option<String>,
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    )]
    pub full_name: Option<String>,
}

/// `text` as a LIKE pattern matching it literally, anywhere.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn filtered(query: &UserQuery) -> users::BoxedQuery<'static, Pg> {
    let mut q = users::table
        .filter(users::deleted_at.is_null())
        .into_boxed();
    if let Some(search) = query
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let pattern = contains_pattern(search);
        q = q.filter(
            users::email
                .ilike(pattern.clone())
                .escape('\\')
                .or(users::full_name.ilike(pattern).escape('\\')),
        );
    }
    if let Some(role) = query.role {
        q = q.filter(users::role.eq(role.as_str()));
    }
    if let Some(active) = query.active {
        q = q.filter(users::is_active.eq(active));
    }
    q
}

impl Accounts {
    /// A page of the tenant's accounts (deleted ones excluded).
    pub async fn list_users(
        &self,
        tenant: Uuid,
        query: UserQuery,
    ) -> Result<Page<User>, AuthError> {
        let page = query.page;
        let (rows, total) = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let total: i64 = filtered(&query).count().get_result(conn).await?;
                    let q = filtered(&query);
                    let q = match query.sort {
                        UserSort::CreatedAsc => q.order((users::created_at.asc(), users::id.asc())),
                        UserSort::CreatedDesc => {
                            q.order((users::created_at.desc(), users::id.desc()))
                        }
                        UserSort::EmailAsc => q.order(users::email.asc()),
                        UserSort::EmailDesc => q.order(users::email.desc()),
                        UserSort::NameAsc => q.order((users::full_name.asc(), users::id.asc())),
                        UserSort::NameDesc => q.order((users::full_name.desc(), users::id.desc())),
                    };
                    let rows: Vec<UserRow> = q
                        .select(UserRow::as_select())
                        .limit(i64::from(page.limit))
                        .offset(page.offset())
                        .load(conn)
                        .await?;
                    Ok::<_, AuthError>((rows, total))
                }
                .scope_boxed()
            })
            .await?;
        Ok(Page {
            items: rows
                .into_iter()
                .map(User::try_from)
                .collect::<Result<_, _>>()?,
            total,
            page: page.page,
            limit: page.limit,
        })
    }

    /// One live account of the tenant; another tenant's is simply not found.
    pub async fn get_user(&self, tenant: Uuid, id: Uuid) -> Result<User, AuthError> {
        let row = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(id)
                        .filter(users::deleted_at.is_null())
                        .select(UserRow::as_select())
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        row.map(User::try_from)
            .transpose()?
            .ok_or(AuthError::NotFound("user"))
    }

    /// The target, after checking `actor` may manage it (and is not acting on itself when
    /// `self_forbidden` names the action).
    async fn managed(
        &self,
        actor: &Principal,
        tenant: Uuid,
        id: Uuid,
        self_forbidden: Option<&'static str>,
    ) -> Result<User, AuthError> {
        actor.require(Role::Admin)?;
        let target = self.get_user(tenant, id).await?;
        if let Some(action) = self_forbidden
            && target.id == actor.user.id
        {
            return Err(AuthError::SelfModification(action));
        }
        actor.may_manage(target.role)?;
        Ok(target)
    }

    /// Changes an account's address or name. A new address is unverified, and changing it
    /// needs a recent sign-in (step-up): an address is how an account is recovered.
    pub async fn update_user(
        &self,
        actor: &Principal,
        tenant: Uuid,
        id: Uuid,
        update: UserUpdate,
    ) -> Result<User, AuthError> {
        let target = self.managed(actor, tenant, id, None).await?;
        let email = update.email.as_deref().map(normalize_email).transpose()?;
        let full_name = update
            .full_name
            .as_deref()
            .map(|n| normalize_name(n, "full_name"))
            .transpose()?;
        let email_changed = email.as_ref().is_some_and(|e| *e != target.email);
        if email_changed {
            actor.require_recent()?;
        }
        let result = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let row: UserRow = diesel::update(users::table.find(id))
                        .set((
                            users::email.eq(email.unwrap_or(target.email)),
                            users::full_name.eq(full_name.unwrap_or(target.full_name)),
                            users::email_verified.eq(target.email_verified && !email_changed),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await?;
                    Ok::<_, AuthError>(row)
                }
                .scope_boxed()
            })
            .await;
        let row = match result {
            Err(AuthError::Db(e)) if e.is_unique_violation() => return Err(AuthError::EmailTaken),
            other => other?,
        };
        self.announce(Revocation::User(id)).await;
        User::try_from(row)
    }

    /// Soft-deletes an account: it disappears from lists, its sessions and API keys are
    /// revoked, and its address becomes free.
    pub async fn delete_user(
        &self,
        actor: &Principal,
        tenant: Uuid,
        id: Uuid,
    ) -> Result<(), AuthError> {
        self.managed(actor, tenant, id, Some("delete")).await?;
        let by = audit::actor(actor);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(users::table.find(id))
                        .set((
                            users::deleted_at.eq(diesel::dsl::now),
                            users::is_active.eq(false),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                    revoke_sessions(conn, RevokeWhere::User(id), "account_deleted").await?;
                    revoke_keys_of(conn, id).await?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::AccountDeleted,
                        by,
                        audit::user(id),
                        json!({}),
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "account_deleted", user_id = %id, by = %actor.user.id, "account deleted");
        self.announce(Revocation::User(id)).await;
        Ok(())
    }

    /// Activates or deactivates an account; deactivation revokes its sessions.
    pub async fn set_active(
        &self,
        actor: &Principal,
        tenant: Uuid,
        id: Uuid,
        active: bool,
    ) -> Result<User, AuthError> {
        self.managed(actor, tenant, id, Some("deactivate")).await?;
        let by = audit::actor(actor);
        let row = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let row: UserRow = diesel::update(users::table.find(id))
                        .set((
                            users::is_active.eq(active),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await?;
                    if !active {
                        revoke_sessions(conn, RevokeWhere::User(id), "account_deactivated").await?;
                    }
                    let kind = if active {
                        EventType::AccountActivated
                    } else {
                        EventType::AccountDeactivated
                    };
                    audit::record(conn, tenant, kind, by, audit::user(id), json!({})).await?;
                    Ok::<_, AuthError>(row)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "account_status", user_id = %id, active, by = %actor.user.id, "account status changed");
        self.announce(Revocation::User(id)).await;
        User::try_from(row)
    }

    /// Changes an account's role; its sessions are revoked so no token carries the old role.
    pub async fn set_role(
        &self,
        actor: &Principal,
        tenant: Uuid,
        id: Uuid,
        role: Role,
    ) -> Result<User, AuthError> {
        let target = self
            .managed(actor, tenant, id, Some("change the role of"))
            .await?;
        actor.may_grant(role)?;
        if target.role == role {
            return Ok(target);
        }
        let by = audit::actor(actor);
        let from = target.role;
        let row = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let row: UserRow = diesel::update(users::table.find(id))
                        .set((
                            users::role.eq(role.as_str()),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await?;
                    revoke_sessions(conn, RevokeWhere::User(id), "role_changed").await?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::RoleChanged,
                        by,
                        audit::user(id),
                        json!({ "from": from, "to": role }),
                    )
                    .await?;
                    Ok::<_, AuthError>(row)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "role_changed", user_id = %id, role = %role, by = %actor.user.id, "role changed; sessions revoked");
        self.announce(Revocation::User(id)).await;
        User::try_from(row)
    }

    /// Updates the caller's own profile (only its name: role, tenant, status and verification
    /// are not profile fields).
    pub async fn update_profile(
        &self,
        principal: &Principal,
        full_name: &str,
    ) -> Result<User, AuthError> {
        let full_name = normalize_name(full_name, "full_name")?;
        let id = principal.user.id;
        let row = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move {
                    diesel::update(users::table.find(id))
                        .set((
                            users::full_name.eq(full_name),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        self.announce(Revocation::User(id)).await;
        User::try_from(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_wildcards_match_themselves() {
        assert_eq!(contains_pattern("a%b_c\\d"), "%a\\%b\\_c\\\\d%");
        assert_eq!(contains_pattern("alice"), "%alice%");
    }

    #[test]
    fn sort_comes_from_an_allow_list() {
        assert_eq!(UserSort::parse("-email").ok(), Some(UserSort::EmailDesc));
        assert!(UserSort::parse("password_hash").is_err());
        assert!(UserSort::parse("email; DROP TABLE users").is_err());
    }
}
