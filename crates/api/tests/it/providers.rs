//! Sign-in providers at the HTTP layer without a provider: administration (step-up, roles,
//! write-only secrets sealed at rest), providers from `AUTH_PROVIDERS`, and the failures that
//! need no provider (unknown provider, unreachable issuer, unknown codes). The flows themselves
//! run against a real OpenID provider in `examples/web/test/providers.test.ts`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, closed_port, expect_problem, hour_old, json_of};

const SECRET: &str = "a-client-secret-that-must-never-come-back";

fn google(slug: &str) -> Value {
    json!({"slug": slug, "kind": "google", "client_id": "client-1", "client_secret": SECRET})
}

#[tokio::test]
async fn administrators_manage_providers_whose_secrets_are_write_only_and_sealed() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("user@example.com").await;

    let made = json_of(
        app.post_json(
            "/api/v1/auth/providers",
            Some(&admin.access),
            google("google"),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(made["issuer"], "https://accounts.google.com");
    assert_eq!(made["source"], "tenant");
    assert!(
        made["callback_url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/auth/providers/google/callback")
    );
    assert!(!made.to_string().contains(SECRET), "never returned");
    let details = json_of(
        app.get_auth("/api/v1/auth/providers/google", &admin.access)
            .await,
        200,
    )
    .await;
    assert!(!details.to_string().contains(SECRET));
    let sealed = app
        .sql(&format!(
            "SELECT 1 FROM auth_providers WHERE slug = 'google' AND position(convert_to('{SECRET}', 'UTF8') IN client_secret) = 0"
        ))
        .await;
    assert_eq!(sealed, 1, "the secret is stored sealed");

    // The same slug twice; bad input; a non-administrator; a stale session.
    expect_problem(
        app.post_json(
            "/api/v1/auth/providers",
            Some(&admin.access),
            google("google"),
        )
        .await,
        409,
        "slug_taken",
    )
    .await;
    let bad = json!({"slug": "corp", "kind": "oidc", "issuer": "http://login.example.com", "client_id": "c", "client_secret": "s"});
    let problem = expect_problem(
        app.post_json("/api/v1/auth/providers", Some(&admin.access), bad)
            .await,
        422,
        "validation_failed",
    )
    .await;
    assert_eq!(problem.errors[0].field, "issuer", "https only off loopback");
    expect_problem(
        app.post_json("/api/v1/auth/providers", Some(&user.access), google("mine"))
            .await,
        403,
        "forbidden",
    )
    .await;
    expect_problem(
        app.get_auth("/api/v1/auth/providers/google", &user.access)
            .await,
        403,
        "forbidden",
    )
    .await;
    let old = hour_old(&app, &admin).await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/auth/providers", Some(google("late"))),
        (
            Method::PATCH,
            "/api/v1/auth/providers/google",
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, "/api/v1/auth/providers/google", None),
        (
            Method::PUT,
            "/api/v1/auth/redirect-urls",
            Some(json!({"urls": ["https://app.example.com/"]})),
        ),
    ] {
        let response = app.call(method, path, Some(&old), &[], body).await;
        expect_problem(response, 401, "reauthentication_required").await;
    }

    // A fresh session changes it: disabled providers leave the public list.
    let fresh = app.login("admin@example.com").await;
    let changed = json_of(
        app.call(
            Method::PATCH,
            "/api/v1/auth/providers/google",
            Some(&fresh.access),
            &[],
            Some(json!({"enabled": false, "name": "Google Workspace"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(changed["name"], "Google Workspace");
    assert_eq!(changed["client_id"], "client-1", "absent fields stay");
    let public = json_of(app.get("/api/v1/auth/providers").await, 200).await;
    assert_eq!(public, json!([]));
    expect_problem(
        app.get("/api/v1/auth/providers/google/authorize?redirect_to=https://app.example.com/")
            .await,
        404,
        "not_found",
    )
    .await;
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/auth/providers/google",
            Some(&fresh.access),
            &[],
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        app.get_auth("/api/v1/auth/providers/google", &fresh.access)
            .await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn providers_from_the_settings_serve_every_tenant_and_a_tenant_may_replace_them() {
    let defaults = json!([{"slug": "google", "kind": "google", "client_id": "shared", "client_secret": SECRET}]).to_string();
    let app = TestApp::spawn_with(&[("AUTH_PROVIDERS", &defaults)], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let public = json_of(app.get("/api/v1/auth/providers").await, 200).await;
    assert_eq!(
        public,
        json!([{"slug": "google", "kind": "google", "name": "Google"}])
    );
    let details = json_of(
        app.get_auth("/api/v1/auth/providers/google", &admin.access)
            .await,
        200,
    )
    .await;
    assert_eq!(details["source"], "settings");
    assert!(!details.to_string().contains(SECRET));
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/auth/providers/google",
            Some(&admin.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 403, "forbidden").await;
    let mut own = google("google");
    own["client_id"] = json!("tenant-own");
    let replaced = json_of(
        app.post_json("/api/v1/auth/providers", Some(&admin.access), own)
            .await,
        201,
    )
    .await;
    assert_eq!(replaced["source"], "tenant");
    let details = json_of(
        app.get_auth("/api/v1/auth/providers/google", &admin.access)
            .await,
        200,
    )
    .await;
    assert_eq!(details["client_id"], "tenant-own");
}

#[tokio::test]
async fn failures_without_a_provider_are_clear_problems_and_leave_nothing_behind() {
    let port = closed_port();
    let app = TestApp::spawn_with(
        &[("AUTH_REDIRECT_URLS", "https://app.example.com/cb")],
        None,
    )
    .await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let down = json!({"slug": "down", "kind": "oidc", "issuer": format!("http://127.0.0.1:{port}"), "client_id": "c", "client_secret": "s"});
    json_of(
        app.post_json("/api/v1/auth/providers", Some(&admin.access), down)
            .await,
        201,
    )
    .await;
    expect_problem(
        app.get("/api/v1/auth/providers/nope/authorize?redirect_to=https://app.example.com/cb")
            .await,
        404,
        "not_found",
    )
    .await;
    expect_problem(
        app.get("/api/v1/auth/providers/down/authorize?redirect_to=https://elsewhere.example/")
            .await,
        400,
        "redirect_not_allowed",
    )
    .await;
    expect_problem(
        app.get("/api/v1/auth/providers/down/authorize?redirect_to=https://app.example.com/cb")
            .await,
        503,
        "provider_unavailable",
    )
    .await;
    assert_eq!(
        app.sql("SELECT 1 FROM provider_flows").await,
        0,
        "no flow is kept for a sign-in that could not start"
    );
    for code in [
        "",
        "nonsense",
        &format!("sovpg_{}_{}", "0".repeat(32), "A".repeat(43)),
    ] {
        expect_problem(
            app.post_json(
                "/api/v1/auth/providers/exchange",
                None,
                json!({"code": code}),
            )
            .await,
            401,
            "invalid_provider_code",
        )
        .await;
    }
    expect_problem(
        app.get("/api/v1/auth/providers/down/callback?code=x").await,
        400,
        "invalid_state",
    )
    .await;
}
