//! Migrations apply, revert and re-apply cleanly, and set up the roles model.

use std::process::Command;

use diesel::QueryableByName;
use diesel::sql_types::{Bool, Text};
use sovereign_core::settings::SecretUrl;
use sovereign_db::RunQueryDsl;
use sovereign_db::migrations::{self, MIGRATIONS, Revert};
use sovereign_test_db::TestDatabase;

/// `pg_dump --schema-only`, without the parts that legitimately differ between runs.
fn schema_dump(url: &SecretUrl) -> String {
    let out = Command::new("pg_dump")
        .args([
            "--schema-only",
            "--exclude-table=__diesel_schema_migrations",
            "--dbname",
            url.expose(),
        ])
        .output()
        .expect("pg_dump runs (it ships with PostgreSQL)");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Comments, and the random keys of `\restrict` in recent pg_dump releases.
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn migration_count() -> usize {
    use diesel::migration::MigrationSource;
    MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .unwrap()
        .len()
}

#[tokio::test]
async fn up_down_up_leaves_an_identical_schema() {
    let db = TestDatabase::empty().await;
    let owner = db.owner_url();
    let empty = schema_dump(owner);

    let applied = migrations::run_pending(owner).await.unwrap();
    assert_eq!(applied.len(), migration_count());
    let migrated = schema_dump(owner);
    assert_ne!(migrated, empty, "the migrations changed nothing");
    assert!(migrated.contains("CREATE EXTENSION IF NOT EXISTS vector"));

    let reverted = migrations::revert(owner, Revert::All).await.unwrap();
    assert_eq!(reverted.len(), migration_count());
    assert_eq!(
        schema_dump(owner),
        empty,
        "down.sql does not reverse up.sql"
    );

    migrations::run_pending(owner).await.unwrap();
    assert_eq!(
        schema_dump(owner),
        migrated,
        "re-applying gives a different schema"
    );
}

#[tokio::test]
async fn status_tracks_what_is_applied_and_running_twice_is_a_no_op() {
    let db = TestDatabase::empty().await;
    let owner = db.owner_url();
    let before = migrations::status(owner).await.unwrap();
    assert_eq!(before.len(), migration_count());
    assert!(before.iter().all(|m| !m.applied));

    migrations::run_pending(owner).await.unwrap();
    assert!(migrations::run_pending(owner).await.unwrap().is_empty());
    let after = migrations::status(owner).await.unwrap();
    assert!(after.iter().all(|m| m.applied));
    assert_eq!(after[0].name, "2026-11-25-000001_foundation");

    let reverted = migrations::revert(owner, Revert::Last(1)).await.unwrap();
    assert_eq!(reverted.len(), 1);
    let last = migrations::status(owner).await.unwrap();
    assert!(!last.last().unwrap().applied);
}

#[tokio::test]
async fn concurrent_migration_runs_apply_each_migration_once() {
    let db = TestDatabase::empty().await;
    let owner = db.owner_url().clone();
    let runs = (0..4).map(|_| {
        let owner = owner.clone();
        tokio::spawn(async move { migrations::run_pending(&owner).await.unwrap() })
    });
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap().len();
    }
    assert_eq!(total, migration_count());
}

#[derive(QueryableByName)]
struct Role {
    #[diesel(sql_type = Bool)]
    rolsuper: bool,
    #[diesel(sql_type = Bool)]
    rolbypassrls: bool,
    #[diesel(sql_type = Bool)]
    rolcanlogin: bool,
    #[diesel(sql_type = Bool)]
    rolcreaterole: bool,
    #[diesel(sql_type = Bool)]
    rolcreatedb: bool,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    extversion: String,
}

#[tokio::test]
async fn the_first_migration_enables_pgvector_and_an_unprivileged_group_role() {
    let db = TestDatabase::migrated().await;
    let mut conn = db.owner_conn().await;
    let version: Version =
        diesel::sql_query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .get_result(&mut conn)
            .await
            .expect("the vector extension is installed");
    let parts: Vec<u32> = version
        .extversion
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        parts[0] > 0 || parts[1] >= 8,
        "pgvector {} is too old for iterative index scans",
        version.extversion
    );

    let role: Role = diesel::sql_query(
        "SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb
           FROM pg_roles WHERE rolname = 'sovereign_app'",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!role.rolsuper && !role.rolbypassrls && !role.rolcanlogin);
    assert!(!role.rolcreaterole && !role.rolcreatedb);
}
