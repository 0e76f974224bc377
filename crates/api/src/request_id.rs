//! Request ids: accepted from a well-formed `X-Request-ID`, generated otherwise, echoed on every
//! response, recorded in the request's log span and stamped on every problem body.

use actix_web::HttpMessage;
use actix_web::dev::Payload;
use actix_web::http::header::{HeaderMap, HeaderName};
use actix_web::{FromRequest, HttpRequest};
use std::future::{Ready, ready};

/// The header carrying the id, in both directions.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id accepted.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled, available to handlers as an extractor (the
/// request-context middleware stores it on every request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(id.ok_or_else(|| {
            actix_web::error::ErrorInternalServerError(
                "request-context middleware is not installed",
            )
        }))
    }
}

/// The incoming id when it is well-formed: 1 to 128 characters from `A-Z a-z 0-9 - _ . :`.
/// Anything else is ignored (and replaced), so ids are safe to log and to echo.
#[must_use]
pub fn accept(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(X_REQUEST_ID)?.to_str().ok()?;
    let well_formed = !value.is_empty()
        && value.len() <= MAX_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    well_formed.then(|| value.to_owned())
}

/// A new, time-ordered id.
#[must_use]
pub fn generate() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The id of the request whose task is running, if any.
#[must_use]
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `id` as the current request id.
pub(crate) async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    CURRENT.scope(id, fut).await
}

/// Runs `f` with `id` as the current request id.
pub(crate) fn sync_scope<R>(id: String, f: impl FnOnce() -> R) -> R {
    CURRENT.sync_scope(id, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn well_formed_ids_are_accepted() {
        for id in [
            "abc",
            "01936f0e-8c1a-7b3e-9d2f-4a5b6c7d8e9f",
            "trace:1.2_3",
            &"a".repeat(128),
        ] {
            assert_eq!(accept(&headers(id)).as_deref(), Some(id));
        }
    }

    #[test]
    fn malformed_ids_are_refused() {
        for id in [
            "",
            "has space",
            "new\tline",
            "<script>",
            "x;y",
            &"a".repeat(129),
        ] {
            assert_eq!(accept(&headers(id)), None, "{id:?}");
        }
        assert_eq!(accept(&HeaderMap::new()), None);
    }

    #[test]
    fn generated_ids_are_unique_and_acceptable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(accept(&headers(&a)), Some(a));
    }
}
