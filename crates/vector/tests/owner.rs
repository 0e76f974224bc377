//! Production's split of roles: the schema owner is *not* a superuser (tests elsewhere migrate
//! as one). Vector search's definer functions run as that owner, so everything they touch must
//! be within its rights: creating partitions, building indexes, gathering statistics.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use sovereign_core::settings::SecretUrl;
use sovereign_db::{Db, PoolSettings};
use sovereign_tenancy::TenantAdmin;
use sovereign_test_db::TestDatabase;
use sovereign_vector::{
    HashEmbedder, IndexRequest, IndexState, PayloadKind, PointInput, VectorSettings, Vectors,
};

const OWNER: &str = "sovereign_test_plain_owner";

fn pool(url: &SecretUrl) -> Db {
    Db::new(
        url,
        PoolSettings {
            max_size: 2,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    diesel::sql_query(sql)
        .execute(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn vector_search_works_when_the_schema_owner_is_not_a_superuser() {
    // The migrated template also creates the cluster-wide group and login roles.
    drop(TestDatabase::migrated().await);
    let db = TestDatabase::empty().await;
    let mut admin = db.owner_conn().await;
    // What an operator does once (docs/operations.md): an owner role without superuser, the
    // database and schema handed to it, pgvector created for it.
    exec(
        &mut admin,
        &format!(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER}') THEN
                     CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
                 END IF;
             END $$"
        ),
    )
    .await;
    exec(
        &mut admin,
        &format!("ALTER DATABASE {} OWNER TO {OWNER}", db.name()),
    )
    .await;
    exec(&mut admin, &format!("ALTER SCHEMA public OWNER TO {OWNER}")).await;
    exec(&mut admin, "CREATE EXTENSION IF NOT EXISTS vector").await;
    let mut owner_url = url::Url::parse(db.owner_url().expose()).unwrap();
    owner_url.set_username(OWNER).unwrap();
    owner_url.set_password(Some(OWNER)).unwrap();
    let owner_url = SecretUrl::new(owner_url);
    let mut owner = AsyncPgConnection::establish(owner_url.expose())
        .await
        .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Super {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolsuper: bool,
    }
    let me: Super = diesel::sql_query("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        .get_result(&mut owner)
        .await
        .unwrap();
    assert!(!me.rolsuper);
    sovereign_db::migrations::run_pending(&owner_url)
        .await
        .unwrap();

    let tenant = TenantAdmin::new(pool(db.tenant_admin_url()))
        .create("plain", "Plain")
        .await
        .unwrap()
        .id;
    let vectors = Vectors::new(
        pool(db.url()),
        Arc::new(HashEmbedder::new(4)),
        VectorSettings::default(),
    );
    let collection = vectors
        .create_collection(
            tenant,
            &serde_json::from_value(json!({"name": "docs", "dimension": 4, "defer_index": true}))
                .unwrap(),
        )
        .await
        .unwrap();
    // Enough points for the first load's statistics.
    let points: Vec<PointInput> = (0..1200u16)
        .map(|i| PointInput {
            id: i.to_string(),
            vector: Some(vec![
                f32::from(i % 7) + 1.0,
                f32::from(i % 11),
                f32::from(i % 13),
                1.0,
            ]),
            text: None,
            payload: json!({"kind": if i % 2 == 0 { "even" } else { "odd" }})
                .as_object()
                .cloned(),
        })
        .collect();
    for batch in points.chunks(600) {
        vectors
            .upsert(tenant, "docs", batch.to_vec())
            .await
            .unwrap();
    }
    // The first load of 1,000 points gathered planner statistics (seen as the superuser:
    // pg_stats hides them from roles that row-level security binds).
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let stats: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_stats WHERE tablename = $1")
        .bind::<diesel::sql_types::Text, _>(format!("vector_points_{}", collection.id.simple()))
        .get_result(&mut admin)
        .await
        .unwrap();
    assert!(stats.n > 0, "no statistics after the first load");
    let built = vectors
        .create_index(tenant, "docs", IndexRequest::Hnsw, true)
        .await
        .unwrap();
    assert_eq!(built.index, IndexState::Ready);
    vectors
        .create_index(
            tenant,
            "docs",
            IndexRequest::Payload {
                key: "kind".into(),
                kind: PayloadKind::Keyword,
            },
            true,
        )
        .await
        .unwrap();
    let hits = vectors
        .search(
            tenant,
            "docs",
            serde_json::from_value(json!({"vector": [1, 0, 0, 1], "limit": 5,
                "filter": {"must": [{"key": "kind", "match": {"value": "even"}}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 5);
    vectors.delete_collection(tenant, "docs").await.unwrap();
    assert!(vectors.list_collections(tenant).await.unwrap().is_empty());
}
