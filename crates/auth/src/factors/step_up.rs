//! Step-up: re-authenticating a session, and the checks sensitive operations make.

use chrono::Utc;
use diesel::prelude::*;
use sovereign_db::schema::sessions;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::model::{Aal, Assurance, Principal};
use crate::{Accounts, AuthError};

/// How recent a sign-in must be for a sensitive operation without `aal2`.
pub const STEP_UP_WINDOW_SECONDS: i64 = 600;

/// Proof for a step-up: the password, or a code from a confirmed authenticator.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Reauthentication {
    /// The account's password.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub password: Option<secrecy::SecretString>,
    /// Or a TOTP code (raises the session to `aal2`).
    #[serde(default)]
    pub code: Option<String>,
    /// Or a passkey's answer to `/api/v1/auth/passkeys/reauthenticate` (raises to `aal2`).
    #[serde(default)]
    pub passkey: Option<crate::PasskeyAnswer>,
}

/// A new access token for the same session (its refresh token is unchanged).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessToken {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl Accounts {
    /// Proves again who the signed-in user is (password, or a TOTP code for `aal2`): the session's
    /// `auth_time` becomes now, and the answer is an access token that says so, for the
    /// sensitive operations that need a recent sign-in.
    pub async fn reauthenticate(
        &self,
        principal: &Principal,
        proof: &Reauthentication,
    ) -> Result<AccessToken, AuthError> {
        let session = principal.session_id()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.throttle("reauthenticate", &user.to_string()).await?;
        let current = principal
            .assurance
            .clone()
            .unwrap_or_else(Assurance::password);
        let (aal, method) = match (&proof.password, &proof.code, &proof.passkey) {
            (Some(password), None, None) => {
                if !self.password_matches(tenant, user, password).await? {
                    tracing::warn!(security_event = "reauthentication_failed", user_id = %user, "wrong password");
                    return Err(AuthError::InvalidCredentials);
                }
                (current.aal, "pwd")
            }
            (None, Some(code), None) => {
                self.accept_totp(&principal.user, code).await?;
                (Aal::Aal2, "otp")
            }
            (None, None, Some(answer)) => {
                self.verify_passkey_reauthentication(principal, answer)
                    .await?;
                (Aal::Aal2, crate::passkeys::AMR)
            }
            _ => {
                return Err(AuthError::invalid(
                    "password",
                    "exactly_one",
                    "send exactly one of `password`, `code` and `passkey`",
                ));
            }
        };
        let mut amr = current.amr;
        if !amr.iter().any(|m| m == method) {
            amr.push(method.to_owned());
        }
        let now = Utc::now();
        let assurance = Assurance {
            aal,
            amr,
            auth_time: now.timestamp(),
        };
        let (aal_text, amr_column): (&str, Vec<Option<String>>) = (
            assurance.aal.as_str(),
            assurance.amr.iter().cloned().map(Some).collect(),
        );
        let updated = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(sessions::table.find(session))
                        .filter(sessions::revoked_at.is_null())
                        .set((
                            sessions::auth_time.eq(now),
                            sessions::aal.eq(aal_text),
                            sessions::amr.eq(amr_column),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if updated == 0 {
            return Err(AuthError::InvalidToken("session ended"));
        }
        let access = self.inner.keys.issue_at(
            &principal.user,
            session,
            now.timestamp(),
            Uuid::now_v7(),
            &assurance,
        )?;
        tracing::info!(security_event = "reauthenticated", user_id = %user, method, "re-authenticated");
        Ok(AccessToken {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in.as_secs(),
        })
    }
}

impl Principal {
    /// For sensitive operations: a session at `aal2`, or one whose sign-in (or re-authentication)
    /// is at most [`STEP_UP_WINDOW_SECONDS`] old.
    pub fn require_recent(&self) -> Result<(), AuthError> {
        let Some(assurance) = &self.assurance else {
            return Err(AuthError::SessionRequired);
        };
        if assurance.aal == Aal::Aal2
            || Utc::now().timestamp() - assurance.auth_time <= STEP_UP_WINDOW_SECONDS
        {
            Ok(())
        } else {
            Err(AuthError::ReauthenticationRequired)
        }
    }

    /// A session at `aal2`.
    pub fn require_aal2(&self) -> Result<(), AuthError> {
        match &self.assurance {
            Some(a) if a.aal == Aal::Aal2 => Ok(()),
            Some(_) => Err(AuthError::ReauthenticationRequired),
            None => Err(AuthError::SessionRequired),
        }
    }
}
