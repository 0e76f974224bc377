//! Tenant resolution over HTTP: `X-Tenant-ID` before authentication, the credentials' tenant
//! after, and every refusal with its status and code.

use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpMessage, web};
use serde_json::Value;
use sovereign_api::RouteHook;
use sovereign_api::tenant::{AuthenticatedTenant, CurrentTenant};
use sovereign_db::{Db, PoolConfig};
use sovereign_tenancy::{DEFAULT_TENANT_ID, TenantAdmin, TenantRef, TenantStatus};
use uuid::Uuid;

use crate::common::{TestApp, expect_problem};

const CURRENT: &str = "/api/v1/tenants/current";

fn admin(app: &TestApp) -> TenantAdmin {
    let url = app.db.as_ref().unwrap().tenant_admin_url();
    let config = PoolConfig {
        max_size: 1,
        wait_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        recycle_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(5),
    };
    TenantAdmin::new(Db::new(url, config).unwrap())
}

/// Test routes behind a stand-in for authentication: `X-Test-Credentials` carries the tenant
/// the credentials would belong to.
fn with_fake_authentication() -> RouteHook {
    Arc::new(|cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/test-auth")
                .wrap(from_fn(
                    |req: actix_web::dev::ServiceRequest, next: Next<_>| async move {
                        let credentials = req
                            .headers()
                            .get("x-test-credentials")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse::<Uuid>().ok());
                        if let Some(id) = credentials {
                            req.extensions_mut().insert(AuthenticatedTenant(id));
                        }
                        next.call(req).await
                    },
                ))
                .route(
                    "/tenant",
                    web::get().to(|tenant: CurrentTenant| async move {
                        web::Json(serde_json::json!({ "slug": tenant.0.slug }))
                    }),
                ),
        );
    })
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
    let app = TestApp::spawn_with(
        &[("ENABLE_MULTI_TENANT", "true")],
        Some(with_fake_authentication()),
    )
    .await;
    let admin = admin(&app);
    let acme = admin.create("acme", "Acme").await.unwrap();
    admin.create("globex", "Globex").await.unwrap();
    let credentials = acme.id.to_string();
    let path = "/test-auth/tenant";

    let own = app
        .get_with(path, &[("x-test-credentials", &credentials)])
        .await;
    assert_eq!(slug_of(own).await, "acme");
    let same = app
        .get_with(
            path,
            &[
                ("x-test-credentials", &credentials),
                ("x-tenant-id", "acme"),
            ],
        )
        .await;
    assert_eq!(slug_of(same).await, "acme");
    let other = app
        .get_with(
            path,
            &[
                ("x-test-credentials", &credentials),
                ("x-tenant-id", "globex"),
            ],
        )
        .await;
    expect_problem(other, 403, "tenant_mismatch").await;

    admin
        .set_status(&TenantRef::Id(acme.id), TenantStatus::Suspended)
        .await
        .unwrap();
    let frozen = app
        .get_with(path, &[("x-test-credentials", &credentials)])
        .await;
    expect_problem(frozen, 403, "tenant_suspended").await;
}
