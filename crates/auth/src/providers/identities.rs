//! External identities and the accounts they sign in to. The rules that keep a provider from
//! taking over an account:
//!
//! - an identity already linked signs in to its account, whatever address it asserts now;
//! - a provider a tenant administrator added never links an administrator's account by
//!   address (an administrator could point it at a server asserting anyone's address);
//! - a new identity whose address belongs to an account is linked to it only when the provider
//!   asserts the address verified *and* the account's address is verified; otherwise nothing is
//!   linked and nobody is signed in (`identity_link_required`): the owner links it from a
//!   signed-in, recently authenticated session;
//! - a new identity with an address no account has makes an account, if the provider allows
//!   sign-up and asserts the address verified;
//! - the last way to sign in (password, identity) cannot be removed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use sovereign_db::schema::{provider_links, user_identities, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType};
use uuid::Uuid;

use super::ProviderConfig;
use super::flow::LinkConfirmation;
use super::protocol::External;
use crate::accounts::{MAX_NAME_CHARS, auth_event, later};
use crate::audit;
use crate::model::{Principal, User, UserRow};
use crate::opaque::{self, Kind};
use crate::{Accounts, AuthError};

/// An external identity linked to the signed-in account.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Identity {
    pub id: Uuid,
    /// The provider's slug at the time of linking.
    pub provider: String,
    /// The address the provider asserted at the last sign-in.
    pub email: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_sign_in_at: DateTime<Utc>,
}

impl Accounts {
    /// The account `external` signs in to: found by the identity, linked by a verified address,
    /// or made — following the rules above.
    pub(crate) async fn identity_user(
        &self,
        tenant: Uuid,
        config: &ProviderConfig,
        external: &External,
    ) -> Result<User, AuthError> {
        let (provider, allow_sign_up) = (config.slug.clone(), config.allow_sign_up);
        // A provider a tenant administrator added could assert any address: it never links an
        // administrator's account by address (only the operator's `AUTH_PROVIDERS` may).
        let tenant_added = config.id.is_some();
        let external = external.clone();
        let (row, created) = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let linked: Option<Uuid> = user_identities::table
                        .filter(user_identities::issuer.eq(&external.issuer))
                        .filter(user_identities::subject.eq(&external.subject))
                        .select(user_identities::user_id)
                        .first(conn)
                        .await
                        .optional()?;
                    if let Some(user) = linked {
                        diesel::update(user_identities::table)
                            .filter(user_identities::issuer.eq(&external.issuer))
                            .filter(user_identities::subject.eq(&external.subject))
                            .set((
                                user_identities::last_sign_in_at.eq(diesel::dsl::now),
                                user_identities::email.eq(&external.email),
                            ))
                            .execute(conn)
                            .await?;
                        let row = users::table
                            .find(user)
                            .filter(users::deleted_at.is_null())
                            .select(UserRow::as_select())
                            .first(conn)
                            .await
                            .optional()?
                            .ok_or(AuthError::InvalidCredentials)?;
                        return Ok((row, false));
                    }
                    let email = external
                        .email
                        .clone()
                        .ok_or(AuthError::ProviderEmailUnverified)?;
                    let existing: Option<UserRow> = users::table
                        .filter(users::email.eq(&email))
                        .filter(users::deleted_at.is_null())
                        .select(UserRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    let (row, created) = match existing {
                        Some(row)
                            if external.email_verified
                                && row.email_verified
                                && !(tenant_added && row.role != "user") =>
                        {
                            (row, false)
                        }
                        Some(_) => return Err(AuthError::LinkRequired),
                        None if !allow_sign_up => return Err(AuthError::SignUpDisabled),
                        None if !external.email_verified => {
                            return Err(AuthError::ProviderEmailUnverified);
                        }
                        None => {
                            let name: String = external
                                .name
                                .as_deref()
                                .unwrap_or_default()
                                .chars()
                                .filter(|c| !c.is_control())
                                .take(MAX_NAME_CHARS)
                                .collect();
                            let row = diesel::insert_into(users::table)
                                .values((
                                    users::id.eq(Uuid::now_v7()),
                                    users::tenant_id.eq(tenant),
                                    users::email.eq(&email),
                                    users::full_name.eq(name.trim()),
                                    users::email_verified.eq(true),
                                ))
                                .returning(UserRow::as_returning())
                                .get_result(conn)
                                .await?;
                            audit::record(
                                conn,
                                tenant,
                                EventType::AccountRegistered,
                                Actor::User { id: row.id },
                                audit::user(row.id),
                                json!({ "method": "provider", "provider": provider }),
                            )
                            .await?;
                            (row, true)
                        }
                    };
                    insert_identity(conn, tenant, row.id, &provider, &external).await?;
                    Ok((row, created))
                }
                .scope_boxed()
            })
            .await?;
        let user = User::try_from(row)?;
        if created {
            tracing::info!(security_event = "account_created", %tenant, user_id = %user.id, provider = %config.slug, "account made by a provider sign-in");
            auth_event("provider_sign_up");
        }
        if !user.is_active {
            tracing::warn!(security_event = "login_disabled", user_id = %user.id, "provider sign-in to a disabled account");
            return Err(AuthError::AccountDisabled);
        }
        Ok(user)
    }

    /// Keeps an identity the provider vouched for, for the account that asked to link it: the
    /// code its session confirms the link with.
    pub(crate) async fn pending_link(
        &self,
        tenant: Uuid,
        user: Uuid,
        session: Uuid,
        provider: &str,
        external: &External,
    ) -> Result<String, AuthError> {
        let minted = opaque::mint(Kind::ProviderLink, tenant);
        let (digest, provider, external) = (minted.digest, provider.to_owned(), external.clone());
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(provider_links::table)
                        .filter(provider_links::expires_at.lt(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(provider_links::table)
                        .values((
                            provider_links::code_hash.eq(digest.to_vec()),
                            provider_links::tenant_id.eq(tenant),
                            provider_links::user_id.eq(user),
                            provider_links::session_id.eq(session),
                            provider_links::provider.eq(provider),
                            provider_links::issuer.eq(external.issuer),
                            provider_links::subject.eq(external.subject),
                            provider_links::email.eq(external.email),
                            provider_links::expires_at.eq(later(super::flow::LINK_TTL)),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(minted.token)
    }

    /// Confirms a link from the session that asked for it: the identity joins the account.
    /// Anyone else's session — the victim of a link sent by an attacker — is refused.
    pub async fn confirm_link(
        &self,
        principal: &Principal,
        input: &LinkConfirmation,
    ) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        let (tenant, digest) =
            opaque::parse(Kind::ProviderLink, &input.code).ok_or(AuthError::InvalidProviderCode)?;
        if tenant != principal.user.tenant_id {
            return Err(AuthError::InvalidProviderCode);
        }
        type LinkRow = (Uuid, Uuid, String, String, String, Option<String>);
        let found: Option<LinkRow> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(provider_links::table.find(digest.to_vec()))
                        .filter(provider_links::expires_at.gt(diesel::dsl::now))
                        .returning((
                            provider_links::user_id,
                            provider_links::session_id,
                            provider_links::provider,
                            provider_links::issuer,
                            provider_links::subject,
                            provider_links::email,
                        ))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((user, asked_from, provider, issuer, subject, email)) = found else {
            return Err(AuthError::InvalidProviderCode);
        };
        if user != principal.user.id || asked_from != session {
            tracing::warn!(security_event = "identity_link_refused", user_id = %principal.user.id, "a link confirmed from a session other than the one that asked for it");
            return Err(AuthError::InvalidProviderCode);
        }
        let external = External {
            issuer,
            subject,
            email,
            email_verified: false,
            name: None,
        };
        self.link_identity(tenant, user, &provider, &external).await
    }

    /// Links `external` to the account `user` (confirmed by its own session).
    async fn link_identity(
        &self,
        tenant: Uuid,
        user: Uuid,
        provider: &str,
        external: &External,
    ) -> Result<(), AuthError> {
        let provider = provider.to_owned();
        let external = external.clone();
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let linked: Option<Uuid> = user_identities::table
                        .filter(user_identities::issuer.eq(&external.issuer))
                        .filter(user_identities::subject.eq(&external.subject))
                        .select(user_identities::user_id)
                        .first(conn)
                        .await
                        .optional()?;
                    match linked {
                        Some(owner) if owner == user => Ok(()),
                        Some(_) => Err(AuthError::IdentityInUse),
                        None => insert_identity(conn, tenant, user, &provider, &external).await,
                    }
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "identity_linked", %tenant, user_id = %user, "external identity linked");
        Ok(())
    }

    /// The identities linked to the signed-in account.
    pub async fn identities(&self, principal: &Principal) -> Result<Vec<Identity>, AuthError> {
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let rows: Vec<IdentityRow> = user_identities::table
                        .filter(user_identities::user_id.eq(user))
                        .order(user_identities::created_at)
                        .select((
                            user_identities::id,
                            user_identities::provider,
                            user_identities::email,
                            user_identities::created_at,
                            user_identities::last_sign_in_at,
                        ))
                        .load(conn)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(
                            |(id, provider, email, created_at, last_sign_in_at)| Identity {
                                id,
                                provider,
                                email,
                                created_at,
                                last_sign_in_at,
                            },
                        )
                        .collect())
                }
                .scope_boxed()
            })
            .await
    }

    /// Unlinks an identity from the signed-in account (recently authenticated), unless it is
    /// the account's last way to sign in.
    pub async fn unlink_identity(&self, principal: &Principal, id: Uuid) -> Result<(), AuthError> {
        self.remove_sign_in_method(principal, SignInMethod::Identity(id))
            .await
    }

    /// Removes one of the signed-in account's ways to sign in (recently authenticated), unless
    /// it is the last: the account is locked while its ways are counted, so two concurrent
    /// removals cannot both leave it with none.
    pub(crate) async fn remove_sign_in_method(
        &self,
        principal: &Principal,
        method: SignInMethod,
    ) -> Result<(), AuthError> {
        use sovereign_db::schema::passkeys;
        principal.session_id()?;
        principal.require_recent()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let by = audit::actor(principal);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let methods = lock_sign_in_methods(conn, user).await?;
                    let provider: Option<String> = match method {
                        SignInMethod::Identity(id) => user_identities::table
                            .find(id)
                            .filter(user_identities::user_id.eq(user))
                            .select(user_identities::provider)
                            .first(conn)
                            .await
                            .optional()?,
                        SignInMethod::Passkey(_) => None,
                    };
                    let removed = match method {
                        SignInMethod::Identity(id) => {
                            diesel::delete(user_identities::table.find(id))
                                .filter(user_identities::user_id.eq(user))
                                .execute(conn)
                                .await?
                        }
                        SignInMethod::Passkey(id) => {
                            diesel::delete(passkeys::table.find(id))
                                .filter(passkeys::user_id.eq(user))
                                .execute(conn)
                                .await?
                        }
                    };
                    if removed == 0 {
                        return Err(AuthError::NotFound(method.noun()));
                    }
                    if methods <= 1 {
                        return Err(AuthError::LastSignInMethod);
                    }
                    let (kind, data) = match method {
                        SignInMethod::Identity(id) => (
                            EventType::IdentityUnlinked,
                            json!({ "provider": provider, "identity_id": id }),
                        ),
                        SignInMethod::Passkey(id) => (
                            EventType::FactorRemoved,
                            json!({ "kind": "passkey", "passkey_id": id }),
                        ),
                    };
                    audit::record(conn, tenant, kind, by, audit::user(user), data).await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "sign_in_method_removed", user_id = %user, method = method.noun(), "a way to sign in removed");
        Ok(())
    }
}

/// A way to sign in that an account can remove.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignInMethod {
    Identity(Uuid),
    Passkey(Uuid),
}

impl SignInMethod {
    fn noun(self) -> &'static str {
        match self {
            Self::Identity(_) => "identity",
            Self::Passkey(_) => "passkey",
        }
    }
}

/// id, provider, email, created_at, last_sign_in_at.
type IdentityRow = (Uuid, String, Option<String>, DateTime<Utc>, DateTime<Utc>);

/// Locks the account (two concurrent removals cannot both see another way left) and counts its
/// ways to sign in: a password, identities, passkeys.
async fn lock_sign_in_methods(
    conn: &mut sovereign_db::AsyncPgConnection,
    user: Uuid,
) -> Result<i64, AuthError> {
    use sovereign_db::schema::passkeys;
    let password: Option<String> = users::table
        .find(user)
        .select(users::password_hash)
        .for_update()
        .first(conn)
        .await?;
    let identities: i64 = user_identities::table
        .filter(user_identities::user_id.eq(user))
        .count()
        .get_result(conn)
        .await?;
    let passkeys: i64 = passkeys::table
        .filter(passkeys::user_id.eq(user))
        .count()
        .get_result(conn)
        .await?;
    Ok(i64::from(password.is_some()) + identities + passkeys)
}

async fn insert_identity(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    user: Uuid,
    provider: &str,
    external: &External,
) -> Result<(), AuthError> {
    diesel::insert_into(user_identities::table)
        .values((
            user_identities::id.eq(Uuid::now_v7()),
            user_identities::tenant_id.eq(tenant),
            user_identities::user_id.eq(user),
            user_identities::provider.eq(provider),
            user_identities::issuer.eq(&external.issuer),
            user_identities::subject.eq(&external.subject),
            user_identities::email.eq(&external.email),
        ))
        .execute(conn)
        .await?;
    audit::record(
        conn,
        tenant,
        EventType::IdentityLinked,
        Actor::User { id: user },
        audit::user(user),
        json!({ "provider": provider }),
    )
    .await
}
