//! HEAD wherever GET is served (RFC 9110 §9.3.2): the GET's status and headers, without a body.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem};

/// Every GET path of the OpenAPI document with its parameters filled in, and the paths outside
/// it.
fn get_paths(tenant_id: &str, user_id: &str, upload_id: &str, collection: &str) -> Vec<String> {
    let document: Value = serde_json::from_str(&sovereign_api::openapi::document_json()).unwrap();
    let mut paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(path, item)| Some((path, item.get("get")?)))
        .map(|(path, get)| {
            let path = if path.starts_with("/api/v1/tenants/") {
                path.replace("{id}", tenant_id)
            } else if path.starts_with("/api/v1/storage/uploads/") {
                path.replace("{id}", upload_id)
            } else {
                path.replace("{id}", user_id)
            };
            // Required query parameters get a value (the points' `ids`).
            let query: Vec<String> = get["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| format!("{}=p1", p["name"].as_str().unwrap()))
                .collect();
            let path = path
                .replace("{name}", collection)
                .replace("{provider}", "hub")
                .replace("{bucket}", "files")
                .replace("{key}", "notes/a.txt");
            if query.is_empty() {
                path
            } else {
                format!("{path}?{}", query.join("&"))
            }
        })
        .collect();
    assert!(paths.len() >= 15, "{paths:?}");
    assert!(paths.iter().all(|p| !p.contains('{')), "{paths:?}");
    for outside in [
        "/health",
        "/ready",
        "/docs",
        "/docs/",
        "/docs/swagger-initializer.js",
        sovereign_api::OPENAPI_PATH,
    ] {
        if !paths.iter().any(|p| p == outside) {
            paths.push(outside.to_owned());
        }
    }
    paths
}

async fn send(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> reqwest::Response {
    app.call(method, path, token, &[], None).await
}

#[tokio::test]
async fn every_get_route_answers_head_with_the_same_status_and_headers_and_no_body() {
    let app = TestApp::spawn_with(
        &[("DOCS_ENABLED", "true"), ("EMBEDDING_DIMENSIONS", "4")],
        None,
    )
    .await;
    let root = app.signup_as("root@example.com", "superadmin").await.access;
    let me: Value = send(&app, Method::GET, "/api/v1/auth/me", Some(&root))
        .await
        .json()
        .await
        .unwrap();
    let created = app
        .post_json(
            "/api/v1/vector/collections",
            Some(&root),
            json!({"name": "notes", "dimension": 4}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let bucket = app
        .post_json(
            "/api/v1/storage/buckets",
            Some(&root),
            json!({"name": "files"}),
        )
        .await;
    assert_eq!(bucket.status(), 201);
    let object = app
        .client
        .put(app.url("/api/v1/storage/buckets/files/objects/notes/a.txt"))
        .bearer_auth(&root)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(object.status(), 201);
    let upload: Value = app
        .post_json(
            "/api/v1/storage/buckets/files/uploads",
            Some(&root),
            json!({"key": "big.bin", "size": 3, "content_type": "application/octet-stream"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let provider = app
        .post_json(
            "/api/v1/auth/providers",
            Some(&root),
            json!({"slug": "hub", "kind": "github", "client_id": "c", "client_secret": "s"}),
        )
        .await;
    assert_eq!(provider.status(), 201);
    let default_tenant = sovereign_tenancy::DEFAULT_TENANT_ID.to_string();
    let paths = get_paths(
        &default_tenant,
        me["id"].as_str().unwrap(),
        upload["id"].as_str().unwrap(),
        "notes",
    );

    let mut refused = Vec::new();
    for path in &paths {
        // Anonymous, and as a superadmin (who may read every route).
        for token in [None, Some(root.as_str())] {
            let get = send(&app, Method::GET, path, token).await;
            let head = send(&app, Method::HEAD, path, token).await;
            let context = format!("HEAD {path} (signed in: {})", token.is_some());
            assert_ne!(head.status(), 405, "{context}");
            assert_eq!(head.status(), get.status(), "{context}");
            for name in [
                "content-type",
                "cache-control",
                "location",
                "www-authenticate",
            ] {
                assert_eq!(
                    head.headers().get(name),
                    get.headers().get(name),
                    "{name} of {context}"
                );
            }
            if token.is_some() && !get.status().is_success() {
                refused.push((path.as_str(), get.status().as_u16()));
            }
            assert!(
                head.bytes().await.unwrap().is_empty(),
                "a body for {context}"
            );
        }
    }
    // Every route served the superadmin but the provider sign-in's (no redirect URL; a
    // callback without a state), the websocket (not a handshake) and the docs' redirect: HEAD
    // was compared with real answers.
    assert_eq!(
        refused,
        [
            ("/api/v1/auth/providers/hub/authorize", 422),
            ("/api/v1/auth/providers/hub/callback", 400),
            ("/api/v1/ws", 400),
            ("/docs", 308)
        ]
    );

    // A static answer's length, when HEAD states it, is the GET's.
    let get = send(&app, Method::GET, "/.well-known/jwks.json", None).await;
    let head = send(&app, Method::HEAD, "/.well-known/jwks.json", None).await;
    if let Some(length) = head.headers().get("content-length") {
        assert_eq!(
            length,
            get.bytes().await.unwrap().len().to_string().as_str()
        );
    }

    // `Allow` lists HEAD wherever it lists GET, and only there.
    let response = send(&app, Method::DELETE, "/health", None).await;
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    expect_problem(response, 405, "method_not_allowed").await;
    let response = send(&app, Method::HEAD, "/api/v1/auth/login", None).await;
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");

    // Metrics count HEAD under its own method and the route's template, not a new route.
    let address = app.metrics_address.as_ref().unwrap();
    let scrape = app
        .client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        scrape
            .lines()
            .any(|l| l.starts_with("sovereign_http_requests_total")
                && l.contains("route=\"/api/v1/users/{id}\"")
                && l.contains("method=\"HEAD\"")),
        "{scrape}"
    );
}
