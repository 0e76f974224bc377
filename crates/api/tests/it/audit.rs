//! The audit log over HTTP: what accounts do is recorded with where it came from, administrators
//! read it (filtered, paged), users may not, and no entry holds a secret.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, expect_problem};

async fn audit(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get_auth(&format!("/api/v1/audit{query}"), token).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn actions(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn account_actions_are_recorded_with_their_origin_and_never_a_secret() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("ada@example.com").await;
    let ada: Value = app
        .get_auth("/api/v1/users/me", &user.access)
        .await
        .json()
        .await
        .unwrap();
    let ada_id = ada["id"].as_str().unwrap().to_owned();

    // A wrong password, from a client that names its request and itself.
    let wrong = "not the password at all";
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("x-request-id", "audit-trace-1")
        .header("user-agent", "audit-test/1.0")
        .json(&json!({"email": "ada@example.com", "password": wrong}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // An administrator changes Ada's role and makes an API key.
    let response = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{ada_id}/role"),
            Some(&admin.access),
            &[],
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    let key: Value = app
        .post_json(
            "/api/v1/api-keys",
            Some(&admin.access),
            json!({"name": "ci"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let secret_key = key["key"].as_str().unwrap().to_owned();
    let response = app
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&admin.access),
            &[],
            None,
        )
        .await;
    assert!(response.status().is_success());
    let admin = app.login("admin@example.com").await;

    let page = audit(&app, &admin.access, "").await;
    let all = actions(&page);
    for expected in [
        "account.registered",
        "account.signed_in",
        "account.sign_in_failed",
        "account.role_changed",
        "api_key.created",
        "account.signed_out",
    ] {
        assert!(all.contains(&expected), "{expected} missing from {all:?}");
    }
    // Newest first: the sign-in that read the log is the first entry.
    assert_eq!(all[0], "account.signed_in");

    let failed = audit(&app, &admin.access, "?action=account.sign_in_failed").await;
    let entry = &failed["items"][0];
    assert_eq!(actions(&failed), ["account.sign_in_failed"]);
    assert_eq!(entry["outcome"], "failure");
    assert_eq!(entry["target"], format!("user:{ada_id}"));
    assert_eq!(entry["request_id"], "audit-trace-1");
    assert_eq!(entry["user_agent"], "audit-test/1.0");
    assert_eq!(entry["ip"], "127.0.0.1");

    let role = audit(&app, &admin.access, "?action=account.role_changed").await;
    assert_eq!(
        role["items"][0]["data"],
        json!({"from": "user", "to": "admin"})
    );
    assert_eq!(role["items"][0]["actor"]["kind"], "user");

    // By area, and paged by cursor without loss or repetition.
    let area = actions(&audit(&app, &admin.access, "?action=account.&limit=1000").await).len();
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let page = audit(
            &app,
            &admin.access,
            &format!("?action=account.&limit=2{cursor}"),
        )
        .await;
        seen += actions(&page).len();
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, area);

    // No password (right or wrong), token or key anywhere in the log.
    let everything = audit(&app, &admin.access, "?limit=1000").await.to_string();
    for secret in [
        PASSWORD,
        wrong,
        &user.access,
        &user.refresh,
        &admin.refresh,
        &secret_key,
    ] {
        assert!(!everything.contains(secret), "a secret is in the audit log");
    }
}

#[tokio::test]
async fn users_may_not_read_the_log_and_bad_filters_are_clear_errors() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("bob@example.com").await;
    let response = app.get_auth("/api/v1/audit", &user.access).await;
    expect_problem(response, 403, "forbidden").await;
    for query in ["?limit=0", "?limit=1001", "?cursor=garbage"] {
        let response = app
            .get_auth(&format!("/api/v1/audit{query}"), &admin.access)
            .await;
        expect_problem(response, 422, "validation_failed").await;
    }
    let response = app
        .get_auth("/api/v1/audit?since=yesterday", &admin.access)
        .await;
    expect_problem(response, 400, "invalid_query").await;
    let response = app.get("/api/v1/audit").await;
    assert_eq!(response.status(), 401);
}
