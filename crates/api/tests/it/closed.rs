//! The document says exactly what the server accepts, as a client generated from it needs:
//! every request body it declares closed (`additionalProperties: false`) refuses an unknown
//! field — also where a type flattens another, which utoipa would describe as an open `allOf` —
//! and whole numbers are read as JSON Schema's `integer` reads them (`3.0` is 3).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem};
use crate::walk::{body_for, fill, operations};

/// The schema of an operation's JSON body, with its reference followed.
fn body_schema<'a>(doc: &'a Value, operation: &'a Value) -> &'a Value {
    let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
    match schema["$ref"].as_str() {
        Some(reference) => &doc["components"]["schemas"][reference.rsplit('/').next().unwrap()],
        None => schema,
    }
}

#[tokio::test]
async fn every_closed_request_body_refuses_an_unknown_field_by_name() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ENABLED", "false")], None).await;
    let root = app.signup_as("root@example.com", "superadmin").await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for name in ["SearchRequest", "RecommendRequest", "PayloadUpdate"] {
        let schema = &doc["components"]["schemas"][name];
        assert!(schema["allOf"].is_null(), "{name} is one object: {schema}");
        assert_eq!(schema["additionalProperties"], false, "{name}");
    }
    assert!(
        doc["components"]["schemas"]["SearchRequest"]["properties"]["limit"].is_object(),
        "the flattened options are properties of the search"
    );

    let mut checked = Vec::new();
    for (method, template, operation) in operations(&doc) {
        let Some(mut body) = body_for(&doc, &operation) else {
            continue;
        };
        let schema = body_schema(&doc, &operation);
        if schema["additionalProperties"] != false {
            continue;
        }
        body.as_object_mut()
            .expect("request bodies are objects")
            .insert("no_such_field".to_owned(), json!(1));
        let path = fill(&template, "00000000-0000-0000-0000-00000000000a");
        let response = app
            .call(method.clone(), &path, Some(&root.access), &[], Some(body))
            .await;
        let problem = expect_problem(response, 422, "invalid_body").await;
        let named = problem.detail.contains("no_such_field")
            || problem
                .errors
                .iter()
                .any(|e| e.message.contains("no_such_field"));
        assert!(named, "{method} {path}: {problem:?}");
        checked.push(format!("{method} {template}"));
    }
    assert!(checked.len() >= 20, "{checked:?}");
}

#[tokio::test]
async fn whole_numbers_may_be_written_with_a_zero_fraction_and_any_payload_is_published() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ENABLED", "false")], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let token = Some(admin.access.as_str());
    let base = "/api/v1/vector/collections";
    let created = app
        .post_json(
            base,
            token,
            json!({"name": "whole", "dimension": 3.0, "hnsw": {"m": 8.0, "ef_construction": 32}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (created["dimension"].clone(), created["hnsw"]["m"].clone()),
        (json!(3), json!(8))
    );
    let stored = app
        .call(
            Method::PUT,
            &format!("{base}/whole/points"),
            token,
            &[],
            Some(json!({"points": [{"id": "a", "vector": [1, 0, 0]}, {"id": "b", "vector": [0, 1, 0]}]})),
        )
        .await;
    assert_eq!(stored.status(), 200);
    let found = app
        .post_json(
            &format!("{base}/whole/search"),
            token,
            json!({"vector": [1, 0, 0], "limit": 1.0, "ef": 40.0}),
        )
        .await;
    assert_eq!(found.status(), 200);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found["results"].as_array().unwrap().len(), 1);
    assert_eq!(found["results"][0]["id"], "a");
    // A fraction is still refused, with the field named.
    let fraction = app
        .post_json(
            &format!("{base}/whole/search"),
            token,
            json!({"vector": [1, 0, 0], "limit": 1.5}),
        )
        .await;
    let problem = expect_problem(fraction, 422, "invalid_body").await;
    let text = format!("{} {:?}", problem.detail, problem.errors);
    assert!(text.contains("whole number"), "{text}");

    // The document says a published payload is any JSON value, and so does the server.
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let payload = &doc["components"]["schemas"]["PublishRequest"]["properties"]["payload"];
    assert!(payload.get("type").is_none(), "any JSON value: {payload}");
    for payload in [
        json!([null, null]),
        json!("text"),
        json!(3),
        json!({"a": 1}),
    ] {
        let published = app
            .post_json(
                "/api/v1/realtime/publish",
                token,
                json!({"channel": "public:any", "payload": payload}),
            )
            .await;
        assert_eq!(published.status(), 202, "{payload}");
    }
}
