//! One contract, two backends: every test here runs against the in-process backend and against
//! the machine's Redis (`TEST_REDIS_URL`, default `redis://127.0.0.1:6379`), each Redis test in
//! a namespace of its own.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use serde::{Deserialize, Serialize};
use sovereign_cache::{BackendKind, Cache, CacheSettings, Quota, RateKey, RateLimiter, Replay};
use sovereign_core::settings::SecretUrl;

fn memory_cache(test: &str) -> Cache {
    Cache::new(&CacheSettings {
        prefix: sovereign_test_redis::unique_prefix(test),
        ..CacheSettings::default()
    })
    .unwrap()
}

fn redis_cache(test: &str) -> Cache {
    let cache = Cache::new(&CacheSettings {
        url: Some(SecretUrl::parse(&sovereign_test_redis::shared_url()).unwrap()),
        prefix: sovereign_test_redis::unique_prefix(test),
        // Generous: these tests are about behaviour, not speed, on a shared 2-core machine.
        timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    })
    .unwrap();
    assert_eq!(cache.backend(), BackendKind::Redis);
    cache
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory_cache(stringify!($name))).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let cache = super::redis_cache(stringify!($name));
                    super::$name(cache.clone()).await;
                    // Leave nothing behind on the shared server.
                    cache.clear("*").await.unwrap();
                }
            )*
        }
    };
}

contract!(
    typed_values_round_trip,
    values_expire_after_their_ttl,
    get_or_compute_runs_once_under_concurrency,
    get_or_compute_passes_errors_through_and_caches_nothing,
    clear_removes_more_than_ten_thousand_matching_keys_and_nothing_else,
    counters_are_atomic_under_concurrency,
    counter_ttl_is_set_at_creation,
    incrementing_text_is_an_error,
    locks_are_exclusive_under_contention,
    only_the_owner_releases_or_extends_a_lock,
    an_expired_lease_cannot_release_the_next_owners_lock,
    dropping_a_lock_releases_it,
    published_messages_reach_subscribers_in_order,
    channels_and_keys_are_separated_by_tenant,
    a_slow_subscriber_loses_messages_instead_of_blocking,
    rate_limiter_admits_a_burst_then_refuses_with_a_retry_time,
    health_reports_the_backend,
    take_hands_a_value_to_exactly_one_caller,
    logs_number_entries_publish_them_in_order_and_replay_what_was_missed,
    a_log_that_expired_starts_a_new_epoch,
    expiring_sets_hold_members_until_removed_or_expired,
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    name: String,
    tags: Vec<String>,
    score: f64,
}

async fn typed_values_round_trip(cache: Cache) {
    let profile = Profile {
        name: "Ada".into(),
        tags: vec!["admin".into()],
        score: 0.5,
    };
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), None);
    assert!(!cache.exists("p").await.unwrap());
    cache.set("p", &profile, None).await.unwrap();
    assert_eq!(
        cache.get::<Profile>("p").await.unwrap(),
        Some(profile.clone())
    );
    assert!(cache.exists("p").await.unwrap());

    // set-if-absent leaves an existing value alone.
    let other = Profile {
        name: "Grace".into(),
        ..profile.clone()
    };
    assert!(!cache.set_if_absent("p", &other, None).await.unwrap());
    assert_eq!(cache.get::<Profile>("p").await.unwrap(), Some(profile));
    assert!(cache.set_if_absent("q", &other, None).await.unwrap());
    assert_eq!(
        cache.get::<Profile>("q").await.unwrap(),
        Some(other.clone())
    );

    // set overwrites; delete reports whether something was there.
    cache.set("q", &"text", None).await.unwrap();
    assert_eq!(
        cache.get::<String>("q").await.unwrap().as_deref(),
        Some("text")
    );
    assert!(
        cache.get::<Profile>("q").await.is_err(),
        "wrong type decodes"
    );
    assert!(cache.delete("q").await.unwrap());
    assert!(!cache.delete("q").await.unwrap());
    assert!(!cache.exists("q").await.unwrap());
}

async fn values_expire_after_their_ttl(cache: Cache) {
    let ttl = Duration::from_millis(300);
    cache.set("short", &1, Some(ttl)).await.unwrap();
    assert!(cache.set_if_absent("nx", &1, Some(ttl)).await.unwrap());
    cache.set("long", &1, None).await.unwrap();
    assert_eq!(cache.get::<i32>("short").await.unwrap(), Some(1));
    // The expiry itself is the behaviour under test, so time has to pass.
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    assert_eq!(cache.get::<i32>("short").await.unwrap(), None);
    assert!(!cache.exists("nx").await.unwrap());
    assert!(
        cache.set_if_absent("nx", &2, None).await.unwrap(),
        "an expired key is absent"
    );
    assert_eq!(cache.get::<i32>("long").await.unwrap(), Some(1));
}

async fn get_or_compute_runs_once_under_concurrency(cache: Cache) {
    let computations = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let computations = Arc::clone(&computations);
            tokio::spawn(async move {
                cache
                    .get_or_compute("expensive", Some(Duration::from_secs(30)), || async {
                        computations.fetch_add(1, Ordering::SeqCst);
                        // Stands for slow work, so that callers overlap.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok::<_, std::convert::Infallible>(vec![1, 2, 3])
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), vec![1, 2, 3]);
    }
    assert_eq!(computations.load(Ordering::SeqCst), 1);
    assert_eq!(
        cache.get::<Vec<i32>>("expensive").await.unwrap(),
        Some(vec![1, 2, 3])
    );
}

async fn get_or_compute_passes_errors_through_and_caches_nothing(cache: Cache) {
    let result: Result<i32, &str> = cache
        .get_or_compute("failing", None, || async { Err("upstream down") })
        .await;
    assert_eq!(result, Err("upstream down"));
    assert!(!cache.exists("failing").await.unwrap());
    let value: Result<i32, &str> = cache
        .get_or_compute("failing", None, || async { Ok(7) })
        .await;
    assert_eq!(value, Ok(7));
}

async fn clear_removes_more_than_ten_thousand_matching_keys_and_nothing_else(cache: Cache) {
    const BULK: usize = 10_500;
    stream::iter(0..BULK)
        .map(|i| {
            let cache = cache.clone();
            async move { cache.set(&format!("bulk:{i}"), &i, None).await.unwrap() }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    cache.set("keep:1", &1, None).await.unwrap();
    cache.set("bulkhead", &1, None).await.unwrap();
    let neighbour = cache.tenant("neighbour");
    neighbour.set("bulk:1", &1, None).await.unwrap();

    assert_eq!(cache.clear("bulk:*").await.unwrap(), BULK as u64);
    assert!(!cache.exists("bulk:0").await.unwrap());
    assert!(!cache.exists(&format!("bulk:{}", BULK - 1)).await.unwrap());
    assert!(cache.exists("keep:1").await.unwrap());
    assert!(
        cache.exists("bulkhead").await.unwrap(),
        "`bulk:*` matched `bulkhead`"
    );
    assert!(
        neighbour.exists("bulk:1").await.unwrap(),
        "clear left its namespace"
    );
    assert_eq!(cache.clear("bulk:*").await.unwrap(), 0);
    neighbour.clear("*").await.unwrap();
}

async fn counters_are_atomic_under_concurrency(cache: Cache) {
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { cache.increment("hits", 1, None).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=100).collect::<Vec<i64>>(),
        "every increment saw a distinct value"
    );
    assert_eq!(cache.get::<i64>("hits").await.unwrap(), Some(100));
    assert_eq!(cache.decrement("hits", 30, None).await.unwrap(), 70);
    assert_eq!(cache.decrement("fresh", 2, None).await.unwrap(), -2);
}

async fn counter_ttl_is_set_at_creation(cache: Cache) {
    let window = Duration::from_millis(400);
    assert_eq!(cache.increment("window", 1, Some(window)).await.unwrap(), 1);
    assert_eq!(cache.increment("window", 1, Some(window)).await.unwrap(), 2);
    // The window is fixed: waiting out the first TTL resets the counter.
    tokio::time::sleep(window + Duration::from_millis(200)).await;
    assert_eq!(cache.increment("window", 1, Some(window)).await.unwrap(), 1);
}

async fn incrementing_text_is_an_error(cache: Cache) {
    cache.set("name", &"ada", None).await.unwrap();
    let error = cache.increment("name", 1, None).await.unwrap_err();
    assert!(!error.is_connectivity(), "{error}");
    assert_eq!(
        cache.get::<String>("name").await.unwrap().as_deref(),
        Some("ada")
    );
}

async fn locks_are_exclusive_under_contention(cache: Cache) {
    let inside = Arc::new(AtomicUsize::new(0));
    let most_inside = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let cache = cache.clone();
            let inside = Arc::clone(&inside);
            let most_inside = Arc::clone(&most_inside);
            tokio::spawn(async move {
                cache
                    .with_lock(
                        "critical",
                        Duration::from_secs(10),
                        Duration::from_secs(20),
                        || async {
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            most_inside.fetch_max(now, Ordering::SeqCst);
                            // Holds the lock long enough for the others to contend.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            inside.fetch_sub(1, Ordering::SeqCst);
                        },
                    )
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(most_inside.load(Ordering::SeqCst), 1);
    // Everyone released: the lock is free again.
    assert!(lockable(&cache, "critical").await);
}

/// Whether the lock `name` can be taken now (a lock taken here is released on drop).
async fn lockable(cache: &Cache, name: &str) -> bool {
    cache
        .try_lock(name, Duration::from_secs(1))
        .await
        .unwrap()
        .is_some()
}

async fn only_the_owner_releases_or_extends_a_lock(cache: Cache) {
    let lock = cache
        .try_lock("job", Duration::from_millis(500))
        .await
        .unwrap()
        .expect("free lock");
    assert_eq!(lock.token().len(), 32);
    assert!(!cache.release_lock("job", "not-the-owner").await.unwrap());
    assert!(!lockable(&cache, "job").await);
    let busy = cache
        .lock("job", Duration::from_secs(1), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(busy, sovereign_cache::CacheError::LockBusy(_)),
        "{busy}"
    );

    // Extending past the original lease keeps it held.
    assert!(lock.extend(Duration::from_secs(10)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!lockable(&cache, "job").await);

    assert!(cache.release_lock("job", lock.token()).await.unwrap());
    assert!(
        !lock.release().await.unwrap(),
        "already released by its token"
    );
    assert!(lockable(&cache, "job").await);
}

async fn an_expired_lease_cannot_release_the_next_owners_lock(cache: Cache) {
    let first = cache
        .try_lock("lease", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let second = cache
        .try_lock("lease", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the first lease ran out");
    assert!(!first.extend(Duration::from_secs(10)).await.unwrap());
    assert!(!first.release().await.unwrap());
    assert!(!lockable(&cache, "lease").await);
    assert!(second.release().await.unwrap());
}

async fn dropping_a_lock_releases_it(cache: Cache) {
    {
        let _held = cache
            .try_lock("scoped", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(!lockable(&cache, "scoped").await);
    }
    // The release runs on a spawned task; wait for its effect, not for a fixed time.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if lockable(&cache, "scoped").await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a dropped lock was never released"
        );
        tokio::task::yield_now().await;
    }
}

async fn published_messages_reach_subscribers_in_order(cache: Cache) {
    let mut first = cache.subscribe("events").await.unwrap();
    let mut second = cache.subscribe("events").await.unwrap();
    let mut elsewhere = cache.subscribe("other").await.unwrap();
    for n in 0..3 {
        let receivers = cache
            .publish("events", &serde_json::json!({ "n": n }))
            .await
            .unwrap();
        assert!(receivers >= 2, "published to {receivers} subscribers");
    }
    cache.publish("other", &"marker").await.unwrap();
    for subscription in [&mut first, &mut second] {
        for n in 0..3 {
            let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
                .await
                .expect("a message within 5 s")
                .expect("an open subscription");
            assert_eq!(message.channel(), "events");
            assert_eq!(
                message.decode::<serde_json::Value>().unwrap(),
                serde_json::json!({ "n": n })
            );
        }
    }
    // The other channel received only its own message.
    let message = tokio::time::timeout(Duration::from_secs(5), elsewhere.next_message())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.decode::<String>().unwrap(), "marker");
    assert_eq!(first.dropped(), 0);
}

async fn a_slow_subscriber_loses_messages_instead_of_blocking(cache: Cache) {
    const SENT: u64 = 3000;
    let mut slow = cache.subscribe("firehose").await.unwrap();
    // Publishing never waits for the subscriber, which reads nothing meanwhile.
    for n in 0..SENT {
        cache.publish("firehose", &n).await.unwrap();
    }
    // Every message is either delivered, in order, or counted as dropped.
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.len() as u64 + slow.dropped() < SENT {
        assert!(
            Instant::now() < deadline,
            "got {} of {SENT}",
            received.len()
        );
        if let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(50), slow.next()).await
        {
            received.push(message.decode::<u64>().unwrap());
        }
    }
    assert!(slow.dropped() > 0, "nothing was dropped");
    assert!(received.windows(2).all(|w| w[0] < w[1]), "out of order");
}

async fn channels_and_keys_are_separated_by_tenant(cache: Cache) {
    let a = cache.tenant("a");
    let b = cache.tenant("b");
    a.set("settings", &"a's", None).await.unwrap();
    assert_eq!(b.get::<String>("settings").await.unwrap(), None);
    assert_eq!(cache.get::<String>("settings").await.unwrap(), None);
    assert_eq!(b.clear("*").await.unwrap(), 0);
    assert!(a.exists("settings").await.unwrap());

    let mut b_events = b.subscribe("events").await.unwrap();
    let mut a_events = a.subscribe("events").await.unwrap();
    a.publish("events", &"for a").await.unwrap();
    b.publish("events", &"for b").await.unwrap();
    let got_b = tokio::time::timeout(Duration::from_secs(5), b_events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got_b.decode::<String>().unwrap(), "for b");
    let got_a = tokio::time::timeout(Duration::from_secs(5), a_events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got_a.decode::<String>().unwrap(), "for a");
    a.clear("*").await.unwrap();
}

async fn rate_limiter_admits_a_burst_then_refuses_with_a_retry_time(cache: Cache) {
    let limiter = RateLimiter::new(&cache, 4);
    let quota = Quota::new(5, Duration::from_secs(10)).unwrap();
    let client = RateKey::Ip("203.0.113.7".parse().unwrap());
    for expected_remaining in (0..5).rev() {
        let decision = limiter.check("login", client, quota).await;
        assert!(decision.allowed);
        assert!(!decision.degraded);
        assert_eq!(decision.remaining, expected_remaining);
    }
    let refused = limiter.check("login", client, quota).await;
    assert!(!refused.allowed);
    assert_eq!(refused.remaining, 0);
    let retry = refused.retry_after.expect("a retry time");
    // One request is emitted every 2 s.
    assert!(
        retry > Duration::from_millis(1500) && retry <= Duration::from_secs(2),
        "{retry:?}"
    );

    // Other keys and other policies have their own buckets.
    let other = RateKey::Ip("203.0.113.8".parse().unwrap());
    assert!(limiter.check("login", other, quota).await.allowed);
    assert!(limiter.check("api", client, quota).await.allowed);
    assert!(
        limiter
            .check("login", RateKey::Account("ada"), quota)
            .await
            .allowed
    );
}

async fn health_reports_the_backend(cache: Cache) {
    let health = cache.health().await.unwrap();
    assert_eq!(health.backend, cache.backend());
    assert!(health.latency < Duration::from_secs(2));
}

async fn take_hands_a_value_to_exactly_one_caller(cache: Cache) {
    cache
        .set("ticket", &"secret", Some(Duration::from_secs(30)))
        .await
        .unwrap();
    let takers = (0..8).map(|_| {
        let cache = cache.clone();
        tokio::spawn(async move { cache.take::<String>("ticket").await.unwrap() })
    });
    let mut won = 0;
    for taker in takers {
        if let Some(value) = taker.await.unwrap() {
            assert_eq!(value, "secret");
            won += 1;
        }
    }
    assert_eq!(won, 1, "exactly one concurrent taker gets the value");
    assert!(!cache.exists("ticket").await.unwrap());
}

async fn logs_number_entries_publish_them_in_order_and_replay_what_was_missed(cache: Cache) {
    let ttl = Duration::from_secs(60);
    let start = cache.log_position("chat", ttl).await.unwrap();
    assert_eq!(start.offset, 0, "a new log starts empty");
    let mut bus = cache.subscribe("bus").await.unwrap();
    let mut written = Vec::new();
    for n in 1..=5_u64 {
        let entry = cache
            .log_append("chat", format!("m{n}").as_bytes(), 3, ttl, Some("bus"))
            .await
            .unwrap();
        assert_eq!(entry.offset, n);
        assert_eq!(
            entry.epoch, start.epoch,
            "appends keep the epoch the reader saw"
        );
        written.push(entry);
    }
    for expected in &written {
        let message = tokio::time::timeout(Duration::from_secs(5), bus.next_message())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            sovereign_cache::LogEntry::decode(message.payload()).as_ref(),
            Some(expected)
        );
    }
    // Only the newest 3 are retained: from offset 2 the log covers 3, 4, 5; from 1 it does not.
    match cache
        .log_replay("chat", &start.epoch, 2, ttl)
        .await
        .unwrap()
    {
        Replay::Complete { entries, position } => {
            assert_eq!(entries, written[2..].to_vec());
            assert_eq!(position.offset, 5);
        }
        gap @ Replay::Gap { .. } => panic!("expected a complete replay, got {gap:?}"),
    }
    assert!(matches!(
        cache.log_replay("chat", &start.epoch, 1, ttl).await.unwrap(),
        Replay::Gap { position } if position.offset == 5
    ));
    // Up to date: complete and empty. Another epoch: a gap.
    assert!(matches!(
        cache.log_replay("chat", &start.epoch, 5, ttl).await.unwrap(),
        Replay::Complete { entries, .. } if entries.is_empty()
    ));
    assert!(matches!(
        cache
            .log_replay("chat", "0000000000000000", 4, ttl)
            .await
            .unwrap(),
        Replay::Gap { .. }
    ));
}

async fn a_log_that_expired_starts_a_new_epoch(cache: Cache) {
    let ttl = Duration::from_millis(200);
    let first = cache
        .log_append("short", b"a", 10, ttl, None)
        .await
        .unwrap();
    assert_eq!(first.offset, 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Poll the observable state (not a fixed sleep): the log is gone once its TTL has passed.
    loop {
        let position = cache
            .log_position("short", Duration::from_millis(1))
            .await
            .unwrap();
        if position.epoch != first.epoch {
            assert_eq!(position.offset, 0);
            break;
        }
        assert!(Instant::now() < deadline, "the log never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = cache
        .log_append("short", b"b", 10, ttl, None)
        .await
        .unwrap();
    assert_eq!(next.offset, 1);
    assert_ne!(next.epoch, first.epoch);
    assert!(matches!(
        cache
            .log_replay("short", &first.epoch, 1, ttl)
            .await
            .unwrap(),
        Replay::Gap { .. }
    ));
}

async fn expiring_sets_hold_members_until_removed_or_expired(cache: Cache) {
    let long = Duration::from_secs(60);
    let members = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        cache
            .members_add("room", &members(&["a", "b"]), long)
            .await
            .unwrap(),
        2
    );
    cache
        .members_add("room", &members(&["c"]), Duration::from_millis(100))
        .await
        .unwrap();
    cache
        .members_remove("room", &members(&["b"]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut live = cache.members("room").await.unwrap();
        live.sort();
        if live == members(&["a"]) {
            break;
        }
        assert_eq!(live, members(&["a", "c"]), "only c may still be expiring");
        assert!(Instant::now() < deadline, "c never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cache.members("elsewhere").await.unwrap().is_empty());
}
