//! The only way requests reach a provider: the service's HTTP client, which follows no
//! redirects, gives up after `AUTH_PROVIDER_TIMEOUT_SECONDS`, reads at most 1 MiB of an answer
//! and speaks only to `https` endpoints (or `http` on a loopback host, for providers run on the
//! same machine).

use std::time::Duration;

use oauth2::{HttpRequest, HttpResponse};
use sovereign_core::settings::is_loopback_host;
use url::Url;

/// Largest answer read from a provider.
const MAX_BODY_BYTES: usize = 1 << 20;

/// Why a request to a provider failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("refused to send a request to `{0}`: not https")]
    Insecure(String),
    #[error("the answer exceeds {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    #[error("{0}")]
    Http(#[from] ::http::Error),
}

/// Whether the server may send requests to `url`.
pub(crate) fn allowed_endpoint(url: &Url) -> bool {
    match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => url.host_str().is_some_and(is_loopback_host),
        _ => false,
    }
}

/// The HTTP client for providers.
#[derive(Debug, Clone)]
pub(crate) struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    pub(crate) fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("sovereign/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { client }
    }

    /// Sends one request (the shape `oauth2` and `openidconnect` call with).
    pub(crate) async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string();
        if !Url::parse(&url).is_ok_and(|u| allowed_endpoint(&u)) {
            return Err(HttpError::Insecure(url));
        }
        let mut response = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut builder = ::http::Response::builder().status(response.status());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(response.headers().clone());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(HttpError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(builder.body(body)?)
    }

    /// A GET with a bearer token, for user-info and GitHub's API: the status and the JSON body.
    pub(crate) async fn get_json(
        &self,
        url: &Url,
        bearer: &str,
        accept: &str,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        let request = ::http::Request::builder()
            .method(::http::Method::GET)
            .uri(url.as_str())
            .header(::http::header::AUTHORIZATION, format!("Bearer {bearer}"))
            .header(::http::header::ACCEPT, accept)
            .body(Vec::new())?;
        let response = self.send(request).await?;
        let status = response.status().as_u16();
        let body = serde_json::from_slice(response.body()).unwrap_or(serde_json::Value::Null);
        Ok((status, body))
    }
}
