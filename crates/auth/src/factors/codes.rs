//! Checking codes: TOTP codes of a factor (each step once) and recovery codes (each once).

use chrono::Utc;
use diesel::prelude::*;
use sovereign_db::schema::{mfa_factors, recovery_codes};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use totp_rs::{Algorithm, TOTP};
use uuid::Uuid;

use crate::model::User;
use crate::opaque;
use crate::sealed::Sealer;
use crate::{Accounts, AuthError};

/// Seconds per TOTP step.
const STEP: u64 = 30;
/// Digits per code.
const DIGITS: usize = 6;

impl Accounts {
    /// Accepts a TOTP code of one of the account's confirmed factors, once.
    pub(super) async fn accept_totp(&self, user: &User, code: &str) -> Result<(), AuthError> {
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
    pub(super) async fn accept_recovery_code(
        &self,
        user: &User,
        code: &str,
    ) -> Result<(), AuthError> {
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

    /// The secret of a factor of `user` that is still waiting for its first code.
    pub(super) async fn unconfirmed_secret(
        &self,
        tenant: Uuid,
        user: Uuid,
        id: Uuid,
    ) -> Result<Vec<u8>, AuthError> {
        let sealed: Vec<u8> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    mfa_factors::table
                        .find(id)
                        .filter(mfa_factors::user_id.eq(user))
                        .filter(mfa_factors::confirmed_at.is_null())
                        .select(mfa_factors::secret)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::NotFound("factor"))?;
        Sealer::new(self.inner.settings.secret_key_bytes()).open(&sealed, id.as_bytes())
    }

    /// The time step (previous, current or next) whose code `code` is, or `InvalidCode`.
    pub(super) fn matching_step(
        &self,
        secret: &[u8],
        account: &str,
        code: &str,
    ) -> Result<i64, AuthError> {
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

    pub(super) fn totp(&self, secret: &[u8], account: &str) -> Result<TOTP, AuthError> {
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

    pub(super) fn recovery_hash(&self, code: &str) -> Vec<u8> {
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
