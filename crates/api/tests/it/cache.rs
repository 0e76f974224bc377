//! The server with Redis: readiness reports the cache, and a frozen or killed Redis degrades
//! the service (stricter local rate limits, `degraded` in `/ready`) without stopping it.

use std::time::{Duration, Instant};

use serde_json::Value;
use sovereign_test_redis::RedisServer;

use crate::common::{TestApp, expect_problem};

async fn cache_check(app: &TestApp) -> (u16, Value) {
    let started = Instant::now();
    let response = app.get("/ready").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "/ready took {:?}",
        started.elapsed()
    );
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["checks"]["cache"].clone())
}

/// Polls `/ready` until the cache is back: recovery is awaited, not assumed.
async fn wait_for_cache_ok(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, cache) = cache_check(app).await;
        if cache["status"] == "ok" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never recovered: {cache}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn ready_reports_the_in_process_cache_when_no_redis_is_configured() {
    let app = TestApp::spawn().await;
    let (status, cache) = cache_check(&app).await;
    assert_eq!(status, 200);
    assert_eq!(cache["status"], "ok");
    assert_eq!(cache["backend"], "memory");
}

#[tokio::test]
async fn ready_reports_redis_with_its_latency() {
    let prefix = sovereign_test_redis::unique_prefix("ready");
    let url = sovereign_test_redis::shared_url();
    let app = TestApp::spawn_with(&[("REDIS_URL", &url), ("CACHE_PREFIX", &prefix)], None).await;
    let (status, cache) = cache_check(&app).await;
    assert_eq!(status, 200);
    assert_eq!(cache["status"], "ok");
    assert_eq!(cache["backend"], "redis");
    assert!(cache["latency_ms"].as_f64().is_some());
}

#[tokio::test]
async fn a_frozen_redis_degrades_the_service_and_it_recovers_when_thawed() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::spawn_with(
        &[
            ("REDIS_URL", &url),
            ("CACHE_TIMEOUT_MS", "200"),
            ("RATE_LIMIT_API", "8/minute"),
            ("RATE_LIMIT_FALLBACK_DIVISOR", "4"),
        ],
        None,
    )
    .await;
    assert_eq!(cache_check(&app).await.1["status"], "ok");
    assert_eq!(app.get("/").await.status(), 200);

    redis.pause();
    let (status, cache) = cache_check(&app).await;
    assert_eq!(status, 200, "a cache outage does not fail readiness");
    assert_eq!(cache["status"], "degraded");
    assert_eq!(cache["backend"], "redis");
    assert!(
        matches!(
            cache["error"].as_str(),
            Some("cache_timeout" | "cache_unavailable")
        ),
        "{cache}"
    );

    // The API keeps serving, within the cache timeout, under the stricter local quota
    // (8 / 4 = 2 per minute): limited, not opened up.
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.get("/").await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            expect_problem(response, 429, "rate_limited").await;
        } else {
            assert_eq!(response.headers()["ratelimit-limit"], "2");
        }
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(app.get("/health").await.status(), 200);

    redis.resume();
    wait_for_cache_ok(&app).await;
    let response = app.get("/").await;
    assert_eq!(response.status(), 200, "Redis's own bucket still has room");
    assert_eq!(response.headers()["ratelimit-limit"], "8");
}

#[tokio::test]
async fn a_killed_redis_degrades_the_service_and_it_recovers_when_restarted() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = TestApp::spawn_with(&[("REDIS_URL", &url), ("CACHE_TIMEOUT_MS", "200")], None).await;
    assert_eq!(cache_check(&app).await.1["status"], "ok");

    redis.kill();
    let (status, cache) = cache_check(&app).await;
    assert_eq!(status, 200);
    assert_eq!(cache["status"], "degraded");
    assert_eq!(app.get("/").await.status(), 200);

    redis.restart();
    wait_for_cache_ok(&app).await;
    assert_eq!(app.get("/").await.status(), 200);
}

#[tokio::test]
async fn the_server_starts_while_redis_is_down() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.kill();
    let app = TestApp::spawn_with(&[("REDIS_URL", &url), ("CACHE_TIMEOUT_MS", "200")], None).await;
    assert_eq!(cache_check(&app).await.1["status"], "degraded");
    assert_eq!(app.get("/").await.status(), 200);
    redis.restart();
    wait_for_cache_ok(&app).await;
}
