//! The outbox and its dispatcher against a real PostgreSQL: what is rolled back is never
//! announced, what commits is dispatched once per term in order, a dispatcher that dies is
//! replaced and nothing is lost.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Harness, Recorder, emit_one};
use sovereign_db::{DbError, ScopedFutureExt};
use sovereign_events::{Actor, EventType, EventsError, NewEvent, emit};

#[tokio::test]
async fn a_rollback_announces_nothing_and_a_commit_exactly_once_in_order() {
    let h = Harness::new().await;
    // A transaction that writes an event and then fails.
    let failed: Result<(), EventsError> =
        h.db.tenant_transaction(h.a, |conn| {
            async move {
                emit(
                    conn,
                    h.a,
                    NewEvent::new(EventType::AccountDeleted, Actor::System).subject("rolled-back"),
                )
                .await?;
                Err(EventsError::Db(DbError::Timeout))
            }
            .scope_boxed()
        })
        .await;
    assert!(failed.is_err());
    for i in 0..5 {
        emit_one(&h, h.a, &format!("kept-{i}")).await;
    }
    let recorder = Recorder::default();
    let dispatcher = h.dispatcher(vec![Arc::new(recorder.clone())]);
    assert_eq!(dispatcher.drain_tenant(h.a).await.unwrap(), 5);
    assert_eq!(
        recorder.subjects(),
        ["kept-0", "kept-1", "kept-2", "kept-3", "kept-4"]
    );
    // Marked dispatched: a second pass finds nothing.
    assert_eq!(dispatcher.drain_tenant(h.a).await.unwrap(), 0);
    assert_eq!(recorder.subjects().len(), 5);
    // The audit log has the committed ones only.
    assert_eq!(h.audit_targets(h.a).await.len(), 5);
    assert!(
        !h.audit_targets(h.a)
            .await
            .contains(&"rolled-back".to_owned())
    );
}

#[tokio::test]
async fn events_committed_while_no_dispatcher_ran_arrive_exactly_once_when_one_starts() {
    let h = Harness::new().await;
    for i in 0..3 {
        emit_one(&h, h.a, &format!("a-{i}")).await;
        emit_one(&h, h.b, &format!("b-{i}")).await;
    }
    let recorder = Recorder::default();
    let dispatcher = h.dispatcher(vec![Arc::new(recorder.clone())]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(dispatcher.clone().run(async {
        let _ = stopped.await;
    }));
    recorder.wait_for(6).await;
    // Then woken by the notification of each new commit.
    emit_one(&h, h.b, "b-3").await;
    recorder.wait_for(7).await;
    let all = recorder.subjects();
    assert_eq!(all.len(), 7, "{all:?}");
    let of = |p: &str| {
        all.iter()
            .filter(|s| s.starts_with(p))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(of("a-"), ["a-0", "a-1", "a-2"]);
    assert_eq!(of("b-"), ["b-0", "b-1", "b-2", "b-3"]);
    assert!(dispatcher.state().is_leader());
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_sink_that_fails_leaves_the_batch_pending_and_it_is_handed_on_again() {
    let h = Harness::new().await;
    emit_one(&h, h.a, "first").await;
    let recorder = Recorder::failing(1);
    let dispatcher = h.dispatcher(vec![Arc::new(recorder.clone())]);
    assert!(dispatcher.drain_tenant(h.a).await.is_err());
    assert_eq!(recorder.subjects(), Vec::<String>::new());
    assert_eq!(dispatcher.drain_tenant(h.a).await.unwrap(), 1);
    assert_eq!(recorder.subjects(), ["first"]);
}

#[tokio::test]
async fn two_dispatchers_racing_over_one_tenant_never_hand_an_event_on_twice() {
    let h = Harness::new().await;
    for i in 0..1200 {
        emit_one(&h, h.a, &format!("e-{i:04}")).await;
    }
    // Both bypass the lock (as an old holder that has not noticed its loss would): the row locks
    // of each batch keep them apart.
    let recorder = Recorder::default();
    let one = h.dispatcher(vec![Arc::new(recorder.clone())]);
    let two = h.dispatcher(vec![Arc::new(recorder.clone())]);
    let (x, y) = tokio::join!(one.drain_tenant(h.a), two.drain_tenant(h.a));
    assert_eq!(x.unwrap() + y.unwrap(), 1200);
    let mut all = recorder.subjects();
    assert_eq!(all.len(), 1200);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 1200);
}

#[tokio::test]
async fn when_the_dispatcher_dies_another_instance_takes_over_within_seconds() {
    let h = Harness::new().await;
    let first = Recorder::default();
    let second = Recorder::default();
    let one = h.dispatcher(vec![Arc::new(first.clone())]);
    let two = h.dispatcher(vec![Arc::new(second.clone())]);
    let task_one = tokio::spawn(one.clone().run(std::future::pending()));
    wait_until(|| one.state().is_leader()).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task_two = tokio::spawn(two.clone().run(async {
        let _ = stopped.await;
    }));
    emit_one(&h, h.a, "while-one-leads").await;
    first.wait_for(1).await;
    // Recorded inside the batch's transaction; wait for its commit (killed before it, the batch
    // would be handed on again by the next dispatcher: at least once).
    while h.pending(h.a).await > 0 {
        tokio::task::yield_now().await;
    }
    assert!(!two.state().is_leader());
    // Killed: its task (and with it the lock connection) is gone without a goodbye.
    task_one.abort();
    let _ = task_one.await;
    let started = std::time::Instant::now();
    emit_one(&h, h.a, "after-the-death").await;
    second.wait_for(1).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(second.subjects(), ["after-the-death"]);
    assert_eq!(first.subjects(), ["while-one-leads"]);
    stop.send(()).unwrap();
    task_two.await.unwrap();
}

async fn wait_until(done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}
