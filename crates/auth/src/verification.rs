//! Email verification: mailing a link that proves the account's address, and taking it.

use diesel::prelude::*;
use sovereign_db::schema::users;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};

use crate::action_tokens::{Purpose, Redeemable, consume_action_token, insert_action_token};
use crate::mailer::Email;
use crate::model::Principal;
use crate::revocation::Revocation;
use crate::{Accounts, AuthError};

impl Accounts {
    /// Mails a verification link to the account's address (nothing if already verified).
    pub async fn request_verification(&self, principal: &Principal) -> Result<(), AuthError> {
        let user = &principal.user;
        self.throttle("verify", &user.id.to_string()).await?;
        if user.email_verified {
            return Ok(());
        }
        let ttl = self.inner.settings.email_verify_ttl;
        let (tenant, id) = (user.tenant_id, user.id);
        let token = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    insert_action_token(conn, tenant, id, Purpose::EmailVerification, ttl).await
                }
                .scope_boxed()
            })
            .await?;
        self.mail_verification(user.email.clone(), &token, false);
        Ok(())
    }

    /// Marks the address verified with a verification token.
    pub async fn confirm_verification(&self, token: &str) -> Result<(), AuthError> {
        let Redeemable {
            tenant,
            digest,
            user,
        } = self.redeemable(token, Purpose::EmailVerification).await?;
        self.throttle("verify-confirm", &user.to_string()).await?;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    consume_action_token(conn, digest, Purpose::EmailVerification).await?;
                    diesel::update(users::table.find(user))
                        .set((
                            users::email_verified.eq(true),
                            users::updated_at.eq(diesel::dsl::now),
                        ))
                        .execute(conn)
                        .await?;
                    Ok::<_, AuthError>(())
                }
                .scope_boxed()
            })
            .await?;
        self.announce(Revocation::User(user)).await;
        Ok(())
    }

    /// Mails `to` the link that verifies its address; `welcome` greets a new account.
    pub(crate) fn mail_verification(&self, to: String, token: &str, welcome: bool) {
        self.send_later(Email {
            to,
            subject: "Confirm your email address".to_owned(),
            body: format!(
                "{}Confirm your address by opening this link:\n\n{}\n\nIt expires in {} hours.\n",
                if welcome { "Welcome! " } else { "" },
                self.link("verify-email", token),
                self.inner.settings.email_verify_ttl.as_secs() / 3600
            ),
        });
    }
}
