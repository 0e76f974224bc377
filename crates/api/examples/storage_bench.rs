//! The client of `cargo xtask bench storage` (which starts the servers and passes the settings
//! below). For each backend: a large object uploaded and downloaded through the API beside the
//! raw backend in the same run (the bytes written to and read from a file on the local disk; a
//! direct `PUT` and `GET` to the S3 store); the server's memory while 8 clients upload at once;
//! and, on the first backend, listings of 1,000 keys under one prefix in a bucket of 1,000,000
//! objects.
//!
//! Settings: BENCH_TOKEN; BENCH_FS_URL, BENCH_FS_PID, BENCH_FS_DIR; BENCH_S3_URL, BENCH_S3_PID,
//! BENCH_S3_ENDPOINT, BENCH_S3_BUCKET; BENCH_OWNER_URL (rows for the listing); optional
//! BENCH_OBJECT_MIB (256) and BENCH_LIST_OBJECTS (1000000).

#![expect(
    clippy::unwrap_used,
    clippy::print_stderr,
    clippy::print_stdout,
    reason = "a benchmark tool"
)]
#![expect(clippy::cast_precision_loss, reason = "figures")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use sovereign_db::{AsyncConnection, AsyncPgConnection};

const MIB: u64 = 1 << 20;
const CLIENTS: usize = 8;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `size` bytes as a stream of 1 MiB chunks (the same chunk: generating bytes is not measured).
fn body(size: u64) -> reqwest::Body {
    let chunk = Bytes::from(vec![0x5a; MIB as usize]);
    let chunks = (size / MIB) as usize;
    reqwest::Body::wrap_stream(futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ))
}

/// MB/s of `bytes` moved in `took`.
fn rate(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Reads a response to its end; the number of bytes.
async fn drain(response: reqwest::Response) -> u64 {
    assert!(response.status().is_success(), "{}", response.status());
    let mut stream = response.bytes_stream();
    let mut n = 0;
    while let Some(chunk) = stream.next().await {
        n += chunk.unwrap().len() as u64;
    }
    n
}

fn rss(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn object(&self, bucket: &str, key: &str) -> String {
        format!("{}/api/v1/storage/buckets/{bucket}/objects/{key}", self.url)
    }

    async fn bucket(&self, name: &str) {
        let response = self
            .client
            .post(format!("{}/api/v1/storage/buckets", self.url))
            .bearer_auth(&self.token)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(response.status().as_u16(), 201 | 409),
            "{}",
            response.status()
        );
    }

    async fn put(&self, bucket: &str, key: &str, size: u64) {
        let response = self
            .client
            .put(self.object(bucket, key))
            .bearer_auth(&self.token)
            .header("content-type", "application/octet-stream")
            .body(body(size))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    }

    async fn get(&self, bucket: &str, key: &str) -> u64 {
        drain(
            self.client
                .get(self.object(bucket, key))
                .bearer_auth(&self.token)
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

/// (upload MB/s, download MB/s) of the raw backend.
async fn raw(backend: &str, size: u64) -> (f64, f64) {
    if backend == "fs" {
        // The bytes from the client's memory into a file and back, on the server's disk.
        let target = std::path::PathBuf::from(env("BENCH_FS_DIR")).join("bench-raw.bin");
        let bytes = vec![0x5a; size as usize];
        let started = Instant::now();
        tokio::fs::write(&target, &bytes).await.unwrap();
        let up = rate(size, started.elapsed());
        drop(bytes);
        let started = Instant::now();
        let read = tokio::fs::read(&target).await.unwrap().len() as u64;
        let down = rate(read, started.elapsed());
        std::fs::remove_file(target).ok();
        (up, down)
    } else {
        let endpoint = env("BENCH_S3_ENDPOINT");
        let bucket = std::env::var("BENCH_S3_BUCKET").unwrap_or_else(|_| "sovereign".into());
        let url = format!("{endpoint}/{bucket}/bench-raw.bin");
        // moto checks no signature but refuses anonymous reads: any AWS credential will do.
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            "AWS4-HMAC-SHA256 Credential=bench/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
                .parse()
                .unwrap(),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap();
        let started = Instant::now();
        let put = client.put(&url).body(body(size)).send().await.unwrap();
        assert!(put.status().is_success(), "{}", put.status());
        let up = rate(size, started.elapsed());
        let started = Instant::now();
        let read = drain(client.get(&url).send().await.unwrap()).await;
        let down = rate(read, started.elapsed());
        client.delete(&url).send().await.ok();
        (up, down)
    }
}

/// Peak RSS growth (bytes) of `pid` while 8 clients upload `size` bytes each.
async fn concurrent(api: &Arc<Api>, pid: &str, size: u64) -> (u64, f64) {
    let baseline = rss(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done, pid) = (Arc::clone(&peak), Arc::clone(&done), pid.to_owned());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss(&pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let started = Instant::now();
    let uploads = (0..CLIENTS).map(|i| {
        let api = Arc::clone(api);
        tokio::spawn(async move { api.put("bench", &format!("client-{i}.bin"), size).await })
    });
    for upload in futures_util::future::join_all(uploads).await {
        upload.unwrap();
    }
    let took = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    (
        peak.load(Ordering::Relaxed).saturating_sub(baseline),
        rate(size * CLIENTS as u64, took),
    )
}

/// Fills bucket `list` with `count` objects (`p000/…` to `p999/…`, ~count/1000 under each
/// prefix) straight into the table, then times listings of one prefix through the API.
async fn listing(api: &Api, count: u64) -> (f64, f64, usize) {
    use sovereign_db::RunQueryDsl;
    api.bucket("list").await;
    let mut conn = AsyncPgConnection::establish(&env("BENCH_OWNER_URL"))
        .await
        .unwrap();
    let filled = Instant::now();
    diesel::sql_query(format!(
        "INSERT INTO storage_objects (tenant_id, bucket_id, key, blob, size, content_type, sha256)
         SELECT b.tenant_id, b.id, format('p%s/object-%s', lpad((i % 1000)::text, 3, '0'), i),
                gen_random_uuid(), 1, 'text/plain', '\\x00'
         FROM storage_buckets b, generate_series(1, {count}) AS i
         WHERE b.name = 'list'
         ON CONFLICT DO NOTHING"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE storage_objects")
        .execute(&mut conn)
        .await
        .unwrap();
    eprintln!(
        "filled the listing bucket in {:.1} s",
        filled.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let mut listed = 0;
    for i in 0..300u64 {
        let prefix = format!("p{:03}/", (i * 37) % 1000);
        let started = Instant::now();
        let response = api
            .client
            .get(format!(
                "{}/api/v1/storage/buckets/list/objects?prefix={prefix}&limit=1000",
                api.url
            ))
            .bearer_auth(&api.token)
            .send()
            .await
            .unwrap();
        let page: serde_json::Value = response.json().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        listed = page["objects"].as_array().unwrap().len();
    }
    // The first 50 warm the caches.
    let mut measured = times.split_off(50);
    measured.sort_by(f64::total_cmp);
    let at = |q: f64| measured[((measured.len() as f64 - 1.0) * q) as usize];
    (at(0.5), at(0.99), listed)
}

#[tokio::main]
async fn main() {
    let size = env_or("BENCH_OBJECT_MIB", 256) * MIB;
    let token = env("BENCH_TOKEN");
    println!(
        "{:<6} {:>14} {:>14} {:>8} {:>16} {:>16} {:>8} {:>22}",
        "store",
        "raw up MB/s",
        "API up MB/s",
        "ratio",
        "raw down MB/s",
        "API down MB/s",
        "ratio",
        "8×upload RSS growth"
    );
    let mut first = None;
    for backend in ["fs", "s3"] {
        let upper = backend.to_ascii_uppercase();
        let api = Arc::new(Api {
            client: reqwest::Client::new(),
            url: env(&format!("BENCH_{upper}_URL")),
            token: token.clone(),
        });
        api.bucket("bench").await;
        let (raw_up, raw_down) = raw(backend, size).await;
        let started = Instant::now();
        api.put("bench", "large.bin", size).await;
        let up = rate(size, started.elapsed());
        let started = Instant::now();
        let read = api.get("bench", "large.bin").await;
        let down = rate(read, started.elapsed());
        let (growth, _) = concurrent(&api, &env(&format!("BENCH_{upper}_PID")), size).await;
        println!(
            "{backend:<6} {raw_up:>14.0} {up:>14.0} {:>7.2}× {raw_down:>16.0} {down:>16.0} {:>7.2}× {:>18.1} MiB",
            up / raw_up,
            down / raw_down,
            growth as f64 / MIB as f64
        );
        first.get_or_insert(api);
    }
    let count = env_or("BENCH_LIST_OBJECTS", 1_000_000);
    let (p50, p99, listed) = listing(first.as_ref().unwrap(), count).await;
    println!(
        "\nlisting {listed} keys under one prefix of a bucket of {count} objects, 250 requests: \
         p50 {p50:.2} ms, p99 {p99:.2} ms (target p99 < 20 ms)"
    );
}
