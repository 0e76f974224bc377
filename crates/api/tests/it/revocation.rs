//! Revocation reaches every instance at once: two servers share the database and Redis; a
//! change made through one is enforced by the other on its very next request, although the
//! other had just authenticated (and remembered) the same token.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, Tokens, expect_problem};

async fn pair() -> (TestApp, TestApp) {
    TestApp::pair("revocation", &[]).await
}

/// Authenticates twice on `b`, so it answers from its memory.
async fn warm(b: &TestApp, token: &str) {
    for _ in 0..2 {
        assert_eq!(b.get_auth("/api/v1/users/me", token).await.status(), 200);
    }
}

async fn id(app: &TestApp, tokens: &Tokens) -> String {
    app.get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn logout_and_password_change_on_one_instance_stop_tokens_on_the_other() {
    let (a, b) = pair().await;
    let first = a.signup("multi@example.com").await;
    warm(&b, &first.access).await;
    let out = a
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&first.access),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status(), 204);
    expect_problem(
        b.get_auth("/api/v1/users/me", &first.access).await,
        401,
        "invalid_token",
    )
    .await;

    let kept = a.login("multi@example.com").await;
    let other = b.login("multi@example.com").await;
    warm(&b, &other.access).await;
    warm(&b, &kept.access).await;
    let changed = a
        .post_json(
            "/api/v1/auth/password/change",
            Some(&kept.access),
            json!({"current_password": PASSWORD, "new_password": "a different passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    expect_problem(
        b.get_auth("/api/v1/users/me", &other.access).await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        b.get_auth("/api/v1/users/me", &kept.access).await.status(),
        200
    );
}

#[tokio::test]
async fn administration_on_one_instance_is_enforced_by_the_other() {
    let (a, b) = pair().await;
    let root = a.signup_as("root@example.com", "superadmin").await;
    for action in ["deactivate", "role", "delete", "profile"] {
        let email = format!("{action}@example.com");
        let victim = a.signup(&email).await;
        let victim_id = id(&a, &victim).await;
        warm(&b, &victim.access).await;
        let (method, path, body) = match action {
            "deactivate" => (
                Method::POST,
                format!("/api/v1/users/{victim_id}/deactivate"),
                None,
            ),
            "role" => (
                Method::PUT,
                format!("/api/v1/users/{victim_id}/role"),
                Some(json!({"role": "admin"})),
            ),
            "delete" => (Method::DELETE, format!("/api/v1/users/{victim_id}"), None),
            _ => (
                Method::PATCH,
                format!("/api/v1/users/{victim_id}"),
                Some(json!({"full_name": "Renamed"})),
            ),
        };
        let response = a.call(method, &path, Some(&root.access), &[], body).await;
        assert!(
            response.status().is_success(),
            "{action}: {}",
            response.status()
        );
        let seen = b.get_auth("/api/v1/users/me", &victim.access).await;
        if action == "profile" {
            let me: Value = seen.json().await.unwrap();
            assert_eq!(
                me["full_name"], "Renamed",
                "no stale profile on the other instance"
            );
        } else {
            expect_problem(seen, 401, "invalid_token").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_while_redis_is_frozen_is_still_enforced_everywhere() {
    let mut server = sovereign_test_redis::RedisServer::start();
    let url = server.url();
    let prefix = sovereign_test_redis::unique_prefix("frozen");
    let vars = [
        ("REDIS_URL", url.as_str()),
        ("CACHE_PREFIX", prefix.as_str()),
        ("CACHE_TIMEOUT_MS", "200"),
        (
            "SECRET_KEY",
            "a shared test key that is at least 32 bytes long, 9f3c",
        ),
    ];
    let a = TestApp::spawn_with(&vars, None).await;
    let b = a.sibling(&vars).await;
    let tokens = a.signup("frozen@example.com").await;
    warm(&b, &tokens.access).await;

    server.pause();
    // Signing out still works, in bounded time: the database is the truth, and the
    // announcement gives up after CACHE_TIMEOUT_MS.
    let started = std::time::Instant::now();
    let out = a
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status(), 204);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // The other instance never heard of it, and still refuses the token.
    expect_problem(
        b.get_auth("/api/v1/users/me", &tokens.access).await,
        401,
        "invalid_token",
    )
    .await;
    // Signing in is bounded in time too.
    let started = std::time::Instant::now();
    let again = b.login("frozen@example.com").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        b.get_auth("/api/v1/users/me", &again.access).await.status(),
        200
    );
    server.resume();
}
