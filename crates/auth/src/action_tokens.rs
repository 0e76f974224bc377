//! Mailed single-use tokens (the `action_tokens` table): password reset and email
//! verification links. Only the token's SHA-256 is stored; a token is spent once, before it
//! expires.

use std::time::Duration;

use diesel::prelude::*;
use sovereign_db::schema::action_tokens;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::accounts::later;
use crate::opaque::{self, Kind};
use crate::{Accounts, AuthError};

/// What a mailed single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    /// The `action_tokens.purpose` value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
        }
    }

    pub(crate) fn kind(self) -> Kind {
        match self {
            Self::PasswordReset => Kind::PasswordReset,
            Self::EmailVerification => Kind::EmailVerification,
        }
    }

    /// Why a token of another form is refused.
    fn wrong_kind(self) -> &'static str {
        match self {
            Self::PasswordReset => "not a reset token",
            Self::EmailVerification => "not a verification token",
        }
    }
}

/// A mailed token that can still be spent, and whose it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Redeemable {
    pub tenant: Uuid,
    pub digest: [u8; 32],
    pub user: Uuid,
}

/// The tokens with `digest` for `purpose` that can still be spent: unused and unexpired.
#[diesel::dsl::auto_type(no_type_alias)]
fn usable(digest: Vec<u8>, purpose: &'static str) -> _ {
    action_tokens::table
        .filter(action_tokens::token_hash.eq(digest))
        .filter(action_tokens::purpose.eq(purpose))
        .filter(action_tokens::used_at.is_null())
        .filter(action_tokens::expires_at.gt(diesel::dsl::now))
}

impl Accounts {
    /// The address of one of the web pages that take a mailed token.
    pub(crate) fn link(&self, page: &str, token: &str) -> String {
        format!("{}/{page}?token={token}", self.inner.settings.public_url)
    }

    /// Looks up a mailed token for `purpose` without spending it: its tenant, digest and
    /// account. Spend it with [`consume_action_token`] in the transaction that acts on it.
    pub(crate) async fn redeemable(
        &self,
        token: &str,
        purpose: Purpose,
    ) -> Result<Redeemable, AuthError> {
        let (tenant, digest) = opaque::parse(purpose.kind(), token)
            .ok_or(AuthError::InvalidToken(purpose.wrong_kind()))?;
        let user = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    usable(digest.to_vec(), purpose.as_str())
                        .select(action_tokens::user_id)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::InvalidToken("expired or used"))?;
        Ok(Redeemable {
            tenant,
            digest,
            user,
        })
    }
}

/// Mints a token for `purpose`, valid for `ttl`, and stores its digest; returns the token.
pub(crate) async fn insert_action_token(
    conn: &mut sovereign_db::AsyncPgConnection,
    tenant: Uuid,
    user: Uuid,
    purpose: Purpose,
    ttl: Duration,
) -> Result<String, AuthError> {
    let minted = opaque::mint(purpose.kind(), tenant);
    diesel::insert_into(action_tokens::table)
        .values((
            action_tokens::token_hash.eq(minted.digest.to_vec()),
            action_tokens::tenant_id.eq(tenant),
            action_tokens::user_id.eq(user),
            action_tokens::purpose.eq(purpose.as_str()),
            action_tokens::expires_at.eq(later(ttl)),
        ))
        .execute(conn)
        .await?;
    Ok(minted.token)
}

/// Spends a token, which must still be usable.
pub(crate) async fn consume_action_token(
    conn: &mut sovereign_db::AsyncPgConnection,
    digest: [u8; 32],
    purpose: Purpose,
) -> Result<(), AuthError> {
    let used = diesel::update(usable(digest.to_vec(), purpose.as_str()))
        .set(action_tokens::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    if used == 0 {
        return Err(AuthError::InvalidToken("expired or used"));
    }
    Ok(())
}
