//! Passkeys at the HTTP layer: the options the server asks browsers for, step-up before adding
//! one, ceremonies that are single use and bound to their account. Real authenticators (Chromium's
//! virtual one) register and sign in in `examples/web/test/passkeys.test.ts`.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, expect_problem, hour_old, json_of};

#[tokio::test]
async fn the_options_ask_for_a_discoverable_credential_with_user_verification() {
    let vars = [
        ("WEBAUTHN_RP_ID", "example.com"),
        ("WEBAUTHN_ORIGINS", "https://app.example.com"),
    ];
    let app = TestApp::spawn_with(&vars, None).await;
    let tokens = app.signup("pia@example.com").await;
    let start = json_of(
        app.post_json(
            "/api/v1/auth/passkeys/register/start",
            Some(&tokens.access),
            json!({"name": "Laptop"}),
        )
        .await,
        200,
    )
    .await;
    assert!(start["ceremony"].as_str().unwrap().starts_with("sovpc_"));
    let options = &start["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], "example.com");
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(options["user"]["name"], "pia@example.com");
    assert!(
        options["challenge"].as_str().unwrap().len() >= 43,
        "a 256-bit challenge"
    );

    let sign_in = json_of(
        app.post_json("/api/v1/auth/passkeys/sign-in/start", None, json!({}))
            .await,
        200,
    )
    .await;
    let request = &sign_in["options"]["publicKey"];
    assert_eq!(request["rpId"], "example.com");
    assert_eq!(request["userVerification"], "required");
    assert!(
        request["allowCredentials"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "no address first: the authenticator names the account"
    );
    assert!(sign_in["options"]["mediation"].is_null());
    assert_ne!(
        sign_in["options"]["publicKey"]["challenge"],
        start["options"]["publicKey"]["challenge"]
    );
}

#[tokio::test]
async fn ceremonies_are_single_use_bound_to_their_purpose_and_account() {
    let app = TestApp::spawn().await;
    let pia = app.signup("pia@example.com").await;
    let oren = app.signup("oren@example.com").await;
    let answer = |ceremony: &str| json!({"ceremony": ceremony, "credential": {"id": "x"}});
    for ceremony in [
        "nonsense".to_owned(),
        format!("sovpc_{}_{}", "0".repeat(32), "A".repeat(43)),
    ] {
        expect_problem(
            app.post_json(
                "/api/v1/auth/passkeys/sign-in/finish",
                None,
                answer(&ceremony),
            )
            .await,
            401,
            "invalid_passkey",
        )
        .await;
    }
    // Pia's registration, answered by Oren: refused, and spent.
    let start = json_of(
        app.post_json(
            "/api/v1/auth/passkeys/register/start",
            Some(&pia.access),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    let ceremony = start["ceremony"].as_str().unwrap();
    expect_problem(
        app.post_json(
            "/api/v1/auth/passkeys/register/finish",
            Some(&oren.access),
            answer(ceremony),
        )
        .await,
        401,
        "invalid_passkey",
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/passkeys/register/finish",
            Some(&pia.access),
            answer(ceremony),
        )
        .await,
        401,
        "invalid_passkey",
    )
    .await;
    // A registration's ceremony is no sign-in's.
    let start = json_of(
        app.post_json(
            "/api/v1/auth/passkeys/register/start",
            Some(&pia.access),
            json!({}),
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/passkeys/sign-in/finish",
            None,
            answer(start["ceremony"].as_str().unwrap()),
        )
        .await,
        401,
        "invalid_passkey",
    )
    .await;
    assert_eq!(app.sql("SELECT 1 FROM passkeys").await, 0);
    // Re-authenticating with a passkey needs one.
    expect_problem(
        app.post_json(
            "/api/v1/auth/passkeys/reauthenticate",
            Some(&pia.access),
            json!({}),
        )
        .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn adding_a_passkey_needs_a_recent_sign_in_and_a_session() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("pia@example.com").await;
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
    let response = app
        .call(
            Method::POST,
            "/api/v1/auth/passkeys/register/start",
            None,
            &[("x-api-key", key["key"].as_str().unwrap())],
            Some(json!({})),
        )
        .await;
    expect_problem(response, 403, "session_required").await;
    let stale = hour_old(&app, &tokens).await;
    expect_problem(
        app.post_json(
            "/api/v1/auth/passkeys/register/start",
            Some(stale.as_str()),
            json!({}),
        )
        .await,
        401,
        "reauthentication_required",
    )
    .await;
}
