//! Authentication: from a bearer credential to a loaded, active account, answered from this
//! instance's memory of verified credentials while that memory can be trusted, and the
//! announcements that make every instance forget what a revocation concerns.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sovereign_db::schema::sessions;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use sovereign_tenancy::Tenant;
use uuid::Uuid;

use crate::accounts::auth_event;
use crate::model::{Credential, Principal, User, UserRow};
use crate::opaque;
use crate::revocation::{CHANNEL, CredentialKey, Entry, Revocation};
use crate::sessions::live_session;
use crate::{Accounts, AuthError};

/// An authenticated caller and its (home) tenant.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub principal: Principal,
    pub tenant: Tenant,
    /// When the credential stops being valid by itself: the access token's `exp`, or the API
    /// key's expiry (`None`: a key that never expires).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Accounts {
    /// Whether this instance currently answers from its memory of verified credentials (the
    /// revocation subscription is up and the cache healthy).
    #[must_use]
    pub fn remembering(&self) -> bool {
        self.inner.local.trusted()
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
            let mut principal = entry.principal;
            principal.assurance = Some(claims.assurance());
            return Ok(Authenticated {
                principal,
                tenant: entry.tenant,
                expires_at,
            });
        }
        let mut authenticated = self
            .session_principal(claims.tenant, claims.sub, claims.sid)
            .await?;
        authenticated.expires_at = expires_at;
        // What this token says, not what the session says now: a token keeps the assurance it
        // was issued with (a step-up issues a new token).
        authenticated.principal.assurance = Some(claims.assurance());
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
        let (row, session_expires, assurance) = self
            .db()
            .tenant_transaction(tenant_id, |conn| {
                async move {
                    live_session(sid)
                        .filter(sessions::user_id.eq(sub))
                        .select((
                            UserRow::as_select(),
                            sessions::expires_at,
                            crate::sessions::ASSURANCE_COLUMNS,
                        ))
                        .first::<(UserRow, DateTime<Utc>, crate::sessions::AssuranceRow)>(conn)
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
            assurance: Some(crate::sessions::assurance_of(assurance)),
        };
        Ok(Authenticated {
            principal,
            tenant,
            expires_at: Some(session_expires),
        })
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
}
