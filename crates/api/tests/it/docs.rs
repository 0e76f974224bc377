//! The OpenAPI document and the interactive docs.

use serde_json::Value;

use crate::common::{TestApp, expect_problem};

const STRONG_KEY: &str = "q8Jx2mV7pL0sT4wZ9cR1nB6yK3hD5fGaE8uI2oP7";

#[tokio::test]
async fn the_openapi_document_is_served_as_generated() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served: Value = response.json().await.unwrap();
    let generated: Value = serde_json::from_str(&sovereign_api::openapi::document_json()).unwrap();
    assert_eq!(served, generated);
    assert!(served["openapi"].as_str().unwrap().starts_with("3.1"));
}

#[tokio::test]
async fn the_docs_ui_is_served_from_the_binary() {
    let app = TestApp::spawn().await;
    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), 308);
    assert_eq!(redirect.headers()["location"], "/docs/");

    let page = app.get("/docs/").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
    // The scripts come from the binary, not a CDN, so the page works offline.
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
    let init = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .unwrap();
    assert!(init.contains("/api/v1/openapi.json"), "{init}");
}

#[tokio::test]
async fn production_hides_the_docs_unless_enabled() {
    let prod = [("ENVIRONMENT", "production"), ("SECRET_KEY", STRONG_KEY)];
    let app = TestApp::spawn_with(&prod, None).await;
    expect_problem(app.get("/docs/").await, 404, "not_found").await;
    expect_problem(app.get("/api/v1/openapi.json").await, 404, "not_found").await;
    let index: Value = app.get("/").await.json().await.unwrap();
    assert!(index.get("docs").is_none());

    let mut enabled = prod.to_vec();
    enabled.push(("DOCS_ENABLED", "true"));
    let app = TestApp::spawn_with(&enabled, None).await;
    assert_eq!(app.get("/docs/").await.status(), 200);
}
