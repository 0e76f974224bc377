//! Sign-in with OpenID Connect and OAuth 2.0 providers (RFC 9700, OpenID Connect Core).
//!
//! This module: the providers' configuration, as tenant administrators manage it and as the
//! settings give every tenant. `redirect` is the allow-list of where the browser may be sent
//! back; `http` the only way requests reach a provider; `protocol` speaks OpenID Connect and
//! GitHub's OAuth 2.0; `flow` the authorization request, the callback and the one-time code the
//! app exchanges; `identities` the external identities linked to accounts.
//!
//! - `state`, `nonce` and the PKCE S256 verifier live server-side, keyed by a digest of the
//!   `state`, single use (the callback deletes the row), ten minutes at most.
//! - ID tokens are validated in full by `openidconnect`: signature from the provider's JWKS
//!   with an allow-list of asymmetric algorithms, `iss`, `aud`, `azp`, `exp`, `iat`, `nonce`.
//! - Tokens never travel in URLs: the app gets a one-time code for `/auth/providers/exchange`.
//! - An identity is linked to an existing account automatically only when the provider asserts
//!   a verified address and the local address is verified too.
//! - Client secrets are write-only and sealed at rest (see `sealed`).

mod flow;
mod http;
mod identities;
mod protocol;
mod redirect;
pub(crate) mod settings;
mod store;

pub use flow::{CallbackParams, FlowCookie, LinkConfirmation, ProviderGrant, flow_cookie_name};
pub use identities::Identity;
pub(crate) use identities::SignInMethod;
pub use settings::ProviderSettings;

pub(crate) use protocol::Protocol;

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use url::Url;
use uuid::Uuid;

use crate::AuthError;

/// Longest slug.
const MAX_SLUG_CHARS: usize = 40;

/// What a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProviderKind {
    /// Any OpenID Connect provider, found by issuer discovery.
    Oidc,
    /// Google (OpenID Connect, issuer `https://accounts.google.com`).
    Google,
    /// GitHub or GitHub Enterprise (OAuth 2.0 and its REST API).
    Github,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oidc => "oidc",
            Self::Google => "google",
            Self::Github => "github",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "oidc" => Some(Self::Oidc),
            "google" => Some(Self::Google),
            "github" => Some(Self::Github),
            _ => None,
        }
    }

    fn default_issuer(self) -> Option<&'static str> {
        match self {
            Self::Oidc => None,
            Self::Google => Some("https://accounts.google.com"),
            Self::Github => Some("https://github.com"),
        }
    }

    fn default_scopes(self) -> Vec<String> {
        let scopes: &[&str] = match self {
            Self::Oidc | Self::Google => &["openid", "email", "profile"],
            Self::Github => &["read:user", "user:email"],
        };
        scopes.iter().map(|s| (*s).to_owned()).collect()
    }

    fn default_name(self) -> &'static str {
        match self {
            Self::Oidc => "OpenID Connect",
            Self::Google => "Google",
            Self::Github => "GitHub",
        }
    }
}

/// Which claims hold the address, its verification and the name, where a provider does not use
/// the standard ones (OpenID Connect only).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClaimMapping {
    /// Default `email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Default `email_verified` (a boolean, or the text `true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<String>,
    /// Default `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A provider to add (`POST /api/v1/auth/providers`, or an entry of `AUTH_PROVIDERS`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "slug": "corp", "kind": "oidc", "name": "Corporate login",
    "issuer": "https://login.example.com", "client_id": "sovereign", "client_secret": "…"
})))]
pub struct NewProvider {
    /// Its name in URLs: 1 to 40 of `a-z`, `0-9` and inner `-`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$")
    )]
    pub slug: String,
    pub kind: ProviderKind,
    /// Shown on sign-in buttons (default: the kind's name).
    #[serde(default)]
    pub name: Option<String>,
    /// OpenID Connect issuer (required for `oidc`); GitHub Enterprise's site for `github`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// GitHub's REST API base (default `https://api.github.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    pub client_id: String,
    /// Write-only: stored sealed, never returned.
    #[cfg_attr(feature = "openapi", schema(value_type = String, write_only))]
    pub client_secret: SecretString,
    /// Default: `openid email profile` (OpenID Connect), `read:user user:email` (GitHub).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<ClaimMapping>,
    /// Whether a first sign-in may create an account (default true).
    #[serde(default)]
    pub allow_sign_up: Option<bool>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Changes to a provider; what is absent stays.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "Corporate login", "enabled": true
})))]
pub struct ProviderUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    /// Write-only.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, write_only))]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<ClaimMapping>,
    #[serde(default)]
    pub allow_sign_up: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A provider as administrators see it: everything but the secret.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderDetails {
    pub slug: String,
    pub kind: ProviderKind,
    pub name: String,
    pub issuer: String,
    pub api_url: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub claims: ClaimMapping,
    pub allow_sign_up: bool,
    pub enabled: bool,
    /// `tenant` (managed through the API) or `settings` (`AUTH_PROVIDERS`, read-only here).
    pub source: &'static str,
    /// Register this URL with the provider as the redirect (callback) URI.
    pub callback_url: String,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A provider as a sign-in page sees it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProviderInfo {
    pub slug: String,
    pub kind: ProviderKind,
    pub name: String,
}

/// A provider ready for a flow: checked, its secret opened.
#[derive(Debug, Clone)]
pub(crate) struct ProviderConfig {
    pub id: Option<Uuid>,
    pub slug: String,
    pub kind: ProviderKind,
    pub name: String,
    pub issuer: Url,
    pub api_url: Option<Url>,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    pub claims: ClaimMapping,
    pub allow_sign_up: bool,
    pub enabled: bool,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
}

impl NewProvider {
    /// The provider with its defaults filled in, or what is wrong with it.
    pub(crate) fn checked(&self) -> Result<ProviderConfig, AuthError> {
        let slug = self.slug.trim();
        if !valid_slug(slug) {
            return Err(AuthError::invalid(
                "slug",
                "format",
                "must be 1 to 40 of a-z, 0-9 and inner -",
            ));
        }
        let kind = self.kind;
        let name = self
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(kind.default_name());
        let issuer = self
            .issuer
            .as_deref()
            .or(kind.default_issuer())
            .ok_or_else(|| {
                AuthError::invalid("issuer", "required", "an OpenID Connect provider needs one")
            })?;
        let api_url = match kind {
            ProviderKind::Github => {
                Some(self.api_url.as_deref().unwrap_or("https://api.github.com"))
            }
            _ => None,
        };
        let mut config = ProviderConfig {
            id: None,
            slug: slug.to_owned(),
            kind,
            name: name.to_owned(),
            issuer: check_endpoint("issuer", issuer)?,
            api_url: api_url.map(|u| check_endpoint("api_url", u)).transpose()?,
            client_id: self.client_id.trim().to_owned(),
            client_secret: self.client_secret.clone(),
            scopes: self.scopes.clone().unwrap_or_else(|| kind.default_scopes()),
            claims: self.claims.clone().unwrap_or_default(),
            allow_sign_up: self.allow_sign_up.unwrap_or(true),
            enabled: self.enabled.unwrap_or(true),
            created_at: None,
            updated_at: None,
        };
        config.check()?;
        config.scopes.dedup();
        Ok(config)
    }
}

impl ProviderConfig {
    /// The rules every provider keeps, whatever its source.
    fn check(&self) -> Result<(), AuthError> {
        use secrecy::ExposeSecret;
        let printable = |s: &str, max: usize| {
            !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
        };
        if !printable(&self.name, 100) {
            return Err(AuthError::invalid(
                "name",
                "length",
                "must have 1 to 100 printable characters",
            ));
        }
        if !printable(&self.client_id, 500) {
            return Err(AuthError::invalid(
                "client_id",
                "length",
                "must have 1 to 500 printable characters",
            ));
        }
        if !printable(self.client_secret.expose_secret(), 2000) {
            return Err(AuthError::invalid(
                "client_secret",
                "length",
                "must have 1 to 2000 printable characters",
            ));
        }
        if self.scopes.is_empty()
            || self.scopes.len() > 20
            || self
                .scopes
                .iter()
                .any(|s| !printable(s, 100) || s.contains(' '))
        {
            return Err(AuthError::invalid(
                "scopes",
                "format",
                "must be 1 to 20 scopes without spaces",
            ));
        }
        if self.kind != ProviderKind::Github && !self.scopes.iter().any(|s| s == "openid") {
            return Err(AuthError::invalid(
                "scopes",
                "openid",
                "an OpenID Connect provider needs the `openid` scope",
            ));
        }
        for claim in [
            &self.claims.email,
            &self.claims.email_verified,
            &self.claims.name,
        ]
        .into_iter()
        .flatten()
        {
            if !printable(claim, 100) {
                return Err(AuthError::invalid(
                    "claims",
                    "format",
                    "claim names have 1 to 100 printable characters",
                ));
            }
        }
        Ok(())
    }

    fn details(&self, callback_url: String) -> ProviderDetails {
        ProviderDetails {
            slug: self.slug.clone(),
            kind: self.kind,
            name: self.name.clone(),
            issuer: self.issuer_text(),
            api_url: self.api_url.as_ref().map(ToString::to_string),
            client_id: self.client_id.clone(),
            scopes: self.scopes.clone(),
            claims: self.claims.clone(),
            allow_sign_up: self.allow_sign_up,
            enabled: self.enabled,
            source: if self.id.is_some() {
                "tenant"
            } else {
                "settings"
            },
            callback_url,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }

    /// The issuer as identities record it (no trailing slash added by URL parsing).
    pub(crate) fn issuer_text(&self) -> String {
        issuer_text(&self.issuer)
    }
}

fn valid_slug(slug: &str) -> bool {
    let bytes = slug.as_bytes();
    (1..=MAX_SLUG_CHARS).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

/// An endpoint a provider is reached at: `https`, or `http` on a loopback host.
fn check_endpoint(field: &str, text: &str) -> Result<Url, AuthError> {
    let url = Url::parse(text.trim())
        .map_err(|_| AuthError::invalid(field, "url", "is not an absolute URL"))?;
    if !http::allowed_endpoint(&url) {
        return Err(AuthError::invalid(
            field,
            "https",
            "must be https (http only on a loopback host)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(AuthError::invalid(
            field,
            "url",
            "must have no query, fragment or user",
        ));
    }
    Ok(url)
}

/// `https://issuer.example` rather than the parser's `https://issuer.example/`.
fn issuer_text(url: &Url) -> String {
    let text = url.to_string();
    if url.path() == "/" {
        text.trim_end_matches('/').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(kind: ProviderKind, issuer: Option<&str>) -> NewProvider {
        NewProvider {
            slug: "corp".to_owned(),
            kind,
            name: None,
            issuer: issuer.map(str::to_owned),
            api_url: None,
            client_id: "client".to_owned(),
            client_secret: SecretString::from("secret"),
            scopes: None,
            claims: None,
            allow_sign_up: None,
            enabled: None,
        }
    }

    #[test]
    fn presets_fill_in_issuer_scopes_and_name() {
        let google = new(ProviderKind::Google, None).checked().unwrap();
        assert_eq!(google.issuer_text(), "https://accounts.google.com");
        assert_eq!(google.scopes, ["openid", "email", "profile"]);
        assert_eq!(google.name, "Google");
        let github = new(ProviderKind::Github, None).checked().unwrap();
        assert_eq!(github.api_url.unwrap().as_str(), "https://api.github.com/");
        assert!(
            new(ProviderKind::Oidc, None).checked().is_err(),
            "oidc needs an issuer"
        );
    }

    #[test]
    fn endpoints_are_https_or_loopback() {
        for bad in [
            "http://login.example.com",
            "ftp://login.example.com",
            "https://login.example.com/?q=1",
            "https://user@login.example.com",
            "not a url",
        ] {
            assert!(
                new(ProviderKind::Oidc, Some(bad)).checked().is_err(),
                "{bad}"
            );
        }
        for good in [
            "https://login.example.com",
            "http://127.0.0.1:9000",
            "http://localhost:9000/realms/x",
        ] {
            assert!(
                new(ProviderKind::Oidc, Some(good)).checked().is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn slugs_and_scopes_are_checked() {
        for slug in ["", "-a", "a-", "A", "a_b", &"a".repeat(41)] {
            let mut p = new(ProviderKind::Google, None);
            p.slug = slug.to_owned();
            assert!(p.checked().is_err(), "{slug:?}");
        }
        let mut p = new(ProviderKind::Oidc, Some("https://login.example.com"));
        p.scopes = Some(vec!["email".to_owned()]);
        assert!(p.checked().is_err(), "openid is required");
    }
}
