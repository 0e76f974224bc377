//! How a request presents its credential: one `Authorization` or one `X-API-Key`, never a
//! repeated header, never both. The websocket handshake follows the same rules (see
//! `realtime`).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem};

/// Authenticated routes of each extractor: `CurrentUser`, `MaybeUser`, and `Reader` (a POST
/// that only reads).
const ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/api/v1/users/me"),
    (Method::GET, "/api/v1/tenants/current"),
    (Method::POST, "/api/v1/vector/collections/notes/search"),
];

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app.client.request(method.clone(), app.url(path));
    // `header` appends: a name given twice is sent twice.
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if *method == Method::POST {
        request = request.json(&json!({"vector": [0.1, 0.2]}));
    }
    request.send().await.unwrap()
}

async fn refused(response: reqwest::Response, code: &str) {
    let challenge = response.headers().get("www-authenticate").cloned();
    expect_problem(response, 400, code).await;
    assert_eq!(
        challenge.as_ref().and_then(|v| v.to_str().ok()),
        Some("Bearer error=\"invalid_request\"")
    );
}

async fn email(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["email"].as_str().unwrap().to_owned()
}

async fn key_of(app: &TestApp, token: &str) -> String {
    let response = app
        .post_json("/api/v1/api-keys", Some(token), json!({"name": "k"}))
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    body["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_repeated_authorization_or_api_key_header_is_refused_whichever_comes_first() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await.access;
    let bob = app.signup("bob@example.com").await.access;
    let (ada_key, bob_key) = (key_of(&app, &ada).await, key_of(&app, &bob).await);
    let (ada_bearer, bob_bearer) = (format!("Bearer {ada}"), format!("Bearer {bob}"));

    // Each alone is fine (the control).
    let me = "/api/v1/users/me";
    assert_eq!(
        email(send(&app, &Method::GET, me, &[("authorization", &bob_bearer)]).await).await,
        "bob@example.com"
    );
    assert_eq!(
        email(send(&app, &Method::GET, me, &[("x-api-key", &bob_key)]).await).await,
        "bob@example.com"
    );

    let twice: [[(&str, &str); 2]; 4] = [
        // Two users' valid tokens, in both orders: neither may win.
        [
            ("authorization", &ada_bearer),
            ("authorization", &bob_bearer),
        ],
        [
            ("authorization", &bob_bearer),
            ("authorization", &ada_bearer),
        ],
        // The same value twice is still a repeated single-valued field.
        [
            ("authorization", &ada_bearer),
            ("authorization", &ada_bearer),
        ],
        [("x-api-key", &ada_key), ("x-api-key", &bob_key)],
    ];
    for (method, path) in ROUTES {
        for headers in &twice {
            refused(send(&app, method, path, headers).await, "duplicate_header").await;
        }
    }
}

#[tokio::test]
async fn a_bearer_credential_and_an_api_key_together_are_refused_whatever_their_validity() {
    let app = TestApp::spawn().await;
    let ada = app.signup("ada@example.com").await.access;
    let key = key_of(&app, &ada).await;
    let bearer = format!("Bearer {ada}");
    let bad_bearer = "Bearer not-a-token";
    let combinations: [[(&str, &str); 2]; 5] = [
        // A valid token beside a bad key, and the reverse.
        [("authorization", &bearer), ("x-api-key", "sovak_bogus")],
        [("authorization", bad_bearer), ("x-api-key", &key)],
        // Both valid, both the same account's; and a key in both headers.
        [("authorization", &bearer), ("x-api-key", &key)],
        [
            ("authorization", &format!("Bearer {key}")),
            ("x-api-key", &key),
        ],
        // Not even a bearer scheme.
        [("authorization", "Basic YTpi"), ("x-api-key", &key)],
    ];
    for (method, path) in ROUTES {
        for headers in &combinations {
            refused(
                send(&app, method, path, headers).await,
                "ambiguous_credentials",
            )
            .await;
        }
    }
    // Routes that take no credential are not concerned.
    let health = send(&app, &Method::GET, "/health", &combinations[0]).await;
    assert_eq!(health.status(), 200);
}
