//! Second factors: TOTP authenticators (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step), recovery
//! codes, the challenge a sign-in of an account with a factor gets instead of a session, and
//! step-up checks for sensitive operations.
//!
//! - A TOTP secret is 160 random bits, sealed at rest (see `sealed`), bound to its factor.
//! - A code is accepted once: the factor remembers the last accepted time step, and a code of
//!   that step or an earlier one is refused — one conditional `UPDATE`, so two concurrent
//!   requests with one code cannot both pass.
//! - Attempts are throttled per account (`RATE_LIMIT_ACCOUNT`).
//! - Ten recovery codes are made when the first factor is confirmed: shown once, stored as HMACs
//!   under a key derived from `SECRET_KEY`, each usable once. Using one, or removing the last
//!   factor, revokes the account's other sessions and is announced on the revocation channel.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;
use sovereign_db::schema::{mfa_challenges, mfa_factors, recovery_codes, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

use crate::accounts::{auth_event, later};
use crate::model::{Aal, Assurance, Principal, User, UserRow};
use crate::opaque::{self, Kind};
use crate::revocation::Revocation;
use crate::sealed::Sealer;
use crate::sessions::{RevokeWhere, revoke_sessions};
use crate::{Accounts, AuthError, ClientContext, TokenPair};

/// Seconds per TOTP step.
const STEP: u64 = 30;
/// Digits per code.
const DIGITS: usize = 6;
/// Bytes of a TOTP secret (160 bits, RFC 4226 §4).
const SECRET_BYTES: usize = 20;
/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;
/// How long a sign-in challenge lasts.
const CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// How recent a sign-in must be for a sensitive operation without `aal2`.
pub const STEP_UP_WINDOW_SECONDS: i64 = 600;

/// A TOTP factor just created: scan `otpauth_uri` (or type `secret`), then confirm it with a code.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrolment {
    pub id: Uuid,
    /// The shared secret, base32 (RFC 4648), for typing into an authenticator app.
    pub secret: String,
    /// `otpauth://totp/…`: render it as a QR code for an authenticator app to scan.
    pub otpauth_uri: String,
}

/// A second factor of the signed-in account.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Factor {
    pub id: Uuid,
    /// `totp`.
    pub kind: String,
    pub name: String,
    /// Whether a first code confirmed it; unconfirmed factors do not count at sign-in.
    pub confirmed: bool,
    pub created_at: DateTime<Utc>,
}

/// The account's factors and how many unused recovery codes it has.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Factors {
    pub factors: Vec<Factor>,
    pub recovery_codes_remaining: i64,
}

/// Recovery codes, shown this once.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryCodes {
    /// Ten single-use codes (`xxxxx-xxxxx`). Store them somewhere safe: they are not shown again.
    pub recovery_codes: Vec<String>,
}

/// What a password sign-in of an account with a factor gets instead of a session.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaChallenge {
    /// Always `mfa_required`.
    pub status: &'static str,
    /// Single use; send it with a code to `/api/v1/auth/mfa/verify` within `expires_in` seconds.
    pub challenge: String,
    pub expires_in: u64,
    /// What can complete it: `totp`, `recovery_code`.
    pub methods: Vec<&'static str>,
}

/// The result of a sign-in with a password.
#[derive(Debug, Clone)]
pub enum SignIn {
    /// The account has no second factor: a session.
    Session(TokenPair),
    /// The account has one: complete the sign-in with it.
    MfaRequired(MfaChallenge),
}

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

/// How a challenge (or a step-up) is completed.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaVerification {
    /// The challenge from the sign-in.
    pub challenge: String,
    /// A code from the authenticator app.
    #[serde(default)]
    pub code: Option<String>,
    /// Or one of the recovery codes (using it ends the account's other sessions).
    #[serde(default)]
    pub recovery_code: Option<String>,
}

impl Accounts {
    /// Starts enrolling a TOTP authenticator for the signed-in account (confirmed by
    /// [`Accounts::confirm_factor`]). Needs a session.
    pub async fn enrol_totp(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<TotpEnrolment, AuthError> {
        principal.session_id()?;
        let name = name.trim();
        let name = if name.is_empty() {
            "Authenticator"
        } else {
            name
        };
        if name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::invalid(
                "name",
                "length",
                "must have 1 to 100 printable characters",
            ));
        }
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let totp = self.totp(&secret, &principal.user.email)?;
        let id = Uuid::now_v7();
        let sealed =
            Sealer::new(self.inner.settings.secret_key_bytes()).seal(&secret, id.as_bytes())?;
        let (tenant, user, name) = (principal.user.tenant_id, principal.user.id, name.to_owned());
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    // Unconfirmed enrolments are abandoned by starting another.
                    diesel::delete(mfa_factors::table)
                        .filter(mfa_factors::user_id.eq(user))
                        .filter(mfa_factors::confirmed_at.is_null())
                        .execute(conn)
                        .await?;
                    diesel::insert_into(mfa_factors::table)
                        .values((
                            mfa_factors::id.eq(id),
                            mfa_factors::tenant_id.eq(tenant),
                            mfa_factors::user_id.eq(user),
                            mfa_factors::kind.eq("totp"),
                            mfa_factors::name.eq(name),
                            mfa_factors::secret.eq(sealed),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(TotpEnrolment {
            id,
            secret: totp.get_secret_base32(),
            otpauth_uri: totp.get_url(),
        })
    }

    /// Confirms an enrolment with a first code. The account's first factor also makes its
    /// recovery codes, returned this once.
    pub async fn confirm_factor(
        &self,
        principal: &Principal,
        id: Uuid,
        code: &str,
    ) -> Result<Option<RecoveryCodes>, AuthError> {
        principal.session_id()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.throttle("mfa", &user.to_string()).await?;
        let factor = self.factor_secret(tenant, user, id, false).await?;
        let step = self.matching_step(&factor.secret, &principal.user.email, code)?;
        let codes = new_recovery_codes();
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| self.recovery_hash(c)).collect();
        let made = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let confirmed = diesel::update(mfa_factors::table.find(id))
                        .filter(mfa_factors::user_id.eq(user))
                        .filter(mfa_factors::confirmed_at.is_null())
                        .set((
                            mfa_factors::confirmed_at.eq(diesel::dsl::now),
                            mfa_factors::last_step.eq(step),
                        ))
                        .execute(conn)
                        .await?;
                    if confirmed == 0 {
                        return Err(AuthError::NotFound("factor"));
                    }
                    let others: i64 = mfa_factors::table
                        .filter(mfa_factors::user_id.eq(user))
                        .filter(mfa_factors::confirmed_at.is_not_null())
                        .count()
                        .get_result(conn)
                        .await?;
                    if others > 1 {
                        return Ok(false);
                    }
                    replace_recovery_codes(conn, tenant, user, hashes).await?;
                    Ok(true)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "factor_added", user_id = %user, factor_id = %id, "second factor confirmed");
        Ok(made.then_some(RecoveryCodes {
            recovery_codes: codes,
        }))
    }

    /// The signed-in account's factors.
    pub async fn factors(&self, principal: &Principal) -> Result<Factors, AuthError> {
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let rows: Vec<FactorRow> = mfa_factors::table
                        .filter(mfa_factors::user_id.eq(user))
                        .order(mfa_factors::created_at)
                        .select((
                            mfa_factors::id,
                            mfa_factors::kind,
                            mfa_factors::name,
                            mfa_factors::confirmed_at,
                            mfa_factors::created_at,
                        ))
                        .load(conn)
                        .await?;
                    let remaining: i64 = recovery_codes::table
                        .filter(recovery_codes::user_id.eq(user))
                        .filter(recovery_codes::used_at.is_null())
                        .count()
                        .get_result(conn)
                        .await?;
                    Ok::<_, AuthError>(Factors {
                        factors: rows
                            .into_iter()
                            .map(|(id, kind, name, confirmed_at, created_at)| Factor {
                                id,
                                kind,
                                name,
                                confirmed: confirmed_at.is_some(),
                                created_at,
                            })
                            .collect(),
                        recovery_codes_remaining: remaining,
                    })
                }
                .scope_boxed()
            })
            .await
    }

    /// Removes a factor (step-up required). Removing the last confirmed one also deletes the
    /// recovery codes and ends the account's other sessions.
    pub async fn remove_factor(&self, principal: &Principal, id: Uuid) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        principal.require_recent()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let last = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let removed = diesel::delete(mfa_factors::table.find(id))
                        .filter(mfa_factors::user_id.eq(user))
                        .execute(conn)
                        .await?;
                    if removed == 0 {
                        return Err(AuthError::NotFound("factor"));
                    }
                    let left: i64 = mfa_factors::table
                        .filter(mfa_factors::user_id.eq(user))
                        .filter(mfa_factors::confirmed_at.is_not_null())
                        .count()
                        .get_result(conn)
                        .await?;
                    if left > 0 {
                        return Ok(false);
                    }
                    diesel::delete(recovery_codes::table)
                        .filter(recovery_codes::user_id.eq(user))
                        .execute(conn)
                        .await?;
                    revoke_sessions(
                        conn,
                        RevokeWhere::OtherSessions {
                            user,
                            keep: session,
                        },
                        "factor_removed",
                    )
                    .await?;
                    Ok(true)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "factor_removed", user_id = %user, factor_id = %id, last, "second factor removed");
        if last {
            self.announce(Revocation::User(user)).await;
        }
        Ok(())
    }

    /// New recovery codes, replacing the old ones; needs a session at `aal2`.
    pub async fn regenerate_recovery_codes(
        &self,
        principal: &Principal,
    ) -> Result<RecoveryCodes, AuthError> {
        principal.session_id()?;
        principal.require_aal2()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        let codes = new_recovery_codes();
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| self.recovery_hash(c)).collect();
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move { replace_recovery_codes(conn, tenant, user, hashes).await }
                    .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "recovery_codes_regenerated", user_id = %user, "recovery codes replaced");
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// After the password was verified: a session when the account has no confirmed factor,
    /// else a challenge to complete with one.
    pub(crate) async fn after_password(
        &self,
        user: &User,
        client: &ClientContext,
    ) -> Result<SignIn, AuthError> {
        let (tenant, user_id) = (user.tenant_id, user.id);
        let has_factor: bool = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::select(diesel::dsl::exists(
                        mfa_factors::table
                            .filter(mfa_factors::user_id.eq(user_id))
                            .filter(mfa_factors::confirmed_at.is_not_null()),
                    ))
                    .get_result(conn)
                    .await
                    .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if !has_factor {
            let pair = self
                .open_session(user, client, &Assurance::password())
                .await?;
            return Ok(SignIn::Session(pair));
        }
        let minted = opaque::mint(Kind::MfaChallenge, tenant);
        let (digest, user_agent, ip) = (
            minted.digest,
            client.user_agent().unwrap_or_default(),
            client.ip.map(|ip| ip.to_string()),
        );
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(mfa_challenges::table)
                        .filter(mfa_challenges::expires_at.lt(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(mfa_challenges::table)
                        .values((
                            mfa_challenges::token_hash.eq(digest.to_vec()),
                            mfa_challenges::tenant_id.eq(tenant),
                            mfa_challenges::user_id.eq(user_id),
                            mfa_challenges::amr.eq(vec![Some("pwd".to_owned())]),
                            mfa_challenges::user_agent.eq(user_agent),
                            mfa_challenges::ip.eq(ip),
                            mfa_challenges::expires_at.eq(later(CHALLENGE_TTL)),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "mfa_challenge", user_id = %user_id, "password verified; second factor required");
        Ok(SignIn::MfaRequired(MfaChallenge {
            status: "mfa_required",
            challenge: minted.token,
            expires_in: CHALLENGE_TTL.as_secs(),
            methods: vec!["totp", "recovery_code"],
        }))
    }

    /// Completes a sign-in challenge with a TOTP code or a recovery code: a session at `aal2`.
    /// The challenge is spent by the first success; wrong codes leave it usable until it expires
    /// (attempts are throttled per account).
    pub async fn verify_challenge(
        &self,
        input: &MfaVerification,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        let (tenant, digest) = opaque::parse(Kind::MfaChallenge, &input.challenge)
            .ok_or(AuthError::InvalidChallenge)?;
        let found: Option<(Uuid, Option<DateTime<Utc>>, DateTime<Utc>)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    mfa_challenges::table
                        .find(digest.to_vec())
                        .select((
                            mfa_challenges::user_id,
                            mfa_challenges::used_at,
                            mfa_challenges::expires_at,
                        ))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((user, None, expires_at)) = found else {
            return Err(AuthError::InvalidChallenge);
        };
        if expires_at <= Utc::now() {
            return Err(AuthError::InvalidChallenge);
        }
        self.throttle("mfa", &user.to_string()).await?;
        let row: UserRow = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(user)
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select(UserRow::as_select())
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::InvalidChallenge)?;
        let account = User::try_from(row)?;
        let method = match (&input.code, &input.recovery_code) {
            (Some(code), None) => {
                self.accept_totp(&account, code).await?;
                "otp"
            }
            (None, Some(code)) => {
                self.accept_recovery_code(&account, code).await?;
                "rc"
            }
            _ => {
                return Err(AuthError::invalid(
                    "code",
                    "exactly_one",
                    "send exactly one of `code` and `recovery_code`",
                ));
            }
        };
        // Spend the challenge: of two concurrent completions, one opens a session.
        let spent = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(mfa_challenges::table.find(digest.to_vec()))
                        .filter(mfa_challenges::used_at.is_null())
                        .set(mfa_challenges::used_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if spent == 0 {
            return Err(AuthError::InvalidChallenge);
        }
        let assurance = Assurance {
            aal: Aal::Aal2,
            amr: vec!["pwd".to_owned(), method.to_owned()],
            auth_time: Utc::now().timestamp(),
        };
        let pair = self.open_session(&account, client, &assurance).await?;
        if method == "rc" {
            // A recovery code means the authenticator may be lost or stolen: end everything else.
            let (session, user_id) = (pair.session_id, account.id);
            self.db()
                .tenant_transaction(tenant, |conn| {
                    async move {
                        revoke_sessions(
                            conn,
                            RevokeWhere::OtherSessions {
                                user: user_id,
                                keep: session,
                            },
                            "recovery_code_used",
                        )
                        .await
                    }
                    .scope_boxed()
                })
                .await?;
            tracing::warn!(security_event = "recovery_code_used", user_id = %account.id, "signed in with a recovery code; other sessions revoked");
            self.announce(Revocation::User(account.id)).await;
        }
        tracing::info!(security_event = "login", user_id = %account.id, session_id = %pair.session_id, method, "signed in with a second factor");
        auth_event("login");
        Ok(pair)
    }

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
        let (aal, method) = match (&proof.password, &proof.code) {
            (Some(password), None) => {
                let stored: String = self
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
                if !self.inner.hasher.verify(password, Some(&stored)).await? {
                    tracing::warn!(security_event = "reauthentication_failed", user_id = %user, "wrong password");
                    return Err(AuthError::InvalidCredentials);
                }
                (current.aal, "pwd")
            }
            (None, Some(code)) => {
                self.accept_totp(&principal.user, code).await?;
                (Aal::Aal2, "otp")
            }
            _ => {
                return Err(AuthError::invalid(
                    "password",
                    "exactly_one",
                    "send exactly one of `password` and `code`",
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
                    diesel::update(sovereign_db::schema::sessions::table.find(session))
                        .filter(sovereign_db::schema::sessions::revoked_at.is_null())
                        .set((
                            sovereign_db::schema::sessions::auth_time.eq(now),
                            sovereign_db::schema::sessions::aal.eq(aal_text),
                            sovereign_db::schema::sessions::amr.eq(amr_column),
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

    /// Accepts a TOTP code of one of the account's confirmed factors, once.
    async fn accept_totp(&self, user: &User, code: &str) -> Result<(), AuthError> {
        let (tenant, user_id) = (user.tenant_id, user.id);
        let factors: Vec<(Uuid, Vec<u8>, Option<i64>)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    mfa_factors::table
                        .filter(mfa_factors::user_id.eq(user_id))
                        .filter(mfa_factors::confirmed_at.is_not_null())
                        .select((mfa_factors::id, mfa_factors::secret, mfa_factors::last_step))
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let sealer = Sealer::new(self.inner.settings.secret_key_bytes());
        for (id, sealed, last_step) in factors {
            let secret = sealer.open(&sealed, id.as_bytes())?;
            let Ok(step) = self.matching_step(&secret, &user.email, code) else {
                continue;
            };
            if last_step.is_some_and(|last| step <= last) {
                return Err(AuthError::CodeReused);
            }
            // Record the step only if no one recorded it (or a later one) meanwhile.
            let recorded = self
                .db()
                .tenant_transaction(tenant, |conn| {
                    async move {
                        diesel::update(mfa_factors::table.find(id))
                            .filter(
                                mfa_factors::last_step
                                    .is_null()
                                    .or(mfa_factors::last_step.lt(step)),
                            )
                            .set(mfa_factors::last_step.eq(step))
                            .execute(conn)
                            .await
                            .map_err(AuthError::from)
                    }
                    .scope_boxed()
                })
                .await?;
            return if recorded == 1 {
                Ok(())
            } else {
                Err(AuthError::CodeReused)
            };
        }
        tracing::warn!(security_event = "mfa_failed", user_id = %user_id, "wrong second-factor code");
        Err(AuthError::InvalidCode)
    }

    /// Spends one of the account's recovery codes.
    async fn accept_recovery_code(&self, user: &User, code: &str) -> Result<(), AuthError> {
        let hash = self.recovery_hash(code);
        let (tenant, user_id) = (user.tenant_id, user.id);
        let spent = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(recovery_codes::table)
                        .filter(recovery_codes::user_id.eq(user_id))
                        .filter(recovery_codes::code_hash.eq(hash))
                        .filter(recovery_codes::used_at.is_null())
                        .set(recovery_codes::used_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if spent == 1 {
            Ok(())
        } else {
            tracing::warn!(security_event = "mfa_failed", user_id = %user_id, "wrong or used recovery code");
            Err(AuthError::InvalidCode)
        }
    }

    /// A factor's secret (confirmed or not, as asked).
    async fn factor_secret(
        &self,
        tenant: Uuid,
        user: Uuid,
        id: Uuid,
        confirmed: bool,
    ) -> Result<FactorSecret, AuthError> {
        let sealed: Vec<u8> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let query = mfa_factors::table
                        .find(id)
                        .filter(mfa_factors::user_id.eq(user))
                        .select(mfa_factors::secret)
                        .into_boxed();
                    let query = if confirmed {
                        query.filter(mfa_factors::confirmed_at.is_not_null())
                    } else {
                        query.filter(mfa_factors::confirmed_at.is_null())
                    };
                    query.first(conn).await.optional().map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::NotFound("factor"))?;
        let secret =
            Sealer::new(self.inner.settings.secret_key_bytes()).open(&sealed, id.as_bytes())?;
        Ok(FactorSecret { secret })
    }

    /// The time step (previous, current or next) whose code `code` is, or `InvalidCode`.
    fn matching_step(&self, secret: &[u8], account: &str, code: &str) -> Result<i64, AuthError> {
        let code = code.trim();
        if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::InvalidCode);
        }
        let totp = self.totp(secret, account)?;
        let now = u64::try_from(Utc::now().timestamp()).unwrap_or(0);
        let current = now / STEP;
        for step in [current.saturating_sub(1), current, current + 1] {
            if totp.check(code, step * STEP) {
                return i64::try_from(step).map_err(|_| AuthError::InvalidCode);
            }
        }
        Err(AuthError::InvalidCode)
    }

    fn totp(&self, secret: &[u8], account: &str) -> Result<TOTP, AuthError> {
        TOTP::new(
            Algorithm::SHA1,
            DIGITS,
            0,
            STEP,
            secret.to_vec(),
            Some(self.inner.settings.issuer.replace(':', "")),
            account.replace(':', ""),
        )
        .map_err(|e| AuthError::Config(format!("TOTP: {e}")))
    }

    fn recovery_hash(&self, code: &str) -> Vec<u8> {
        let normalized: String = code
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        opaque::keyed(
            self.inner.settings.secret_key_bytes(),
            b"sovereign recovery code v1",
            &normalized,
        )
        .to_vec()
    }
}

/// id, kind, name, confirmed_at, created_at.
type FactorRow = (Uuid, String, String, Option<DateTime<Utc>>, DateTime<Utc>);

struct FactorSecret {
    secret: Vec<u8>,
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

/// Replaces the account's recovery codes with `hashes`.
async fn replace_recovery_codes(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    user: Uuid,
    hashes: Vec<Vec<u8>>,
) -> Result<(), AuthError> {
    diesel::delete(recovery_codes::table)
        .filter(recovery_codes::user_id.eq(user))
        .execute(conn)
        .await?;
    let rows: Vec<_> = hashes
        .into_iter()
        .map(|hash| {
            (
                recovery_codes::tenant_id.eq(tenant),
                recovery_codes::user_id.eq(user),
                recovery_codes::code_hash.eq(hash),
            )
        })
        .collect();
    diesel::insert_into(recovery_codes::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Ten codes of 10 base32 characters (50 random bits each), as `xxxxx-xxxxx`.
fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 10];
            rand::rng().fill_bytes(&mut bytes);
            let chars: String = bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}
