//! The harness of the events tests: a migrated database with two tenants, and a sink that
//! records what it is handed.

#![allow(dead_code, reason = "each test file uses part of the harness")]
#![expect(clippy::unwrap_used, reason = "test helpers fail loudly")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sovereign_db::{AsyncPgConnection, Db, PoolSettings, RunQueryDsl, ScopedFutureExt};
use sovereign_events::{
    Actor, Dispatcher, Event, EventType, EventsError, EventsSettings, NewEvent, Sink, emit,
};
use sovereign_tenancy::TenantAdmin;
use sovereign_test_db::TestDatabase;
use uuid::Uuid;

pub struct Harness {
    pub db: Db,
    pub a: Uuid,
    pub b: Uuid,
    pub test_db: TestDatabase,
}

pub fn pool_settings() -> PoolSettings {
    PoolSettings {
        max_size: 6,
        wait_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        recycle_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(30),
    }
}

impl Harness {
    pub async fn new() -> Self {
        let test_db = TestDatabase::migrated().await;
        let admin = TenantAdmin::new(Db::new(test_db.tenant_admin_url(), pool_settings()).unwrap());
        let a = admin.create("tenant-a", "Tenant A").await.unwrap().id;
        let b = admin.create("tenant-b", "Tenant B").await.unwrap().id;
        let db = Db::new(test_db.url(), pool_settings()).unwrap();
        Self { db, a, b, test_db }
    }

    pub fn dispatcher(&self, sinks: Vec<Arc<dyn Sink>>) -> Dispatcher {
        let settings = EventsSettings {
            poll_interval: Duration::from_secs(30),
            ..EventsSettings::default()
        };
        Dispatcher::new(
            self.db.clone(),
            self.test_db.url().clone(),
            pool_settings(),
            settings,
            sinks,
        )
    }

    /// Events of `tenant` not dispatched yet.
    pub async fn pending(&self, tenant: Uuid) -> i64 {
        use diesel::{ExpressionMethods, QueryDsl};
        use sovereign_db::schema::events;
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    events::table
                        .filter(events::dispatched_at.is_null())
                        .count()
                        .get_result::<i64>(conn)
                        .await
                        .map_err(EventsError::from)
                }
                .scope_boxed()
            })
            .await
            .unwrap()
    }

    /// The targets of `tenant`'s audit entries, oldest first, as the runtime role sees them.
    pub async fn audit_targets(&self, tenant: Uuid) -> Vec<String> {
        let page = sovereign_events::audit::read(
            &self.db,
            tenant,
            sovereign_events::audit::AuditQuery {
                limit: 1000,
                oldest_first: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        page.items.into_iter().filter_map(|e| e.target).collect()
    }
}

/// Commits one audited event about `subject` in `tenant`.
pub async fn emit_one(h: &Harness, tenant: Uuid, subject: &str) {
    let subject = subject.to_owned();
    h.db.tenant_transaction(tenant, |conn| {
        async move {
            emit(
                conn,
                tenant,
                NewEvent::new(EventType::AccountSignedIn, Actor::System).subject(subject),
            )
            .await?;
            Ok::<_, EventsError>(())
        }
        .scope_boxed()
    })
    .await
    .unwrap();
}

/// A sink that records the subjects it is handed; optionally refusing its first batches.
#[derive(Clone, Default)]
pub struct Recorder {
    seen: Arc<Mutex<Vec<String>>>,
    refuse: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

impl Recorder {
    pub fn failing(batches: usize) -> Self {
        let r = Self::default();
        r.refuse.store(batches, Ordering::SeqCst);
        r
    }

    pub fn subjects(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits (at most 10 s) until at least `n` events were handed on.
    pub async fn wait_for(&self, n: usize) {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let notified = self.changed.notified();
                if self.seen.lock().unwrap().len() >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("only {:?} of {n} events arrived", self.subjects()));
    }
}

impl Sink for Recorder {
    fn deliver<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        _tenant: Uuid,
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<(), EventsError>> {
        Box::pin(async move {
            if self
                .refuse
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(EventsError::Sink("refused".into()));
            }
            self.seen
                .lock()
                .unwrap()
                .extend(events.iter().filter_map(|e| e.subject.clone()));
            self.changed.notify_waiters();
            Ok(())
        })
    }
}
