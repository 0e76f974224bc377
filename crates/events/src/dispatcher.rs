//! The dispatcher: one per deployment at a time, handing each tenant's events on in order.
//!
//! Every instance runs [`Dispatcher::run`]; they compete for a session-level advisory lock on a
//! connection of their own (outside the pool, with TCP keepalives). The holder listens for the
//! `sovereign_events` notification the outbox sends at every commit (its payload names the
//! tenant) and also looks at every tenant once per poll interval, as a backstop for
//! notifications sent while no one listened. When the holder dies its connection closes, the lock
//! is released, and the next instance to try (every second) takes over and starts with a full
//! pass, so nothing committed is missed.
//!
//! A tenant's events are dispatched in batches, each in one transaction scoped to the tenant:
//! read the oldest undispatched events `FOR UPDATE`, hand them to every sink, mark them
//! dispatched, commit. The row locks make two dispatchers (an old holder that has not noticed its
//! loss yet, and the new one) wait for each other instead of handing an event on twice; a crash
//! between handing on and committing hands the batch on again (at least once).

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::prelude::*;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use sovereign_core::settings::SecretUrl;
use sovereign_db::schema::{events, tenants};
use sovereign_db::{AsyncPgConnection, Db, DbError, PoolSettings, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::EventsError;
use crate::outbox::{Event, EventRow};
use crate::settings::EventsSettings;

/// The advisory lock key of the dispatcher term (an arbitrary constant, "sovereign" in hex-ish).
const LOCK_KEY: i64 = 0x5065_7665_6e74_7331;
/// Events per batch (one transaction).
pub const BATCH: i64 = 500;
/// How often a waiting instance tries to take over.
const TAKEOVER_EVERY: Duration = Duration::from_secs(1);
/// How often dispatched events past their retention are deleted and audit partitions made.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);
/// Keepalive probes of the lock connection.
const KEEPALIVE: Duration = Duration::from_secs(2);

/// Where dispatched events go. A sink runs inside the batch's transaction (scoped to `tenant`),
/// before the events are marked dispatched: whatever it writes on `conn` commits with the mark
/// (webhook deliveries), whatever it sends elsewhere may be sent again after a crash.
pub trait Sink: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        tenant: Uuid,
        events: &'a [Event],
    ) -> BoxFuture<'a, Result<(), EventsError>>;
}

/// What an instance's dispatcher is doing, for `/ready` and metrics.
#[derive(Debug, Default)]
pub struct DispatcherState {
    leader: AtomicBool,
}

impl DispatcherState {
    /// Whether this instance holds the dispatcher term now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        AtomicBool::load(&self.leader, Ordering::Relaxed)
    }

    fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
        metrics::gauge!("sovereign_events_dispatcher_leader").set(if leader { 1.0 } else { 0.0 });
    }
}

/// Hands events on. Cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    db: Db,
    url: SecretUrl,
    pool: PoolSettings,
    settings: EventsSettings,
    sinks: Arc<Vec<Arc<dyn Sink>>>,
    state: Arc<DispatcherState>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("settings", &self.settings)
            .field("sinks", &self.sinks.len())
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `db` (the runtime pool) that takes its term on a connection of its own
    /// to `url` (the runtime role's URL).
    #[must_use]
    pub fn new(
        db: Db,
        url: SecretUrl,
        pool: PoolSettings,
        settings: EventsSettings,
        sinks: Vec<Arc<dyn Sink>>,
    ) -> Self {
        Self {
            db,
            url,
            pool,
            settings,
            sinks: Arc::new(sinks),
            state: Arc::new(DispatcherState::default()),
        }
    }

    #[must_use]
    pub fn state(&self) -> Arc<DispatcherState> {
        Arc::clone(&self.state)
    }

    /// Competes for the term and, while holding it, dispatches until `stop` resolves. Errors
    /// (the database going away) end a term, never the loop.
    pub async fn run(self, stop: impl Future<Output = ()> + Send) {
        let mut stop = std::pin::pin!(stop);
        loop {
            let ended = tokio::select! {
                ended = self.term() => ended,
                () = &mut stop => break,
            };
            self.state.set_leader(false);
            if let Err(e) = ended {
                tracing::warn!(error = %e, "event dispatcher lost its term; trying again");
            }
            tokio::select! {
                () = tokio::time::sleep(TAKEOVER_EVERY) => {}
                () = &mut stop => break,
            }
        }
        self.state.set_leader(false);
    }

    /// One term: wait for the lock, then dispatch until the lock connection fails.
    async fn term(&self) -> Result<(), EventsError> {
        let mut conn = sovereign_db::connect_dedicated(&self.url, &self.pool, KEEPALIVE).await?;
        diesel::sql_query("LISTEN sovereign_events")
            .execute(&mut conn)
            .await
            .map_err(DbError::from)?;
        loop {
            if try_lock(&mut conn).await? {
                break;
            }
            // Notifications wait in the connection's buffer; they are not needed before the
            // term starts (its first pass looks at every tenant), so let them go.
            drain(&mut conn);
            tokio::time::sleep(TAKEOVER_EVERY).await;
        }
        drain(&mut conn);
        self.state.set_leader(true);
        tracing::info!("this instance dispatches events");
        let mut dirty: BTreeSet<Uuid> = self.tenants().await?;
        let mut next_poll = Instant::now() + self.settings.poll_interval;
        let mut next_housekeeping = Instant::now();
        loop {
            while let Some(tenant) = dirty.pop_first() {
                if let Err(e) = self.drain_tenant(tenant).await {
                    // The next poll tries again; other tenants go on.
                    tracing::warn!(%tenant, error = %e, "dispatching a tenant's events failed");
                    metrics::counter!("sovereign_events_dispatch_errors_total").increment(1);
                }
            }
            if Instant::now() >= next_housekeeping {
                next_housekeeping = Instant::now() + HOUSEKEEPING_EVERY;
                if let Err(e) = self.housekeeping().await {
                    tracing::warn!(error = %e, "event housekeeping failed");
                }
            }
            let woke = {
                let mut notifications = std::pin::pin!(conn.notifications_stream());
                tokio::select! {
                    n = notifications.next() => Some(n),
                    () = tokio::time::sleep_until(next_poll.into()) => None,
                }
            };
            match woke {
                Some(Some(Ok(notification))) => {
                    if let Ok(tenant) = Uuid::try_parse(&notification.payload) {
                        dirty.insert(tenant);
                    }
                    dirty.extend(drain(&mut conn));
                }
                Some(Some(Err(e))) => return Err(DbError::from(e).into()),
                Some(None) => {
                    return Err(
                        DbError::Unavailable("the listening connection closed".into()).into(),
                    );
                }
                None => {
                    // The backstop, which also proves the lock connection still lives.
                    diesel::sql_query("SELECT 1")
                        .execute(&mut conn)
                        .await
                        .map_err(DbError::from)?;
                    dirty = self.tenants().await?;
                    next_poll = Instant::now() + self.settings.poll_interval;
                }
            }
        }
    }

    async fn tenants(&self) -> Result<BTreeSet<Uuid>, EventsError> {
        let mut conn = self.db.conn().await?;
        let ids: Vec<Uuid> = tenants::table
            .select(tenants::id)
            .load(&mut conn)
            .await
            .map_err(DbError::from)?;
        Ok(ids.into_iter().collect())
    }

    /// Dispatches every pending event of `tenant`, batch after batch. Returns how many.
    pub async fn drain_tenant(&self, tenant: Uuid) -> Result<usize, EventsError> {
        let mut total = 0;
        loop {
            let n = self.dispatch_batch(tenant).await?;
            total += n;
            if n < BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// One batch of `tenant`'s oldest pending events, in one transaction.
    async fn dispatch_batch(&self, tenant: Uuid) -> Result<usize, EventsError> {
        let sinks = Arc::clone(&self.sinks);
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let rows: Vec<EventRow> = events::table
                        .filter(events::dispatched_at.is_null())
                        .order(events::id.asc())
                        .limit(BATCH)
                        .select(EventRow::as_select())
                        .for_update()
                        .load(conn)
                        .await
                        .map_err(DbError::from)?;
                    if rows.is_empty() {
                        return Ok(0);
                    }
                    let batch: Vec<Event> = rows.into_iter().map(Event::from).collect();
                    for sink in sinks.iter() {
                        sink.deliver(conn, tenant, &batch).await?;
                    }
                    let ids: Vec<i64> = batch.iter().map(|e| e.sequence).collect();
                    diesel::update(events::table.filter(events::id.eq_any(&ids)))
                        .set(events::dispatched_at.eq(diesel::dsl::now))
                        .execute(conn)
                        .await
                        .map_err(DbError::from)?;
                    let now = Utc::now();
                    for event in &batch {
                        let waited = (now - event.created_at).to_std().unwrap_or_default();
                        metrics::histogram!("sovereign_events_dispatch_delay_seconds")
                            .record(waited.as_secs_f64());
                    }
                    metrics::counter!("sovereign_events_dispatched_total")
                        .increment(batch.len() as u64);
                    Ok(batch.len())
                }
                .scope_boxed()
            })
            .await
    }

    /// Deletes dispatched events past their retention and keeps the audit log's partitions
    /// ahead of the calendar.
    async fn housekeeping(&self) -> Result<(), EventsError> {
        crate::audit::ensure_partitions(&self.db).await?;
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.settings.retention).unwrap_or(chrono::Duration::MAX);
        for tenant in self.tenants().await? {
            self.db
                .tenant_transaction(tenant, |conn| {
                    async move {
                        diesel::delete(events::table.filter(events::dispatched_at.lt(cutoff)))
                            .execute(conn)
                            .await
                            .map_err(DbError::from)
                    }
                    .scope_boxed()
                })
                .await?;
        }
        Ok(())
    }
}

async fn try_lock(conn: &mut AsyncPgConnection) -> Result<bool, EventsError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let row: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<diesel::sql_types::BigInt, _>(LOCK_KEY)
        .get_result(conn)
        .await
        .map_err(DbError::from)?;
    Ok(row.locked)
}

/// The tenants named by the notifications already received, without waiting.
fn drain(conn: &mut AsyncPgConnection) -> BTreeSet<Uuid> {
    use futures_util::FutureExt;
    let mut tenants = BTreeSet::new();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(Some(Ok(n))) = notifications.next().now_or_never() {
        if let Ok(tenant) = Uuid::try_parse(&n.payload) {
            tenants.insert(tenant);
        }
    }
    tenants
}
