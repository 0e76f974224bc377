//! Throughput of GET or SET through the crate, for `cargo xtask bench cache`.
//!
//! `bench <redis-url|memory> <get|set> <clients> <requests>` runs `requests` operations from
//! `clients` concurrent tasks on a value of 3 bytes (as `redis-benchmark` does by default) and
//! prints `ops_per_sec=<n>`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use sovereign_cache::{Cache, CacheError, CacheSettings};
use sovereign_core::settings::SecretUrl;

fn usage() -> CacheError {
    CacheError::Config("usage: bench <redis-url|memory> <get|set> <clients> <requests>".into())
}

#[tokio::main]
async fn main() -> Result<(), CacheError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, op, clients, requests] = args.as_slice() else {
        return Err(usage());
    };
    let clients: u64 = clients.parse().map_err(|_| usage())?;
    let requests: u64 = requests.parse().map_err(|_| usage())?;
    let cache = Cache::new(&CacheSettings {
        url: match target.as_str() {
            "memory" => None,
            url => Some(SecretUrl::parse(url).map_err(|_| usage())?),
        },
        prefix: format!("bench:{}", std::process::id()),
        ..CacheSettings::default()
    })?;
    let get = match op.as_str() {
        "get" => true,
        "set" => false,
        _ => return Err(usage()),
    };
    cache.set("key", &"xxx", None).await?;

    let remaining = Arc::new(AtomicU64::new(requests));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let cache = cache.clone();
            let remaining = Arc::clone(&remaining);
            tokio::spawn(async move {
                while remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    if get {
                        cache.get::<String>("key").await?;
                    } else {
                        cache.set("key", &"xxx", None).await?;
                    }
                }
                Ok::<(), CacheError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| CacheError::Command(e.to_string()))??;
    }
    let elapsed = started.elapsed();
    cache.clear("*").await?;
    println!("ops_per_sec={:.0}", requests as f64 / elapsed.as_secs_f64());
    Ok(())
}
