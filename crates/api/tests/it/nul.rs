//! U+0000 anywhere a client can put text — a path segment, a query parameter, any string of a
//! JSON body — is a clear refusal, never a database error. The walk goes over every operation of
//! the OpenAPI document as a superadmin, so a route added later is covered too.

use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem};
use crate::walk::{body_for, fill, operations};

/// `body` with U+0000 appended to its first string (or a key added when it has none).
fn poisoned(body: Value) -> Value {
    fn poison(value: &mut Value) -> bool {
        match value {
            Value::String(s) => {
                s.push('\0');
                true
            }
            Value::Array(items) => items.iter_mut().any(poison),
            Value::Object(map) => map.values_mut().any(poison),
            _ => false,
        }
    }
    let mut body = body;
    if !poison(&mut body)
        && let Value::Object(map) = &mut body
    {
        map.insert("name".to_owned(), json!("a\0b"));
    }
    body
}

#[tokio::test]
async fn nul_in_any_path_query_or_body_string_is_refused_never_a_server_error() {
    // The walk sends a few requests to every credential route: no rate limit gets in the way.
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ENABLED", "false")], None).await;
    let root = app.signup_as("root@example.com", "superadmin").await;
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    let operations = operations(&doc);
    assert!(operations.len() > 40, "the walk covers the document");
    let token = Some(root.access.as_str());

    let mut checked = 0;
    for (method, template, operation) in operations {
        // Path segments: no resource has such a name.
        if template.contains('{') {
            let path = fill(&template, "a%00b");
            let response = app.call(method.clone(), &path, token, &[], None).await;
            let status = response.status().as_u16();
            assert!(status < 500, "{method} {path}: {status}");
            expect_problem(response, 404, "not_found").await;
            checked += 1;
        }
        // Other parameters get a value every extractor takes (an id or a name).
        let path = fill(&template, "00000000-0000-0000-0000-00000000000a");
        // Every string query parameter.
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            if parameter["in"] != "query" {
                continue;
            }
            let name = parameter["name"].as_str().unwrap();
            let url = format!("{path}?{name}=a%00b");
            let response = app.call(method.clone(), &url, token, &[], None).await;
            let problem = expect_problem(response, 422, "nul_character").await;
            assert_eq!(problem.errors[0].field, name, "{method} {url}");
            checked += 1;
        }
        // Any string of a JSON body.
        if let Some(body) = body_for(&doc, &operation) {
            let response = app
                .call(method.clone(), &path, token, &[], Some(poisoned(body)))
                .await;
            let status = response.status().as_u16();
            assert!(status < 500, "{method} {path}: {status}");
            expect_problem(response, 422, "nul_character").await;
            checked += 1;
        }
    }
    assert!(checked >= 50, "{checked} checks");

    // The cases that reached PostgreSQL before, by name.
    let search = app.get_auth("/api/v1/users?search=%00", &root.access).await;
    expect_problem(search, 422, "nul_character").await;
    let tenant = app
        .post_json(
            "/api/v1/tenants",
            token,
            json!({"slug": "nul", "name": "Null\u{0}Corp"}),
        )
        .await;
    let problem = expect_problem(tenant, 422, "nul_character").await;
    assert_eq!(problem.errors[0].field, "name");
    let collection = app
        .get_auth("/api/v1/vector/collections/notes%00", &root.access)
        .await;
    expect_problem(collection, 404, "not_found").await;
    // An escaped backslash followed by `u0000` is text, not U+0000.
    let literal = app
        .post_json(
            "/api/v1/tenants",
            token,
            json!({"slug": "literal", "name": "back\\u0000slash"}),
        )
        .await;
    assert_eq!(literal.status(), 201);
}
