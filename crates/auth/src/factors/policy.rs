//! A tenant's second-factor policy: who must sign in at `aal2` (nobody, administrators,
//! everyone). A covered account with a factor gets the usual challenge; one without gets an
//! *enrolment* challenge instead of a session, and enrols an authenticator to complete it (the
//! session then opens at `aal2`, with the recovery codes). Turning the policy on ends the covered
//! accounts' `aal1` sessions; a refresh of one that remains (an account promoted since) is
//! refused (`aal2_required`) and ends it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sovereign_db::schema::{auth_policies, mfa_challenges, mfa_factors, sessions, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::TotpEnrolment;
use crate::accounts::auth_event;
use crate::model::{Aal, Assurance, Principal, Role};
use crate::opaque::{self, Kind};
use crate::revocation::Revocation;
use crate::{Accounts, AuthError, ClientContext, TokenPair};

/// Who must sign in at `aal2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RequireAal2 {
    None,
    /// Administrators and superadministrators.
    Admins,
    Everyone,
}

impl RequireAal2 {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Admins => "admins",
            Self::Everyone => "everyone",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "admins" => Self::Admins,
            "everyone" => Self::Everyone,
            _ => Self::None,
        }
    }

    /// Whether an account of `role` must sign in at `aal2`.
    #[must_use]
    pub fn covers(self, role: Role) -> bool {
        match self {
            Self::None => false,
            Self::Admins => role >= Role::Admin,
            Self::Everyone => true,
        }
    }

    fn roles(self) -> &'static [&'static str] {
        match self {
            Self::None => &[],
            Self::Admins => &["admin", "superadmin"],
            Self::Everyone => &["user", "admin", "superadmin"],
        }
    }
}

/// The tenant's second-factor policy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MfaPolicy {
    pub require_aal2: RequireAal2,
}

/// A challenge and a code: completes an enrolment challenge.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolmentConfirmation {
    pub challenge: String,
    /// A code from the authenticator just added.
    pub code: String,
}

/// A session opened by enrolling a first authenticator, and its recovery codes (shown once).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrolledSession {
    #[serde(flatten)]
    pub tokens: TokenPair,
    pub recovery_codes: Vec<String>,
}

/// The policy of the tenant `conn` is scoped to.
pub(crate) async fn tenant_policy(
    conn: &mut sovereign_db::AsyncPgConnection,
) -> Result<RequireAal2, AuthError> {
    let stored: Option<String> = auth_policies::table
        .select(auth_policies::require_aal2)
        .first(conn)
        .await
        .optional()?;
    Ok(stored.map_or(RequireAal2::None, |s| RequireAal2::parse(&s)))
}

/// user_id, used_at, expires_at, amr, factor_id.
type EnrolmentRow = (
    Uuid,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    Vec<Option<String>>,
    Option<Uuid>,
);

impl Accounts {
    /// The caller's tenant's policy (administrators).
    pub async fn mfa_policy(&self, principal: &Principal) -> Result<MfaPolicy, AuthError> {
        principal.require(Role::Admin)?;
        let require_aal2 = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move { tenant_policy(conn).await }.scope_boxed()
            })
            .await?;
        Ok(MfaPolicy { require_aal2 })
    }

    /// Sets the caller's tenant's policy (administrators, recently authenticated), and ends
    /// the `aal1` sessions of the accounts it now covers.
    pub async fn set_mfa_policy(
        &self,
        principal: &Principal,
        policy: &MfaPolicy,
    ) -> Result<MfaPolicy, AuthError> {
        principal.require(Role::Admin)?;
        principal.require_recent()?;
        let tenant = principal.user.tenant_id;
        let wanted = policy.require_aal2;
        let ended: Vec<Uuid> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(auth_policies::table)
                        .values((
                            auth_policies::tenant_id.eq(tenant),
                            auth_policies::require_aal2.eq(wanted.as_str()),
                        ))
                        .on_conflict(auth_policies::tenant_id)
                        .do_update()
                        .set((
                            auth_policies::require_aal2.eq(wanted.as_str()),
                            auth_policies::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::update(sessions::table)
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::aal.eq("aal1"))
                        .filter(
                            sessions::user_id.eq_any(
                                users::table
                                    .filter(users::role.eq_any(wanted.roles()))
                                    .select(users::id),
                            ),
                        )
                        .set((
                            sessions::revoked_at.eq(diesel::dsl::now),
                            sessions::revoked_reason.eq("mfa_policy"),
                        ))
                        .returning(sessions::id)
                        .get_results(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "mfa_policy_changed", %tenant, by = %principal.user.id, require_aal2 = wanted.as_str(), sessions_ended = ended.len(), "second-factor policy changed");
        for session in ended {
            self.announce(Revocation::Session(session)).await;
        }
        Ok(MfaPolicy {
            require_aal2: wanted,
        })
    }

    /// The enrolment challenge's row, if usable.
    async fn enrolment(
        &self,
        challenge: &str,
    ) -> Result<(Uuid, [u8; 32], EnrolmentRow), AuthError> {
        let (tenant, digest) =
            opaque::parse(Kind::MfaChallenge, challenge).ok_or(AuthError::InvalidChallenge)?;
        let row: Option<EnrolmentRow> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    mfa_challenges::table
                        .find(digest.to_vec())
                        .filter(mfa_challenges::purpose.eq("enrol"))
                        .select((
                            mfa_challenges::user_id,
                            mfa_challenges::used_at,
                            mfa_challenges::expires_at,
                            mfa_challenges::amr,
                            mfa_challenges::factor_id,
                        ))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        match row {
            Some(row) if row.1.is_none() && row.2 > Utc::now() => Ok((tenant, digest, row)),
            _ => Err(AuthError::InvalidChallenge),
        }
    }

    /// Starts enrolling an authenticator for the account an enrolment challenge is for.
    pub async fn enrol_with_challenge(&self, challenge: &str) -> Result<TotpEnrolment, AuthError> {
        let (tenant, digest, (user, ..)) = self.enrolment(challenge).await?;
        self.throttle("mfa", &user.to_string()).await?;
        let account = self.challenged_user(tenant, user).await?;
        let enrolment = self
            .new_totp_factor(tenant, user, &account.email, "Authenticator")
            .await?;
        let factor = enrolment.id;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(mfa_challenges::table.find(digest.to_vec()))
                        .set(mfa_challenges::factor_id.eq(factor))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(enrolment)
    }

    /// Completes an enrolment challenge with a first code of the new authenticator: a session
    /// at `aal2`, and the recovery codes.
    pub async fn confirm_enrolment(
        &self,
        input: &EnrolmentConfirmation,
        client: &ClientContext,
    ) -> Result<EnrolledSession, AuthError> {
        let (tenant, digest, (user, _, _, first, factor)) =
            self.enrolment(&input.challenge).await?;
        let factor = factor.ok_or(AuthError::InvalidChallenge)?;
        self.throttle("mfa", &user.to_string()).await?;
        let account = self.challenged_user(tenant, user).await?;
        let secret = self.unconfirmed_secret(tenant, user, factor).await?;
        let step = self.matching_step(&secret, &account.email, &input.code)?;
        let spent = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    // An account that has a factor by now completes sign-ins with it.
                    let has_factor: bool = diesel::select(diesel::dsl::exists(
                        mfa_factors::table
                            .filter(mfa_factors::user_id.eq(user))
                            .filter(mfa_factors::confirmed_at.is_not_null()),
                    ))
                    .get_result(conn)
                    .await?;
                    if has_factor {
                        return Ok(0);
                    }
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
        let codes = self
            .confirm_with_step(tenant, user, factor, step)
            .await?
            .map(|c| c.recovery_codes)
            .unwrap_or_default();
        let assurance = Assurance {
            aal: Aal::Aal2,
            amr: first
                .into_iter()
                .flatten()
                .chain(["otp".to_owned()])
                .collect(),
            auth_time: Utc::now().timestamp(),
        };
        let tokens = self.open_session(&account, client, &assurance).await?;
        tracing::info!(security_event = "login", user_id = %user, session_id = %tokens.session_id, "signed in by enrolling a first factor, as the tenant requires");
        auth_event("login");
        Ok(EnrolledSession {
            tokens,
            recovery_codes: codes,
        })
    }
}
