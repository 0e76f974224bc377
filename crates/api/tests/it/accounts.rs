//! Registration, sign-in, sessions and password flows over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, expect_problem};

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let app = TestApp::spawn().await;
    app.register("Ada@Example.com").await;
    let tokens = app.login("ada@example.com").await;

    let me: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["email"], "ada@example.com",
        "addresses are stored lower-cased"
    );
    assert_eq!(me["role"], "user");
    assert_eq!(me["full_name"], "Test User");
    assert_eq!(me["email_verified"], false);
    let auth_me: Value = app
        .get_auth("/api/v1/auth/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(auth_me, me);

    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let next: Value = response.json().await.unwrap();
    assert_ne!(next["refresh_token"], tokens.refresh.as_str());
    assert_eq!(next["session_id"], tokens.session.as_str());
    let access = next["access_token"].as_str().unwrap();
    assert_eq!(app.get_auth("/api/v1/users/me", access).await.status(), 200);

    let out = app
        .call(Method::POST, "/api/v1/auth/logout", Some(access), &[], None)
        .await;
    assert_eq!(out.status(), 204);
    for token in [access, tokens.access.as_str()] {
        let response = app.get_auth("/api/v1/users/me", token).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        expect_problem(response, 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/users/me").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    expect_problem(response, 401, "not_authenticated").await;
    for header in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer",
        "Bearer not.a.jwt",
    ] {
        let response = app
            .get_with("/api/v1/users/me", &[("Authorization", header)])
            .await;
        expect_problem(response, 401, "invalid_token").await;
    }
    // Credentials in the URL are never read.
    let tokens = app.signup("url@example.com").await;
    let response = app
        .get(&format!("/api/v1/users/me?access_token={}", tokens.access))
        .await;
    expect_problem(response, 401, "not_authenticated").await;
}

#[tokio::test]
async fn the_oauth2_password_form_signs_in() {
    let app = TestApp::spawn().await;
    app.register("form@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "form@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "form@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "unsupported_grant_type").await;
}
