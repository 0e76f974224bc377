//! [`Accounts`]: registration, sign-in, sessions, password flows, verification and
//! authentication. Every query runs in [`Db::tenant_transaction`], so row-level security scopes
//! it to one tenant.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sovereign_cache::{Cache, RateKey, RateLimiter};
use sovereign_db::schema::{action_tokens, api_keys, refresh_tokens, sessions, users};
use sovereign_db::{Db, RunQueryDsl, ScopedFutureExt};
use sovereign_tenancy::{TenancyError, Tenant, TenantRef};
use uuid::Uuid;
use validator::ValidateEmail;

use crate::AuthError;
use crate::jwt::TokenKeys;
use crate::mailer::{Email, Mailer};
use crate::model::{Credential, Principal, Role, User, UserRow};
use crate::opaque::{self, Kind};
use crate::password::{PasswordHasher, PasswordPolicy, context_words};
use crate::revocation::{CHANNEL, CredentialKey, Entry, LocalCredentials, Revocation};
use crate::settings::AuthSettings;

/// Longest full name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest user agent kept with a session.
const MAX_USER_AGENT_CHARS: usize = 512;

/// Where a request came from, kept with the sessions it opens.
#[derive(Debug, Clone, Default)]
pub struct ClientContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl ClientContext {
    /// The user agent as stored: at most [`MAX_USER_AGENT_CHARS`] characters.
    fn user_agent(&self) -> Option<String> {
        self.user_agent
            .as_deref()
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect())
    }
}

/// What a mailed single-use token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    PasswordReset,
    EmailVerification,
}

impl Purpose {
    /// The `action_tokens.purpose` value.
    fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::PasswordReset => Kind::PasswordReset,
            Self::EmailVerification => Kind::EmailVerification,
        }
    }
}

/// Tokens from a sign-in or a refresh.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6ImF0K2p3dCJ9…",
    "token_type": "Bearer",
    "expires_in": 900,
    "refresh_token": "sovrt_000000000000000000000000000000016f9c…",
    "refresh_expires_in": 604800,
    "session_id": "0193a6f0-7c3e-7b1a-9d2f-4a5b6c7d8e9f"
})))]
pub struct TokenPair {
    /// A JWT (`typ: at+jwt`); send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque and single use: exchange it at `/api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Seconds until the session ends.
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

/// An authenticated caller and its (home) tenant.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub tenant: Tenant,
    /// When the credential stops being valid by itself: the access token's `exp`, or the API
    /// key's expiry (`None`: a key that never expires).
    pub expires_at: Option<DateTime<Utc>>,
}

/// A new account.
#[derive(Debug, Deserialize)]
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

/// The parts [`Accounts`] is made of.
pub struct AccountsParts {
    pub db: Db,
    pub cache: Cache,
    /// `None` turns per-account throttling off.
    pub limiter: Option<Arc<RateLimiter>>,
    pub keys: TokenKeys,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
    pub mailer: Arc<dyn Mailer>,
    pub settings: AuthSettings,
}

/// The accounts service. Cheap to clone; every clone shares one state.
#[derive(Clone)]
pub struct Accounts {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: Db,
    pub cache: Cache,
    pub limiter: Option<Arc<RateLimiter>>,
    pub keys: TokenKeys,
    pub hasher: PasswordHasher,
    pub policy: PasswordPolicy,
    pub mailer: Arc<dyn Mailer>,
    pub settings: AuthSettings,
    pub local: LocalCredentials,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("keys", &self.inner.keys)
            .field("hasher", &self.inner.hasher)
            .finish_non_exhaustive()
    }
}

/// Lower-cases and trims an address, and checks its form.
pub fn normalize_email(email: &str) -> Result<String, AuthError> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 || !email.validate_email() {
        return Err(AuthError::invalid(
            "email",
            "email",
            "is not an email address",
        ));
    }
    Ok(email)
}

/// Trims a full name and checks its length.
pub fn normalize_name(name: &str, field: &str) -> Result<String, AuthError> {
    let name = name.trim();
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            field,
            "length",
            format!("must have at most {MAX_NAME_CHARS} printable characters"),
        ));
    }
    Ok(name.to_owned())
}

fn later(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
}

/// What rotating a refresh token found.
enum Rotation {
    Rotated {
        user: User,
        session: Uuid,
        refresh: String,
        expires_at: DateTime<Utc>,
    },
    /// A spent token: the session is now revoked.
    Reused { session: Uuid, user: Uuid },
    /// Unknown, or its session ended.
    Invalid,
}

impl Accounts {
    /// Assembles the service and starts listening for revocations published by any instance.
    /// Must be called inside a tokio runtime.
    #[must_use]
    pub fn new(parts: AccountsParts) -> Self {
        let local = LocalCredentials::new(parts.limiter.clone());
        local.listen(parts.cache.clone());
        Self {
            inner: Arc::new(Inner {
                db: parts.db,
                cache: parts.cache,
                limiter: parts.limiter,
                keys: parts.keys,
                hasher: parts.hasher,
                policy: parts.policy,
                mailer: parts.mailer,
                settings: parts.settings,
                local,
            }),
        }
    }

    /// The service as the settings describe it. Computing the dummy password hash takes one
    /// bcrypt run, off the async workers.
    pub async fn from_settings(
        settings: &AuthSettings,
        db: Db,
        cache: Cache,
        limiter: Option<Arc<RateLimiter>>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<Self, AuthError> {
        let keys = TokenKeys::from_settings(settings)?;
        let (cost, concurrency) = (settings.bcrypt_cost, settings.hash_concurrency);
        let hasher = tokio::task::spawn_blocking(move || PasswordHasher::new(cost, concurrency))
            .await
            .map_err(|e| AuthError::Hashing(e.to_string()))??;
        Ok(Self::new(AccountsParts {
            db,
            cache,
            limiter,
            keys,
            hasher,
            policy: PasswordPolicy {
                min_chars: settings.password_min_length,
            },
            mailer,
            settings: settings.clone(),
        }))
    }

    /// Whether this instance currently answers from its memory of verified credentials (the
    /// revocation subscription is up and the cache healthy).
    #[must_use]
    pub fn remembering(&self) -> bool {
        self.inner.local.trusted()
    }

    /// Signing keys (for the JWKS document).
    #[must_use]
    pub fn keys(&self) -> &TokenKeys {
        &self.inner.keys
    }

    pub(crate) fn db(&self) -> &Db {
        &self.inner.db
    }

    /// Per-account throttling; every attempt counts, successful or not.
    pub(crate) async fn throttle(&self, action: &str, account: &str) -> Result<(), AuthError> {
        let Some(limiter) = &self.inner.limiter else {
            return Ok(());
        };
        let key = format!("{action}:{account}");
        let decision = limiter
            .check(
                "account",
                RateKey::Account(&key),
                self.inner.settings.account_quota,
            )
            .await;
        if decision.allowed {
            Ok(())
        } else {
            tracing::warn!(
                security_event = "account_throttled",
                action,
                "too many attempts for one account"
            );
            Err(AuthError::RateLimited {
                retry_after: decision.retry_after.unwrap_or(Duration::from_secs(1)),
            })
        }
    }

    /// Writes nothing; tells every instance (this one at once) to forget what `revocation`
    /// concerns. Called after the database change has committed.
    pub async fn announce(&self, revocation: Revocation) {
        auth_event("revocation");
        self.inner.local.forget(revocation);
        if let Err(e) = self.inner.cache.publish(CHANNEL, &revocation).await {
            tracing::error!(error = %e, ?revocation, "cannot publish a revocation; other instances keep it for at most their entry TTL");
        }
    }

    /// Sends mail in the background: the response never waits for (or reveals) delivery.
    pub(crate) fn send_later(&self, email: Email) {
        let mailer = Arc::clone(&self.inner.mailer);
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&email).await {
                tracing::error!(error = %e, subject = %email.subject, "mail not delivered");
            }
        });
    }

    fn link(&self, page: &str, token: &str) -> String {
        format!("{}/{page}?token={token}", self.inner.settings.public_url)
    }

    // ---- Registration and sign-in ------------------------------------------------------------

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
                self.send_later(Email {
                    to: email,
                    subject: "Confirm your email address".to_owned(),
                    body: format!(
                        "Welcome! Confirm your address by opening this link:\n\n{}\n\nIt expires in {} hours.\n",
                        self.link("verify-email", &token),
                        verify_ttl.as_secs() / 3600
                    ),
                });
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
                            .first::<(UserRow, String)>(conn)
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
        let verified = self.inner.hasher.verify(password, hash.as_deref()).await?;
        let Some(row) = row.filter(|_| verified) else {
            tracing::warn!(security_event = "login_failed", %tenant, "failed sign-in");
            auth_event("login_failed");
            return Err(AuthError::InvalidCredentials);
        };
        let user = User::try_from(row)?;
        if !user.is_active {
            tracing::warn!(security_event = "login_disabled", user_id = %user.id, "sign-in to a disabled account");
            auth_event("login_failed");
            return Err(AuthError::AccountDisabled);
        }
        let pair = self.open_session(&user, client).await?;
        tracing::info!(security_event = "login", user_id = %user.id, session_id = %pair.session_id, "signed in");
        auth_event("login");
        Ok(pair)
    }

    async fn open_session(
        &self,
        user: &User,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        let refresh_ttl = self.inner.settings.refresh_token_ttl;
        let session = Uuid::now_v7();
        let (tenant, user_id) = (user.tenant_id, user.id);
        let refresh = opaque::mint(Kind::Refresh, tenant);
        let digest = refresh.digest;
        let user_agent = client.user_agent().unwrap_or_default();
        let ip = client.ip.map(|ip| ip.to_string());
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::insert_into(sessions::table)
                        .values((
                            sessions::id.eq(session),
                            sessions::tenant_id.eq(tenant),
                            sessions::user_id.eq(user_id),
                            sessions::user_agent.eq(user_agent),
                            sessions::ip.eq(ip),
                            sessions::expires_at.eq(later(refresh_ttl)),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(refresh_tokens::table)
                        .values((
                            refresh_tokens::token_hash.eq(digest.to_vec()),
                            refresh_tokens::tenant_id.eq(tenant),
                            refresh_tokens::session_id.eq(session),
                        ))
                        .execute(conn)
                        .await?;
                    Ok::<_, AuthError>(())
                }
                .scope_boxed()
            })
            .await?;
        let access = self.inner.keys.issue(user, session)?;
        Ok(TokenPair {
            access_token: access.token,
            token_type: "Bearer",
            expires_in: access.expires_in.as_secs(),
            refresh_token: refresh.token,
            refresh_expires_in: refresh_ttl.as_secs(),
            session_id: session,
        })
    }

    /// Exchanges a refresh token for a new pair. The token is spent atomically: of two
    /// concurrent refreshes one wins, and the other — like any later replay — is treated as
    /// reuse and revokes the session. There is no grace period.
    pub async fn refresh(
        &self,
        token: &str,
        client: &ClientContext,
    ) -> Result<TokenPair, AuthError> {
        let (tenant, digest) = opaque::parse(Kind::Refresh, token)
            .ok_or(AuthError::InvalidToken("not a refresh token"))?;
        let owner: Option<Uuid> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    refresh_tokens::table
                        .inner_join(sessions::table.on(sessions::id.eq(refresh_tokens::session_id)))
                        .filter(refresh_tokens::token_hash.eq(digest.to_vec()))
                        .select(sessions::user_id)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let owner = owner.ok_or(AuthError::InvalidToken("unknown refresh token"))?;
        self.throttle("refresh", &owner.to_string()).await?;

        let next = opaque::mint(Kind::Refresh, tenant);
        let next_token = next.token.clone();
        let user_agent = client.user_agent();
        let ip = client.ip.map(|ip| ip.to_string());
        let rotation = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let spent: Option<Uuid> = diesel::update(refresh_tokens::table)
                        .filter(refresh_tokens::token_hash.eq(digest.to_vec()))
                        .filter(refresh_tokens::spent_at.is_null())
                        .set(refresh_tokens::spent_at.eq(diesel::dsl::now))
                        .returning(refresh_tokens::session_id)
                        .get_result(conn)
                        .await
                        .optional()?;
                    let Some(session) = spent else {
                        // Spent before: a replay, or the loser of a concurrent refresh.
                        let revoked = revoke_sessions(
                            conn,
                            RevokeWhere::TokenSession(digest.to_vec()),
                            "refresh_token_reused",
                        )
                        .await?;
                        return Ok::<_, AuthError>(match <[_]>::first(&revoked) {
                            Some(&(session, user)) => Rotation::Reused { session, user },
                            None => Rotation::Invalid,
                        });
                    };
                    let live = sessions::table
                        .inner_join(users::table.on(users::id.eq(sessions::user_id)))
                        .filter(sessions::id.eq(session))
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expires_at.gt(diesel::dsl::now))
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select((UserRow::as_select(), sessions::expires_at))
                        .first::<(UserRow, DateTime<Utc>)>(conn)
                        .await
                        .optional()?;
                    let Some((row, expires_at)) = live else {
                        return Ok(Rotation::Invalid);
                    };
                    diesel::insert_into(refresh_tokens::table)
                        .values((
                            refresh_tokens::token_hash.eq(next.digest.to_vec()),
                            refresh_tokens::tenant_id.eq(tenant),
                            refresh_tokens::session_id.eq(session),
                        ))
                        .execute(conn)
                        .await?;
                    diesel::update(sessions::table.find(session))
                        .set((
                            sessions::last_used_at.eq(diesel::dsl::now),
                            sessions::ip.eq(ip),
                        ))
                        .execute(conn)
                        .await?;
                    if let Some(ua) = user_agent {
                        diesel::update(sessions::table.find(session))
                            .set(sessions::user_agent.eq(ua))
                            .execute(conn)
                            .await?;
                    }
                    Ok(Rotation::Rotated {
                        user: User::try_from(row)?,
                        session,
                        refresh: next_token,
                        expires_at,
                    })
                }
                .scope_boxed()
            })
            .await?;
        match rotation {
            Rotation::Rotated {
                user,
                session,
                refresh,
                expires_at,
            } => {
                let access = self.inner.keys.issue(&user, session)?;
                auth_event("refresh");
                let remaining = (expires_at - Utc::now()).num_seconds().max(0);
                Ok(TokenPair {
                    access_token: access.token,
                    token_type: "Bearer",
                    expires_in: access.expires_in.as_secs(),
                    refresh_token: refresh,
                    refresh_expires_in: u64::try_from(remaining).unwrap_or(0),
                    session_id: session,
                })
            }
            Rotation::Reused { session, user } => {
                auth_event("refresh_token_reused");
                tracing::warn!(
                    security_event = "refresh_token_reused",
                    session_id = %session,
                    user_id = %user,
                    "a spent refresh token was presented; session revoked"
                );
                self.announce(Revocation::Session(session)).await;
                Err(AuthError::RefreshReused)
            }
            Rotation::Invalid => Err(AuthError::InvalidToken("session ended")),
        }
    }

    // ---- Authentication ----------------------------------------------------------------------

    /// Authenticates a bearer credential: an access token, or an API key (`sovak_…`). The
    /// result is a loaded, active account whose session (or key) is live right now.
    pub async fn authenticate(&self, credential: &str) -> Result<Authenticated, AuthError> {
        self.authenticate_with(credential, true).await
    }

    /// As [`Accounts::authenticate`], but always from the database, never from this instance's
    /// memory of verified credentials: for long-lived connections rechecking after a revocation
    /// (whose message may not have reached the memory yet).
    pub async fn authenticate_fresh(&self, credential: &str) -> Result<Authenticated, AuthError> {
        self.authenticate_with(credential, false).await
    }

    async fn authenticate_with(
        &self,
        credential: &str,
        remembered: bool,
    ) -> Result<Authenticated, AuthError> {
        if opaque::is_api_key(credential) {
            return self.authenticate_api_key(credential, remembered).await;
        }
        let claims = self.inner.keys.verify(credential)?;
        let expires_at = DateTime::from_timestamp(claims.exp, 0);
        let key = CredentialKey::Session(claims.sid);
        if remembered
            && let Some(entry) = self.inner.local.get(&key).await
            && entry.principal.user.id == claims.sub
            && entry.tenant.id == claims.tenant
        {
            return Ok(Authenticated {
                principal: entry.principal,
                tenant: entry.tenant,
                expires_at,
            });
        }
        let mut authenticated = self
            .session_principal(claims.tenant, claims.sub, claims.sid)
            .await?;
        authenticated.expires_at = expires_at;
        self.inner
            .local
            .remember(
                key,
                Entry {
                    principal: authenticated.principal.clone(),
                    tenant: authenticated.tenant.clone(),
                    api_key: None,
                    expires_at: None,
                },
            )
            .await;
        Ok(authenticated)
    }

    /// The account behind a live session, loaded from the database: for credentials that
    /// name a session without carrying a token (a websocket ticket, a recheck). `expires_at` is
    /// the session's own expiry.
    pub async fn session_principal(
        &self,
        tenant_id: Uuid,
        user_id: Uuid,
        session_id: Uuid,
    ) -> Result<Authenticated, AuthError> {
        let (tenant_id, sid, sub) = (tenant_id, session_id, user_id);
        let (row, session_expires) = self
            .db()
            .tenant_transaction(tenant_id, |conn| {
                async move {
                    sessions::table
                        .inner_join(users::table.on(users::id.eq(sessions::user_id)))
                        .filter(sessions::id.eq(sid))
                        .filter(sessions::user_id.eq(sub))
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expires_at.gt(diesel::dsl::now))
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select((UserRow::as_select(), sessions::expires_at))
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::InvalidToken("session ended"))?;
        let user = User::try_from(row)?;
        let tenant = self.active_tenant(tenant_id).await?;
        let principal = Principal {
            role: user.role,
            user,
            credential: Credential::Session { id: sid },
        };
        Ok(Authenticated {
            principal,
            tenant,
            expires_at: Some(session_expires),
        })
    }

    /// Checks a new password and hashes it, on the hashing pool, against the words the user's
    /// context makes easy to guess: the address, and the tenant's name and slug.
    async fn hash_new(
        &self,
        tenant: Uuid,
        password: &SecretString,
        field: &'static str,
        email: Option<&str>,
    ) -> Result<String, AuthError> {
        let tenant = sovereign_tenancy::find(self.db(), &TenantRef::Id(tenant)).await?;
        let names: Vec<&str> = tenant
            .iter()
            .flat_map(|t| [t.name.as_str(), t.slug.as_str()])
            .collect();
        let words = context_words(email, &names);
        self.inner
            .hasher
            .hash_new(password, self.inner.policy, field, words)
            .await
    }

    /// A user's address.
    async fn email_of(&self, tenant: Uuid, user: Uuid) -> Result<String, AuthError> {
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    users::table
                        .find(user)
                        .select(users::email)
                        .first(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await
    }

    pub(crate) async fn active_tenant(&self, id: Uuid) -> Result<Tenant, AuthError> {
        let tenant = sovereign_tenancy::find(self.db(), &TenantRef::Id(id))
            .await?
            .ok_or(AuthError::InvalidToken("tenant gone"))?;
        if !tenant.is_active() {
            return Err(TenancyError::Suspended.into());
        }
        Ok(tenant)
    }

    pub(crate) async fn remember_key(&self, digest: [u8; 32], entry: Entry) {
        self.inner
            .local
            .remember(CredentialKey::ApiKey(digest), entry)
            .await;
    }

    pub(crate) async fn remembered_key(&self, digest: [u8; 32]) -> Option<Entry> {
        self.inner.local.get(&CredentialKey::ApiKey(digest)).await
    }

    // ---- Sessions ----------------------------------------------------------------------------

    /// Ends this session, or every session of the account.
    pub async fn logout(&self, principal: &Principal, all: bool) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        let user = principal.user.id;
        let tenant = principal.user.tenant_id;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let target = if all {
                        RevokeWhere::User(user)
                    } else {
                        RevokeWhere::Session(session)
                    };
                    revoke_sessions(conn, target, "logout").await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "logout", user_id = %user, all, "signed out");
        self.announce(if all {
            Revocation::User(user)
        } else {
            Revocation::Session(session)
        })
        .await;
        Ok(())
    }

    /// The account's live sessions, newest first.
    pub async fn sessions(
        &self,
        principal: &Principal,
    ) -> Result<Vec<crate::SessionInfo>, AuthError> {
        let current = match principal.credential {
            Credential::Session { id } => Some(id),
            Credential::ApiKey { .. } => None,
        };
        let user = principal.user.id;
        let rows = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move {
                    sessions::table
                        .filter(sessions::user_id.eq(user))
                        .filter(sessions::revoked_at.is_null())
                        .filter(sessions::expires_at.gt(diesel::dsl::now))
                        .order(sessions::created_at.desc())
                        .limit(100)
                        .select(crate::model::SessionRow::as_select())
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| crate::SessionInfo {
                current: Some(r.id) == current,
                id: r.id,
                user_agent: r.user_agent,
                ip: r.ip,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
            })
            .collect())
    }

    /// Ends one of the account's own sessions.
    pub async fn revoke_session(
        &self,
        principal: &Principal,
        session: Uuid,
    ) -> Result<(), AuthError> {
        let user = principal.user.id;
        let revoked = self
            .db()
            .tenant_transaction(principal.user.tenant_id, |conn| {
                async move {
                    revoke_sessions(
                        conn,
                        RevokeWhere::OwnSession { session, user },
                        "revoked_by_user",
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        if revoked.is_empty() {
            return Err(AuthError::NotFound("session"));
        }
        self.announce(Revocation::Session(session)).await;
        Ok(())
    }

    // ---- Passwords and verification ----------------------------------------------------------

    /// Changes the password, given the current one, and signs out every other session.
    pub async fn change_password(
        &self,
        principal: &Principal,
        current: &SecretString,
        new: &SecretString,
    ) -> Result<(), AuthError> {
        let session = principal.session_id()?;
        let (tenant, user) = (principal.user.tenant_id, principal.user.id);
        self.throttle("password", &user.to_string()).await?;
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
        if !self.inner.hasher.verify(current, Some(&stored)).await? {
            tracing::warn!(security_event = "password_change_refused", user_id = %user, "wrong current password");
            return Err(AuthError::WrongPassword);
        }
        let hash = self
            .hash_new(tenant, new, "new_password", Some(&principal.user.email))
            .await?;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    set_password(conn, user, &hash).await?;
                    revoke_sessions(
                        conn,
                        RevokeWhere::OtherSessions {
                            user,
                            keep: session,
                        },
                        "password_changed",
                    )
                    .await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "password_changed", user_id = %user, "password changed; other sessions revoked");
        self.announce(Revocation::User(user)).await;
        Ok(())
    }

    /// Starts a password reset: mails a single-use link if the address has an active account.
    /// Returns at once, before any lookup, so the answer and its timing are the same either way.
    pub async fn forgot_password(&self, tenant: Uuid, email: &str) -> Result<(), AuthError> {
        // A malformed address is refused (that reveals nothing about accounts).
        let email = normalize_email(email)?;
        self.throttle("forgot", &format!("{tenant}:{email}"))
            .await?;
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.send_reset(tenant, email).await {
                tracing::error!(error = %e, "password reset not started");
            }
        });
        Ok(())
    }

    async fn send_reset(&self, tenant: Uuid, email: String) -> Result<(), AuthError> {
        let ttl = self.inner.settings.password_reset_ttl;
        let lookup = email.clone();
        let token = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let user: Option<Uuid> = users::table
                        .filter(users::email.eq(lookup))
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select(users::id)
                        .first(conn)
                        .await
                        .optional()?;
                    match user {
                        Some(user) => Ok::<_, AuthError>(Some(
                            insert_action_token(conn, tenant, user, Purpose::PasswordReset, ttl)
                                .await?,
                        )),
                        None => Ok(None),
                    }
                }
                .scope_boxed()
            })
            .await?;
        if let Some(token) = token {
            self.send_later(Email {
                to: email,
                subject: "Reset your password".to_owned(),
                body: format!(
                    "Someone asked to reset the password of this account. To choose a new one, open:\n\n{}\n\nThe link works once and expires in {} minutes. If you did not ask, ignore this message.\n",
                    self.link("reset-password", &token),
                    ttl.as_secs() / 60
                ),
            });
        }
        Ok(())
    }

    /// Sets a new password with a reset token, signs out every session, and marks the address
    /// verified (the mail was received).
    pub async fn reset_password(&self, token: &str, new: &SecretString) -> Result<(), AuthError> {
        let (tenant, digest) = opaque::parse(Kind::PasswordReset, token)
            .ok_or(AuthError::InvalidToken("not a reset token"))?;
        let user = self
            .action_token_owner(tenant, digest, Purpose::PasswordReset)
            .await?;
        self.throttle("reset", &user.to_string()).await?;
        let email = self.email_of(tenant, user).await?;
        let hash = self
            .hash_new(tenant, new, "new_password", Some(&email))
            .await?;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    consume_action_token(conn, digest, Purpose::PasswordReset).await?;
                    set_password(conn, user, &hash).await?;
                    diesel::update(users::table.find(user))
                        .set(users::email_verified.eq(true))
                        .execute(conn)
                        .await?;
                    // Other reset links die with this one.
                    diesel::update(action_tokens::table)
                        .filter(action_tokens::user_id.eq(user))
                        .filter(action_tokens::purpose.eq(Purpose::PasswordReset.as_str()))
                        .filter(action_tokens::used_at.is_null())
                        .set(action_tokens::used_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    revoke_sessions(conn, RevokeWhere::User(user), "password_reset").await
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "password_reset", user_id = %user, "password reset; all sessions revoked");
        self.announce(Revocation::User(user)).await;
        Ok(())
    }

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
        self.send_later(Email {
            to: user.email.clone(),
            subject: "Confirm your email address".to_owned(),
            body: format!(
                "Confirm your address by opening this link:\n\n{}\n\nIt expires in {} hours.\n",
                self.link("verify-email", &token),
                ttl.as_secs() / 3600
            ),
        });
        Ok(())
    }

    /// Marks the address verified with a verification token.
    pub async fn confirm_verification(&self, token: &str) -> Result<(), AuthError> {
        let (tenant, digest) = opaque::parse(Kind::EmailVerification, token)
            .ok_or(AuthError::InvalidToken("not a verification token"))?;
        let user = self
            .action_token_owner(tenant, digest, Purpose::EmailVerification)
            .await?;
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

    async fn action_token_owner(
        &self,
        tenant: Uuid,
        digest: [u8; 32],
        purpose: Purpose,
    ) -> Result<Uuid, AuthError> {
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    action_tokens::table
                        .filter(action_tokens::token_hash.eq(digest.to_vec()))
                        .filter(action_tokens::purpose.eq(purpose.as_str()))
                        .filter(action_tokens::used_at.is_null())
                        .filter(action_tokens::expires_at.gt(diesel::dsl::now))
                        .select(action_tokens::user_id)
                        .first(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?
            .ok_or(AuthError::InvalidToken("expired or used"))
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

/// Which sessions to revoke.
pub(crate) enum RevokeWhere {
    Session(Uuid),
    OwnSession {
        session: Uuid,
        user: Uuid,
    },
    User(Uuid),
    OtherSessions {
        user: Uuid,
        keep: Uuid,
    },
    /// The session a refresh token belongs to.
    TokenSession(Vec<u8>),
}

/// Revokes live sessions; returns `(session, user)` of each one revoked.
pub(crate) async fn revoke_sessions(
    conn: &mut sovereign_db::AsyncPgConnection,
    target: RevokeWhere,
    reason: &'static str,
) -> Result<Vec<(Uuid, Uuid)>, AuthError> {
    let base = diesel::update(sessions::table)
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    let filtered = match target {
        RevokeWhere::Session(id) => base.filter(sessions::id.eq(id)),
        RevokeWhere::OwnSession { session, user } => base
            .filter(sessions::id.eq(session))
            .filter(sessions::user_id.eq(user)),
        RevokeWhere::User(user) => base.filter(sessions::user_id.eq(user)),
        RevokeWhere::OtherSessions { user, keep } => base
            .filter(sessions::user_id.eq(user))
            .filter(sessions::id.ne(keep)),
        RevokeWhere::TokenSession(digest) => base.filter(
            sessions::id.eq_any(
                refresh_tokens::table
                    .filter(refresh_tokens::token_hash.eq(digest))
                    .select(refresh_tokens::session_id),
            ),
        ),
    };
    Ok(filtered
        .set((
            sessions::revoked_at.eq(diesel::dsl::now),
            sessions::revoked_reason.eq(reason),
        ))
        .returning((sessions::id, sessions::user_id))
        .get_results(conn)
        .await?)
}

async fn set_password(
    conn: &mut sovereign_db::AsyncPgConnection,
    user: Uuid,
    hash: &str,
) -> Result<(), AuthError> {
    let updated = diesel::update(users::table.find(user))
        .filter(users::deleted_at.is_null())
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    if updated == 0 {
        return Err(AuthError::InvalidToken("account gone"));
    }
    Ok(())
}

async fn insert_action_token(
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

async fn consume_action_token(
    conn: &mut sovereign_db::AsyncPgConnection,
    digest: [u8; 32],
    purpose: Purpose,
) -> Result<(), AuthError> {
    let used = diesel::update(action_tokens::table)
        .filter(action_tokens::token_hash.eq(digest.to_vec()))
        .filter(action_tokens::purpose.eq(purpose.as_str()))
        .filter(action_tokens::used_at.is_null())
        .filter(action_tokens::expires_at.gt(diesel::dsl::now))
        .set(action_tokens::used_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    if used == 0 {
        return Err(AuthError::InvalidToken("expired or used"));
    }
    Ok(())
}

/// Revokes every API key of `user` (on deletion).
pub(crate) async fn revoke_keys_of(
    conn: &mut sovereign_db::AsyncPgConnection,
    user: Uuid,
) -> Result<(), AuthError> {
    diesel::update(api_keys::table)
        .filter(api_keys::user_id.eq(user))
        .filter(api_keys::revoked_at.is_null())
        .set(api_keys::revoked_at.eq(diesel::dsl::now))
        .execute(conn)
        .await?;
    Ok(())
}

/// Counts a security event for the metrics (`sovereign_auth_events_total{event}`).
fn auth_event(event: &'static str) {
    metrics::counter!("sovereign_auth_events_total", "event" => event).increment(1);
}
