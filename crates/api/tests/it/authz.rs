//! Who may do what: object-level authorization across tenants (404, never 403 with details),
//! function-level authorization by role, and mass assignment.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, Tokens, expect_problem};

pub(crate) const MULTI: &[(&str, &str)] = &[("ENABLE_MULTI_TENANT", "true")];

pub(crate) async fn tenant(app: &TestApp, slug: &str) {
    app.sql(&format!(
        "INSERT INTO tenants (id, slug, name) VALUES (gen_random_uuid(), '{slug}', '{slug}')"
    ))
    .await;
}

/// Registers `email` in tenant `slug` with `role`, and signs in.
pub(crate) async fn member(app: &TestApp, slug: &str, email: &str, role: &str) -> Tokens {
    let headers = [("X-Tenant-ID", slug)];
    let response = app
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            &headers,
            Some(json!({"email": email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), 202);
    app.sql(&format!(
        "UPDATE users SET role = '{role}' WHERE email = '{email}'"
    ))
    .await;
    app.login_in(email, &headers).await
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.get_auth("/api/v1/users/me", token)
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn another_tenants_objects_are_not_found_on_every_route_that_takes_an_id() {
    let app = TestApp::spawn_with(MULTI, None).await;
    tenant(&app, "alpha").await;
    tenant(&app, "beta").await;
    let admin_a = member(&app, "alpha", "admin@alpha.test", "admin").await;
    let user_a = member(&app, "alpha", "user@alpha.test", "user").await;
    let admin_b = member(&app, "beta", "admin@beta.test", "admin").await;
    let user_a_id = me(&app, &user_a.access).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key: Value = app
        .post_json(
            "/api/v1/api-keys",
            Some(&user_a.access),
            json!({"name": "a"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let key_a = key["id"].as_str().unwrap().to_owned();
    let factor: Value = app
        .post_json(
            "/api/v1/auth/factors/totp",
            Some(&user_a.access),
            json!({"name": "a"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let factor_a = factor["id"].as_str().unwrap().to_owned();
    let provider = app
        .post_json(
            "/api/v1/auth/providers",
            Some(&admin_a.access),
            json!({"slug": "corp-a", "kind": "google", "client_id": "a", "client_secret": "s"}),
        )
        .await;
    assert_eq!(provider.status(), 201);
    // An identity linked to user A (as a provider sign-in would have linked it).
    app.sql(&format!(
        "INSERT INTO user_identities (id, tenant_id, user_id, provider, issuer, subject) \
         SELECT gen_random_uuid(), tenant_id, id, 'corp-a', 'https://accounts.google.com', 'a-1' \
         FROM users WHERE id = '{user_a_id}'"
    ))
    .await;
    let identities: Value = app
        .get_auth("/api/v1/auth/identities", &user_a.access)
        .await
        .json()
        .await
        .unwrap();
    let identity_a = identities[0]["id"].as_str().unwrap().to_owned();
    // A passkey of user A (only its row matters to these routes).
    app.sql(&format!(
        "INSERT INTO passkeys (id, tenant_id, user_id, name, credential_id, credential) \
         SELECT gen_random_uuid(), tenant_id, id, 'Laptop', '\\x01', '{{}}' FROM users WHERE id = '{user_a_id}'"
    ))
    .await;
    let passkey_a: Value = app
        .get_auth("/api/v1/auth/passkeys", &user_a.access)
        .await
        .json()
        .await
        .unwrap();
    let passkey_a = passkey_a[0]["id"].as_str().unwrap().to_owned();

    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            format!("/api/v1/auth/factors/{factor_a}/confirm"),
            Some(json!({"code": "123456"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/auth/factors/{factor_a}"),
            None,
        ),
        (Method::GET, format!("/api/v1/users/{user_a_id}"), None),
        (
            Method::GET,
            "/api/v1/auth/providers/corp-a".to_owned(),
            None,
        ),
        (
            Method::PATCH,
            "/api/v1/auth/providers/corp-a".to_owned(),
            Some(json!({"enabled": false})),
        ),
        (
            Method::DELETE,
            "/api/v1/auth/providers/corp-a".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/auth/providers/corp-a/link".to_owned(),
            Some(json!({"redirect_to": "https://app.example.com/"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/auth/identities/{identity_a}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/auth/passkeys/{passkey_a}"),
            Some(json!({"name": "mine now"})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/auth/passkeys/{passkey_a}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{user_a_id}"),
            Some(json!({"email": "x@beta.test", "full_name": "x"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{user_a_id}"),
            Some(json!({"full_name": "x"})),
        ),
        (
            Method::POST,
            format!("/api/v1/users/{user_a_id}/deactivate"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{user_a_id}/activate"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{user_a_id}/role"),
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, format!("/api/v1/users/{user_a_id}"), None),
        (Method::DELETE, format!("/api/v1/api-keys/{key_a}"), None),
        (
            Method::DELETE,
            format!("/api/v1/auth/sessions/{}", user_a.session),
            None,
        ),
    ];
    for (method, path, body) in &routes {
        let response = app
            .call(
                method.clone(),
                path,
                Some(&admin_b.access),
                &[],
                body.clone(),
            )
            .await;
        expect_problem(response, 404, "not_found").await;
    }
    // Nothing changed, and the ids were real: tenant A's admin sees the account untouched.
    let seen: Value = app
        .get_auth(&format!("/api/v1/users/{user_a_id}"), &admin_a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["email"], "user@alpha.test");
    assert_eq!(seen["role"], "user");
    assert_eq!(seen["is_active"], true);
    assert_eq!(
        app.get_auth("/api/v1/users/me", &user_a.access)
            .await
            .status(),
        200
    );
    let keys: Value = app
        .get_auth("/api/v1/api-keys", &user_a.access)
        .await
        .json()
        .await
        .unwrap();
    assert!(keys[0]["revoked_at"].is_null());
    let provider = app
        .get_auth("/api/v1/auth/providers/corp-a", &admin_a.access)
        .await;
    assert_eq!(provider.status(), 200, "tenant A's provider is untouched");
    let identities: Value = app
        .get_auth("/api/v1/auth/identities", &user_a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(identities[0]["id"], identity_a.as_str());
    let passkeys: Value = app
        .get_auth("/api/v1/auth/passkeys", &user_a.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        passkeys[0]["name"], "Laptop",
        "tenant A's passkey is untouched"
    );
    // Tenant B's sign-in page does not show it, and cannot start it.
    let public: Value = app
        .get_with("/api/v1/auth/providers", &[("X-Tenant-ID", "beta")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public, json!([]));
    let response = app
        .get("/api/v1/auth/providers/corp-a/authorize?tenant=beta&redirect_to=https://app.example.com/")
        .await;
    expect_problem(response, 404, "not_found").await;

    // Tenant B's list shows only tenant B.
    let list: Value = app
        .get_auth("/api/v1/users", &admin_b.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["email"], "admin@beta.test");

    // Credentials of tenant B sent with tenant A's header are refused, not re-scoped.
    let response = app
        .call(
            Method::GET,
            "/api/v1/users",
            Some(&admin_b.access),
            &[("X-Tenant-ID", "alpha")],
            None,
        )
        .await;
    expect_problem(response, 403, "tenant_mismatch").await;
    // The same address may exist in both tenants, independently.
    let twin = member(&app, "beta", "user@alpha.test", "user").await;
    assert_ne!(me(&app, &twin.access).await["id"], user_a_id.as_str());
}

#[tokio::test]
async fn one_users_sessions_and_keys_are_not_anothers() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice@example.com").await;
    let bob = app.signup("bob@example.com").await;
    let response = app
        .call(
            Method::DELETE,
            &format!("/api/v1/auth/sessions/{}", alice.session),
            Some(&bob.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 404, "not_found").await;
    let key: Value = app
        .post_json(
            "/api/v1/api-keys",
            Some(&alice.access),
            json!({"name": "mine"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let response = app
        .call(
            Method::DELETE,
            &format!("/api/v1/api-keys/{}", key["id"].as_str().unwrap()),
            Some(&bob.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 404, "not_found").await;
    assert_eq!(
        app.get_auth("/api/v1/users/me", &alice.access)
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn roles_gate_administration() {
    let app = TestApp::spawn().await;
    let user = app.signup_as("user@example.com", "user").await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let root = app.signup_as("root@example.com", "superadmin").await;
    let id_of = async |t: &Tokens| me(&app, &t.access).await["id"].as_str().unwrap().to_owned();
    let (user_id, admin_id, root_id) =
        (id_of(&user).await, id_of(&admin).await, id_of(&root).await);

    // Users: no administration at all.
    for (method, path, body) in [
        (Method::GET, "/api/v1/users".to_owned(), None),
        (Method::GET, format!("/api/v1/users/{admin_id}"), None),
        (
            Method::POST,
            format!("/api/v1/users/{admin_id}/deactivate"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{user_id}/role"),
            Some(json!({"role": "admin"})),
        ),
        (Method::GET, "/api/v1/tenants".to_owned(), None),
        (
            Method::POST,
            "/api/v1/tenants".to_owned(),
            Some(json!({"slug": "x", "name": "x"})),
        ),
    ] {
        let response = app.call(method, &path, Some(&user.access), &[], body).await;
        expect_problem(response, 403, "forbidden").await;
    }
    // Admins: their tenant's users, not superadmins, not tenants, not above their role.
    assert_eq!(
        app.get_auth("/api/v1/users", &admin.access).await.status(),
        200
    );
    let response = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{root_id}/deactivate"),
            Some(&admin.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 403, "forbidden").await;
    let response = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{user_id}/role"),
            Some(&admin.access),
            &[],
            Some(json!({"role": "superadmin"})),
        )
        .await;
    expect_problem(response, 403, "forbidden").await;
    let response = app.get_auth("/api/v1/tenants", &admin.access).await;
    expect_problem(response, 403, "forbidden").await;
    let response = app
        .call(
            Method::POST,
            &format!("/api/v1/users/{admin_id}/deactivate"),
            Some(&admin.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 409, "self_modification").await;
    let promoted: Value = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{user_id}/role"),
            Some(&admin.access),
            &[],
            Some(json!({"role": "admin"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(promoted["role"], "admin");
    // Superadmins: everything.
    let response = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{admin_id}/role"),
            Some(&root.access),
            &[],
            Some(json!({"role": "superadmin"})),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        app.get_auth("/api/v1/tenants", &root.access).await.status(),
        200
    );
}

#[tokio::test]
async fn profile_updates_cannot_set_privileged_fields() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("mass@example.com").await;
    let before = me(&app, &tokens.access).await;
    for (field, value) in [
        ("role", json!("superadmin")),
        ("tenant_id", json!("00000000-0000-0000-0000-000000000002")),
        ("is_active", json!(false)),
        ("email_verified", json!(true)),
        ("email", json!("other@example.com")),
        ("id", json!("00000000-0000-0000-0000-000000000009")),
    ] {
        for method in [Method::PUT, Method::PATCH] {
            let body = json!({"full_name": "Mallory", field: value});
            let response = app
                .call(
                    method.clone(),
                    "/api/v1/users/me",
                    Some(&tokens.access),
                    &[],
                    Some(body),
                )
                .await;
            let problem = expect_problem(response, 422, "invalid_body").await;
            assert!(
                problem.detail.contains(field)
                    || problem
                        .errors
                        .iter()
                        .any(|e| e.message.contains(field) || e.field.contains(field)),
                "{method} {field}: {problem:?}"
            );
        }
    }
    assert_eq!(me(&app, &tokens.access).await, before, "nothing changed");
    let updated: Value = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&tokens.access),
            &[],
            Some(json!({"full_name": "  Grace Hopper "})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(updated["full_name"], "Grace Hopper");
    assert_eq!(
        me(&app, &tokens.access).await["full_name"],
        "Grace Hopper",
        "no stale cached profile"
    );

    // The document says so: the profile bodies allow no other properties.
    let doc: Value = app.get("/api/v1/openapi.json").await.json().await.unwrap();
    for schema in [
        "ProfilePut",
        "ProfilePatch",
        "Registration",
        "UserUpdate",
        "NewApiKey",
    ] {
        assert_eq!(
            doc["components"]["schemas"][schema]["additionalProperties"],
            json!(false),
            "{schema}"
        );
    }
}

#[tokio::test]
async fn superadmins_administer_tenants_and_act_in_them() {
    let app = TestApp::spawn_with(MULTI, None).await;
    let root = member(&app, "default", "root@example.com", "superadmin").await;
    let created = app
        .post_json(
            "/api/v1/tenants",
            Some(&root.access),
            json!({"slug": "acme", "name": "Acme"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let acme: Value = created.json().await.unwrap();
    assert_eq!(acme["status"], "active");
    let again = app
        .post_json(
            "/api/v1/tenants",
            Some(&root.access),
            json!({"slug": "acme", "name": "Acme"}),
        )
        .await;
    expect_problem(again, 409, "tenant_exists").await;

    let worker = member(&app, "acme", "worker@acme.test", "user").await;
    // The superadmin lists acme's users by naming the tenant.
    let list: Value = app
        .call(
            Method::GET,
            "/api/v1/users",
            Some(&root.access),
            &[("X-Tenant-ID", "acme")],
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["email"], "worker@acme.test");

    let renamed: Value = app
        .call(
            Method::PATCH,
            "/api/v1/tenants/acme",
            Some(&root.access),
            &[],
            Some(json!({"name": "Acme Corp"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(renamed["name"], "Acme Corp");

    // Deleting needs a suspension first; suspension stops acme's tokens at once.
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/tenants/acme",
            Some(&root.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 422, "validation_failed").await;
    assert_eq!(
        app.get_auth("/api/v1/users/me", &worker.access)
            .await
            .status(),
        200
    );
    let suspended = app
        .call(
            Method::POST,
            "/api/v1/tenants/acme/suspend",
            Some(&root.access),
            &[],
            None,
        )
        .await;
    assert_eq!(suspended.status(), 200);
    expect_problem(
        app.get_auth("/api/v1/users/me", &worker.access).await,
        403,
        "tenant_suspended",
    )
    .await;
    let response = app
        .call(
            Method::POST,
            "/api/v1/tenants/default/suspend",
            Some(&root.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 409, "self_modification").await;

    let deleted = app
        .call(
            Method::DELETE,
            "/api/v1/tenants/acme",
            Some(&root.access),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    let response = app
        .call(
            Method::GET,
            &format!("/api/v1/tenants/{}", acme["id"].as_str().unwrap()),
            Some(&root.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 404, "tenant_not_found").await;
    // Its accounts went with it (checked as the owner, past row-level security).
    assert_eq!(
        app.sql("SELECT 1 FROM users WHERE email = 'worker@acme.test'")
            .await,
        0
    );
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/tenants/default",
            Some(&root.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 422, "validation_failed").await;
}
