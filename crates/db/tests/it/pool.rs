//! The pool: transactions, bounded waits, health, and the runtime role's privileges.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::BigInt;
use sovereign_core::settings::SecretUrl;
use sovereign_db::{Db, DbError, PoolSettings, RunQueryDsl, ScopedFutureExt};
use sovereign_test_db::TestDatabase;

fn config() -> PoolSettings {
    PoolSettings {
        max_size: 4,
        wait_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(2),
        recycle_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(5),
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// A migrated database with a `probe` table the runtime role may write.
async fn database_with_probe() -> TestDatabase {
    let db = TestDatabase::migrated().await;
    let mut owner = db.owner_conn().await;
    diesel::sql_query("CREATE TABLE probe (id int PRIMARY KEY)")
        .execute(&mut owner)
        .await
        .unwrap();
    db
}

async fn count(db: &Db) -> i64 {
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query("SELECT count(*) AS n FROM probe")
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test]
async fn transactions_commit_on_ok_and_roll_back_on_err() {
    let test = database_with_probe().await;
    let db = Db::new(test.url(), config()).unwrap();

    db.transaction(|c| {
        async move {
            diesel::sql_query("INSERT INTO probe VALUES (1)")
                .execute(c)
                .await?;
            Ok::<_, DbError>(())
        }
        .scope_boxed()
    })
    .await
    .unwrap();

    let failed: Result<(), DbError> = db
        .transaction(|c| {
            async move {
                diesel::sql_query("INSERT INTO probe VALUES (2)")
                    .execute(c)
                    .await?;
                // A duplicate key: the whole transaction must roll back.
                diesel::sql_query("INSERT INTO probe VALUES (1)")
                    .execute(c)
                    .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    let err = failed.unwrap_err();
    assert!(err.is_unique_violation(), "{err:?}");
    assert_eq!(err.constraint_name(), Some("probe_pkey"));
    assert_eq!(count(&db).await, 1);
}

#[tokio::test]
async fn a_transaction_over_its_time_limit_is_cut_off_and_the_pool_recovers() {
    let test = database_with_probe().await;
    let db = Db::new(
        test.url(),
        PoolSettings {
            max_size: 1,
            statement_timeout: Duration::from_millis(300),
            ..config()
        },
    )
    .unwrap();
    let started = Instant::now();
    let result: Result<(), DbError> = db
        .transaction(|c| {
            async move {
                diesel::sql_query("INSERT INTO probe VALUES (7)")
                    .execute(c)
                    .await?;
                diesel::sql_query("SELECT pg_sleep(3)").execute(c).await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await;
    assert!(matches!(result, Err(DbError::Timeout)), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The only connection was discarded rather than reused mid-transaction; the insert is gone.
    assert_eq!(count(&db).await, 0);
}

#[tokio::test]
async fn a_slow_statement_outside_a_transaction_is_a_timeout() {
    let test = TestDatabase::migrated().await;
    let db = Db::new(
        test.url(),
        PoolSettings {
            statement_timeout: Duration::from_millis(200),
            ..config()
        },
    )
    .unwrap();
    let mut conn = db.conn().await.unwrap();
    let err = diesel::sql_query("SELECT pg_sleep(3)")
        .execute(&mut conn)
        .await
        .map_err(DbError::from)
        .unwrap_err();
    assert!(matches!(err, DbError::Timeout), "{err:?}");
}

#[tokio::test]
async fn waiting_for_a_connection_is_bounded() {
    let test = TestDatabase::migrated().await;
    let db = Db::new(
        test.url(),
        PoolSettings {
            max_size: 1,
            ..config()
        },
    )
    .unwrap();
    let held = db.conn().await.unwrap();
    let started = Instant::now();
    let Err(err) = db.conn().await else {
        panic!("a second connection from a pool of one")
    };
    let waited = started.elapsed();
    assert!(matches!(err, DbError::Unavailable(_)), "{err:?}");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(1), "{waited:?}");
    drop(held);
    assert!(db.conn().await.is_ok());
}

#[tokio::test]
async fn an_unreachable_database_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = SecretUrl::new(format!("postgres://x@127.0.0.1:{port}/x").parse().unwrap());
    let db = Db::new(&url, config()).unwrap();
    let started = Instant::now();
    assert!(matches!(db.conn().await, Err(DbError::Unavailable(_))));
    assert!(db.health(Duration::from_secs(1)).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn health_measures_a_round_trip() {
    let test = TestDatabase::migrated().await;
    let db = Db::new(test.url(), config()).unwrap();
    let latency = db.health(Duration::from_secs(2)).await.unwrap();
    assert!(latency > Duration::ZERO && latency < Duration::from_secs(2));
}

#[tokio::test]
async fn the_runtime_role_cannot_bypass_row_level_security_but_the_owner_can() {
    let test = database_with_probe().await;
    let runtime = Db::new(test.url(), config())
        .unwrap()
        .runtime_role()
        .await
        .unwrap();
    assert_eq!(runtime.role, sovereign_test_db::TEST_RUNTIME_ROLE);
    assert!(!runtime.superuser && !runtime.bypass_rls);
    assert_eq!(runtime.owned_objects, 0);
    assert!(!runtime.is_privileged());

    let owner = Db::new(test.owner_url(), config())
        .unwrap()
        .runtime_role()
        .await
        .unwrap();
    assert!(owner.is_privileged(), "{owner:?}");
}

#[tokio::test]
async fn the_runtime_role_may_use_tables_but_not_create_them() {
    let test = database_with_probe().await;
    let db = Db::new(test.url(), config()).unwrap();
    let mut conn = db.conn().await.unwrap();
    diesel::sql_query("INSERT INTO probe VALUES (1)")
        .execute(&mut conn)
        .await
        .expect("DML is granted through sovereign_app");
    let denied = diesel::sql_query("CREATE TABLE sneaky (id int)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    let denied = diesel::sql_query("DROP TABLE probe")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("must be owner"), "{denied}");
}
