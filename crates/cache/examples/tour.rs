//! A walk through every operation of the cache.
//!
//! `cargo run -p sovereign-cache --example tour` uses the in-process backend;
//! `REDIS_URL=redis://127.0.0.1:6379 cargo run -p sovereign-cache --example tour` uses Redis.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sovereign_cache::{Cache, CacheError, CacheSettings, Quota, RateKey, RateLimiter};

#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    name: String,
    plan: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The cache reads its own settings (`REDIS_URL`/`VALKEY_URL`, `CACHE_PREFIX`, …); unset,
    // it runs in process.
    let settings = sovereign_core::settings::load::<CacheSettings>()?.settings;
    let cache = Cache::new(&CacheSettings {
        prefix: "tour".into(),
        ..settings
    })?;
    let health = cache.health().await?;
    println!(
        "backend: {}, round trip {:?}",
        health.backend.as_str(),
        health.latency
    );

    // Typed values with a TTL, per tenant.
    let acme = cache.tenant("acme");
    let profile = Profile {
        name: "Ada".into(),
        plan: "pro".into(),
    };
    acme.set("profile:ada", &profile, Some(Duration::from_secs(60)))
        .await?;
    println!(
        "acme's profile: {:?}",
        acme.get::<Profile>("profile:ada").await?
    );
    println!(
        "globex sees: {:?}",
        cache.tenant("globex").get::<Profile>("profile:ada").await?
    );

    // Read-through: computed once, then served from the cache.
    let answer: Result<u64, CacheError> = cache
        .get_or_compute("answer", Some(Duration::from_secs(60)), || async { Ok(42) })
        .await;
    println!("computed: {answer:?}");

    // Counters.
    let visits = cache
        .increment("visits", 1, Some(Duration::from_secs(3600)))
        .await?;
    println!("visits: {visits}");

    // Locks: the second attempt fails while the first is held.
    let lock = cache
        .lock("report", Duration::from_secs(10), Duration::from_secs(1))
        .await?;
    println!(
        "second try_lock while held: {:?}",
        cache
            .try_lock("report", Duration::from_secs(10))
            .await?
            .map(|l| l.token().to_owned())
    );
    lock.release().await?;

    // Pub/sub.
    let mut events = cache.subscribe("events").await?;
    cache.publish("events", &"hello").await?;
    if let Some(message) = events.next().await {
        println!(
            "received on {}: {}",
            message.channel(),
            message.decode::<String>()?
        );
    }

    // Rate limiting: three per second.
    let limiter = RateLimiter::new(&cache, 4);
    let quota = Quota::new(3, Duration::from_secs(1)).unwrap_or(Quota::ONE_PER_SECOND);
    let client = RateKey::Ip(std::net::IpAddr::from([192, 0, 2, 1]));
    for n in 1..=4 {
        let decision = limiter.check("tour", client, quota).await;
        println!(
            "request {n}: allowed={} remaining={} retry_after={:?}",
            decision.allowed, decision.remaining, decision.retry_after
        );
    }

    // Clean up everything this tour wrote.
    let removed = cache.clear("*").await? + acme.clear("*").await?;
    println!("cleared {removed} keys");
    Ok(())
}
