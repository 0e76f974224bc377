//! The answer for requests no route took: 405 with `Allow` when the path exists under other
//! methods, 404 otherwise.
//!
//! actix's method macros guard whole resources, so a wrong method falls through to the default
//! service like an unknown path would. The table of known paths and their methods comes from the
//! OpenAPI document, which is built from the same route registration as the server. Every path
//! served with GET is served with HEAD too (RFC 9110 §9.3.2; see `middleware`), so the table
//! lists HEAD wherever it lists GET.

use actix_web::dev::ResourceDef;
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse, web};
use sovereign_core::ErrorKind;

use crate::error::ApiError;

/// The pattern the router uses for a documented path: a storage object key (the document's
/// `{key}` at the end of `…/objects/{key}`) takes the rest of the path, `/` included.
fn routed(path: &str) -> String {
    match path.strip_suffix("/objects/{key}") {
        Some(prefix) => format!("{prefix}/objects/{{key:.*}}"),
        None => path.to_owned(),
    }
}

/// Every documented path, with the methods it answers.
#[derive(Debug, Default)]
pub(crate) struct KnownRoutes(Vec<(ResourceDef, Vec<Method>)>);

impl KnownRoutes {
    pub(crate) fn from_document(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut routes = Vec::new();
        for (path, item) in &doc.paths.paths {
            let methods: Vec<Method> = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::OPTIONS, &item.options),
                (Method::HEAD, &item.head),
                (Method::PATCH, &item.patch),
                (Method::TRACE, &item.trace),
            ]
            .into_iter()
            .filter(|(_, op)| op.is_some())
            .map(|(m, _)| m)
            .collect();
            routes.push((ResourceDef::new(routed(path)), with_head(methods)));
        }
        Self(routes)
    }

    /// Adds a path outside the document (the docs UI).
    pub(crate) fn add(&mut self, path: &str, methods: Vec<Method>) {
        self.0.push((ResourceDef::new(path), with_head(methods)));
    }

    /// Whether `path` is served with GET (and so with HEAD).
    pub(crate) fn serves_get(&self, path: &str) -> bool {
        self.allowed(path)
            .is_some_and(|methods| methods.contains(&Method::GET))
    }

    /// The methods of the route `path` belongs to. A literal route (`/users/me`) wins over a
    /// template that also matches (`/users/{id}`), as it does in the router.
    fn allowed(&self, path: &str) -> Option<&[Method]> {
        let mut matching = self.0.iter().filter(|(def, _)| def.is_match(path));
        let first = matching.next()?;
        let best = std::iter::once(first)
            .chain(matching)
            .find(|(def, _)| !def.is_prefix() && def.pattern().is_some_and(|p| !p.contains('{')))
            .unwrap_or(first);
        Some(best.1.as_slice())
    }

    /// `405` with `Allow` when `path` exists but not with `method`.
    pub(crate) fn method_not_allowed(&self, method: &Method, path: &str) -> Option<ApiError> {
        let methods = self.allowed(path)?;
        if methods.contains(method) {
            return None;
        }
        let allow = methods
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        Some(
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not supported on {path}."),
            )
            .with_suggestion(format!("use {allow}"))
            .with_header(actix_web::http::header::ALLOW, &allow),
        )
    }
}

/// `methods` with HEAD right after GET, when GET is there and HEAD is not.
fn with_head(mut methods: Vec<Method>) -> Vec<Method> {
    if !methods.contains(&Method::HEAD)
        && let Some(get) = methods.iter().position(|m| *m == Method::GET)
    {
        methods.insert(get + 1, Method::HEAD);
    }
    methods
}

pub(crate) async fn fallback(
    req: HttpRequest,
    routes: web::Data<KnownRoutes>,
) -> Result<HttpResponse, ApiError> {
    Err(routes
        .method_not_allowed(req.method(), req.path())
        .unwrap_or_else(|| {
            ApiError::of_kind(
                ErrorKind::NotFound,
                "not_found",
                format!("No resource exists at {}.", req.path()),
            )
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_concrete_paths() {
        let mut routes = KnownRoutes::default();
        routes.add("/api/v1/users/{id}", vec![Method::GET, Method::PATCH]);
        routes.add("/health", vec![Method::GET]);
        assert_eq!(
            routes.allowed("/api/v1/users/42"),
            Some([Method::GET, Method::HEAD, Method::PATCH].as_slice())
        );
        assert_eq!(
            routes.allowed("/health"),
            Some([Method::GET, Method::HEAD].as_slice())
        );
        assert!(routes.serves_get("/health"));
        assert!(!routes.serves_get("/nope"));
        assert_eq!(routes.allowed("/api/v1/users"), None);
        routes.add("/api/v1/users/me", vec![Method::GET]);
        assert_eq!(
            routes.allowed("/api/v1/users/me"),
            Some([Method::GET, Method::HEAD].as_slice()),
            "the literal route wins"
        );
        routes.add("/api/v1/things", vec![Method::POST]);
        assert!(!routes.serves_get("/api/v1/things"));
        let refused = routes.method_not_allowed(&Method::HEAD, "/api/v1/things");
        assert!(refused.is_some(), "no HEAD where there is no GET");
        assert!(
            routes
                .method_not_allowed(&Method::DELETE, "/api/v1/users/me")
                .is_some()
        );
        assert!(
            routes
                .method_not_allowed(&Method::GET, "/api/v1/users/me")
                .is_none()
        );
        assert_eq!(routes.allowed("/nope"), None);
    }
}
