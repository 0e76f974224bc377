//! Tenant resolution over HTTP: `X-Tenant-ID` before authentication, the credentials' tenant
//! after, and every refusal with its status and code.

use std::time::Duration;

use serde_json::Value;
use sovereign_db::{Db, PoolSettings};
use sovereign_tenancy::{DEFAULT_TENANT_ID, TenantAdmin, TenantRef, TenantStatus};

use crate::common::{PASSWORD, TestApp, expect_problem};

const CURRENT: &str = "/api/v1/tenants/current";

fn admin(app: &TestApp) -> TenantAdmin {
    let url = app.db.as_ref().unwrap().tenant_admin_url();
    let config = PoolSettings {
        max_size: 1,
        wait_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        recycle_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    };
    TenantAdmin::new(Db::new(url, config).unwrap())
}

async fn slug_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["slug"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn with_multi_tenancy_off_every_request_is_the_default_tenant() {
    let app = TestApp::spawn().await;
    for headers in [
        vec![],
        vec![("x-tenant-id", "acme")],
        vec![("x-tenant-id", "NOT valid!")],
    ] {
        let response = app.get_with(CURRENT, &headers).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["id"], DEFAULT_TENANT_ID.to_string());
        assert_eq!(body["slug"], "default");
    }
}

#[tokio::test]
async fn before_authentication_the_header_names_the_tenant_strictly() {
    let app = TestApp::spawn_with(&[("ENABLE_MULTI_TENANT", "true")], None).await;
    let acme = admin(&app).create("acme", "Acme Corp").await.unwrap();

    assert_eq!(
        slug_of(app.get_with(CURRENT, &[("x-tenant-id", "acme")]).await).await,
        "acme"
    );
    let by_id = acme.id.to_string();
    let response = app.get_with(CURRENT, &[("x-tenant-id", &by_id)]).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "id": by_id, "slug": "acme", "name": "Acme Corp" })
    );

    expect_problem(app.get(CURRENT).await, 400, "tenant_required").await;
    for malformed in [
        "ACME",
        "acme corp",
        "-acme",
        "acme.example.com",
        "' OR 1=1 --",
    ] {
        let response = app.get_with(CURRENT, &[("x-tenant-id", malformed)]).await;
        expect_problem(response, 400, "invalid_tenant").await;
    }
    let twice = app
        .client
        .get(app.url(CURRENT))
        .header("x-tenant-id", "acme")
        .header("x-tenant-id", "default")
        .send()
        .await
        .unwrap();
    expect_problem(twice, 400, "invalid_tenant").await;
    let unknown = app.get_with(CURRENT, &[("x-tenant-id", "globex")]).await;
    expect_problem(unknown, 404, "tenant_not_found").await;
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_until_reactivated() {
    let app = TestApp::spawn_with(&[("ENABLE_MULTI_TENANT", "true")], None).await;
    let admin = admin(&app);
    admin.create("acme", "Acme").await.unwrap();
    let acme = TenantRef::Slug("acme".into());
    admin
        .set_status(&acme, TenantStatus::Suspended)
        .await
        .unwrap();
    let response = app.get_with(CURRENT, &[("x-tenant-id", "acme")]).await;
    expect_problem(response, 403, "tenant_suspended").await;
    admin.set_status(&acme, TenantStatus::Active).await.unwrap();
    assert_eq!(
        slug_of(app.get_with(CURRENT, &[("x-tenant-id", "acme")]).await).await,
        "acme"
    );
}

#[tokio::test]
async fn after_authentication_the_credentials_decide_and_a_mismatching_header_is_refused() {
    const KEY: (&str, &str) = (
        "SECRET_KEY",
        "one key for both servers, at least 32 bytes long",
    );
    let app = TestApp::spawn_with(&[("ENABLE_MULTI_TENANT", "true"), KEY], None).await;
    let admin = admin(&app);
    admin.create("acme", "Acme").await.unwrap();
    admin.create("globex", "Globex").await.unwrap();
    let register = app
        .call(
            reqwest::Method::POST,
            "/api/v1/auth/register",
            None,
            &[("x-tenant-id", "acme")],
            Some(serde_json::json!({"email": "ann@acme.test", "password": PASSWORD})),
        )
        .await;
    assert_eq!(register.status(), 202);
    let tokens = app
        .login_in("ann@acme.test", &[("x-tenant-id", "acme")])
        .await;
    let bearer = format!("Bearer {}", tokens.access);

    let own = app.get_with(CURRENT, &[("authorization", &bearer)]).await;
    assert_eq!(
        slug_of(own).await,
        "acme",
        "no header needed once signed in"
    );
    let same = app
        .get_with(
            CURRENT,
            &[("authorization", &bearer), ("x-tenant-id", "acme")],
        )
        .await;
    assert_eq!(slug_of(same).await, "acme");
    let other = app
        .get_with(
            CURRENT,
            &[("authorization", &bearer), ("x-tenant-id", "globex")],
        )
        .await;
    expect_problem(other, 403, "tenant_mismatch").await;
    let malformed = app
        .get_with(
            CURRENT,
            &[("authorization", &bearer), ("x-tenant-id", "Not A Slug")],
        )
        .await;
    expect_problem(malformed, 400, "invalid_tenant").await;

    // With multi-tenancy switched off, credentials of any tenant but the default are refused.
    let single = app.sibling(&[("ENABLE_MULTI_TENANT", "false"), KEY]).await;
    let refused = single
        .get_with(CURRENT, &[("authorization", &bearer)])
        .await;
    expect_problem(refused, 403, "tenant_mismatch").await;
}
