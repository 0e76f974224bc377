//! A sign-in with a provider, in three requests:
//!
//! 1. `authorize`: the provider, the `redirect_to` (allow-listed) and a fresh `state`, nonce and
//!    PKCE verifier, kept server-side; the browser is sent to the provider.
//! 2. `callback`: the `state` is spent (deleted — a replay finds nothing), the code exchanged
//!    with the verifier, the ID token validated; the browser is sent to `redirect_to` with a
//!    one-time `code` — or with `error`, a problem code — never with a token.
//! 3. `exchange`: the app trades the code for a session (or a second-factor challenge).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use sovereign_core::Diagnostic;
use sovereign_db::schema::{provider_flows, provider_grants, users};
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use url::Url;
use uuid::Uuid;

use crate::accounts::{auth_event, later};
use crate::factors::SignIn;
use crate::model::{Principal, User, UserRow};
use crate::opaque::{self, Kind};
use crate::{Accounts, AuthError, ClientContext};

/// How long a sign-in may spend at the provider.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// How long the app has to exchange its code.
const GRANT_TTL: Duration = Duration::from_secs(120);
/// How a provider sign-in is named in `amr`.
const AMR: &str = "oauth";

/// What the provider sent the browser back with (RFC 6749 §4.1.2, RFC 9207).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The issuer, from providers that send it (RFC 9207): checked against the provider's.
    pub iss: Option<String>,
}

/// The one-time code the app exchanges for a session.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderGrant {
    /// The `code` parameter of the redirect back to the app; single use, two minutes.
    pub code: String,
}

/// The flow as stored: provider, nonce, verifier, redirect_to, link_user_id, link_session_id,
/// expires_at, browser_hash.
type FlowRow = (
    String,
    String,
    String,
    String,
    Option<Uuid>,
    Option<Uuid>,
    DateTime<Utc>,
    Option<Vec<u8>>,
);

/// What a callback achieved.
enum Finished {
    /// A code for the app to exchange.
    SignedIn(String),
    /// A code for the account that asked to link the identity to confirm.
    LinkPending(String),
}

/// The cookie that binds a flow to the browser that started it: set on the response that sends
/// the browser to the provider, required at the callback. One per flow (its name comes from the
/// state), so parallel sign-ins in one browser do not disturb each other.
#[derive(Debug, Clone)]
pub struct FlowCookie {
    pub name: String,
    pub value: String,
    pub max_age_seconds: u64,
}

/// The name of the cookie of the flow whose `state` this is.
#[must_use]
pub fn flow_cookie_name(state: &str) -> String {
    let digest = opaque::digest(state);
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("sovereign_flow_{short}")
}

fn new_flow_cookie(state: &str) -> (FlowCookie, [u8; 32]) {
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut secret);
    let value = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, secret);
    let digest = opaque::digest(&value);
    (
        FlowCookie {
            name: flow_cookie_name(state),
            value,
            max_age_seconds: FLOW_TTL.as_secs(),
        },
        digest,
    )
}

/// How long a linked identity waits for its account's confirmation.
pub(super) const LINK_TTL: Duration = Duration::from_secs(300);

/// The code of a provider link, to confirm from the session that asked for it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkConfirmation {
    /// The `link_code` parameter of the redirect back to the app.
    pub code: String,
}

impl Accounts {
    /// Starts a sign-in with provider `slug` of `tenant`: the URL to send the browser to, and
    /// the cookie to set on that response.
    pub async fn authorize_provider(
        &self,
        tenant: Uuid,
        slug: &str,
        redirect_to: &str,
    ) -> Result<(Url, FlowCookie), AuthError> {
        let (url, state) = self.start_flow(tenant, slug, redirect_to, None).await?;
        let (cookie, digest) = new_flow_cookie(&state);
        self.bind_flow(tenant, &state, digest).await?;
        Ok((url, cookie))
    }

    /// Starts linking provider `slug` to the signed-in account (recently authenticated): the
    /// URL of this server to send the browser to (`…/authorize?link=…`), which binds the flow
    /// to that browser and sends it on to the provider. The browser comes back to
    /// `redirect_to` with `link_code`, which this session confirms at
    /// `/api/v1/auth/providers/link/confirm`.
    pub async fn link_provider(
        &self,
        principal: &Principal,
        slug: &str,
        redirect_to: &str,
    ) -> Result<Url, AuthError> {
        let session = principal.session_id()?;
        principal.require_recent()?;
        let (_, state) = self
            .start_flow(
                principal.user.tenant_id,
                slug,
                redirect_to,
                Some((principal.user.id, session)),
            )
            .await?;
        let mut url = Url::parse(&format!(
            "{}/api/v1/auth/providers/{slug}/authorize",
            self.inner.settings.providers.api_public_url
        ))
        .map_err(|e| AuthError::Config(format!("API_PUBLIC_URL: {e}")))?;
        url.query_pairs_mut().append_pair("link", &state);
        Ok(url)
    }

    /// Opens a link flow in the browser that follows its URL: the provider's URL, and the
    /// cookie that binds the flow to this browser. A link flow is opened once.
    pub async fn open_link(&self, slug: &str, state: &str) -> Result<(Url, FlowCookie), AuthError> {
        let (tenant, digest) =
            opaque::parse(Kind::ProviderState, state).ok_or(AuthError::InvalidState)?;
        let (cookie, browser) = new_flow_cookie(state);
        let slug = slug.to_owned();
        let url: Option<Option<String>> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(provider_flows::table.find(digest.to_vec()))
                        .filter(provider_flows::browser_hash.is_null())
                        .filter(provider_flows::link_user_id.is_not_null())
                        .filter(provider_flows::provider.eq(slug))
                        .filter(provider_flows::expires_at.gt(diesel::dsl::now))
                        .set(provider_flows::browser_hash.eq(browser.to_vec()))
                        .returning(provider_flows::provider_url)
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let url = url.flatten().ok_or(AuthError::InvalidState)?;
        let url = Url::parse(&url).map_err(|_| AuthError::InvalidState)?;
        Ok((url, cookie))
    }

    /// Binds a new sign-in flow to its browser.
    async fn bind_flow(
        &self,
        tenant: Uuid,
        state: &str,
        browser: [u8; 32],
    ) -> Result<(), AuthError> {
        let digest = opaque::digest(state);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::update(provider_flows::table.find(digest.to_vec()))
                        .set(provider_flows::browser_hash.eq(browser.to_vec()))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(())
    }

    /// Records a flow: the provider's URL and the state.
    async fn start_flow(
        &self,
        tenant: Uuid,
        slug: &str,
        redirect_to: &str,
        link: Option<(Uuid, Uuid)>,
    ) -> Result<(Url, String), AuthError> {
        let config = self.enabled_provider(tenant, slug).await?;
        let redirect_to = self.allowed_redirect(tenant, redirect_to).await?;
        let state = opaque::mint(Kind::ProviderState, tenant);
        let started = self
            .inner
            .protocol
            .start(&config, &self.provider_callback_url(slug), &state.token)
            .await?;
        let (digest, provider) = (state.digest, config.slug.clone());
        let provider_url = started.url.to_string();
        let (link_user, link_session) = link.unzip();
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(provider_flows::table)
                        .filter(provider_flows::expires_at.lt(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(provider_flows::table)
                        .values((
                            provider_flows::state_hash.eq(digest.to_vec()),
                            provider_flows::tenant_id.eq(tenant),
                            provider_flows::provider.eq(provider),
                            provider_flows::nonce.eq(started.nonce),
                            provider_flows::pkce_verifier.eq(started.verifier),
                            provider_flows::redirect_to.eq(redirect_to),
                            provider_flows::link_user_id.eq(link_user),
                            provider_flows::link_session_id.eq(link_session),
                            provider_flows::provider_url.eq(provider_url),
                            provider_flows::expires_at.eq(later(FLOW_TTL)),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok((started.url, state.token))
    }

    /// The provider's callback: where to send the browser (the app's `redirect_to`, with `code`
    /// or `error`). An unknown, spent or expired `state` is an error: there is nowhere safe to
    /// send the browser.
    /// `browser` is the value of the flow's cookie ([`flow_cookie_name`]), which must be the
    /// one set when the flow started: a callback brought by another browser is refused.
    pub async fn provider_callback(
        &self,
        slug: &str,
        params: &CallbackParams,
        browser: Option<&str>,
    ) -> Result<Url, AuthError> {
        let (tenant, digest) = params
            .state
            .as_deref()
            .and_then(|state| opaque::parse(Kind::ProviderState, state))
            .ok_or(AuthError::InvalidState)?;
        let flow: Option<FlowRow> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(provider_flows::table.find(digest.to_vec()))
                        .returning((
                            provider_flows::provider,
                            provider_flows::nonce,
                            provider_flows::pkce_verifier,
                            provider_flows::redirect_to,
                            provider_flows::link_user_id,
                            provider_flows::link_session_id,
                            provider_flows::expires_at,
                            provider_flows::browser_hash,
                        ))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((
            provider,
            nonce,
            verifier,
            redirect_to,
            link_user,
            link_session,
            expires_at,
            bound,
        )) = flow
        else {
            tracing::warn!(security_event = "provider_state_refused", %tenant, "unknown or spent state at a provider callback");
            return Err(AuthError::InvalidState);
        };
        // A state made for another provider is a mix-up (RFC 9700 §4.4).
        if expires_at <= Utc::now() || provider != slug {
            tracing::warn!(security_event = "provider_state_refused", %tenant, provider = %slug, "expired state, or another provider's");
            return Err(AuthError::InvalidState);
        }
        // The browser that started the flow, and no other (login CSRF, RFC 9700 §4.7.1).
        let same_browser =
            bound.is_some_and(|hash| browser.is_some_and(|b| opaque::digest(b).as_slice() == hash));
        if !same_browser {
            tracing::warn!(security_event = "provider_state_refused", %tenant, provider = %slug, "a callback from a browser other than the one that started the flow");
            return Err(AuthError::InvalidState);
        }
        let link = link_user.zip(link_session);
        let mut target = Url::parse(&redirect_to).map_err(|_| AuthError::InvalidState)?;
        let outcome = self
            .finish_flow(tenant, slug, params, &verifier, &nonce, link)
            .await;
        match outcome {
            Ok(Finished::SignedIn(code)) => {
                target.query_pairs_mut().append_pair("code", &code);
            }
            Ok(Finished::LinkPending(code)) => {
                target.query_pairs_mut().append_pair("link_code", &code);
            }
            Err(e) => {
                tracing::warn!(security_event = "provider_sign_in_failed", %tenant, provider = %slug, code = e.code(), error = %e, "provider sign-in failed");
                auth_event("provider_sign_in_failed");
                target
                    .query_pairs_mut()
                    .append_pair("error", e.code())
                    .append_pair("error_description", &e.public_detail());
            }
        }
        Ok(target)
    }

    async fn finish_flow(
        &self,
        tenant: Uuid,
        slug: &str,
        params: &CallbackParams,
        verifier: &str,
        nonce: &str,
        link: Option<(Uuid, Uuid)>,
    ) -> Result<Finished, AuthError> {
        if let Some(error) = &params.error {
            let detail = params.error_description.as_deref().unwrap_or_default();
            return Err(AuthError::ProviderRefused(format!("{error}: {detail}")));
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| AuthError::ProviderRefused("no code".to_owned()))?;
        let config = self.enabled_provider(tenant, slug).await?;
        if let Some(iss) = &params.iss
            && iss.trim_end_matches('/') != config.issuer_text().trim_end_matches('/')
        {
            return Err(AuthError::InvalidIdToken(
                "the callback names another issuer".to_owned(),
            ));
        }
        let external = self
            .inner
            .protocol
            .finish(
                &config,
                &self.provider_callback_url(slug),
                code,
                verifier,
                nonce,
            )
            .await?;
        if let Some((user, session)) = link {
            return self
                .pending_link(tenant, user, session, &config.slug, &external)
                .await
                .map(Finished::LinkPending);
        }
        let user = self.identity_user(tenant, &config, &external).await?;
        let grant = opaque::mint(Kind::ProviderGrant, tenant);
        let (digest, user_id) = (grant.digest, user.id);
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(provider_grants::table)
                        .filter(provider_grants::expires_at.lt(diesel::dsl::now))
                        .execute(conn)
                        .await?;
                    diesel::insert_into(provider_grants::table)
                        .values((
                            provider_grants::code_hash.eq(digest.to_vec()),
                            provider_grants::tenant_id.eq(tenant),
                            provider_grants::user_id.eq(user_id),
                            provider_grants::amr.eq(vec![Some(AMR.to_owned())]),
                            provider_grants::expires_at.eq(later(GRANT_TTL)),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "provider_sign_in", %tenant, user_id = %user.id, provider = %slug, "provider vouched for the account");
        Ok(Finished::SignedIn(grant.token))
    }

    /// Trades the one-time code of a provider sign-in for a session — or, for an account with a
    /// second factor, a challenge to complete with it.
    pub async fn exchange_provider_code(
        &self,
        grant: &ProviderGrant,
        client: &ClientContext,
    ) -> Result<SignIn, AuthError> {
        let (tenant, digest) = opaque::parse(Kind::ProviderGrant, &grant.code)
            .ok_or(AuthError::InvalidProviderCode)?;
        let found: Option<(UserRow, Vec<Option<String>>)> = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    let spent: Option<(Uuid, Vec<Option<String>>)> =
                        diesel::delete(provider_grants::table.find(digest.to_vec()))
                            .filter(provider_grants::expires_at.gt(diesel::dsl::now))
                            .returning((provider_grants::user_id, provider_grants::amr))
                            .get_result(conn)
                            .await
                            .optional()?;
                    let Some((user, amr)) = spent else {
                        return Ok(None);
                    };
                    let row = users::table
                        .find(user)
                        .filter(users::deleted_at.is_null())
                        .filter(users::is_active.eq(true))
                        .select(UserRow::as_select())
                        .first(conn)
                        .await
                        .optional()?;
                    Ok::<_, AuthError>(row.map(|row| (row, amr)))
                }
                .scope_boxed()
            })
            .await?;
        let (row, amr) = found.ok_or(AuthError::InvalidProviderCode)?;
        self.active_tenant(tenant).await?;
        let user = User::try_from(row)?;
        let first = amr.into_iter().flatten().next();
        let signed_in = self
            .after_first_factor(&user, client, first.as_deref().unwrap_or(AMR))
            .await?;
        if let SignIn::Session(pair) = &signed_in {
            tracing::info!(security_event = "login", user_id = %user.id, session_id = %pair.session_id, method = AMR, "signed in with a provider");
            auth_event("login");
        }
        Ok(signed_in)
    }
}
