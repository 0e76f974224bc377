//! The audit log: append-only for the runtime role (proven in SQL), tenant-scoped, filtered and
//! paged, pruned by whole months by the owner only.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use chrono::{Duration, Utc};
use common::{Harness, emit_one};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use sovereign_db::ScopedFutureExt;
use sovereign_events::audit::{self, AuditQuery};
use sovereign_events::{Actor, EventType, EventsError, NewEvent, emit};

async fn runtime_conn(h: &Harness) -> AsyncPgConnection {
    AsyncPgConnection::establish(h.test_db.url().expose())
        .await
        .unwrap()
}

/// Runs `sql` as the runtime role inside a transaction scoped to `tenant`, and returns the error.
async fn refused(h: &Harness, tenant: uuid::Uuid, sql: &str) -> String {
    let mut conn = runtime_conn(h).await;
    diesel::sql_query("BEGIN").execute(&mut conn).await.unwrap();
    diesel::sql_query(format!(
        "SELECT set_config('app.tenant_id', '{tenant}', true)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let error = diesel::sql_query(sql)
        .execute(&mut conn)
        .await
        .expect_err(sql)
        .to_string();
    diesel::sql_query("ROLLBACK")
        .execute(&mut conn)
        .await
        .unwrap();
    error
}

#[tokio::test]
async fn the_runtime_role_can_add_entries_but_never_change_or_remove_one() {
    let h = Harness::new().await;
    emit_one(&h, h.a, "target").await;
    let month = Utc::now().format("audit_log_%Y_%m").to_string();
    for table in ["audit_log", month.as_str(), "audit_log_default"] {
        for sql in [
            format!("UPDATE {table} SET action = 'forged'"),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let error = refused(&h, h.a, &sql).await;
            assert!(error.contains("permission denied"), "{sql}: {error}");
        }
    }
    // Nor may it drop old months, or be the one to prune.
    let error = refused(&h, h.a, "SELECT sovereign_audit_prune(now())").await;
    assert!(error.contains("permission denied"), "{error}");
    let error = refused(&h, h.a, &format!("DROP TABLE {month}")).await;
    assert!(error.contains("must be owner"), "{error}");
    assert_eq!(h.audit_targets(h.a).await, ["target"]);
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_entries_even_through_a_partition() {
    let h = Harness::new().await;
    emit_one(&h, h.a, "of-a").await;
    emit_one(&h, h.b, "of-b").await;
    assert_eq!(h.audit_targets(h.a).await, ["of-a"]);
    assert_eq!(h.audit_targets(h.b).await, ["of-b"]);
    let month = Utc::now().format("audit_log_%Y_%m").to_string();
    let seen: Vec<String> =
        h.db.tenant_transaction(h.a, |conn| {
            async move {
                #[derive(diesel::QueryableByName)]
                struct T {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    target: String,
                }
                let rows: Vec<T> = diesel::sql_query(format!("SELECT target FROM {month}"))
                    .load(conn)
                    .await?;
                Ok::<_, EventsError>(rows.into_iter().map(|t| t.target).collect())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(seen, ["of-a"]);
    // Writing an entry for another tenant is refused by the policy.
    let error = refused(
        &h,
        h.a,
        &format!(
            "INSERT INTO audit_log (tenant_id, id, created_at, actor_kind, action, outcome) \
             VALUES ('{}', gen_random_uuid(), now(), 'system', 'forged.entry', 'success')",
            h.b
        ),
    )
    .await;
    assert!(error.contains("row-level security"), "{error}");
}

#[tokio::test]
async fn entries_are_filtered_by_actor_action_target_and_time_and_paged_by_cursor() {
    let h = Harness::new().await;
    let ada = uuid::Uuid::now_v7();
    let bob = uuid::Uuid::now_v7();
    let key = uuid::Uuid::now_v7();
    let before = Utc::now();
    for (kind, actor, target) in [
        (
            EventType::AccountSignedIn,
            Actor::User { id: ada },
            "user:ada",
        ),
        (EventType::RoleChanged, Actor::User { id: bob }, "user:ada"),
        (
            EventType::ApiKeyCreated,
            Actor::ApiKey {
                id: ada,
                key_id: key,
            },
            "api_key:1",
        ),
        (EventType::AccountSignInFailed, Actor::System, "user:bob"),
    ] {
        let tenant = h.a;
        h.db.tenant_transaction(tenant, |conn| {
            async move {
                let event = NewEvent::new(kind, actor).subject(target);
                let event = if kind == EventType::AccountSignInFailed {
                    event.failed()
                } else {
                    event
                };
                emit(conn, tenant, event).await?;
                Ok::<_, EventsError>(())
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    }
    let read = |q: AuditQuery| audit::read(&h.db, h.a, AuditQuery { limit: 100, ..q });
    let actions =
        |page: audit::AuditPage| page.items.into_iter().map(|e| e.action).collect::<Vec<_>>();
    // Newest first; the actor's API key use counts as the actor's.
    assert_eq!(
        actions(
            read(AuditQuery {
                actor: Some(ada),
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        ["api_key.created", "account.signed_in"]
    );
    assert_eq!(
        actions(
            read(AuditQuery {
                action: Some("account.".into()),
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        [
            "account.sign_in_failed",
            "account.role_changed",
            "account.signed_in"
        ]
    );
    assert_eq!(
        actions(
            read(AuditQuery {
                target: Some("user:ada".into()),
                ..Default::default()
            })
            .await
            .unwrap()
        ),
        ["account.role_changed", "account.signed_in"]
    );
    assert_eq!(
        read(AuditQuery {
            until: Some(before),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .len(),
        0
    );
    assert_eq!(
        read(AuditQuery {
            since: Some(before),
            ..Default::default()
        })
        .await
        .unwrap()
        .items
        .len(),
        4
    );
    let failed = read(AuditQuery {
        target: Some("user:bob".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(failed.items[0].outcome, sovereign_events::Outcome::Failure);
    assert_eq!(failed.items[0].actor, Actor::System);
    // Two at a time: every entry once, in order, then no cursor.
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = audit::read(
            &h.db,
            h.a,
            AuditQuery {
                limit: 2,
                cursor,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        seen.extend(page.items.iter().map(|e| e.action.clone()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            "account.sign_in_failed",
            "api_key.created",
            "account.role_changed",
            "account.signed_in"
        ]
    );
    for (query, field) in [
        (
            AuditQuery {
                limit: 0,
                ..Default::default()
            },
            "limit",
        ),
        (
            AuditQuery {
                limit: 5,
                cursor: Some("nope".into()),
                ..Default::default()
            },
            "cursor",
        ),
    ] {
        match audit::read(&h.db, h.a, query).await {
            Err(EventsError::Invalid(fields)) => assert_eq!(fields[0].field, field),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn the_owner_prunes_whole_months_and_partitions_are_kept_ahead() {
    let h = Harness::new().await;
    let owner = sovereign_db::Db::new(h.test_db.owner_url(), common::pool_settings()).unwrap();
    // Idempotent, and the runtime role may keep them ahead.
    audit::ensure_partitions(&h.db).await.unwrap();
    emit_one(&h, h.a, "this-month").await;
    // Nothing ends before the start of this month.
    let this_month = chrono::Datelike::with_day(&Utc::now().date_naive(), 1).unwrap();
    let start = this_month.and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert_eq!(
        audit::prune(&owner, start).await.unwrap(),
        Vec::<String>::new()
    );
    // Pruning up to next month drops this month's partition and its entries.
    let dropped = audit::prune(&owner, start + Duration::days(40))
        .await
        .unwrap();
    assert_eq!(dropped, [Utc::now().format("audit_log_%Y_%m").to_string()]);
    assert_eq!(h.audit_targets(h.a).await, Vec::<String>::new());
    // The runtime role cannot.
    assert!(
        audit::prune(&h.db, start + Duration::days(400))
            .await
            .is_err()
    );
}
