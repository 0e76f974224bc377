//! Where a provider sign-in may send the browser back: an exact match against the tenant's
//! list and `AUTH_REDIRECT_URLS` (RFC 9700 §4.1: no open redirect, no pattern matching).

use diesel::prelude::*;
use sovereign_db::schema::auth_redirect_urls;
use sovereign_db::{RunQueryDsl, ScopedFutureExt};
use url::Url;
use uuid::Uuid;

use crate::model::{Principal, Role};
use crate::{Accounts, AuthError};

/// Most redirect URLs a tenant may list.
const MAX_REDIRECT_URLS: usize = 50;

/// A redirect URL in the form it is compared in, or why it cannot be one: absolute, `https`
/// (`http` only on a loopback host; a private-use scheme with a dot, RFC 8252 §7.1, for
/// native apps), no fragment, no user, at most 2000 characters.
pub(crate) fn check_redirect_url(text: &str) -> Result<String, &'static str> {
    if text.len() > 2000 {
        return Err("is longer than 2000 characters");
    }
    let url = Url::parse(text.trim()).map_err(|_| "is not an absolute URL")?;
    let scheme_ok = match url.scheme() {
        "https" => url.host_str().is_some(),
        "http" => url
            .host_str()
            .is_some_and(sovereign_core::settings::is_loopback_host),
        "javascript" | "data" | "file" | "blob" | "vbscript" | "about" => false,
        other => other.contains('.'),
    };
    if !scheme_ok {
        return Err("must be https (http only on a loopback host)");
    }
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err("must have no fragment and no user");
    }
    Ok(url.to_string())
}

impl Accounts {
    /// The tenant's own redirect URLs (not those of `AUTH_REDIRECT_URLS`).
    pub async fn redirect_urls(&self, principal: &Principal) -> Result<Vec<String>, AuthError> {
        principal.require(Role::Admin)?;
        let tenant = principal.user.tenant_id;
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    auth_redirect_urls::table
                        .order(auth_redirect_urls::url)
                        .select(auth_redirect_urls::url)
                        .load(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await
    }

    /// Replaces the tenant's redirect URLs (administrators, recently authenticated).
    pub async fn set_redirect_urls(
        &self,
        principal: &Principal,
        urls: &[String],
    ) -> Result<Vec<String>, AuthError> {
        principal.require(Role::Admin)?;
        principal.require_recent()?;
        if urls.len() > MAX_REDIRECT_URLS {
            return Err(AuthError::invalid(
                "urls",
                "too_many",
                format!("at most {MAX_REDIRECT_URLS} URLs"),
            ));
        }
        let mut checked = Vec::with_capacity(urls.len());
        for (i, url) in urls.iter().enumerate() {
            let url = check_redirect_url(url)
                .map_err(|why| AuthError::invalid(&format!("urls[{i}]"), "redirect_url", why))?;
            if !checked.contains(&url) {
                checked.push(url);
            }
        }
        let tenant = principal.user.tenant_id;
        let rows = checked.clone();
        self.db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::delete(auth_redirect_urls::table)
                        .execute(conn)
                        .await?;
                    let values: Vec<_> = rows
                        .into_iter()
                        .map(|url| {
                            (
                                auth_redirect_urls::tenant_id.eq(tenant),
                                auth_redirect_urls::url.eq(url),
                            )
                        })
                        .collect();
                    diesel::insert_into(auth_redirect_urls::table)
                        .values(values)
                        .execute(conn)
                        .await
                        .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        tracing::info!(security_event = "redirect_urls_changed", %tenant, by = %principal.user.id, count = checked.len(), "redirect URLs replaced");
        checked.sort();
        Ok(checked)
    }

    /// `redirect_to` in its compared form, if the tenant (or the settings) allow it.
    pub(crate) async fn allowed_redirect(
        &self,
        tenant: Uuid,
        redirect_to: &str,
    ) -> Result<String, AuthError> {
        let url = check_redirect_url(redirect_to).map_err(|_| AuthError::RedirectNotAllowed)?;
        if self.inner.settings.providers.redirect_urls.contains(&url) {
            return Ok(url);
        }
        let wanted = url.clone();
        let listed: bool = self
            .db()
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::select(diesel::dsl::exists(
                        auth_redirect_urls::table.filter(auth_redirect_urls::url.eq(wanted)),
                    ))
                    .get_result(conn)
                    .await
                    .map_err(AuthError::from)
                }
                .scope_boxed()
            })
            .await?;
        if listed {
            Ok(url)
        } else {
            Err(AuthError::RedirectNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_redirect_url;

    #[test]
    fn redirect_urls_are_absolute_and_safe() {
        for good in [
            "https://app.example.com/auth/callback",
            "https://app.example.com/cb?from=login",
            "http://127.0.0.1:5173/",
            "http://localhost:5173/callback",
            "com.example.app:/oauth",
        ] {
            assert!(check_redirect_url(good).is_ok(), "{good}");
        }
        for bad in [
            "/relative",
            "http://app.example.com/cb",
            "https://app.example.com/cb#x",
            "https://user@app.example.com/cb",
            "javascript:alert(1)",
            "data:text/html,hi",
            "myapp:/cb",
        ] {
            assert!(check_redirect_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_redirect_url("HTTPS://App.Example.com").unwrap(),
            "https://app.example.com/"
        );
    }
}
