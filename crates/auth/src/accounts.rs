//! [`Accounts`], the accounts service: its construction from [`AccountsParts`] or the
//! settings, and what its parts share — per-account throttling, the tenant lookup, mail sent in
//! the background, and the checks of addresses and names. What the service does is in the
//! files named after it: registration and sign-in (`signin`), sessions and refresh tokens
//! (`sessions`), authentication and the memory of verified credentials (`authentication`),
//! password changes and resets (`password_flows`), mailed tokens (`action_tokens`), email
//! verification (`verification`), administration (`admin`) and API keys (`keys`). Every query
//! runs in [`Db::tenant_transaction`], so row-level security scopes it to one tenant.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sovereign_cache::{Cache, RateKey, RateLimiter};
use sovereign_db::Db;
use sovereign_tenancy::{TenancyError, Tenant, TenantRef};
use uuid::Uuid;
use validator::ValidateEmail;

use crate::AuthError;
use crate::jwt::TokenKeys;
use crate::mailer::{Email, Mailer};
use crate::password::{PasswordHasher, PasswordPolicy};
use crate::providers::Protocol;
use crate::revocation::LocalCredentials;
use crate::settings::AuthSettings;

/// Longest full name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

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
    pub protocol: Protocol,
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

/// `d` from now (a year for a duration too long to add).
pub(crate) fn later(d: Duration) -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365))
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
                protocol: Protocol::new(parts.settings.providers.timeout),
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

    /// Sends mail in the background: the response never waits for (or reveals) delivery.
    pub(crate) fn send_later(&self, email: Email) {
        let mailer = Arc::clone(&self.inner.mailer);
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&email).await {
                tracing::error!(error = %e, subject = %email.subject, "mail not delivered");
            }
        });
    }

    /// The caller's tenant, which must still exist and be active.
    pub(crate) async fn active_tenant(&self, id: Uuid) -> Result<Tenant, AuthError> {
        let tenant = sovereign_tenancy::find(self.db(), &TenantRef::Id(id))
            .await?
            .ok_or(AuthError::InvalidToken("tenant gone"))?;
        if !tenant.is_active() {
            return Err(TenancyError::Suspended.into());
        }
        Ok(tenant)
    }
}

/// Counts a security event for the metrics (`sovereign_auth_events_total{event}`).
pub(crate) fn auth_event(event: &'static str) {
    metrics::counter!("sovereign_auth_events_total", "event" => event).increment(1);
}
