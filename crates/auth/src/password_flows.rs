//! Password flows: changing the password with the current one, forgetting it (a mailed reset
//! link) and resetting it, and the check and hash every new password goes through.

use diesel::prelude::*;
use secrecy::SecretString;
use serde_json::json;
use sovereign_db::schema::{action_tokens, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType};
use sovereign_tenancy::TenantRef;
use uuid::Uuid;

use crate::accounts::normalize_email;
use crate::action_tokens::{Purpose, Redeemable, consume_action_token, insert_action_token};
use crate::audit;
use crate::mailer::Email;
use crate::model::Principal;
use crate::password::context_words;
use crate::revocation::Revocation;
use crate::sessions::{RevokeWhere, revoke_sessions};
use crate::{Accounts, AuthError};

impl Accounts {
    /// Whether `password` is the account's current password (hashed off the async workers).
    pub(crate) async fn password_matches(
        &self,
        tenant: Uuid,
        user: Uuid,
        password: &SecretString,
    ) -> Result<bool, AuthError> {
        // An account made through a provider has no password: nothing matches.
        let stored: Option<String> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(user)
                        .select(users::password_hash)
                        .first(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        self.inner.hasher.verify(password, stored.as_deref()).await
    }

    /// Changes the password, given the current one, and signs out every other session.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.throttle("password", &user.to_string()).await?;
        if !self.password_matches(tenant, user, current).await? {
            tracing::warn!(security_event = "password_change_refused", user_id = %user, "wrong current password");
            return Err(AuthError::WrongPassword);
        }
        let hash = self
            .hash_new(tenant, new, "new_password", Some(&principal.user.email))
            .await?;
        let by = audit::actor(principal);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    set_password(conn, user, &hash).await?;
                    revoke_sessions(
                        conn,
                        RevokeWhere::OtherSessions {
                            user,
                            keep: session,
                        },
                        "password_changed",
                    )
                    .await?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::PasswordChanged,
                        by,
                        audit::user(user),
                        json!({ "reset": false }),
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "password_changed", user_id = %user, "password changed; other sessions revoked");
        self.announce(Revocation::User(user)).await;
        Ok(())
    }

    /// Starts a password reset: mails a single-use link if the address has an active account.
    /// Returns at once, before any lookup, so the answer and its timing are the same either way.
    pub async fn forgot_password(&self, tenant: Uuid, email: &str) -> Result<(), AuthError> {
        // A malformed address is refused (that reveals nothing about accounts).
        let email = normalize_email(email)?;
        self.throttle("forgot", &format!("{tenant}:{email}"))
            .await?;
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(tenant, email).await {
                tracing::error!(error = %e, "password reset not started");
            }
        });
        Ok(())
    }

    async fn send_reset(&self, tenant: Uuid, email: String) -> Result<(), AuthError> {
        let ttl = self.inner.settings.password_reset_ttl;
        let lookup = email.clone();
        let token = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let user: Option<Uuid> = users::table
                        .filter(users::email.eq(lookup))
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select(users::id)
                        .first(conn)
                        .await
                        .optional()?;
                    match user {
                        Some(user) => Ok::<_, AuthError>(Some(
                            insert_action_token(conn, tenant, user, Purpose::PasswordReset, ttl)
                                .await?,
                        )),
                        None => Ok(None),
                    }
                }
                .scope_boxed()
            })
            .await?;
        if let Some(token) = token {
            self.send_later(Email {
                to: email,
                subject: "Reset your password".to_owned(),
                body: format!(
                    "Someone asked to reset the password of this account. To choose a new one, open:\n\n{}\n\nThe link works once and expires in {} minutes. If you did not ask, ignore this message.\n",
                    self.link("reset-password", &token),
                    ttl.as_secs() / 60
                ),
            });
        }
        Ok(())
    }

    /// Sets a new password with a reset token, signs out every session, and marks the address
    /// verified (the mail was received).
    pub async fn reset_password(&self, token: &str, new: &SecretString) -> Result<(), AuthError> {
        let Redeemable {
            tenant,
            digest,
            user,
        } = self.redeemable(token, Purpose::PasswordReset).await?;
        self.throttle("reset", &user.to_string()).await?;
        let email = self.email_of(tenant, user).await?;
        let hash = self
            .hash_new(tenant, new, "new_password", Some(&email))
            .await?;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    consume_action_token(conn, digest, Purpose::PasswordReset).await?;
                    set_password(conn, user, &hash).await?;
                    diesel::update(users::table.find(user))
                        .set(users::email_verified.eq(true))
                        .execute(conn)
                        .await?;
                    // Other reset links die with this one.
                    diesel::update(action_tokens::table)
                        .filter(action_tokens::user_id.eq(user))
                        .filter(action_tokens::purpose.eq(Purpose::PasswordReset.as_str()))
                        .filter(action_tokens::used_at.is_null())
                        .set(action_tokens::used_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    revoke_sessions(conn, RevokeWhere::User(user), "password_reset").await?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::PasswordChanged,
                        Actor::User { id: user },
                        audit::user(user),
                        json!({ "reset": true }),
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "password_reset", user_id = %user, "password reset; all sessions revoked");
        self.announce(Revocation::User(user)).await;
        Ok(())
    }

    /// Checks a new password and hashes it, on the hashing pool, against the words the user's
    /// context makes easy to guess: the address, and the tenant's name and slug.
    pub(crate) async fn hash_new(
        &self,
        tenant: Uuid,
        password: &SecretString,
        field: &'static str,
        email: Option<&str>,
    ) -> Result<String, AuthError> {
        let tenant = sovereign_tenancy::find(self.db(), &TenantRef::Id(tenant)).await?;
        let names: Vec<&str> = tenant
            .iter()
            .flat_map(|t| [t.name.as_str(), t.slug.as_str()])
            .collect();
        let words = context_words(email, &names);
        self.inner
            .hasher
            .hash_new(password, self.inner.policy, field, words)
            .await
    }

    /// A user's address.
    async fn email_of(&self, tenant: Uuid, user: Uuid) -> Result<String, AuthError> {
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(user)
                        .select(users::email)
                        .first(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await
    }
}

async fn set_password(
    conn: &mut sovereign_db::AsyncPgConnection,
    user: Uuid,
    hash: &str,
) -> Result<(), AuthError> {
    let updated = diesel::update(users::table.find(user))
        .filter(users::deleted_at.is_null())
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(AuthError::InvalidToken("account gone"));
    }
    Ok(())
}
