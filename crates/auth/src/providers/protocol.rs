//! Speaking to providers: OpenID Connect (discovery, authorization code with PKCE S256, the ID
//! token validated by `openidconnect`, user info) and GitHub's OAuth 2.0 with its REST API.
//! What comes back is an [`External`] identity; every failure is a [`AuthError`] naming whose
//! fault it was (`provider_refused`, `provider_unavailable`, `invalid_id_token`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, TokenUrl,
};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreIdTokenClaims, CoreIdTokenVerifier,
    CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, ClaimsVerificationError, IssuerUrl, Nonce, OAuth2TokenResponse,
    TokenResponse as _,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
use url::Url;

use super::http::ProviderHttp;
use super::{ProviderConfig, ProviderKind};
use crate::AuthError;

/// How long a discovery document (and the keys it names) is reused.
const METADATA_TTL: Duration = Duration::from_secs(300);
/// How far in the future an ID token's `iat` may lie (clock skew).
const MAX_IAT_SKEW_SECONDS: i64 = 300;

/// What a provider asserted about the person signing in.
#[derive(Debug, Clone)]
pub(crate) struct External {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

/// An authorization request: where to send the browser, and what to keep server-side.
pub(crate) struct Started {
    pub url: Url,
    pub nonce: String,
    pub verifier: String,
}

/// The HTTP client and the discovery documents seen lately.
#[derive(Debug, Clone)]
pub(crate) struct Protocol {
    http: ProviderHttp,
    metadata: moka::future::Cache<String, Arc<CoreProviderMetadata>>,
}

fn unavailable(e: impl std::fmt::Display) -> AuthError {
    AuthError::ProviderUnavailable(e.to_string())
}

impl Protocol {
    pub(crate) fn new(timeout: Duration) -> Self {
        Self {
            http: ProviderHttp::new(timeout),
            metadata: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(METADATA_TTL)
                .build(),
        }
    }

    /// The provider's discovery document (and keys), cached; `fresh` skips the cache.
    async fn discover(
        &self,
        issuer: &str,
        fresh: bool,
    ) -> Result<Arc<CoreProviderMetadata>, AuthError> {
        if !fresh && let Some(found) = self.metadata.get(issuer).await {
            return Ok(found);
        }
        let http = self.http.clone();
        let client = move |request| {
            let http = http.clone();
            async move { http.send(request).await }
        };
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(unavailable)?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &client)
            .await
            .map_err(|e| {
                AuthError::ProviderUnavailable(format!("discovery of `{issuer}` failed: {e}"))
            })?;
        let metadata = Arc::new(metadata);
        self.metadata
            .insert(issuer.to_owned(), Arc::clone(&metadata))
            .await;
        Ok(metadata)
    }

    /// The URL to send the browser to, with `state`, a fresh nonce and a PKCE S256 challenge.
    pub(crate) async fn start(
        &self,
        config: &ProviderConfig,
        callback: &str,
        state: &str,
    ) -> Result<Started, AuthError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect = RedirectUrl::new(callback.to_owned()).map_err(unavailable)?;
        let scopes = config.scopes.iter().cloned().map(Scope::new);
        let state = state.to_owned();
        let (url, nonce) = match config.kind {
            ProviderKind::Oidc | ProviderKind::Google => {
                let metadata = self.discover(&config.issuer_text(), false).await?;
                let client = CoreClient::from_provider_metadata(
                    (*metadata).clone(),
                    ClientId::new(config.client_id.clone()),
                    None,
                )
                .set_redirect_uri(redirect);
                let (url, _, nonce) = client
                    .authorize_url(
                        CoreAuthenticationFlow::AuthorizationCode,
                        move || CsrfToken::new(state),
                        Nonce::new_random,
                    )
                    .add_scopes(scopes)
                    .set_pkce_challenge(challenge)
                    .url();
                (url, nonce.secret().clone())
            }
            ProviderKind::Github => {
                let client = github_client(config)?.set_redirect_uri(redirect);
                let (url, _) = client
                    .authorize_url(move || CsrfToken::new(state))
                    .add_scopes(scopes)
                    .set_pkce_challenge(challenge)
                    .url();
                (url, Nonce::new_random().secret().clone())
            }
        };
        Ok(Started {
            url,
            nonce,
            verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the authorization code (with the PKCE verifier) and returns who signed in.
    pub(crate) async fn finish(
        &self,
        config: &ProviderConfig,
        callback: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<External, AuthError> {
        match config.kind {
            ProviderKind::Oidc | ProviderKind::Google => {
                self.finish_oidc(config, callback, code, verifier, nonce)
                    .await
            }
            ProviderKind::Github => self.finish_github(config, callback, code, verifier).await,
        }
    }

    async fn finish_oidc(
        &self,
        config: &ProviderConfig,
        callback: &str,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<External, AuthError> {
        let issuer = config.issuer_text();
        let metadata = self.discover(&issuer, false).await?;
        let http = self.http.clone();
        let http_client = move |request| {
            let http = http.clone();
            async move { http.send(request).await }
        };
        let client = CoreClient::from_provider_metadata(
            (*metadata).clone(),
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(RedirectUrl::new(callback.to_owned()).map_err(unavailable)?);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| AuthError::ProviderUnavailable(format!("no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&http_client)
            .await
            .map_err(token_error)?;
        let id_token = token.id_token().ok_or_else(|| {
            AuthError::InvalidIdToken("the token response has no ID token".into())
        })?;
        let nonce = Nonce::new(nonce.to_owned());
        let access_token = token.access_token();
        let claims = match verify(&metadata, &config.client_id, id_token, &nonce, access_token) {
            Ok(claims) => claims,
            // The provider may have rotated its keys since the cached discovery: once more with
            // fresh ones.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let fresh = self.discover(&issuer, true).await?;
                verify(&fresh, &config.client_id, id_token, &nonce, access_token)
                    .map_err(|e| AuthError::InvalidIdToken(e.to_string()))?
            }
            Err(e) => return Err(AuthError::InvalidIdToken(e.to_string())),
        };
        let subject = claims.subject().as_str().to_owned();
        // The verified token's payload, for claims the provider names its own way.
        let mut merged = jwt_payload(id_token).unwrap_or_default();
        let mapping = &config.claims;
        let email_claim = mapping.email.as_deref().unwrap_or("email");
        if !merged.contains_key(email_claim)
            && let Some(endpoint) = metadata.userinfo_endpoint()
        {
            let url = Url::parse(endpoint.as_str()).map_err(unavailable)?;
            let (status, info) = self
                .http
                .get_json(&url, token.access_token().secret(), "application/json")
                .await
                .map_err(unavailable)?;
            if status != 200 {
                return Err(AuthError::ProviderRefused(format!(
                    "user info answered {status}"
                )));
            }
            let Value::Object(info) = info else {
                return Err(AuthError::ProviderUnavailable(
                    "user info is not a JSON object (signed user info is not supported)".into(),
                ));
            };
            if info.get("sub").and_then(Value::as_str) != Some(subject.as_str()) {
                return Err(AuthError::InvalidIdToken(
                    "user info is about another subject".to_owned(),
                ));
            }
            for (k, v) in info {
                merged.entry(k).or_insert(v);
            }
        }
        Ok(External {
            issuer: claims.issuer().as_str().trim_end_matches('/').to_owned(),
            subject,
            email: text_claim(&merged, email_claim).map(|e| e.trim().to_lowercase()),
            email_verified: flag_claim(
                &merged,
                mapping
                    .email_verified
                    .as_deref()
                    .unwrap_or("email_verified"),
            ),
            name: text_claim(&merged, mapping.name.as_deref().unwrap_or("name")),
        })
    }

    async fn finish_github(
        &self,
        config: &ProviderConfig,
        callback: &str,
        code: &str,
        verifier: &str,
    ) -> Result<External, AuthError> {
        let http = self.http.clone();
        let http_client = move |request| {
            let http = http.clone();
            async move { http.send(request).await }
        };
        let client = github_client(config)?
            .set_client_secret(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            ))
            .set_redirect_uri(RedirectUrl::new(callback.to_owned()).map_err(unavailable)?);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&http_client)
            .await
            .map_err(token_error)?;
        let bearer = token.access_token().secret();
        let api = config
            .api_url
            .clone()
            .ok_or_else(|| AuthError::Config("a GitHub provider without api_url".to_owned()))?;
        let accept = "application/vnd.github+json";
        let join = |path: &str| {
            let mut url = api.clone();
            let base = url.path().trim_end_matches('/').to_owned();
            url.set_path(&format!("{base}/{path}"));
            url
        };
        let (status, user) = self
            .http
            .get_json(&join("user"), bearer, accept)
            .await
            .map_err(unavailable)?;
        if status != 200 {
            return Err(AuthError::ProviderRefused(format!(
                "GET /user answered {status}"
            )));
        }
        let subject = match user.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(AuthError::ProviderUnavailable(
                    "GET /user has no id".to_owned(),
                ));
            }
        };
        let (status, emails) = self
            .http
            .get_json(&join("user/emails"), bearer, accept)
            .await
            .map_err(unavailable)?;
        // The primary address, if verified; else none (an unverified address is never trusted).
        let primary = (status == 200)
            .then(|| emails.as_array().cloned())
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true));
        let (email, email_verified) = match primary {
            Some(e) => (
                e.get("email")
                    .and_then(Value::as_str)
                    .map(|s| s.trim().to_lowercase()),
                e.get("verified").and_then(Value::as_bool) == Some(true),
            ),
            None => (None, false),
        };
        Ok(External {
            issuer: config.issuer_text(),
            subject,
            email,
            email_verified,
            name: user
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| user.get("login").and_then(Value::as_str))
                .map(str::to_owned),
        })
    }
}

/// The ID token's claims, once its signature (by a key of the provider's JWKS, with an allowed
/// algorithm), `iss`, `aud`, `azp`, `exp`, `iat`, `nonce` and `at_hash` have been checked.
fn verify(
    metadata: &CoreProviderMetadata,
    client_id: &str,
    id_token: &CoreIdToken,
    nonce: &Nonce,
    access_token: &oauth2::AccessToken,
) -> Result<CoreIdTokenClaims, ClaimsVerificationError> {
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(client_id.to_owned()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_allowed_algs(ALLOWED_ALGS.to_vec())
    .set_issue_time_verifier_fn(|iat| {
        if iat.timestamp() > Utc::now().timestamp() + MAX_IAT_SKEW_SECONDS {
            Err("issued in the future".to_owned())
        } else {
            Ok(())
        }
    });
    let claims = id_token.claims(&verifier, nonce)?.clone();
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let actual = AccessTokenHash::from_token(access_token, alg, key)
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
        if actual != *expected {
            return Err(ClaimsVerificationError::Other(
                "at_hash does not match the access token".to_owned(),
            ));
        }
    }
    Ok(claims)
}

/// Signature algorithms accepted on ID tokens: asymmetric only (never `none`, never an HMAC
/// keyed with the client secret).
const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

type GithubClient = BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn github_client(config: &ProviderConfig) -> Result<GithubClient, AuthError> {
    let site = config.issuer_text();
    let auth = AuthUrl::new(format!("{site}/login/oauth/authorize")).map_err(unavailable)?;
    let token = TokenUrl::new(format!("{site}/login/oauth/access_token")).map_err(unavailable)?;
    Ok(BasicClient::new(ClientId::new(config.client_id.clone()))
        .set_auth_uri(auth)
        .set_token_uri(token))
}

/// A failed token request: the provider said no, or could not be reached.
fn token_error<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: RequestTokenError<RE, T>,
) -> AuthError {
    match e {
        RequestTokenError::ServerResponse(r) => AuthError::ProviderRefused(r.to_string()),
        RequestTokenError::Request(e) => AuthError::ProviderUnavailable(e.to_string()),
        RequestTokenError::Parse(e, _) => {
            AuthError::ProviderRefused(format!("unexpected token response: {e}"))
        }
        RequestTokenError::Other(e) => AuthError::ProviderRefused(e),
    }
}

/// The claims of a JWT whose signature was already verified.
fn jwt_payload(token: &impl serde::Serialize) -> Option<Map<String, Value>> {
    let Value::String(compact) = serde_json::to_value(token).ok()? else {
        return None;
    };
    let payload = compact.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

fn text_claim(claims: &Map<String, Value>, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A boolean claim; some providers send `"true"`.
fn flag_claim(claims: &Map<String, Value>, name: &str) -> bool {
    match claims.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}
