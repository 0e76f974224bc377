//! Signing in with a passkey — no address first: the authenticator names the account
//! (discoverable credentials) — and re-authenticating with one for step-up. Both require user
//! verification, so both count as `aal2`.

use chrono::Utc;
use diesel::prelude::*;
use sovereign_db::schema::{passkeys, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PublicKeyCredential,
};

use super::{CEREMONY_TTL, PasskeyAnswer, PasskeyOptions, Purpose, invalid};
use crate::accounts::auth_event;
use crate::model::{Aal, Assurance, Principal, User, UserRow};
use crate::{Accounts, AuthError, ClientContext, TokenPair};

/// How a passkey is named in `amr`.
pub(crate) const AMR: &str = "passkey";

impl Accounts {
    /// Starts a sign-in with a passkey in `tenant`: options for `navigator.credentials.get`.
    pub async fn start_passkey_sign_in(&self, tenant: Uuid) -> Result<PasskeyOptions, AuthError> {
        let (request, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(|e| AuthError::Config(format!("passkeys: {e}")))?;
        let mut options = serde_json::to_value(&request).map_err(invalid)?;
        // A sign-in the user asks for (a button), not the address field's autofill.
        if let Some(object) = options.as_object_mut() {
            object.remove("mediation");
        }
        let state = serde_json::to_value(&state).map_err(invalid)?;
        let ceremony = self
            .store_ceremony(tenant, Purpose::SignIn, None, None, state)
            .await?;
        Ok(PasskeyOptions {
            ceremony,
            expires_in: CEREMONY_TTL.as_secs(),
            options,
        })
    }

    /// Completes a sign-in with a passkey: a session at `aal2`.
    pub async fn finish_passkey_sign_in(
        &self,
        answer: &PasskeyAnswer,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        let ceremony = self
            .take_ceremony(&answer.ceremony, Purpose::SignIn)
            .await?;
        let tenant = ceremony.tenant;
        let state: DiscoverableAuthentication =
            serde_json::from_value(ceremony.state).map_err(invalid)?;
        let credential: PublicKeyCredential =
            serde_json::from_value(answer.credential.clone()).map_err(invalid)?;
        let webauthn = self.webauthn()?;
        let (user_id, credential_id) = webauthn
            .identify_discoverable_authentication(&credential)
            .map_err(invalid)?;
        let credential_id = credential_id.to_vec();
        let found: Option<(Uuid, Uuid, serde_json::Value)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    passkeys::table
                        .filter(passkeys::credential_id.eq(credential_id))
                        .select((passkeys::id, passkeys::user_id, passkeys::credential))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((id, owner, stored)) = found.filter(|(_, owner, _)| *owner == user_id) else {
            tracing::warn!(security_event = "passkey_refused", %tenant, "sign-in with an unknown passkey");
            return Err(invalid("unknown passkey"));
        };
        let passkey: Passkey = serde_json::from_value(stored).map_err(invalid)?;
        let result = webauthn
            .finish_discoverable_authentication_v2(&credential, state, &passkey)
            .map_err(|e| {
                tracing::warn!(security_event = "passkey_refused", user_id = %owner, passkey_id = %id, error = %e, "passkey sign-in refused");
                invalid(e)
            })?;
        self.record_use(tenant, id, &result).await?;
        let row: UserRow = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(owner)
                        .filter(users::deleted_at.is_null())
                        .select(UserRow::as_select())
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or_else(|| invalid("the account is gone"))?;
        let user = User::try_from(row)?;
        if !user.is_active {
            return Err(AuthError::AccountDisabled);
        }
        let assurance = Assurance {
            aal: Aal::Aal2,
            amr: vec![AMR.to_owned()],
            auth_time: Utc::now().timestamp(),
        };
        let pair = self.open_session(&user, client, &assurance).await?;
        tracing::info!(security_event = "login", user_id = %user.id, session_id = %pair.session_id, method = AMR, "signed in with a passkey");
        auth_event("login");
        Ok(pair)
    }

    /// Starts re-authenticating the signed-in account with one of its passkeys.
    pub async fn start_passkey_reauthentication(
        &self,
        principal: &Principal,
    ) -> Result<PasskeyOptions, AuthError> {
        principal.session_id()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let keys: Vec<Passkey> = self
            .user_passkeys(tenant, user)
            .await?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if keys.is_empty() {
            return Err(AuthError::NotFound("passkey"));
        }
        let (request, state) = self
            .webauthn()?
            .start_passkey_authentication(&keys)
            .map_err(|e| AuthError::Config(format!("passkeys: {e}")))?;
        let options = serde_json::to_value(&request).map_err(invalid)?;
        let state = serde_json::to_value(&state).map_err(invalid)?;
        let ceremony = self
            .store_ceremony(
                tenant,
                Purpose::Reauthenticate,
                Some(principal),
                None,
                state,
            )
            .await?;
        Ok(PasskeyOptions {
            ceremony,
            expires_in: CEREMONY_TTL.as_secs(),
            options,
        })
    }

    /// Checks a re-authentication answer from the signed-in account's passkey.
    pub(crate) async fn verify_passkey_reauthentication(
        &self,
        principal: &Principal,
        answer: &PasskeyAnswer,
    ) -> Result<(), AuthError> {
        let ceremony = self
            .take_ceremony(&answer.ceremony, Purpose::Reauthenticate)
            .await?;
        let session = principal.session_id()?;
        if ceremony.user != Some(principal.user.id) || ceremony.session != Some(session) {
            return Err(invalid("a ceremony of another session"));
        }
        let state: PasskeyAuthentication =
            serde_json::from_value(ceremony.state).map_err(invalid)?;
        let credential: PublicKeyCredential =
            serde_json::from_value(answer.credential.clone()).map_err(invalid)?;
        let result = self
            .webauthn()?
            .finish_passkey_authentication(&credential, &state)
            .map_err(|e| {
                tracing::warn!(security_event = "passkey_refused", user_id = %principal.user.id, error = %e, "passkey re-authentication refused");
                invalid(e)
            })?;
        let tenant = principal.user.tenant_id;
        let used = result.cred_id().clone();
        let (id, _) = self
            .user_passkeys(tenant, principal.user.id)
            .await?
            .into_iter()
            .find(|(_, p)| *p.cred_id() == used)
            .ok_or_else(|| invalid("unknown passkey"))?;
        self.record_use(tenant, id, &result).await
    }

    /// Stores the grown signature counter and the time of use, under the row's lock: of two
    /// answers with one counter (a clone racing the original), the second is refused.
    async fn record_use(
        &self,
        tenant: Uuid,
        id: Uuid,
        result: &AuthenticationResult,
    ) -> Result<(), AuthError> {
        let result = result.clone();
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let stored: serde_json::Value = passkeys::table
                        .find(id)
                        .select(passkeys::credential)
                        .for_update()
                        .first(conn)
                        .await?;
                    let mut current: Passkey = serde_json::from_value(stored).map_err(invalid)?;
                    let grew = current.update_credential(&result);
                    if result.counter() > 0 && grew != Some(true) {
                        return Err(invalid("the signature counter did not grow"));
                    }
                    let updated = serde_json::to_value(&current).map_err(invalid)?;
                    diesel::update(passkeys::table.find(id))
                        .set((
                            passkeys::credential.eq(updated),
                            passkeys::last_used_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(())
    }
}
