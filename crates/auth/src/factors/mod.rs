//! Second factors: TOTP authenticators (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step), recovery
//! codes, the challenge a sign-in of an account with a factor gets instead of a session, and
//! step-up checks for sensitive operations.
//!
//! This module: enrolment, the list, removal and recovery codes; `codes` checks TOTP and
//! recovery codes; `challenge` is the sign-in's second step; `step_up` re-authentication and the
//! checks sensitive operations make.
//!
//! - A TOTP secret is 160 random bits, sealed at rest (see `sealed`), bound to its factor.
//! - A code is accepted once: the factor remembers the last accepted time step, and a code of
//!   that step or an earlier one is refused — one conditional `UPDATE`, so two concurrent
//!   requests with one code cannot both pass.
//! - Attempts are throttled per account (`RATE_LIMIT_ACCOUNT`).
//! - Ten recovery codes are made when the first factor is confirmed: shown once, stored as HMACs
//!   under a key derived from `SECRET_KEY`, each usable once. Using one, or removing the last
//!   factor, revokes the account's other sessions and is announced on the revocation channel.

mod challenge;
mod codes;
mod policy;
mod step_up;

pub use challenge::{MfaChallenge, MfaVerification, SignIn};
pub(crate) use policy::tenant_policy;
pub use policy::{EnrolledSession, EnrolmentConfirmation, MfaPolicy, RequireAal2};
pub use step_up::{AccessToken, Reauthentication, STEP_UP_WINDOW_SECONDS};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;
use serde_json::json;
use sovereign_db::schema::{mfa_factors, recovery_codes};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType};
use uuid::Uuid;

use crate::audit;
use crate::model::Principal;
use crate::revocation::Revocation;
use crate::sealed::Sealer;
use crate::sessions::{RevokeWhere, revoke_sessions};
use crate::{Accounts, AuthError};

/// Bytes of a TOTP secret (160 bits, RFC 4226 §4).
const SECRET_BYTES: usize = 20;
/// Recovery codes made at a time.
pub const RECOVERY_CODES: usize = 10;

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
        self.new_totp_factor(
            principal.user.tenant_id,
            principal.user.id,
            &principal.user.email,
            name,
        )
        .await
    }

    /// A new, unconfirmed TOTP factor for `user` (abandoning any other unconfirmed one).
    pub(crate) async fn new_totp_factor(
        &self,
        tenant: Uuid,
        user: Uuid,
        email: &str,
        name: &str,
    ) -> Result<TotpEnrolment, AuthError> {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        let totp = self.totp(&secret, email)?;
        let id = Uuid::now_v7();
        let sealed =
            Sealer::new(self.inner.settings.secret_key_bytes()).seal(&secret, id.as_bytes())?;
        let name = name.to_owned();
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
        let secret = self.unconfirmed_secret(tenant, user, id).await?;
        let step = self.matching_step(&secret, &principal.user.email, code)?;
        self.confirm_with_step(tenant, user, id, step).await
    }

    /// Confirms factor `id` of `user` whose first code was of time `step`; the account's first
    /// factor also makes its recovery codes, returned this once.
    pub(crate) async fn confirm_with_step(
        &self,
        tenant: Uuid,
        user: Uuid,
        id: Uuid,
        step: i64,
    ) -> Result<Option<RecoveryCodes>, AuthError> {
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
                    audit::record(
                        conn,
                        tenant,
                        EventType::FactorAdded,
                        Actor::User { id: user },
                        audit::user(user),
                        json!({ "kind": "totp", "factor_id": id }),
                    )
                    .await?;
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
        let by = audit::actor(principal);
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
                    audit::record(
                        conn,
                        tenant,
                        EventType::FactorRemoved,
                        by,
                        audit::user(user),
                        json!({ "kind": "totp", "factor_id": id }),
                    )
                    .await?;
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
}

/// id, kind, name, confirmed_at, created_at.
type FactorRow = (Uuid, String, String, Option<DateTime<Utc>>, DateTime<Utc>);

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
