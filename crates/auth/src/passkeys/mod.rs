//! Passkeys (W3C WebAuthn, through `webauthn-rs`): registered from a signed-in, recently
//! authenticated session; a sign-in with one needs no address first (discoverable
//! credentials) and opens an `aal2` session, since user verification is required; they also
//! satisfy step-up. Listed, renamed, removed — never the account's last way to sign in.
//!
//! This module: the ceremonies' server-side state and registration, the list; `sign_in` the
//! sign-in and re-authentication.
//!
//! - The relying-party id and the exact origins come from the settings; `webauthn-rs` checks
//!   both, the challenge, user verification and the signature.
//! - Each ceremony's state lives server-side (`passkey_ceremonies`), keyed by a digest of the
//!   token handed to the client, and is spent by the first answer: a challenge is single use.
//! - A signature counter that does not grow (a cloned authenticator) is refused.

mod settings;
mod sign_in;

pub use settings::PasskeySettings;
pub(crate) use settings::read_passkeys;
pub(crate) use sign_in::AMR;

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;
use sovereign_db::schema::passkeys;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType};
use uuid::Uuid;
use webauthn_rs::prelude::{Passkey, RegisterPublicKeyCredential, Webauthn, WebauthnBuilder};

use crate::accounts::later;
use crate::audit;
use crate::model::Principal;
use crate::opaque::{self, Kind};
use crate::providers::SignInMethod;
use crate::{Accounts, AuthError};

/// id, name, created_at, last_used_at.
type PasskeyRow = (Uuid, String, DateTime<Utc>, Option<DateTime<Utc>>);

/// How long a ceremony waits for the authenticator.
const CEREMONY_TTL: Duration = Duration::from_secs(300);

/// A passkey of the signed-in account.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyInfo {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// What the browser needs for a ceremony: pass `options.publicKey` to
/// `PublicKeyCredential.parseCreationOptionsFromJSON` (registration) or
/// `parseRequestOptionsFromJSON` (sign-in), and send the answer back with `ceremony`.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyOptions {
    /// Single use; send it back with the authenticator's answer within `expires_in` seconds.
    pub ceremony: String,
    pub expires_in: u64,
    /// `{"publicKey": …}`, WebAuthn's options in their JSON form.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub options: serde_json::Value,
}

/// The authenticator's answer to a ceremony.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasskeyAnswer {
    pub ceremony: String,
    /// The credential as `PublicKeyCredential.toJSON()` gives it.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub credential: serde_json::Value,
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Register,
    SignIn,
    Reauthenticate,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SignIn => "sign_in",
            Self::Reauthenticate => "reauthenticate",
        }
    }
}

/// A ceremony taken back from the store.
pub(crate) struct Ceremony {
    pub tenant: Uuid,
    pub user: Option<Uuid>,
    pub session: Option<Uuid>,
    pub name: Option<String>,
    pub state: serde_json::Value,
}

fn invalid(why: impl std::fmt::Display) -> AuthError {
    AuthError::InvalidPasskey(why.to_string())
}

fn checked_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    let name = if name.is_empty() { "Passkey" } else { name };
    if name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            "name",
            "length",
            "must have 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

impl Accounts {
    /// The relying party as the settings describe it.
    pub(crate) fn webauthn(&self) -> Result<Webauthn, AuthError> {
        let settings = &self.inner.settings.passkeys;
        let (first, rest) = settings
            .origins
            .split_first()
            .ok_or_else(|| AuthError::Config("no WEBAUTHN_ORIGINS".to_owned()))?;
        let mut builder = WebauthnBuilder::new(&settings.rp_id, first)
            .map_err(|e| AuthError::Config(format!("passkeys: {e}")))?
            .rp_name(&settings.rp_name);
        for origin in rest {
            builder = builder.append_allowed_origin(origin);
        }
        builder
            .build()
            .map_err(|e| AuthError::Config(format!("passkeys: {e}")))
    }

    /// Keeps a ceremony's state server-side: the token the client sends back.
    pub(crate) async fn store_ceremony(
        &self,
        tenant: Uuid,
        purpose: Purpose,
        principal: Option<&Principal>,
        name: Option<String>,
        state: serde_json::Value,
    ) -> Result<String, AuthError> {
        use sovereign_db::schema::passkey_ceremonies as c;
        let minted = opaque::mint(Kind::PasskeyCeremony, tenant);
        let digest = minted.digest;
        let user = principal.map(|p| p.user.id);
        let session = principal.and_then(|p| p.session_id().ok());
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(c::table)
                        .filter(c::expires_at.lt(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(c::table)
                        .values((
                            c::token_hash.eq(digest.to_vec()),
                            c::tenant_id.eq(tenant),
                            c::purpose.eq(purpose.as_str()),
                            c::user_id.eq(user),
                            c::session_id.eq(session),
                            c::name.eq(name),
                            c::state.eq(state),
                            c::expires_at.eq(later(CEREMONY_TTL)),
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

    /// Spends a ceremony of `purpose`: unknown, spent, expired or another purpose's is refused.
    pub(crate) async fn take_ceremony(
        &self,
        token: &str,
        purpose: Purpose,
    ) -> Result<Ceremony, AuthError> {
        use sovereign_db::schema::passkey_ceremonies as c;
        let (tenant, digest) = opaque::parse(Kind::PasskeyCeremony, token)
            .ok_or_else(|| invalid("unknown ceremony"))?;
        type Row = (
            String,
            Option<Uuid>,
            Option<Uuid>,
            Option<String>,
            serde_json::Value,
            DateTime<Utc>,
        );
        let row: Option<Row> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(c::table.find(digest.to_vec()))
                        .returning((
                            c::purpose,
                            c::user_id,
                            c::session_id,
                            c::name,
                            c::state,
                            c::expires_at,
                        ))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((stored, user, session, name, state, expires_at)) = row else {
            return Err(invalid("unknown or spent ceremony"));
        };
        if stored != purpose.as_str() || expires_at <= Utc::now() {
            return Err(invalid("expired ceremony, or one of another kind"));
        }
        Ok(Ceremony {
            tenant,
            user,
            session,
            name,
            state,
        })
    }

    /// Starts registering a passkey for the signed-in account (recently authenticated).
    pub async fn start_passkey_registration(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<PasskeyOptions, AuthError> {
        principal.session_id()?;
        principal.require_recent()?;
        let name = checked_name(name)?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let existing = self.user_passkeys(tenant, user).await?;
        let exclude = existing.iter().map(|(_, p)| p.cred_id().clone()).collect();
        let (creation, state) = self
            .webauthn()?
            .start_passkey_registration(
                user,
                &principal.user.email,
                if principal.user.full_name.is_empty() {
                    &principal.user.email
                } else {
                    &principal.user.full_name
                },
                Some(exclude),
            )
            .map_err(|e| AuthError::Config(format!("passkeys: {e}")))?;
        let mut options = serde_json::to_value(&creation).map_err(invalid)?;
        // A passkey is a discoverable credential: it signs in without an address first.
        if let Some(selection) = options
            .pointer_mut("/publicKey/authenticatorSelection")
            .and_then(serde_json::Value::as_object_mut)
        {
            selection.insert("residentKey".to_owned(), "required".into());
            selection.insert("requireResidentKey".to_owned(), true.into());
        }
        let state = serde_json::to_value(&state).map_err(invalid)?;
        let ceremony = self
            .store_ceremony(
                tenant,
                Purpose::Register,
                Some(principal),
                Some(name),
                state,
            )
            .await?;
        Ok(PasskeyOptions {
            ceremony,
            expires_in: CEREMONY_TTL.as_secs(),
            options,
        })
    }

    /// Completes a registration with the authenticator's answer.
    pub async fn finish_passkey_registration(
        &self,
        principal: &Principal,
        answer: &PasskeyAnswer,
    ) -> Result<PasskeyInfo, AuthError> {
        let session = principal.session_id()?;
        let ceremony = self
            .take_ceremony(&answer.ceremony, Purpose::Register)
            .await?;
        if ceremony.user != Some(principal.user.id)
            || ceremony.session != Some(session)
            || ceremony.tenant != principal.user.tenant_id
        {
            return Err(invalid("a ceremony of another account"));
        }
        let state = serde_json::from_value(ceremony.state).map_err(invalid)?;
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(answer.credential.clone()).map_err(invalid)?;
        let passkey = self
            .webauthn()?
            .finish_passkey_registration(&credential, &state)
            .map_err(|e| {
                tracing::warn!(security_event = "passkey_refused", user_id = %principal.user.id, error = %e, "passkey registration refused");
                invalid(e)
            })?;
        let id = Uuid::now_v7();
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let name = ceremony.name.unwrap_or_else(|| "Passkey".to_owned());
        let credential_id = passkey.cred_id().to_vec();
        let stored = serde_json::to_value(&passkey).map_err(invalid)?;
        let row_name = name.clone();
        let created_at: DateTime<Utc> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let created_at = diesel::insert_into(passkeys::table)
                        .values((
                            passkeys::id.eq(id),
                            passkeys::tenant_id.eq(tenant),
                            passkeys::user_id.eq(user),
                            passkeys::name.eq(row_name),
                            passkeys::credential_id.eq(credential_id),
                            passkeys::credential.eq(stored),
                        ))
                        .on_conflict_do_nothing()
                        .returning(passkeys::created_at)
                        .get_result(conn)
                        .await
                        .optional()?
                        .ok_or_else(|| invalid("this authenticator is registered already"))?;
                    audit::record(
                        conn,
                        tenant,
                        EventType::FactorAdded,
                        Actor::User { id: user },
                        audit::user(user),
                        json!({ "kind": "passkey", "passkey_id": id }),
                    )
                    .await?;
                    Ok::<_, AuthError>(created_at)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "passkey_added", user_id = %user, passkey_id = %id, "passkey registered");
        Ok(PasskeyInfo {
            id,
            name,
            created_at,
            last_used_at: None,
        })
    }

    /// The signed-in account's passkeys.
    pub async fn passkeys(&self, principal: &Principal) -> Result<Vec<PasskeyInfo>, AuthError> {
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let rows: Vec<PasskeyRow> = passkeys::table
                        .filter(passkeys::user_id.eq(user))
                        .order(passkeys::created_at)
                        .select((
                            passkeys::id,
                            passkeys::name,
                            passkeys::created_at,
                            passkeys::last_used_at,
                        ))
                        .load(conn)
                        .await?;
                    Ok(rows
                        .into_iter()
                        .map(|(id, name, created_at, last_used_at)| PasskeyInfo {
                            id,
                            name,
                            created_at,
                            last_used_at,
                        })
                        .collect())
                }
                .scope_boxed()
            })
            .await
    }

    /// Renames a passkey of the signed-in account.
    pub async fn rename_passkey(
        &self,
        principal: &Principal,
        id: Uuid,
        name: &str,
    ) -> Result<(), AuthError> {
        let name = checked_name(name)?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let renamed = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(passkeys::table.find(id))
                        .filter(passkeys::user_id.eq(user))
                        .set(passkeys::name.eq(name))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if renamed == 0 {
            return Err(AuthError::NotFound("passkey"));
        }
        Ok(())
    }

    /// Removes a passkey (recently authenticated), unless it is the last way to sign in.
    pub async fn remove_passkey(&self, principal: &Principal, id: Uuid) -> Result<(), AuthError> {
        self.remove_sign_in_method(principal, SignInMethod::Passkey(id))
            .await
    }

    /// The account's passkeys with their row ids.
    pub(crate) async fn user_passkeys(
        &self,
        tenant: Uuid,
        user: Uuid,
    ) -> Result<Vec<(Uuid, Passkey)>, AuthError> {
        let rows: Vec<(Uuid, serde_json::Value)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    passkeys::table
                        .filter(passkeys::user_id.eq(user))
                        .select((passkeys::id, passkeys::credential))
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        rows.into_iter()
            .map(|(id, stored)| {
                serde_json::from_value(stored)
                    .map(|p| (id, p))
                    .map_err(|e| AuthError::Config(format!("a stored passkey does not load: {e}")))
            })
            .collect()
    }
}
