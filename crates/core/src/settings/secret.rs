//! A URL that may carry a password, redacted whenever it is shown.

use std::fmt;
use std::ops::Deref;

use url::Url;

/// A connection URL whose password (in the authority or a `password=` query parameter) never
/// appears in `Debug`, `Display` or logs. [`SecretUrl::expose`] gives the real text to drivers.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Url);

impl SecretUrl {
    #[must_use]
    pub fn new(url: Url) -> Self {
        Self(url)
    }

    /// Parses a URL text.
    pub fn parse(text: &str) -> Result<Self, url::ParseError> {
        Url::parse(text).map(Self)
    }

    /// The full URL, password included. Hand it to a driver, never to a log.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with secrets replaced by `***`.
    #[must_use]
    pub fn redacted(&self) -> String {
        let mut url = self.0.clone();
        if url.password().is_some() {
            // Setting a password only fails for URLs that cannot have one, and this one has one.
            let _ = url.set_password(Some("***"));
        }
        let secret_param = |k: &str| {
            let k = k.to_ascii_lowercase();
            k.contains("password") || k == "pass" || k.contains("secret") || k.contains("token")
        };
        if url.query_pairs().any(|(k, _)| secret_param(&k)) {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if secret_param(&k) { "***".into() } else { v };
                    (k.into_owned(), v.into_owned())
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        url.to_string()
    }
}

/// Read-only access to the parts (scheme, host, port, path, query) for validation.
impl Deref for SecretUrl {
    type Target = Url;
    fn deref(&self) -> &Url {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> SecretUrl {
        SecretUrl::new(Url::parse(s).unwrap())
    }

    #[test]
    fn passwords_are_redacted_everywhere_but_expose() {
        let u =
            url("postgres://app:s3cr3t@db.internal:5432/sovereign?password=other&sslmode=require");
        for shown in [u.redacted(), format!("{u:?}"), u.to_string()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(!shown.contains("other"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
            assert!(shown.contains("sslmode=require"), "{shown}");
        }
        assert!(u.expose().contains("s3cr3t"));
    }

    #[test]
    fn urls_without_secrets_are_shown_unchanged() {
        let u = url("redis://127.0.0.1:6379/0");
        assert_eq!(u.redacted(), "redis://127.0.0.1:6379/0");
    }
}
