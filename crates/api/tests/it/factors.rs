//! Second factors over HTTP, with codes computed by pyotp (an independent RFC 6238
//! implementation, as an authenticator app computes them): enrolment, sign-in with a challenge,
//! one use per code, recovery codes, step-up, throttling, and secrets sealed at rest.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, Tokens, expect_problem, hour_old, json_of, python};

/// The code pyotp computes for `secret` at `offset` steps from now, and the step it belongs to.
pub(crate) fn code(secret: &str, offset: i64) -> String {
    let script = format!(
        "import pyotp, time; t = pyotp.TOTP('{secret}'); print(t.at(int(time.time()) + {offset} * 30))"
    );
    let output = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Enrols and confirms a TOTP factor for the signed-in account: (factor id, secret, recovery codes).
pub(crate) async fn enrol(app: &TestApp, tokens: &Tokens) -> (String, String, Vec<String>) {
    let enrolment = json_of(
        app.post_json(
            "/api/v1/auth/factors/totp",
            Some(&tokens.access),
            json!({"name": "Phone"}),
        )
        .await,
        201,
    )
    .await;
    let (id, secret) = (
        enrolment["id"].as_str().unwrap().to_owned(),
        enrolment["secret"].as_str().unwrap().to_owned(),
    );
    assert!(
        enrolment["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    assert!(
        enrolment["otpauth_uri"]
            .as_str()
            .unwrap()
            .contains(&format!("secret={secret}"))
    );
    let confirmed = json_of(
        app.post_json(
            &format!("/api/v1/auth/factors/{id}/confirm"),
            Some(&tokens.access),
            json!({"code": code(&secret, 0)}),
        )
        .await,
        200,
    )
    .await;
    let codes: Vec<String> = confirmed["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (id, secret, codes)
}

/// `POST /api/v1/auth/mfa/verify` with `body`.
pub(crate) async fn verify(app: &TestApp, body: Value) -> reqwest::Response {
    app.post_json("/api/v1/auth/mfa/verify", None, body).await
}

/// Signs in with the password; expects a challenge.
pub(crate) async fn challenge(app: &TestApp, email: &str) -> String {
    let body = json_of(
        app.post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": email, "password": PASSWORD}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(body["status"], "mfa_required", "{body}");
    assert!(
        body.get("access_token").is_none(),
        "no session before the second factor"
    );
    body["challenge"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_password_sign_in_states_its_assurance() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("plain@example.com").await;
    let me = json_of(app.get_auth("/api/v1/auth/me", &tokens.access).await, 200).await;
    assert_eq!(me["authentication"]["aal"], "aal1");
    assert_eq!(me["authentication"]["amr"], json!(["pwd"]));
    assert!(me["authentication"]["auth_time"].as_i64().unwrap() > 0);
    // An API key has no session, so no assurance.
    let key = json_of(
        app.post_json(
            "/api/v1/api-keys",
            Some(&tokens.access),
            json!({"name": "k"}),
        )
        .await,
        201,
    )
    .await;
    let by_key = app
        .call(
            Method::GET,
            "/api/v1/auth/me",
            None,
            &[("x-api-key", key["key"].as_str().unwrap())],
            None,
        )
        .await;
    assert_eq!(json_of(by_key, 200).await["authentication"], Value::Null);
}

#[tokio::test]
async fn a_totp_factor_turns_sign_in_into_a_challenge_completed_once_per_code() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("totp@example.com").await;
    let (_, secret, codes) = enrol(&app, &tokens).await;
    assert_eq!(codes.len(), 10);

    // The next step's code (±1 step is allowed) completes the challenge: a session at aal2.
    let challenge_1 = challenge(&app, "totp@example.com").await;
    let next = code(&secret, 1);
    let pair = json_of(
        verify(&app, json!({"challenge": challenge_1, "code": next})).await,
        200,
    )
    .await;
    let access = pair["access_token"].as_str().unwrap();
    let me = json_of(app.get_auth("/api/v1/auth/me", access).await, 200).await;
    assert_eq!(me["authentication"]["aal"], "aal2");
    assert_eq!(me["authentication"]["amr"], json!(["pwd", "otp"]));

    // The challenge is spent.
    expect_problem(
        verify(&app, json!({"challenge": challenge_1, "code": next})).await,
        401,
        "invalid_challenge",
    )
    .await;
    // The same code, or an earlier step's, is refused on a new challenge; the challenge survives.
    let challenge_2 = challenge(&app, "totp@example.com").await;
    for used in [next, code(&secret, 0)] {
        expect_problem(
            verify(&app, json!({"challenge": challenge_2, "code": used})).await,
            422,
            "code_already_used",
        )
        .await;
    }
    // Four steps away is out of the window (±1 step is accepted).
    expect_problem(
        verify(
            &app,
            json!({"challenge": challenge_2, "code": code(&secret, 4)}),
        )
        .await,
        422,
        "invalid_code",
    )
    .await;
    // A password-only `login` of this account cannot skip the factor by another route.
    let form = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", "totp@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    expect_problem(form, 401, "mfa_required").await;
    // Exactly one proof.
    expect_problem(
        verify(
            &app,
            json!({"challenge": challenge_2, "code": "123456", "recovery_code": "abcde-fghij"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    expect_problem(
        verify(&app, json!({"challenge": challenge_2})).await,
        422,
        "validation_failed",
    )
    .await;
    // Unknown or malformed challenges.
    for bogus in [
        "",
        "sovmc_nope",
        "sovrt_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        expect_problem(
            verify(&app, json!({"challenge": bogus, "code": "123456"})).await,
            401,
            "invalid_challenge",
        )
        .await;
    }
}

#[tokio::test]
async fn a_recovery_code_signs_in_once_and_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("recover@example.com").await;
    let (_, _, codes) = enrol(&app, &tokens).await;
    let challenge_1 = challenge(&app, "recover@example.com").await;
    let pair = json_of(
        verify(
            &app,
            json!({"challenge": challenge_1, "recovery_code": codes[3].to_uppercase()}),
        )
        .await,
        200,
    )
    .await;
    let access = pair["access_token"].as_str().unwrap();
    let me = json_of(app.get_auth("/api/v1/auth/me", access).await, 200).await;
    assert_eq!(me["authentication"]["amr"], json!(["pwd", "rc"]));
    // The session that enrolled is over; the new one lives.
    expect_problem(
        app.get_auth("/api/v1/users/me", &tokens.access).await,
        401,
        "invalid_token",
    )
    .await;
    let factors = json_of(app.get_auth("/api/v1/auth/factors", access).await, 200).await;
    assert_eq!(factors["recovery_codes_remaining"], 9);
    // Single use.
    let challenge_2 = challenge(&app, "recover@example.com").await;
    expect_problem(
        verify(
            &app,
            json!({"challenge": challenge_2, "recovery_code": codes[3]}),
        )
        .await,
        422,
        "invalid_code",
    )
    .await;
    // New codes need aal2 (this session has it) and replace the old ones.
    let fresh = json_of(
        app.post_json("/api/v1/auth/recovery-codes", Some(access), json!({}))
            .await,
        200,
    )
    .await;
    assert_eq!(fresh["recovery_codes"].as_array().unwrap().len(), 10);
    expect_problem(
        verify(
            &app,
            json!({"challenge": challenge_2, "recovery_code": codes[4]}),
        )
        .await,
        422,
        "invalid_code",
    )
    .await;
}

#[tokio::test]
async fn removing_a_factor_needs_a_recent_sign_in_and_the_last_one_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("remove@example.com").await;
    let (id, secret, _) = enrol(&app, &tokens).await;
    // An aal1 session whose sign-in is an hour old (dated back, then a refresh carries it).
    app.sql("UPDATE sessions SET auth_time = now() - interval '1 hour'")
        .await;
    let old = json_of(
        app.post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await,
        200,
    )
    .await;
    let old_access = old["access_token"].as_str().unwrap();
    expect_problem(
        app.call(
            Method::DELETE,
            &format!("/api/v1/auth/factors/{id}"),
            Some(old_access),
            &[],
            None,
        )
        .await,
        401,
        "reauthentication_required",
    )
    .await;
    // Recovery codes need aal2, which a password session is not.
    expect_problem(
        app.post_json("/api/v1/auth/recovery-codes", Some(old_access), json!({}))
            .await,
        401,
        "reauthentication_required",
    )
    .await;
    // A fresh aal2 sign-in may; the other session ends with the last factor.
    let c = challenge(&app, "remove@example.com").await;
    let pair = json_of(
        verify(&app, json!({"challenge": c, "code": code(&secret, 1)})).await,
        200,
    )
    .await;
    let access = pair["access_token"].as_str().unwrap();
    let removed = app
        .call(
            Method::DELETE,
            &format!("/api/v1/auth/factors/{id}"),
            Some(access),
            &[],
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
    expect_problem(
        app.get_auth("/api/v1/users/me", old_access).await,
        401,
        "invalid_token",
    )
    .await;
    let factors = json_of(app.get_auth("/api/v1/auth/factors", access).await, 200).await;
    assert_eq!(factors["factors"], json!([]));
    assert_eq!(factors["recovery_codes_remaining"], 0);
    // Without a factor, a password sign-in is a session again.
    app.login("remove@example.com").await;
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_account() {
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ACCOUNT", "5/minute")], None).await;
    let tokens = app.signup("guess@example.com").await;
    let (_, secret, _) = enrol(&app, &tokens).await;
    let c = challenge(&app, "guess@example.com").await;
    let wrong = if code(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = app
            .post_json(
                "/api/v1/auth/mfa/verify",
                None,
                json!({"challenge": c, "code": wrong}),
            )
            .await;
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.contains(&422), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

#[tokio::test]
async fn totp_secrets_are_sealed_at_rest_and_api_keys_cannot_enrol() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("sealed@example.com").await;
    let (id, secret, _) = enrol(&app, &tokens).await;
    let raw_hex = {
        let output = std::process::Command::new(python())
            .args([
                "-c",
                &format!("import base64; print(base64.b32decode('{secret}').hex())"),
            ])
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    assert_eq!(raw_hex.len(), 40, "160-bit secrets");
    let stored = app
        .sql(&format!(
            "SELECT 1 FROM mfa_factors WHERE id = '{id}' AND position(decode('{raw_hex}', 'hex') IN secret) = 0 AND length(secret) = 12 + 20 + 16"
        ))
        .await;
    assert_eq!(
        stored, 1,
        "the stored secret is sealed (nonce, ciphertext, tag), not the secret"
    );

    let key: Value = json_of(
        app.post_json(
            "/api/v1/api-keys",
            Some(&tokens.access),
            json!({"name": "k"}),
        )
        .await,
        201,
    )
    .await;
    let response = app
        .call(
            Method::POST,
            "/api/v1/auth/factors/totp",
            None,
            &[("x-api-key", key["key"].as_str().unwrap())],
            Some(json!({})),
        )
        .await;
    expect_problem(response, 403, "session_required").await;
}

#[tokio::test]
async fn reauthenticating_with_the_password_or_a_code_allows_sensitive_operations_again() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("stepup@example.com").await;
    let old = hour_old(&app, &tokens).await;
    // Creating an API key needs a recent sign-in.
    expect_problem(
        app.post_json("/api/v1/api-keys", Some(&old), json!({"name": "ci"}))
            .await,
        401,
        "reauthentication_required",
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/reauthenticate",
            Some(&old),
            json!({"password": "not the password"}),
        )
        .await,
        401,
        "invalid_credentials",
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/reauthenticate",
            Some(&old),
            json!({"password": PASSWORD, "code": "123456"}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let fresh = json_of(
        app.post_json(
            "/api/v1/auth/reauthenticate",
            Some(&old),
            json!({"password": PASSWORD}),
        )
        .await,
        200,
    )
    .await;
    let fresh = fresh["access_token"].as_str().unwrap();
    let me = json_of(app.get_auth("/api/v1/auth/me", fresh).await, 200).await;
    assert_eq!(me["authentication"]["aal"], "aal1");
    assert!(
        chrono::Utc::now().timestamp() - me["authentication"]["auth_time"].as_i64().unwrap() < 60
    );
    json_of(
        app.post_json("/api/v1/api-keys", Some(fresh), json!({"name": "ci"}))
            .await,
        201,
    )
    .await;

    // With a factor, a code raises the session to aal2; the refresh token carries it on.
    let tokens = Tokens {
        access: fresh.to_owned(),
        ..tokens
    };
    let (id, secret, _) = enrol(&app, &tokens).await;
    let old = hour_old(&app, &tokens).await;
    let raised = json_of(
        app.post_json(
            "/api/v1/auth/reauthenticate",
            Some(&old),
            json!({"code": code(&secret, 1)}),
        )
        .await,
        200,
    )
    .await;
    let raised = raised["access_token"].as_str().unwrap();
    let me = json_of(app.get_auth("/api/v1/auth/me", raised).await, 200).await;
    assert_eq!(me["authentication"]["aal"], "aal2");
    assert_eq!(me["authentication"]["amr"], json!(["pwd", "otp"]));
    let removed = app
        .call(
            Method::DELETE,
            &format!("/api/v1/auth/factors/{id}"),
            Some(raised),
            &[],
            None,
        )
        .await;
    assert_eq!(removed.status(), 204);
}
