//! `/api/v1/vector` over HTTP: the whole flow, roles and API-key scopes, problem bodies, the
//! cross-tenant matrix, and readiness.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sovereign_db::PoolSettings;
use sovereign_tenancy::TenantAdmin;

use crate::common::{TestApp, expect_problem};

const BASE: &str = "/api/v1/vector/collections";

/// The first axis of `dim` dimensions.
fn unit(dim: usize) -> Value {
    let mut v = vec![0.0; dim];
    v[0] = 1.0;
    json!(v)
}

async fn ok(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.call(method, path, Some(token), &[], body).await
}

#[tokio::test]
async fn an_admin_builds_a_collection_that_users_search_by_vector_text_and_filter() {
    let app = TestApp::spawn_with(&[("EMBEDDING_DIMENSIONS", "64")], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;

    let created = ok(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "notes", "dimension": 64})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["index"], "ready");
    assert_eq!(created["distance"], "cosine");
    let points = json!({"points": [
        {"id": "pw", "text": "how to reset a forgotten password", "payload": {"kind": "help", "year": 2024}},
        {"id": "tax", "text": "quarterly tax report", "payload": {"kind": "finance", "year": 2023}},
        {"id": "v", "vector": unit(64), "payload": {"kind": "help", "year": 2020}}
    ]});
    let stored = ok(
        send(
            &app,
            Method::PUT,
            &format!("{BASE}/notes/points"),
            &admin,
            Some(points),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(stored["points"], 3);
    ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/index?wait=true"),
            &admin,
            Some(json!({"kind": "payload", "key": "kind", "type": "keyword"})),
        )
        .await,
        200,
    )
    .await;
    let info = ok(
        send(&app, Method::GET, &format!("{BASE}/notes"), &user, None).await,
        200,
    )
    .await;
    assert_eq!(info["points"], 3);
    assert_eq!(info["payload_indexes"], json!({"kind": "keyword"}));

    let found = ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/search"),
            &user,
            Some(json!({"text": "forgotten password", "limit": 2})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(found["results"][0]["id"], "pw");
    assert_eq!(found["results"][0]["payload"]["kind"], "help");
    let filtered = ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/search"),
            &user,
            Some(
                json!({"vector": unit(64), "limit": 10, "with_payload": false,
                        "filter": {"must": [{"key": "kind", "match": {"value": "help"}}]}}),
            ),
        )
        .await,
        200,
    )
    .await;
    let ids: Vec<&str> = filtered["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], "v");
    assert!(filtered["results"][0].get("payload").is_none());

    let read = ok(
        send(
            &app,
            Method::GET,
            &format!("{BASE}/notes/points?ids=v,nope&with_vector=true"),
            &user,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(read["points"].as_array().unwrap().len(), 1);
    assert_eq!(read["points"][0]["vector"].as_array().unwrap().len(), 64);

    let rec = ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/recommend"),
            &user,
            Some(json!({"positive": ["pw"], "limit": 1})),
        )
        .await,
        200,
    )
    .await;
    assert_ne!(rec["results"][0]["id"], "pw");

    ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/points/payload"),
            &admin,
            Some(json!({"ids": ["v"], "payload": {"seen": true}})),
        )
        .await,
        200,
    )
    .await;
    ok(
        send(&app, Method::PUT, &format!("{BASE}/notes/points/payload"), &admin,
            Some(json!({"filter": {"must": [{"key": "kind", "match": {"value": "finance"}}]}, "payload": {"kind": "archive"}}))).await,
        200,
    )
    .await;
    let read = ok(
        send(
            &app,
            Method::GET,
            &format!("{BASE}/notes/points?ids=v,tax"),
            &user,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        read["points"][0]["payload"],
        json!({"kind": "help", "year": 2020, "seen": true})
    );
    assert_eq!(read["points"][1]["payload"], json!({"kind": "archive"}));
    let deleted = ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/notes/points/delete"),
            &admin,
            Some(json!({"ids": ["v", "tax"]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["points"], 2);
    let listed = ok(send(&app, Method::GET, BASE, &user, None).await, 200).await;
    assert_eq!(listed["collections"][0]["name"], "notes");
    assert_eq!(
        send(&app, Method::DELETE, &format!("{BASE}/notes"), &admin, None)
            .await
            .status(),
        204
    );
    expect_problem(
        send(&app, Method::GET, &format!("{BASE}/notes"), &user, None).await,
        404,
        "collection_not_found",
    )
    .await;

    // Readiness reports pgvector and the embedder.
    let ready: Value = app.get("/ready").await.json().await.unwrap();
    assert_eq!(ready["checks"]["vector"]["status"], "ok", "{ready}");
    let backend = ready["checks"]["vector"]["backend"].as_str().unwrap();
    assert!(
        backend.starts_with("pgvector 0.") && backend.contains("hash (64 dimensions)"),
        "{backend}"
    );
}

#[tokio::test]
async fn users_read_admins_write_and_api_keys_follow_their_scopes() {
    let app = TestApp::spawn_with(&[("EMBEDDING_DIMENSIONS", "4")], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;
    ok(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "docs", "dimension": 4})),
        )
        .await,
        201,
    )
    .await;
    let points = json!({"points": [{"id": "a", "vector": [1, 2, 3, 4]}]});
    let search = json!({"vector": [1, 2, 3, 4]});

    // A user reads and searches, and changes nothing.
    ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/search"),
            &user,
            Some(search.clone()),
        )
        .await,
        200,
    )
    .await;
    for (method, path, body) in [
        (
            Method::POST,
            BASE.to_owned(),
            Some(json!({"name": "mine", "dimension": 4})),
        ),
        (
            Method::PUT,
            format!("{BASE}/docs/points"),
            Some(points.clone()),
        ),
        (
            Method::POST,
            format!("{BASE}/docs/points/delete"),
            Some(json!({"ids": ["a"]})),
        ),
        (
            Method::POST,
            format!("{BASE}/docs/points/payload"),
            Some(json!({"ids": ["a"], "payload": {}})),
        ),
        (
            Method::POST,
            format!("{BASE}/docs/index"),
            Some(json!({"kind": "hnsw"})),
        ),
        (Method::DELETE, format!("{BASE}/docs"), None),
    ] {
        expect_problem(
            send(&app, method, &path, &user, body).await,
            403,
            "forbidden",
        )
        .await;
    }

    // An admin's read-only key searches (a POST) but cannot write; a write key can.
    let key = |scopes: Value| {
        let app = &app;
        let admin = admin.clone();
        async move {
            let created = ok(
                app.post_json(
                    "/api/v1/api-keys",
                    Some(&admin),
                    json!({"name": "k", "scopes": scopes}),
                )
                .await,
                201,
            )
            .await;
            created["key"].as_str().unwrap().to_owned()
        }
    };
    let reader = key(json!(["read"])).await;
    let writer = key(json!(["read", "write"])).await;
    ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/search"),
            &reader,
            Some(search.clone()),
        )
        .await,
        200,
    )
    .await;
    ok(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/recommend"),
            &reader,
            Some(json!({"positive": [[1, 0, 0, 0]]})),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::PUT,
            &format!("{BASE}/docs/points"),
            &reader,
            Some(points.clone()),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    ok(
        app.call(
            Method::PUT,
            &format!("{BASE}/docs/points"),
            None,
            &[("x-api-key", writer.as_str())],
            Some(points),
        )
        .await,
        200,
    )
    .await;
    let write_only = key(json!(["write"])).await;
    expect_problem(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/search"),
            &write_only,
            Some(search),
        )
        .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(app.get(BASE).await, 401, "not_authenticated").await;
}

#[tokio::test]
async fn client_mistakes_get_problem_bodies_that_name_the_field() {
    let app = TestApp::spawn_with(&[("EMBEDDING_DIMENSIONS", "4")], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    ok(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "docs", "dimension": 3})),
        )
        .await,
        201,
    )
    .await;
    expect_problem(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "docs", "dimension": 3})),
        )
        .await,
        409,
        "collection_exists",
    )
    .await;
    let bad = expect_problem(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "no spaces", "dimension": 5000})),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<&str> = bad.errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["name", "dimension"]);
    expect_problem(
        send(
            &app,
            Method::POST,
            BASE,
            &admin,
            Some(json!({"name": "x", "dimension": 3, "distance": "manhattan"})),
        )
        .await,
        422,
        "invalid_body",
    )
    .await;

    let wrong = expect_problem(
        send(
            &app,
            Method::PUT,
            &format!("{BASE}/docs/points"),
            &admin,
            Some(json!({"points": [{"id": "a", "vector": [1, 2]}]})),
        )
        .await,
        422,
        "dimension_mismatch",
    )
    .await;
    assert_eq!(wrong.errors[0].field, "points[0].vector");
    expect_problem(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/search"),
            &admin,
            Some(json!({"text": "hello"})),
        )
        .await,
        422,
        "embedder_dimension_mismatch",
    )
    .await;
    let filter = expect_problem(
        send(&app, Method::POST, &format!("{BASE}/docs/search"), &admin,
            Some(json!({"vector": [1, 2, 3], "filter": {"must": [{"key": "secret", "match": {"value": 1}}]}}))).await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(filter.errors[0].field, "filter.must[0].key");
    assert_eq!(filter.errors[0].code, "key_not_indexed");
    expect_problem(
        send(
            &app,
            Method::POST,
            &format!("{BASE}/docs/index"),
            &admin,
            Some(json!({"kind": "payload", "key": "a'; DROP TABLE users; --", "type": "keyword"})),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    // Too many points in one request.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"id": format!("p{i}"), "vector": [1, 2, 3]}))
        .collect();
    expect_problem(
        send(
            &app,
            Method::PUT,
            &format!("{BASE}/docs/points"),
            &admin,
            Some(json!({"points": many})),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    // A body over the bulk limit is refused before it is read whole.
    let small = TestApp::spawn_with(&[("JSON_BULK_LIMIT_BYTES", "2048")], None).await;
    let small_admin = small.signup_as("admin@example.com", "admin").await.access;
    let big: Vec<Value> = (0..100)
        .map(|i| json!({"id": format!("p{i}"), "vector": [1, 2, 3]}))
        .collect();
    expect_problem(
        send(
            &small,
            Method::PUT,
            &format!("{BASE}/docs/points"),
            &small_admin,
            Some(json!({"points": big})),
        )
        .await,
        413,
        "payload_too_large",
    )
    .await;
}

/// Every vector route, called by tenant B on tenant A's collection, answers 404: the
/// collection does not exist for B. A's collection is unchanged afterwards.
#[tokio::test]
async fn another_tenant_gets_404_on_every_route_and_changes_nothing() {
    let app = TestApp::spawn_with(
        &[
            ("ENABLE_MULTI_TENANT", "true"),
            ("EMBEDDING_DIMENSIONS", "2"),
        ],
        None,
    )
    .await;
    let config = PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        recycle_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    };
    let tenants = TenantAdmin::new(
        sovereign_db::Db::new(app.db.as_ref().unwrap().tenant_admin_url(), config).unwrap(),
    );
    tenants.create("acme", "Acme").await.unwrap();
    tenants.create("umbrella", "Umbrella").await.unwrap();
    let signup = |slug: &'static str| {
        let app = &app;
        async move {
            let email = format!("admin@{slug}.example");
            app.call(
                Method::POST,
                "/api/v1/auth/register",
                None,
                &[("x-tenant-id", slug)],
                Some(json!({"email": email, "password": crate::common::PASSWORD})),
            )
            .await;
            app.sql(&format!(
                "UPDATE users SET role = 'admin' WHERE email = '{email}'"
            ))
            .await;
            app.login_in(&email, &[("x-tenant-id", slug)]).await.access
        }
    };
    let a = signup("acme").await;
    let b = signup("umbrella").await;
    ok(
        send(
            &app,
            Method::POST,
            BASE,
            &a,
            Some(json!({"name": "shared-name", "dimension": 2})),
        )
        .await,
        201,
    )
    .await;
    ok(
        send(
            &app,
            Method::PUT,
            &format!("{BASE}/shared-name/points"),
            &a,
            Some(json!({"points": [{"id": "p", "vector": [1, 0], "payload": {"secret": true}}]})),
        )
        .await,
        200,
    )
    .await;

    let n = format!("{BASE}/shared-name");
    for (method, path, body) in [
        (Method::GET, n.clone(), None),
        (Method::DELETE, n.clone(), None),
        (
            Method::POST,
            format!("{n}/index"),
            Some(json!({"kind": "hnsw"})),
        ),
        (
            Method::PUT,
            format!("{n}/points"),
            Some(json!({"points": [{"id": "p", "vector": [0, 1]}]})),
        ),
        (Method::GET, format!("{n}/points?ids=p"), None),
        (
            Method::POST,
            format!("{n}/points/delete"),
            Some(json!({"ids": ["p"]})),
        ),
        (
            Method::POST,
            format!("{n}/points/payload"),
            Some(json!({"ids": ["p"], "payload": {"x": 1}})),
        ),
        (
            Method::PUT,
            format!("{n}/points/payload"),
            Some(json!({"ids": ["p"], "payload": {}})),
        ),
        (
            Method::POST,
            format!("{n}/search"),
            Some(json!({"vector": [1, 0]})),
        ),
        (
            Method::POST,
            format!("{n}/recommend"),
            Some(json!({"positive": ["p"]})),
        ),
    ] {
        let what = format!("{method} {path}");
        let response = send(&app, method, &path, &b, body).await;
        assert_eq!(response.status(), 404, "{what}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "collection_not_found", "{what}");
    }
    let listed = ok(send(&app, Method::GET, BASE, &b, None).await, 200).await;
    assert_eq!(listed["collections"], json!([]));
    // B may create its own collection of the same name, which is another collection.
    ok(
        send(
            &app,
            Method::POST,
            BASE,
            &b,
            Some(json!({"name": "shared-name", "dimension": 2})),
        )
        .await,
        201,
    )
    .await;
    let found = ok(
        send(
            &app,
            Method::POST,
            &format!("{n}/search"),
            &b,
            Some(json!({"vector": [1, 0]})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(found["results"], json!([]));
    // A's point is untouched.
    let read = ok(
        send(
            &app,
            Method::GET,
            &format!("{n}/points?ids=p&with_vector=true"),
            &a,
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(read["points"][0]["payload"], json!({"secret": true}));
    assert_eq!(read["points"][0]["vector"], json!([1.0, 0.0]));
}

#[tokio::test]
async fn with_vector_search_off_the_routes_say_so_and_ready_has_no_vector_check() {
    let app = TestApp::spawn_with(&[("ENABLE_VECTOR", "false")], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    expect_problem(
        send(&app, Method::GET, BASE, &admin, None).await,
        404,
        "feature_disabled",
    )
    .await;
    let ready: Value = app.get("/ready").await.json().await.unwrap();
    assert!(ready["checks"].get("vector").is_none(), "{ready}");
}
