//! API keys: shown once, stored hashed, scoped, bounded by their creator's role, revocable,
//! never accepted in a URL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem};

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post_json("/api/v1/api-keys", Some(token), body).await;
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_key_is_shown_once_stored_hashed_and_works_in_both_headers() {
    let app = TestApp::spawn().await;
    let owner = app.signup("keys@example.com").await;
    let created = create(&app, &owner.access, json!({"name": "ci"})).await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sovak_"));
    let secret = key.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() >= 43, "at least 256 bits of base64url");
    assert_eq!(
        created["prefix"],
        format!("sovak_…{}", &secret[..8]).as_str()
    );
    assert_eq!(created["scopes"], json!(["read", "write"]));
    assert_eq!(created["role"], "user");

    let listed: Value = app
        .get_auth("/api/v1/api-keys", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert!(listed[0].get("key").is_none(), "the secret is never listed");
    assert!(!listed.to_string().contains(secret));
    // Stored as a digest only (checked as the owner, past row-level security).
    assert_eq!(app.sql(&format!("SELECT 1 FROM api_keys WHERE encode(key_hash, 'escape') LIKE '%{secret}%' OR prefix = '{key}'")).await, 0);
    assert_eq!(
        app.sql("SELECT 1 FROM api_keys WHERE octet_length(key_hash) = 32")
            .await,
        1
    );

    let me = app
        .get_with("/api/v1/users/me", &[("X-API-Key", &key)])
        .await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["email"], "keys@example.com");
    assert_eq!(app.get_auth("/api/v1/users/me", &key).await.status(), 200);
    let listed: Value = app
        .get_auth("/api/v1/api-keys", &owner.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(listed[0]["last_used_at"].is_string());

    for url in [
        format!("/api/v1/users/me?api_key={key}"),
        format!("/api/v1/users/me?x-api-key={key}"),
        format!("/api/v1/users/me?access_token={key}"),
    ] {
        expect_problem(app.get(&url).await, 401, "not_authenticated").await;
    }
    let wrong = format!("{}x", &key[..key.len() - 1]);
    expect_problem(
        app.get_with("/api/v1/users/me", &[("X-API-Key", &wrong)])
            .await,
        401,
        "invalid_token",
    )
    .await;

    // Revoked: refused at once.
    let revoked = app
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", created["id"].as_str().unwrap()),
            Some(&owner.access),
            &[],
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    expect_problem(
        app.get_with("/api/v1/users/me", &[("X-API-Key", &key)])
            .await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn keys_never_exceed_their_creators_role_or_their_scopes() {
    let app = TestApp::spawn().await;
    let user = app.signup_as("plain@example.com", "user").await;
    let response = app
        .post_json(
            "/api/v1/api-keys",
            Some(&user.access),
            json!({"name": "up", "role": "admin"}),
        )
        .await;
    expect_problem(response, 403, "forbidden").await;

    let admin = app.signup_as("boss@example.com", "admin").await;
    let weak = create(
        &app,
        &admin.access,
        json!({"name": "read-only user", "role": "user", "scopes": ["read"]}),
    )
    .await;
    let weak = weak["key"].as_str().unwrap();
    let listing = app.get_with("/api/v1/users", &[("X-API-Key", weak)]).await;
    expect_problem(listing, 403, "forbidden").await;
    assert_eq!(
        app.get_with("/api/v1/users/me", &[("X-API-Key", weak)])
            .await
            .status(),
        200
    );
    let write = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            None,
            &[("X-API-Key", weak)],
            Some(json!({"full_name": "x"})),
        )
        .await;
    expect_problem(write, 403, "forbidden").await;

    let strong = create(&app, &admin.access, json!({"name": "admin"})).await;
    let strong = strong["key"].as_str().unwrap();
    assert_eq!(
        app.get_with("/api/v1/users", &[("X-API-Key", strong)])
            .await
            .status(),
        200
    );
    // A key cannot mint keys or sign out: those need a session.
    let mint = app
        .call(
            Method::POST,
            "/api/v1/api-keys",
            None,
            &[("X-API-Key", strong)],
            Some(json!({"name": "child"})),
        )
        .await;
    expect_problem(mint, 403, "session_required").await;

    // Demoting the creator lowers what the key can do at once.
    let admin_id = app
        .get_auth("/api/v1/users/me", &admin.access)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .clone();
    let root = app.signup_as("root@example.com", "superadmin").await;
    let demoted = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{}/role", admin_id.as_str().unwrap()),
            Some(&root.access),
            &[],
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(demoted.status(), 200);
    expect_problem(
        app.get_with("/api/v1/users", &[("X-API-Key", strong)])
            .await,
        403,
        "forbidden",
    )
    .await;

    let expired = app
        .post_json(
            "/api/v1/api-keys",
            Some(&root.access),
            json!({"name": "past", "expires_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    expect_problem(expired, 422, "validation_failed").await;
}

#[tokio::test]
async fn deleting_or_deactivating_the_owner_stops_the_key() {
    let app = TestApp::spawn().await;
    let root = app.signup_as("root@example.com", "superadmin").await;
    let owner = app.signup("owner@example.com").await;
    let key = create(&app, &owner.access, json!({"name": "k"})).await;
    let key = key["key"].as_str().unwrap();
    let id = app
        .get_auth("/api/v1/users/me", &owner.access)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get_with("/api/v1/users/me", &[("X-API-Key", key)])
            .await
            .status(),
        200
    );
    let off = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/deactivate"),
            Some(&root.access),
            &[],
            None,
        )
        .await;
    assert_eq!(off.status(), 200);
    expect_problem(
        app.get_with("/api/v1/users/me", &[("X-API-Key", key)])
            .await,
        401,
        "invalid_token",
    )
    .await;
    let on = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{id}/activate"),
            Some(&root.access),
            &[],
            None,
        )
        .await;
    assert_eq!(on.status(), 200);
    assert_eq!(
        app.get_with("/api/v1/users/me", &[("X-API-Key", key)])
            .await
            .status(),
        200
    );
    let gone = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{id}"),
            Some(&root.access),
            &[],
            None,
        )
        .await;
    assert_eq!(gone.status(), 204);
    expect_problem(
        app.get_with("/api/v1/users/me", &[("X-API-Key", key)])
            .await,
        401,
        "invalid_token",
    )
    .await;
    expect_problem(
        app.get_auth(&format!("/api/v1/users/{id}"), &root.access)
            .await,
        404,
        "not_found",
    )
    .await;
}
