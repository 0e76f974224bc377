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

/// The flow as stored: provider, nonce, verifier, redirect_to, link_user_id, expires_at.
type FlowRow = (String, String, String, String, Option<Uuid>, DateTime<Utc>);

/// What a callback achieved.
enum Finished {
    /// A code for the app to exchange.
    SignedIn(String),
    /// The identity was linked to the signed-in account that started the flow.
    Linked,
}

impl Accounts {
    /// Starts a sign-in with provider `slug` of `tenant`: the URL to send the browser to.
    pub async fn authorize_provider(
        &self,
        tenant: Uuid,
        slug: &str,
        redirect_to: &str,
    ) -> Result<Url, AuthError> {
        self.start_flow(tenant, slug, redirect_to, None).await
    }

    /// Starts linking provider `slug` to the signed-in account (recently authenticated): the
    /// URL to send the browser to. The callback links the identity and sends the browser to
    /// `redirect_to` with `linked={slug}`.
    pub async fn link_provider(
        &self,
        principal: &Principal,
        slug: &str,
        redirect_to: &str,
    ) -> Result<Url, AuthError> {
        principal.session_id()?;
        principal.require_recent()?;
        self.start_flow(
            principal.user.tenant_id,
            slug,
            redirect_to,
            Some(principal.user.id),
        )
        .await
    }

    async fn start_flow(
        &self,
        tenant: Uuid,
        slug: &str,
        redirect_to: &str,
        link_user: Option<Uuid>,
    ) -> Result<Url, AuthError> {
        let config = self.enabled_provider(tenant, slug).await?;
        let redirect_to = self.allowed_redirect(tenant, redirect_to).await?;
        let state = opaque::mint(Kind::ProviderState, tenant);
        let started = self
            .inner
            .protocol
            .start(&config, &self.provider_callback_url(slug), &state.token)
            .await?;
        let (digest, provider) = (state.digest, config.slug.clone());
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
                            provider_flows::expires_at.eq(later(FLOW_TTL)),
                        ))
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(started.url)
    }

    /// The provider's callback: where to send the browser (the app's `redirect_to`, with `code`
    /// or `error`). An unknown, spent or expired `state` is an error: there is nowhere safe to
    /// send the browser.
    pub async fn provider_callback(
        &self,
        slug: &str,
        params: &CallbackParams,
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
                            provider_flows::expires_at,
                        ))
                        .get_result(conn)
                        .await
                        .optional()
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        let Some((provider, nonce, verifier, redirect_to, link_user, expires_at)) = flow else {
            tracing::warn!(security_event = "provider_state_refused", %tenant, "unknown or spent state at a provider callback");
            return Err(AuthError::InvalidState);
        };
        // A state made for another provider is a mix-up (RFC 9700 §4.4).
        if expires_at <= Utc::now() || provider != slug {
            tracing::warn!(security_event = "provider_state_refused", %tenant, provider = %slug, "expired state, or another provider's");
            return Err(AuthError::InvalidState);
        }
        let mut target = Url::parse(&redirect_to).map_err(|_| AuthError::InvalidState)?;
        let outcome = self
            .finish_flow(tenant, slug, params, &verifier, &nonce, link_user)
            .await;
        match outcome {
            Ok(Finished::SignedIn(code)) => {
                target.query_pairs_mut().append_pair("code", &code);
            }
            Ok(Finished::Linked) => {
                target.query_pairs_mut().append_pair("linked", slug);
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
        link_user: Option<Uuid>,
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
            && iss.trim_end_matches('/') != config.issuer_text()
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
        if let Some(user) = link_user {
            self.link_identity(tenant, user, &config, &external).await?;
            return Ok(Finished::Linked);
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
