//! Registration and sign-in: creating an account (by the user, or a superadmin from the command
//! line) and signing in with an address and a password.

use diesel::prelude::*;
use secrecy::SecretString;
use serde_json::json;
use sovereign_db::schema::users;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_events::{Actor, EventType};
use uuid::Uuid;
use validator::ValidateEmail;

use crate::accounts::{auth_event, normalize_email, normalize_name};
use crate::action_tokens::{Purpose, insert_action_token};
use crate::audit;
use crate::factors::SignIn;
use crate::mailer::Email;
use crate::model::{Role, User, UserRow};
use crate::{Accounts, AuthError, ClientContext, TokenPair};

/// A new account.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "email": "ada@example.com", "password": "correct horse battery staple", "full_name": "Ada Lovelace"
})))]
pub struct Registration {
    #[cfg_attr(feature = "openapi", schema(format = Email, max_length = 254))]
    pub email: String,
    /// At least `PASSWORD_MIN_LENGTH` (12) characters, at most 256; no composition rules;
    /// common and easily guessed passwords are refused.
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, min_length = 12, max_length = 256)
    )]
    pub password: SecretString,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")
    )]
    pub full_name: String,
}

impl Accounts {
    /// Creates an account, or — when the address is taken — mails its owner instead. Both paths
    /// hash the password and answer the same, so the response does not reveal which happened.
    pub async fn register(&self, tenant: Uuid, input: Registration) -> Result<(), AuthError> {
        let email = normalize_email(&input.email)?;
        let full_name = normalize_name(&input.full_name, "full_name")?;
        self.throttle("register", &format!("{tenant}:{email}"))
            .await?;
        let hash = self
            .hash_new(tenant, &input.password, "password", Some(&email))
            .await?;
        let verify_ttl = self.inner.settings.email_verify_ttl;
        let email_for_row = email.clone();
        let created = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let id: Option<Uuid> = diesel::insert_into(users::table)
                        .values((
                            users::id.eq(Uuid::now_v7()),
                            users::tenant_id.eq(tenant),
                            users::email.eq(&email_for_row),
                            users::full_name.eq(&full_name),
                            users::password_hash.eq(&hash),
                        ))
                        .on_conflict_do_nothing()
                        .returning(users::id)
                        .get_result(conn)
                        .await
                        .optional()?;
                    let Some(id) = id else {
                        return Ok::<_, AuthError>(None);
                    };
                    audit::record(
                        conn,
                        tenant,
                        EventType::AccountRegistered,
                        Actor::User { id },
                        audit::user(id),
                        json!({ "method": "password" }),
                    )
                    .await?;
                    let token = insert_action_token(
                        conn,
                        tenant,
                        id,
                        Purpose::EmailVerification,
                        verify_ttl,
                    )
                    .await?;
                    Ok(Some(token))
                }
                .scope_boxed()
            })
            .await?;
        match created {
            Some(token) => {
                tracing::info!(security_event = "account_created", %tenant, "account registered");
                self.mail_verification(email, &token, true);
            }
            None => self.send_later(Email {
                to: email,
                subject: "Someone tried to register with your address".to_owned(),
                body: "Someone (perhaps you) tried to create an account with this address, which \
                       already has one. If it was you, sign in, or reset your password if you \
                       have forgotten it. Otherwise you can ignore this message.\n"
                    .to_owned(),
            }),
        }
        Ok(())
    }

    /// Signs in with an address and password and opens a session. An unknown address, a
    /// deleted account and a wrong password all fail the same way, after one bcrypt run.
    pub async fn login(
        &self,
        tenant: Uuid,
        email: &str,
        password: &SecretString,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        match self.sign_in(tenant, email, password, client).await? {
            SignIn::Session(pair) => Ok(pair),
            SignIn::MfaRequired(_) => Err(AuthError::MfaRequired),
        }
    }

    /// Signs in with an address and a password: a session, or — for an account with a second
    /// factor — a challenge to complete with it ([`Accounts::verify_challenge`]).
    pub async fn sign_in(
        &self,
        tenant: Uuid,
        email: &str,
        password: &SecretString,
        client: &ClientContext,
    ) -> Result<SignIn, AuthError> {
        let email = email.trim().to_lowercase();
        self.throttle("login", &format!("{tenant}:{email}")).await?;
        let found = if email.validate_email() {
            let email = email.clone();
            self.db()
                .tenant_transaction(tenant, |conn| {
                    async move {
                        users::table
                            .filter(users::email.eq(email))
                            .filter(users::deleted_at.is_null())
                            .select((UserRow::as_select(), users::password_hash))
                            .first::<(UserRow, Option<String>)>(conn)
                            .await
                            .optional()
                            .map_err(AuthError::from)
                    }
                    .scope_boxed()
                })
                .await?
        } else {
            None
        };
        let (row, hash) = found.unzip();
        let found_id = row.as_ref().map(|r: &UserRow| r.id);
        let hash = hash.flatten();
        let verified = self.inner.hasher.verify(password, hash.as_deref()).await?;
        let Some(row) = row.filter(|_| verified) else {
            tracing::warn!(security_event = "login_failed", %tenant, "failed sign-in");
            auth_event("login_failed");
            // The account, when the address has one; never what was typed as a password.
            let (actor, subject) = match found_id {
                Some(id) => (Actor::User { id }, Some(audit::user(id))),
                None => (Actor::System, None),
            };
            audit::record_failure(
                self.db(),
                tenant,
                actor,
                subject,
                json!({ "method": "password", "reason": "invalid_credentials" }),
            )
            .await?;
            return Err(AuthError::InvalidCredentials);
        };
        let user = User::try_from(row)?;
        if !user.is_active {
            tracing::warn!(security_event = "login_disabled", user_id = %user.id, "sign-in to a disabled account");
            auth_event("login_failed");
            audit::record_failure(
                self.db(),
                tenant,
                Actor::User { id: user.id },
                Some(audit::user(user.id)),
                json!({ "method": "password", "reason": "account_disabled" }),
            )
            .await?;
            return Err(AuthError::AccountDisabled);
        }
        let signed_in = self.after_first_factor(&user, client, "pwd").await?;
        if let SignIn::Session(pair) = &signed_in {
            tracing::info!(security_event = "login", user_id = %user.id, session_id = %pair.session_id, "signed in");
            auth_event("login");
        }
        Ok(signed_in)
    }

    /// Creates a superadmin in `tenant` (the CLI's `create-superuser`), verified and active.
    pub async fn create_superuser(
        &self,
        tenant: Uuid,
        email: &str,
        password: &SecretString,
        full_name: &str,
    ) -> Result<User, AuthError> {
        let email = normalize_email(email)?;
        let full_name = normalize_name(full_name, "full_name")?;
        let hash = self
            .hash_new(tenant, password, "password", Some(&email))
            .await?;
        let result = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(users::table)
                        .values((
                            users::id.eq(Uuid::now_v7()),
                            users::tenant_id.eq(tenant),
                            users::email.eq(email),
                            users::full_name.eq(full_name),
                            users::password_hash.eq(hash),
                            users::role.eq(Role::Superadmin.as_str()),
                            users::email_verified.eq(true),
                        ))
                        .returning(UserRow::as_returning())
                        .get_result(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await;
        match result {
            Ok(row) => User::try_from(row),
            Err(AuthError::Db(e)) if e.is_unique_violation() => Err(AuthError::EmailTaken),
            Err(e) => Err(e),
        }
    }
}
