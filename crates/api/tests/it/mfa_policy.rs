//! The tenant's second-factor policy: administrators choose who must sign in at `aal2`; the
//! accounts it covers lose their `aal1` sessions at once, enrol an authenticator at their next
//! sign-in (codes from pyotp), and an `aal1` session that remains is ended at its next refresh.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, expect_problem, hour_old, json_of};
use crate::factors::{challenge, code, enrol, verify};

async fn set_policy(app: &TestApp, token: &str, who: &str) -> reqwest::Response {
    app.call(
        Method::PUT,
        "/api/v1/auth/mfa-policy",
        Some(token),
        &[],
        Some(json!({"require_aal2": who})),
    )
    .await
}

async fn password_sign_in(app: &TestApp, email: &str) -> Value {
    json_of(
        app.post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await,
        200,
    )
    .await
}

#[tokio::test]
async fn covered_accounts_enrol_at_their_next_sign_in_and_lose_their_aal1_sessions() {
    let app = TestApp::spawn().await;
    // The administrator setting the policy has a factor and signs in with it (aal2).
    let first = app.signup_as("admin@example.com", "admin").await;
    let (_, secret, _) = enrol(&app, &first).await;
    let challenged = challenge(&app, "admin@example.com").await;
    let signed_in = json_of(
        verify(
            &app,
            json!({"challenge": challenged, "code": code(&secret, 1)}),
        )
        .await,
        200,
    )
    .await;
    let admin = signed_in["access_token"].as_str().unwrap().to_owned();
    let other_admin = app.signup_as("second@example.com", "admin").await;
    let user = app.signup("user@example.com").await;

    let policy = json_of(set_policy(&app, &admin, "admins").await, 200).await;
    assert_eq!(policy["require_aal2"], "admins");
    let seen = json_of(app.get_auth("/api/v1/auth/mfa-policy", &admin).await, 200).await;
    assert_eq!(seen["require_aal2"], "admins", "an aal2 session goes on");
    // Administrators' aal1 sessions ended at once (even with a factor); users' did not.
    for ended in [&other_admin.access, &first.access] {
        expect_problem(
            app.get_auth("/api/v1/auth/me", ended).await,
            401,
            "invalid_token",
        )
        .await;
    }
    assert_eq!(
        app.get_auth("/api/v1/auth/me", &user.access).await.status(),
        200
    );

    // The next sign-in enrols: no session until a first code confirms the authenticator.
    let challenge = password_sign_in(&app, "second@example.com").await;
    assert_eq!(challenge["status"], "mfa_enrolment_required");
    assert_eq!(challenge["methods"], json!(["totp"]));
    assert!(challenge["access_token"].is_null());
    let token = challenge["challenge"].as_str().unwrap();
    expect_problem(
        app.post_json(
            "/api/v1/auth/mfa/verify",
            None,
            json!({"challenge": token, "code": "123456"}),
        )
        .await,
        401,
        "invalid_challenge",
    )
    .await;
    let enrolment = json_of(
        app.post_json("/api/v1/auth/mfa/enrol", None, json!({"challenge": token}))
            .await,
        200,
    )
    .await;
    let secret = enrolment["secret"].as_str().unwrap();
    let confirm = json!({"challenge": token, "code": code(secret, 0)});
    let session = json_of(
        app.post_json("/api/v1/auth/mfa/enrol/confirm", None, confirm.clone())
            .await,
        200,
    )
    .await;
    assert_eq!(session["recovery_codes"].as_array().unwrap().len(), 10);
    let me = json_of(
        app.get_auth("/api/v1/auth/me", session["access_token"].as_str().unwrap())
            .await,
        200,
    )
    .await;
    assert_eq!(me["authentication"]["aal"], "aal2");
    assert_eq!(me["authentication"]["amr"], json!(["pwd", "otp"]));
    expect_problem(
        app.post_json("/api/v1/auth/mfa/enrol/confirm", None, confirm)
            .await,
        401,
        "invalid_challenge",
    )
    .await;
    // From now on, the usual challenge.
    let next = password_sign_in(&app, "second@example.com").await;
    assert_eq!(next["status"], "mfa_required");

    // Users are not covered by `admins`, and are by `everyone`.
    assert_eq!(
        password_sign_in(&app, "user@example.com").await["token_type"],
        "Bearer"
    );
    json_of(set_policy(&app, &admin, "everyone").await, 200).await;
    expect_problem(
        app.get_auth("/api/v1/auth/me", &user.access).await,
        401,
        "invalid_token",
    )
    .await;
    assert_eq!(
        password_sign_in(&app, "user@example.com").await["status"],
        "mfa_enrolment_required"
    );
}

#[tokio::test]
async fn an_aal1_session_the_policy_no_longer_allows_ends_at_its_refresh() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("user@example.com").await;
    json_of(set_policy(&app, &admin.access, "admins").await, 200).await;
    // Promoted after the policy was set: its aal1 session is refused at the next refresh.
    app.sql("UPDATE users SET role = 'admin' WHERE email = 'user@example.com'")
        .await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": user.refresh}),
        )
        .await,
        401,
        "aal2_required",
    )
    .await;
    assert_eq!(
        app.sql(&format!(
            "SELECT 1 FROM sessions WHERE id = '{}' AND revoked_reason = 'mfa_policy'",
            user.session
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn only_recently_authenticated_administrators_set_the_policy() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("user@example.com").await;
    expect_problem(
        app.get_auth("/api/v1/auth/mfa-policy", &user.access).await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        set_policy(&app, &user.access, "none").await,
        403,
        "forbidden",
    )
    .await;
    let stale = hour_old(&app, &admin).await;
    expect_problem(
        set_policy(&app, &stale, "everyone").await,
        401,
        "reauthentication_required",
    )
    .await;
    let policy = json_of(app.get_auth("/api/v1/auth/mfa-policy", &stale).await, 200).await;
    assert_eq!(policy["require_aal2"], "none", "unchanged");
}
