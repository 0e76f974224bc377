//! Tenant isolation proven at the SQL level, connected as the runtime role exactly as the server
//! is: row-level security, not application code, keeps tenants apart.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Nullable, Text};
use sovereign_db::{AsyncPgConnection, Db, DbError, PoolSettings, RunQueryDsl, ScopedFutureExt};
use sovereign_tenancy::{
    DEFAULT_TENANT_ID, TenancyError, TenantAdmin, TenantClaims, TenantRef, TenantStatus,
};
use sovereign_test_db::TestDatabase;
use uuid::Uuid;

fn pool(url: &sovereign_core::settings::SecretUrl, size: usize) -> Db {
    Db::new(
        url,
        PoolSettings {
            max_size: size,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
        },
    )
    .unwrap()
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64, DbError> {
    Ok(diesel::sql_query(sql).get_result::<Count>(conn).await?.n)
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) -> Result<usize, DbError> {
    Ok(diesel::sql_query(sql).execute(conn).await?)
}

/// Tables with a `tenant_id` column that lack ENABLE or FORCE row-level security or a policy.
async fn catalog_violations(conn: &mut AsyncPgConnection) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Violation {
        #[diesel(sql_type = Text)]
        table_name: String,
    }
    diesel::sql_query(
        "SELECT c.relname::text AS table_name
           FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND EXISTS (SELECT FROM pg_attribute a
                         WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
            AND (NOT c.relrowsecurity
                 OR NOT c.relforcerowsecurity
                 OR NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))
          ORDER BY 1",
    )
    .load::<Violation>(conn)
    .await
    .unwrap()
    .into_iter()
    .map(|v| v.table_name)
    .collect()
}

/// A migrated database with a tenant-owned fixture table, made tenant-owned the documented way,
/// and two tenants with rows in it.
struct Fixture {
    db: TestDatabase,
    a: Uuid,
    b: Uuid,
}

impl Fixture {
    async fn new() -> Self {
        let db = TestDatabase::migrated().await;
        let mut owner = db.owner_conn().await;
        exec(
            &mut owner,
            "CREATE TABLE notes (
                 id bigserial PRIMARY KEY,
                 tenant_id uuid NOT NULL REFERENCES tenants (id),
                 body text NOT NULL
             )",
        )
        .await
        .unwrap();
        exec(&mut owner, "CALL sovereign_make_tenant_owned('notes')")
            .await
            .unwrap();
        let admin = TenantAdmin::new(pool(db.tenant_admin_url(), 1));
        let a = admin.create("tenant-a", "Tenant A").await.unwrap().id;
        let b = admin.create("tenant-b", "Tenant B").await.unwrap().id;
        // The owner is subject to RLS too (FORCE), so even fixtures go in through the scope.
        let runtime = pool(db.url(), 2);
        for (tenant, rows) in [(a, 3), (b, 2)] {
            runtime
                .tenant_transaction(tenant, |conn| {
                    async move {
                        for i in 0..rows {
                            exec(
                                conn,
                                &format!(
                                    "INSERT INTO notes (tenant_id, body) VALUES ('{tenant}', 'note {i}')"
                                ),
                            )
                            .await?;
                        }
                        Ok::<_, DbError>(())
                    }
                    .scope_boxed()
                })
                .await
                .unwrap();
        }
        Self { db, a, b }
    }

    fn runtime(&self, size: usize) -> Db {
        pool(self.db.url(), size)
    }
}

#[tokio::test]
async fn every_tenant_table_forces_rls_with_a_policy_and_the_runtime_role_is_unprivileged() {
    let fixture = Fixture::new().await;
    let mut owner = fixture.db.owner_conn().await;
    assert_eq!(catalog_violations(&mut owner).await, Vec::<String>::new());

    // The check is not vacuous: a table with tenant_id and no RLS is caught.
    exec(&mut owner, "CREATE TABLE leaky (id int, tenant_id uuid)")
        .await
        .unwrap();
    exec(&mut owner, "CREATE TABLE half (id int, tenant_id uuid)")
        .await
        .unwrap();
    exec(&mut owner, "ALTER TABLE half ENABLE ROW LEVEL SECURITY")
        .await
        .unwrap();
    assert_eq!(catalog_violations(&mut owner).await, ["half", "leaky"]);

    let report = fixture.runtime(1).runtime_role().await.unwrap();
    assert!(!report.superuser, "{report:?}");
    assert!(!report.bypass_rls, "{report:?}");
    assert_eq!(report.owned_objects, 0, "{report:?}");
    assert!(!report.is_privileged());
}

#[tokio::test]
async fn without_a_tenant_nothing_is_visible_and_nothing_can_be_written() {
    let fixture = Fixture::new().await;
    let db = fixture.runtime(1);
    let mut conn = db.conn().await.unwrap();
    // The deliberately unscoped query: five rows exist, none is returned.
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notes")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        exec(&mut conn, "UPDATE notes SET body = 'x'")
            .await
            .unwrap(),
        0
    );
    assert_eq!(exec(&mut conn, "DELETE FROM notes").await.unwrap(), 0);
    let insert = format!(
        "INSERT INTO notes (tenant_id, body) VALUES ('{}', 'sneaky')",
        fixture.a
    );
    let refused = exec(&mut conn, &insert).await.unwrap_err();
    assert!(
        refused.to_string().contains("row-level security"),
        "{refused}"
    );
    // Nor can the runtime role switch the protection off.
    assert!(
        exec(&mut conn, "ALTER TABLE notes DISABLE ROW LEVEL SECURITY")
            .await
            .is_err()
    );
    assert!(
        exec(&mut conn, "SET row_security = off; SELECT 1")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_tenant_cannot_read_change_delete_or_create_another_tenants_rows() {
    let fixture = Fixture::new().await;
    let (a, b) = (fixture.a, fixture.b);
    let db = fixture.runtime(1);
    let outcome = db
        .tenant_transaction(a, |conn| {
            async move {
                let visible = count(conn, "SELECT count(*) AS n FROM notes").await?;
                let others = count(
                    conn,
                    &format!("SELECT count(*) AS n FROM notes WHERE tenant_id = '{b}'"),
                )
                .await?;
                let updated = exec(conn, "UPDATE notes SET body = 'mine now'").await?;
                let deleted =
                    exec(conn, &format!("DELETE FROM notes WHERE tenant_id = '{b}'")).await?;
                Ok::<_, DbError>((visible, others, updated, deleted))
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(outcome, (3, 0, 3, 0));

    // Labelling a row with another tenant is refused, and moving one there too.
    for sql in [
        format!("INSERT INTO notes (tenant_id, body) VALUES ('{b}', 'planted')"),
        format!("UPDATE notes SET tenant_id = '{b}'"),
    ] {
        let refused = db
            .tenant_transaction(a, |conn| {
                async move { exec(conn, &sql).await }.scope_boxed()
            })
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("row-level security"),
            "{refused}"
        );
    }

    // B's rows are untouched.
    let b_bodies = db
        .tenant_transaction(b, |conn| {
            async move {
                count(
                    conn,
                    "SELECT count(*) AS n FROM notes WHERE body LIKE 'note %'",
                )
                .await
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(b_bodies, 2);
}

#[tokio::test]
async fn one_pooled_connection_alternating_tenants_never_leaks() {
    let fixture = Fixture::new().await;
    let db = fixture.runtime(1);
    for round in 0..25 {
        for (tenant, expected) in [(fixture.a, 3), (fixture.b, 2)] {
            let (visible, foreign) = db
                .tenant_transaction(tenant, |conn| {
                    async move {
                        let visible = count(conn, "SELECT count(*) AS n FROM notes").await?;
                        let foreign = count(
                            conn,
                            &format!(
                                "SELECT count(*) AS n FROM notes WHERE tenant_id <> '{tenant}'"
                            ),
                        )
                        .await?;
                        Ok::<_, DbError>((visible, foreign))
                    }
                    .scope_boxed()
                })
                .await
                .unwrap();
            assert_eq!((visible, foreign), (expected, 0), "round {round}");
            // Between scopes, the same connection is back to seeing nothing.
            let mut conn = db.conn().await.unwrap();
            assert_eq!(
                count(&mut conn, "SELECT count(*) AS n FROM notes")
                    .await
                    .unwrap(),
                0
            );
        }
    }
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Nullable<Text>)]
    value: Option<String>,
}

async fn tenant_setting(db: &Db) -> Option<String> {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query("SELECT current_setting('app.tenant_id', true) AS value")
        .get_result::<Setting>(&mut conn)
        .await
        .unwrap()
        .value
        .filter(|v| !v.is_empty())
}

#[tokio::test]
async fn a_request_cancelled_mid_transaction_leaves_no_tenant_on_the_pooled_connection() {
    let fixture = Fixture::new().await;
    let db = fixture.runtime(1);
    let a = fixture.a;
    // The request goes away (client disconnect, timeout) while its transaction is running.
    let cancelled = tokio::time::timeout(
        Duration::from_millis(300),
        db.tenant_transaction(a, |conn| {
            async move { exec(conn, "SELECT pg_sleep(3)").await }.scope_boxed()
        }),
    )
    .await;
    assert!(
        cancelled.is_err(),
        "the transaction was meant to be cut off"
    );

    // The pool's only connection, whatever became of it, carries no tenant.
    assert_eq!(tenant_setting(&db).await, None);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM notes")
            .await
            .unwrap(),
        0
    );
    drop(conn);

    // Same after a transaction that fails, and after one that succeeds.
    let failed: Result<(), DbError> = db
        .tenant_transaction(a, |conn| {
            async move {
                exec(conn, "SELECT 1/0").await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(tenant_setting(&db).await, None);
    db.tenant_transaction(a, |conn| {
        async move { exec(conn, "SELECT 1").await }.scope_boxed()
    })
    .await
    .unwrap();
    assert_eq!(tenant_setting(&db).await, None);
}

#[tokio::test]
async fn a_forged_tenant_setting_fails_closed() {
    let fixture = Fixture::new().await;
    let db = fixture.runtime(1);
    let mut conn = db.conn().await.unwrap();
    exec(
        &mut conn,
        "SELECT set_config('app.tenant_id', 'everyone', false)",
    )
    .await
    .unwrap();
    // Not a tenant id: the policy errors instead of matching anything.
    assert!(
        count(&mut conn, "SELECT count(*) AS n FROM notes")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_runtime_role_reads_the_registry_but_cannot_change_it() {
    let fixture = Fixture::new().await;
    let db = fixture.runtime(1);
    let mut conn = db.conn().await.unwrap();
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM tenants")
            .await
            .unwrap(),
        3
    );
    for sql in [
        "INSERT INTO tenants (id, slug, name) VALUES (gen_random_uuid(), 'rogue', 'Rogue')",
        "UPDATE tenants SET status = 'suspended'",
        "DELETE FROM tenants",
    ] {
        let refused = exec(&mut conn, sql).await.unwrap_err();
        assert!(
            refused.to_string().contains("permission denied"),
            "{sql}: {refused}"
        );
    }
    // And the admin role reads no tenant data at all.
    let admin = pool(fixture.db.tenant_admin_url(), 1);
    let mut admin_conn = admin.conn().await.unwrap();
    let refused = count(&mut admin_conn, "SELECT count(*) AS n FROM notes")
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("permission denied"),
        "{refused}"
    );
}

#[tokio::test]
async fn tenant_administration_creates_lists_suspends_and_reactivates() {
    let db = TestDatabase::migrated().await;
    let admin = TenantAdmin::new(pool(db.tenant_admin_url(), 1));
    let listed = admin.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, DEFAULT_TENANT_ID);
    assert_eq!(listed[0].slug, "default");

    let acme = admin.create("acme", "  Acme Corp ").await.unwrap();
    assert_eq!(acme.name, "Acme Corp");
    assert_eq!(acme.status, TenantStatus::Active);
    assert!(matches!(
        admin.create("acme", "Again").await,
        Err(TenancyError::SlugTaken)
    ));
    for (slug, name, field) in [("Bad Slug", "x", "slug"), ("ok", "   ", "name")] {
        match admin.create(slug, name).await {
            Err(TenancyError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{slug:?}/{name:?}: {other:?}"),
        }
    }

    let suspended = admin
        .set_status(&TenantRef::Slug("acme".into()), TenantStatus::Suspended)
        .await
        .unwrap();
    assert_eq!(suspended.status, TenantStatus::Suspended);
    assert!(suspended.updated_at >= acme.updated_at);
    assert!(matches!(
        admin
            .set_status(&TenantRef::Slug("ghost".into()), TenantStatus::Suspended)
            .await,
        Err(TenancyError::NotFound)
    ));

    // Resolution sees the registry as it is now.
    let runtime = pool(db.url(), 1);
    let claims = |header| TenantClaims {
        header: Some(header),
        credentials: None,
    };
    assert!(matches!(
        sovereign_tenancy::resolve(&runtime, true, claims("acme")).await,
        Err(TenancyError::Suspended)
    ));
    assert!(matches!(
        sovereign_tenancy::resolve(&runtime, true, claims("ghost")).await,
        Err(TenancyError::NotFound)
    ));
    admin
        .set_status(&TenantRef::Id(acme.id), TenantStatus::Active)
        .await
        .unwrap();
    let resolved = sovereign_tenancy::resolve(&runtime, true, claims("acme"))
        .await
        .unwrap();
    assert_eq!(resolved.id, acme.id);
    let by_id = acme.id.to_string();
    let resolved = sovereign_tenancy::resolve(&runtime, true, claims(&by_id))
        .await
        .unwrap();
    assert_eq!(resolved.slug, "acme");
    // Single-tenant mode: the default tenant whatever the header says.
    let resolved = sovereign_tenancy::resolve(&runtime, false, claims("acme"))
        .await
        .unwrap();
    assert_eq!(resolved.id, DEFAULT_TENANT_ID);
}
