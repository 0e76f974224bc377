//! The sign-in provider settings: the server's own address for callbacks, the redirect targets
//! every tenant accepts, the providers every tenant has, and how long a provider may take.

use std::time::Duration;

use sovereign_core::setting;
use sovereign_core::settings::DefaultValue::{Unset, Value};
use sovereign_core::settings::Reader;
use url::Url;

use super::{NewProvider, redirect::check_redirect_url};

setting!(
    API_PUBLIC_URL,
    "API_PUBLIC_URL",
    Value("http://localhost:8000"),
    "Base URL at which browsers reach this server. Sign-in providers send them back to `{API_PUBLIC_URL}/api/v1/auth/providers/{provider}/callback`: register that URL with each provider."
);
setting!(
    AUTH_REDIRECT_URLS,
    "AUTH_REDIRECT_URLS",
    Unset,
    "Comma-separated URLs a provider sign-in may send the browser back to, in every tenant (each tenant adds its own through the API). Matched exactly; `https`, or `http` on a loopback host."
);
setting!(
    AUTH_PROVIDERS,
    "AUTH_PROVIDERS",
    Unset,
    "Sign-in providers every tenant has unless it defines one with the same slug: a JSON array of objects as `POST /api/v1/auth/providers` takes them, e.g. `[{\"slug\":\"google\",\"kind\":\"google\",\"client_id\":\"…\",\"client_secret\":\"…\"}]`.",
    secret
);
setting!(
    AUTH_PROVIDER_TIMEOUT_SECONDS,
    "AUTH_PROVIDER_TIMEOUT_SECONDS",
    Value("10"),
    "Longest wait for a sign-in provider's answer (discovery, keys, token, user info), in seconds (1 to 60)."
);

/// Sign-in providers.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Base URL of this server for provider callbacks (no trailing slash).
    pub api_public_url: String,
    /// Redirect targets every tenant accepts.
    pub redirect_urls: Vec<String>,
    /// Providers every tenant has.
    pub defaults: Vec<NewProvider>,
    pub timeout: Duration,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        Self {
            api_public_url: "http://localhost:8000".to_owned(),
            redirect_urls: Vec::new(),
            defaults: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

pub(crate) fn read_providers(r: &mut Reader<'_>) -> ProviderSettings {
    let api_public_url = r
        .optional::<Url>(&API_PUBLIC_URL)
        .map_or_else(|| "http://localhost:8000".to_owned(), |u| u.to_string());
    let mut redirect_urls = Vec::new();
    for url in r
        .raw(&AUTH_REDIRECT_URLS)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect::<Vec<_>>()
    {
        match check_redirect_url(&url) {
            Ok(url) => redirect_urls.push(url),
            Err(why) => r.problem(
                AUTH_REDIRECT_URLS.name,
                format!("`{url}` {why}"),
                "list absolute URLs: https, or http on localhost".to_owned(),
            ),
        }
    }
    let defaults = match r.secret(&AUTH_PROVIDERS) {
        None => Vec::new(),
        Some(json) => {
            use secrecy::ExposeSecret;
            match serde_json::from_str::<Vec<NewProvider>>(json.expose_secret()) {
                Ok(list) => {
                    for p in &list {
                        if let Err(e) = p.checked() {
                            r.problem(
                                AUTH_PROVIDERS.name,
                                format!("provider `{}`: {e}", p.slug),
                                "fix the entry; see docs/auth.md".to_owned(),
                            );
                        }
                    }
                    list
                }
                Err(e) => {
                    r.problem(
                        AUTH_PROVIDERS.name,
                        format!("is not a JSON array of providers: {e}"),
                        "give `[{\"slug\":…,\"kind\":…,\"client_id\":…,\"client_secret\":…}]`"
                            .to_owned(),
                    );
                    Vec::new()
                }
            }
        }
    };
    ProviderSettings {
        api_public_url: api_public_url.trim_end_matches('/').to_owned(),
        redirect_urls,
        defaults,
        timeout: Duration::from_secs(r.bounded(&AUTH_PROVIDER_TIMEOUT_SECONDS, 1, 60)),
    }
}
