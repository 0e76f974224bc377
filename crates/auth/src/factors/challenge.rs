//! The second step of a sign-in: the challenge a password sign-in of an account with a factor
//! gets, completed with a TOTP code or a recovery code.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sovereign_db::schema::{mfa_challenges, mfa_factors, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::policy::tenant_policy;
use crate::accounts::{auth_event, later};
use crate::model::{Aal, Assurance, User, UserRow};
use crate::opaque::{self, Kind};
use crate::revocation::Revocation;
use crate::sessions::{RevokeWhere, revoke_sessions};
use crate::{Accounts, AuthError, ClientContext, TokenPair};

/// How long a sign-in challenge lasts.
const CHALLENGE_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// What a sign-in gets instead of a session when the account has a factor (`mfa_required`:
/// complete it at `/auth/mfa/verify`), or has none but the tenant requires one
/// (`mfa_enrolment_required`: enrol one at `/auth/mfa/enrol`, confirm at `/auth/mfa/enrol/confirm`).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaChallenge {
    /// `mfa_required`, or `mfa_enrolment_required`.
    pub status: &'static str,
    /// Single use; send it with a code to `/api/v1/auth/mfa/verify` within `expires_in` seconds.
    pub challenge: String,
    pub expires_in: u64,
    /// What can complete it: `totp`, `recovery_code` (enrolment: `totp`).
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

/// user_id, used_at, expires_at, amr (the first factor).
type ChallengeRow = (
    Uuid,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Vec<Option<String>>,
);

impl Accounts {
    /// The active account a sign-in challenge is for (`InvalidChallenge` once it is gone).
    pub(super) async fn challenged_user(
        &self,
        tenant: Uuid,
        user: Uuid,
    ) -> Result<User, AuthError> {
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
        User::try_from(row)
    }

    /// After a first factor (`amr`: `pwd`, or `oauth` for a provider) was verified: a session
    /// when the account has no confirmed factor, else a challenge to complete with one.
    pub(crate) async fn after_first_factor(
        &self,
        user: &User,
        client: &ClientContext,
        amr: &str,
    ) -> Result<SignIn, AuthError> {
        let (tenant, user_id) = (user.tenant_id, user.id);
        let (has_factor, policy) = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let has_factor: bool = diesel::select(diesel::dsl::exists(
                        mfa_factors::table
                            .filter(mfa_factors::user_id.eq(user_id))
                            .filter(mfa_factors::confirmed_at.is_not_null()),
                    ))
                    .get_result(conn)
                    .await?;
                    Ok::<_, AuthError>((has_factor, tenant_policy(conn).await?))
                }
                .scope_boxed()
            })
            .await?;
        // No factor, and the tenant requires one of this account: enrol one to sign in.
        let enrol = !has_factor && policy.covers(user.role);
        if !has_factor && !enrol {
            let assurance = Assurance {
                aal: Aal::Aal1,
                amr: vec![amr.to_owned()],
                auth_time: Utc::now().timestamp(),
            };
            let pair = self.open_session(user, client, &assurance).await?;
            return Ok(SignIn::Session(pair));
        }
        let minted = opaque::mint(Kind::MfaChallenge, tenant);
        let (digest, first, user_agent, ip) = (
            minted.digest,
            amr.to_owned(),
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
                            mfa_challenges::amr.eq(vec![Some(first)]),
                            mfa_challenges::user_agent.eq(user_agent),
                            mfa_challenges::ip.eq(ip),
                            mfa_challenges::expires_at.eq(later(CHALLENGE_TTL)),
                            mfa_challenges::purpose.eq(if enrol { "enrol" } else { "verify" }),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "mfa_challenge", user_id = %user_id, amr, enrol, "first factor verified; second factor required");
        Ok(SignIn::MfaRequired(if enrol {
            MfaChallenge {
                status: "mfa_enrolment_required",
                challenge: minted.token,
                expires_in: CHALLENGE_TTL.as_secs(),
                methods: vec!["totp"],
            }
        } else {
            MfaChallenge {
                status: "mfa_required",
                challenge: minted.token,
                expires_in: CHALLENGE_TTL.as_secs(),
                methods: vec!["totp", "recovery_code"],
            }
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
        let found: Option<ChallengeRow> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    mfa_challenges::table
                        .find(digest.to_vec())
                        .filter(mfa_challenges::purpose.eq("verify"))
                        .select((
                            mfa_challenges::user_id,
                            mfa_challenges::used_at,
                            mfa_challenges::expires_at,
                            mfa_challenges::amr,
                        ))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((user, None, expires_at, first)) = found else {
            return Err(AuthError::InvalidChallenge);
        };
        if expires_at <= Utc::now() {
            return Err(AuthError::InvalidChallenge);
        }
        self.throttle("mfa", &user.to_string()).await?;
        let account = self.challenged_user(tenant, user).await?;
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
            amr: first
                .into_iter()
                .flatten()
                .chain([method.to_owned()])
                .collect(),
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
}
