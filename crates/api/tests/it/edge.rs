//! The edge over real HTTP: security headers per environment, CORS, client addresses through
//! trusted proxies, and rate limits that forwarded headers cannot dodge.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use reqwest::Method;
use reqwest::header::HeaderMap;
use sovereign_api::RouteHook;

use crate::common::{TestApp, expect_problem};

const STRONG_KEY: &str = "k3P9vQ2xL7mN4bR8tY1wZ6cF0hJ5sD3gA9eU2iO7pK4lX8nB";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn assert_api_security_headers(headers: &HeaderMap) {
    assert_eq!(header(headers, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(headers, "x-frame-options"), Some("DENY"));
    assert_eq!(header(headers, "referrer-policy"), Some("no-referrer"));
    let csp = header(headers, "content-security-policy").expect("a CSP");
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let permissions = header(headers, "permissions-policy").expect("a permissions policy");
    assert!(permissions.contains("camera=()"), "{permissions}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_docs_get_a_policy_that_works() {
    let app = TestApp::spawn_with(&[("DOCS_ENABLED", "true")], None).await;
    for path in ["/", "/health", "/ready", "/no/such/route"] {
        let response = app.get(path).await;
        assert_api_security_headers(response.headers());
        assert_eq!(
            header(response.headers(), "strict-transport-security"),
            None
        );
    }
    // A problem body made by the middleware from actix's own error keeps them too.
    let response = app.request(Method::DELETE, "/health", &[]).await;
    assert_eq!(response.status(), 405);
    assert_api_security_headers(response.headers());

    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    let csp = header(docs.headers(), "content-security-policy")
        .unwrap()
        .to_owned();
    // Swagger UI loads its own scripts and styles, sets inline styles, fetches the document.
    for directive in [
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-eval"));
    assert_eq!(header(docs.headers(), "x-frame-options"), Some("DENY"));
}

#[tokio::test]
async fn hsts_is_sent_only_in_production_over_https_via_a_trusted_proxy() {
    let https = [("x-forwarded-proto", "https")];
    let production = [
        ("ENVIRONMENT", "production"),
        ("SECRET_KEY", STRONG_KEY),
        ("TRUSTED_PROXIES", "127.0.0.1"),
    ];
    let app = TestApp::spawn_with(&production, None).await;
    let response = app.get_with("/", &https).await;
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        Some("max-age=31536000; includeSubDomains")
    );
    assert_api_security_headers(response.headers());
    let plain = app.get("/").await;
    assert_eq!(header(plain.headers(), "strict-transport-security"), None);

    // The same claim from a peer that is not a trusted proxy is ignored.
    let untrusted = TestApp::spawn_with(&production[..2], None).await;
    let response = untrusted.get_with("/", &https).await;
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        None
    );

    // Development never sends HSTS.
    let development = TestApp::spawn_with(&[("TRUSTED_PROXIES", "127.0.0.1")], None).await;
    let response = development.get_with("/", &https).await;
    assert_eq!(
        header(response.headers(), "strict-transport-security"),
        None
    );
}

#[tokio::test]
async fn cors_allows_listed_origins_only_and_answers_preflights() {
    let app = TestApp::spawn_with(
        &[(
            "BACKEND_CORS_ORIGINS",
            "https://app.example.com,http://localhost:3000",
        )],
        None,
    )
    .await;
    let allowed = app
        .get_with("/", &[("origin", "https://app.example.com")])
        .await;
    assert_eq!(allowed.status(), 200);
    let h = allowed.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(header(h, "access-control-allow-credentials"), Some("true"));
    let exposed = header(h, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    for name in ["x-request-id", "retry-after", "ratelimit-remaining"] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }

    // Another site gets an answer its browser will not hand over.
    let denied = app
        .get_with("/", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(denied.status(), 200);
    assert_eq!(
        header(denied.headers(), "access-control-allow-origin"),
        None
    );

    let preflight = app
        .request(
            Method::OPTIONS,
            "/api/v1/anything",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
                (
                    "access-control-request-headers",
                    "authorization, content-type",
                ),
            ],
        )
        .await;
    assert_eq!(preflight.status(), 200);
    let h = preflight.headers();
    assert_eq!(
        header(h, "access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert!(
        header(h, "access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    let allowed_headers = header(h, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );
    assert_eq!(header(h, "access-control-max-age"), Some("600"));

    let refused = app
        .request(
            Method::OPTIONS,
            "/api/v1/anything",
            &[
                ("origin", "https://evil.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert_eq!(
        header(refused.headers(), "access-control-allow-origin"),
        None
    );
    expect_problem(refused, 400, "bad_request").await;
}

#[tokio::test]
async fn a_wildcard_origin_allows_any_site_without_credentials() {
    let app = TestApp::spawn_with(
        &[
            ("BACKEND_CORS_ORIGINS", "*"),
            ("CORS_ALLOW_CREDENTIALS", "false"),
        ],
        None,
    )
    .await;
    let response = app
        .get_with("/", &[("origin", "https://any.example")])
        .await;
    assert_eq!(
        header(response.headers(), "access-control-allow-origin"),
        Some("*")
    );
    assert_eq!(
        header(response.headers(), "access-control-allow-credentials"),
        None
    );
}

async fn hit(app: &TestApp, path: &str, forwarded_for: &str) -> reqwest::Response {
    app.get_with(path, &[("x-forwarded-for", forwarded_for)])
        .await
}

#[tokio::test]
async fn over_the_limit_clients_get_429_with_retry_after_and_ratelimit_headers() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_API", "3/minute")], None).await;
    for remaining in ["2", "1", "0"] {
        let response = app.get("/").await;
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(header(h, "ratelimit-limit"), Some("3"));
        assert_eq!(header(h, "ratelimit-remaining"), Some(remaining));
        assert_eq!(header(h, "ratelimit-policy"), Some("3;w=60"));
        assert!(header(h, "ratelimit-reset").is_some());
    }
    let refused = app.get("/").await;
    let retry_after: u64 = header(refused.headers(), "retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    // One request is emitted every 20 s.
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(header(refused.headers(), "ratelimit-remaining"), Some("0"));
    assert_api_security_headers(refused.headers());
    expect_problem(refused, 429, "rate_limited").await;

    // Probes are never limited.
    for _ in 0..5 {
        assert_eq!(app.get("/health").await.status(), 200);
        assert_eq!(app.get("/ready").await.status(), 200);
    }
}

#[tokio::test]
async fn authentication_routes_have_their_own_stricter_policy() {
    let app = TestApp::spawn_with(
        &[
            ("RATE_LIMIT_API", "100/minute"),
            ("RATE_LIMIT_AUTH", "2/minute"),
        ],
        None,
    )
    .await;
    for _ in 0..2 {
        let response = app.get("/api/v1/auth/login").await;
        assert_eq!(header(response.headers(), "ratelimit-limit"), Some("2"));
        assert_ne!(response.status(), 429);
    }
    expect_problem(app.get("/api/v1/auth/login").await, 429, "rate_limited").await;
    assert_eq!(
        app.get("/").await.status(),
        200,
        "other routes keep their own quota"
    );
}

#[tokio::test]
async fn only_the_routes_that_take_a_password_or_a_token_count_against_the_auth_policy() {
    let app = TestApp::spawn_with(
        &[
            ("RATE_LIMIT_API", "100/minute"),
            ("RATE_LIMIT_AUTH", "50/minute"),
        ],
        None,
    )
    .await;
    for path in [
        "register",
        "login",
        "token",
        "refresh",
        "password/forgot",
        "password/reset",
        "password/change",
        "verify-email/request",
        "verify-email/confirm",
    ] {
        let response = app
            .request(Method::POST, &format!("/api/v1/auth/{path}"), &[])
            .await;
        assert_eq!(
            header(response.headers(), "ratelimit-limit"),
            Some("50"),
            "{path}"
        );
    }
    let session = uuid::Uuid::now_v7();
    for (method, path) in [
        (Method::GET, "/api/v1/auth/me".to_owned()),
        (Method::GET, "/api/v1/auth/sessions".to_owned()),
        (Method::DELETE, format!("/api/v1/auth/sessions/{session}")),
        (Method::POST, "/api/v1/auth/logout".to_owned()),
        (Method::GET, "/.well-known/jwks.json".to_owned()),
        (Method::GET, "/api/v1/users/me".to_owned()),
        (Method::GET, "/api/v1/authors".to_owned()),
    ] {
        let response = app.request(method, &path, &[]).await;
        assert_eq!(
            header(response.headers(), "ratelimit-limit"),
            Some("100"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn rotating_x_forwarded_for_from_an_untrusted_peer_opens_no_new_buckets() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_API", "3/minute")], None).await;
    for n in 0..3 {
        let response = hit(&app, "/", &format!("198.51.100.{n}")).await;
        assert_eq!(response.status(), 200);
    }
    for n in 3..6 {
        let spoofed = format!("198.51.100.{n}");
        expect_problem(hit(&app, "/", &spoofed).await, 429, "rate_limited").await;
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_clients_are_counted_by_the_right_most_untrusted_hop() {
    let app = TestApp::spawn_with(
        &[
            ("RATE_LIMIT_API", "2/minute"),
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
        ],
        None,
    )
    .await;
    // Distinct clients behind the proxy each get their own quota.
    for n in 0..4 {
        let client = format!("203.0.113.{n}");
        assert_eq!(hit(&app, "/", &client).await.status(), 200);
        assert_eq!(hit(&app, "/", &client).await.status(), 200);
    }
    // One client forging entries to the left of what the proxy appended stays one client.
    for forged in ["1.1.1.1", "2.2.2.2"] {
        let chain = format!("{forged}, 192.0.2.77");
        assert_eq!(hit(&app, "/", &chain).await.status(), 200);
    }
    expect_problem(
        hit(&app, "/", "3.3.3.3, 192.0.2.77").await,
        429,
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn rate_limiting_can_be_switched_off() {
    let app = TestApp::spawn_with(
        &[
            ("RATE_LIMIT_API", "1/minute"),
            ("RATE_LIMIT_ENABLED", "false"),
        ],
        None,
    )
    .await;
    for _ in 0..3 {
        let response = app.get("/").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(response.headers(), "ratelimit-limit"), None);
    }
}

#[tokio::test]
async fn a_plain_error_turned_into_a_problem_keeps_its_headers_and_the_edge_headers() {
    let plain: RouteHook = Arc::new(|cfg: &mut web::ServiceConfig| {
        cfg.route(
            "/plain-error",
            web::get().to(|| async {
                HttpResponse::BadRequest()
                    .insert_header(("x-custom", "kept"))
                    .body("plain text")
            }),
        );
    });
    let app = TestApp::spawn_with(
        &[("BACKEND_CORS_ORIGINS", "https://app.example.com")],
        Some(plain),
    )
    .await;
    let response = app
        .get_with("/plain-error", &[("origin", "https://app.example.com")])
        .await;
    let h = response.headers().clone();
    expect_problem(response, 400, "bad_request").await;
    assert_eq!(header(&h, "x-custom"), Some("kept"));
    assert_eq!(header(&h, "ratelimit-limit"), Some("600"));
    assert_eq!(
        header(&h, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_api_security_headers(&h);
}
