//! Faults on a private `redis-server`: frozen (`kill -STOP`), killed, and restarted. Every call
//! must come back within its timeout, the limiter must degrade to stricter local limits, and
//! everything must recover by itself when Redis returns.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use sovereign_cache::{Cache, CacheError, CacheSettings, Quota, RateKey, RateLimiter};
use sovereign_core::settings::SecretUrl;
use sovereign_test_redis::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(200);
/// What "within its timeout" allows for scheduling noise on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(400);

fn cache_for(server: &RedisServer) -> Cache {
    Cache::new(&CacheSettings {
        url: Some(SecretUrl::parse(&server.url()).unwrap()),
        prefix: "faults".into(),
        timeout: TIMEOUT,
        connect_timeout: TIMEOUT,
        ..CacheSettings::default()
    })
    .unwrap()
}

/// Polls `health` until Redis answers: recovery is something to wait for, not to assume.
async fn wait_until_healthy(cache: &Cache) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.health().await.is_err() {
        assert!(Instant::now() < deadline, "the cache never recovered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs every kind of call and checks each fails, and fails within the bound.
async fn every_call_fails_within_the_timeout(cache: &Cache) {
    let bound = TIMEOUT + SLACK;
    macro_rules! bounded {
        ($what:literal, $call:expr) => {{
            let started = Instant::now();
            let result = $call.await;
            let took = started.elapsed();
            assert!(took < bound, "{} took {took:?}", $what);
            let error: CacheError = result.err().expect(concat!($what, " succeeded"));
            assert!(error.is_connectivity(), "{}: {error}", $what);
        }};
    }
    // The first call meets the fault itself; later ones may be short-circuited by it.
    bounded!("get", cache.get::<String>("k"));
    bounded!("health", cache.health());
    bounded!("set", cache.set("k", &1, None));
    bounded!("set_if_absent", cache.set_if_absent("k", &1, None));
    bounded!("exists", cache.exists("k"));
    bounded!("delete", cache.delete("k"));
    bounded!("increment", cache.increment("n", 1, None));
    bounded!("try_lock", cache.try_lock("l", Duration::from_secs(1)));
    bounded!("publish", cache.publish("c", &1));
    bounded!("clear", cache.clear("*"));
    // Subscribing may also connect: its bound is the connect timeout plus the call's.
    let started = Instant::now();
    assert!(cache.subscribe("c").await.is_err());
    assert!(
        started.elapsed() < bound + TIMEOUT,
        "subscribe took {:?}",
        started.elapsed()
    );
    // get_or_compute treats the cache as optional: the value is computed regardless.
    let started = Instant::now();
    let value: Result<i32, ()> = cache.get_or_compute("gc", None, || async { Ok(5) }).await;
    assert_eq!(value, Ok(5));
    assert!(started.elapsed() < 2 * bound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_bounds_every_call_and_recovers_when_thawed() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    cache.set("kept", &"value", None).await.unwrap();

    server.pause();
    every_call_fails_within_the_timeout(&cache).await;

    server.resume();
    wait_until_healthy(&cache).await;
    assert_eq!(
        cache.get::<String>("kept").await.unwrap().as_deref(),
        Some("value")
    );
    cache.set("after", &1, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_bounds_every_call_and_recovers_when_restarted() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    cache.set("k", &1, None).await.unwrap();

    server.kill();
    every_call_fails_within_the_timeout(&cache).await;

    server.restart();
    wait_until_healthy(&cache).await;
    // A restarted Redis is empty (nothing persisted): the cache is a cache.
    assert_eq!(cache.get::<i32>("k").await.unwrap(), None);
    assert_eq!(cache.increment("n", 1, None).await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resubscribe_after_a_restart() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    let mut subscription = cache.subscribe("news").await.unwrap();
    cache.publish("news", &"before").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.decode::<String>().unwrap(), "before");

    server.restart();
    wait_until_healthy(&cache).await;
    // Publish until the resubscribed connection is there to hear it (publish reports how many
    // subscribers received each message).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if cache.publish("news", &"after").await.unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the subscription never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let message = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("a message after the restart")
        .expect("the subscription is still open");
    assert_eq!(message.decode::<String>().unwrap(), "after");
    assert_eq!(subscription.resubscribed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_degrades_to_stricter_local_limits_and_returns_to_redis() {
    let mut server = RedisServer::start();
    let cache = cache_for(&server);
    let limiter = RateLimiter::new(&cache, 5);
    let quota = Quota::per_minute(10).unwrap();
    let client = RateKey::Ip("198.51.100.1".parse().unwrap());
    assert!(!limiter.check("api", client, quota).await.degraded);

    server.pause();
    // 10/minute divided by 5: two requests, then refusals — never "allow all".
    let bound = TIMEOUT + SLACK;
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        let decision = limiter.check("api", client, quota).await;
        assert!(
            started.elapsed() < bound,
            "check took {:?}",
            started.elapsed()
        );
        assert!(decision.degraded);
        assert_eq!(decision.quota.limit(), 2);
        outcomes.push(decision.allowed);
    }
    assert_eq!(outcomes, [true, true, false, false]);
    assert!(limiter.is_degraded());

    server.resume();
    wait_until_healthy(&cache).await;
    let decision = limiter.check("api", client, quota).await;
    assert!(!decision.degraded);
    assert!(decision.allowed, "Redis still holds the bucket with 9 left");
    assert_eq!(decision.remaining, 8);
    assert!(!limiter.is_degraded());
}

#[test]
fn an_unusable_url_is_a_configuration_error() {
    let error = Cache::new(&CacheSettings {
        url: Some(SecretUrl::parse("http://127.0.0.1:6379").unwrap()),
        ..CacheSettings::default()
    })
    .unwrap_err();
    assert!(matches!(error, CacheError::Config(_)), "{error}");
}
