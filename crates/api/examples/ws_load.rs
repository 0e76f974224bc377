//! The load client of `cargo xtask bench ws`: opens many websockets to one or more running
//! servers, subscribes each to one channel, and measures publish→receipt latency of messages
//! published over HTTP, the highest sustained delivery rate, and the servers' memory per idle
//! connection. Run by the xtask (which starts the servers and raises the fd limits); prints
//! `key=value` lines it parses.
//!
//! Written not to be the bottleneck: one task per connection that only scans each frame for the
//! publish timestamp (no JSON parsing), and a shared histogram of atomic counters.
//!
//! ```text
//! ws_load --ports 18001[,18002] --token TOKEN --connections 10000 [--pids 123[,456]]
//! ```

#![expect(clippy::print_stdout, reason = "a benchmark client reports on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const CHANNEL: &str = "public:bench";
/// Histogram resolution: 100 µs buckets up to 10 s.
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 100_000;

struct Histogram {
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
}

impl Histogram {
    fn new() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
        }
    }

    fn record(&self, micros: u64) {
        let index = usize::try_from(micros / BUCKET_US)
            .unwrap_or(BUCKETS - 1)
            .min(BUCKETS - 1);
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn reset(&self) {
        for bucket in &self.buckets {
            bucket.store(0, Ordering::Relaxed);
        }
        self.count.store(0, Ordering::Relaxed);
    }

    /// The quantile `q` in milliseconds.
    fn quantile(&self, q: f64) -> f64 {
        let total = self.count.load(Ordering::Relaxed);
        if total == 0 {
            return f64::NAN;
        }
        let target = ((total as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= target {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::INFINITY
    }
}

fn now_micros() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros(),
    )
    .unwrap_or(u64::MAX)
}

/// The `"t":<micros>` of a message frame's payload, without parsing the JSON.
fn sent_at(text: &str) -> Option<u64> {
    let start = text.find("\"t\":")? + 4;
    let digits: &str = &text[start..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

struct Args {
    ports: Vec<u16>,
    token: String,
    connections: usize,
    pids: Vec<u32>,
    seconds: u64,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        ports: Vec::new(),
        token: String::new(),
        connections: 10_000,
        pids: Vec::new(),
        seconds: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--ports" => {
                args.ports = value
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("port {p}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--token" => args.token = value,
            "--connections" => args.connections = value.parse().map_err(|e| format!("{e}"))?,
            "--pids" => {
                args.pids = value
                    .split(',')
                    .map(|p| p.parse().map_err(|e| format!("pid {p}: {e}")))
                    .collect::<Result<_, _>>()?;
            }
            "--seconds" => args.seconds = value.parse().map_err(|e| format!("{e}"))?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.ports.is_empty() || args.token.is_empty() {
        return Err(
            "usage: ws_load --ports P[,P] --token T [--connections N] [--pids PID[,PID]]".into(),
        );
    }
    Ok(args)
}

/// Opens one subscribed connection and spawns its reader.
async fn connect(port: u16, token: &str, histogram: Arc<Histogram>) -> Result<(), String> {
    let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().map_err(|_| "bad token")?,
    );
    // Small buffers: tungstenite's defaults (128 KiB each way) would cost the client gigabytes
    // and a large buffer per read across 10,000 sockets.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(request, Some(config), false)
            .await
            .map_err(|e| format!("connect: {e}"))?;
    socket
        .send(Message::text(format!(
            r#"{{"type":"subscribe","channel":"{CHANNEL}"}}"#
        )))
        .await
        .map_err(|e| format!("subscribe: {e}"))?;
    // Wait for the ack, so the connection counts only once it is subscribed.
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) if text.contains(r#""type":"ack""#) => break,
            Some(Ok(_)) => {}
            other => return Err(format!("no ack: {other:?}")),
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message
                && let Some(sent) = sent_at(&text)
            {
                histogram.record(now_micros().saturating_sub(sent));
            }
        }
    });
    Ok(())
}

async fn publish(client: &reqwest::Client, port: u16, token: &str) -> Result<(), String> {
    let body = format!(
        r#"{{"channel":"{CHANNEL}","payload":{{"t":{}}}}}"#,
        now_micros()
    );
    let response = client
        .post(format!("http://127.0.0.1:{port}/api/v1/realtime/publish"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() == 202 {
        Ok(())
    } else {
        Err(format!("publish answered {}", response.status()))
    }
}

/// Waits until `expected` deliveries arrived or `limit` passed.
async fn drain(histogram: &Histogram, expected: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let count = histogram.count.load(Ordering::Relaxed);
        if count >= expected || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = args()?;
    let histogram = Arc::new(Histogram::new());
    let rss_before: Vec<u64> = args.pids.iter().filter_map(|p| rss_kib(*p)).collect();

    // Connect in waves of 200 concurrent handshakes, spread over the servers.
    let started = Instant::now();
    let mut opened = 0;
    while opened < args.connections {
        let wave = (args.connections - opened).min(200);
        let handshakes: Vec<_> = (0..wave)
            .map(|i| {
                let port = args.ports[(opened + i) % args.ports.len()];
                let token = args.token.clone();
                let histogram = Arc::clone(&histogram);
                tokio::spawn(async move { connect(port, &token, histogram).await })
            })
            .collect();
        for handshake in handshakes {
            handshake.await.map_err(|e| e.to_string())??;
        }
        opened += wave;
    }
    println!(
        "connected={} seconds={:.1}",
        args.connections,
        started.elapsed().as_secs_f64()
    );
    // Idle memory: let allocations settle, then read each server's RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after: Vec<u64> = args.pids.iter().filter_map(|p| rss_kib(*p)).collect();
    let grown: u64 = rss_after
        .iter()
        .zip(&rss_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum();
    if !args.pids.is_empty() {
        println!(
            "rss_before_kib={} rss_after_kib={} kib_per_connection={:.1}",
            rss_before.iter().sum::<u64>(),
            rss_after.iter().sum::<u64>(),
            grown as f64 / args.connections as f64
        );
    }

    let client = reqwest::Client::new();
    let n = args.connections as u64;
    // Broadcast once a second.
    for _ in 0..args.seconds {
        let tick = Instant::now();
        publish(&client, args.ports[0], &args.token).await?;
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    let delivered = drain(&histogram, n * args.seconds, Duration::from_secs(10)).await;
    println!(
        "broadcast messages={} delivered={delivered} expected={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        args.seconds,
        n * args.seconds,
        histogram.quantile(0.5),
        histogram.quantile(0.99),
        histogram.quantile(1.0),
    );

    // The highest publish rate whose deliveries keep p99 under 100 ms, 5 s per step.
    let mut best: Option<(f64, f64, f64)> = None;
    for rate in [2_u32, 5, 10, 20, 40, 60, 80, 120, 160, 240, 320] {
        histogram.reset();
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
        let step = Instant::now();
        let mut sent = 0_u64;
        while step.elapsed() < Duration::from_secs(5) {
            let due = step + interval * u32::try_from(sent).unwrap_or(u32::MAX);
            tokio::time::sleep_until(due.into()).await;
            publish(&client, args.ports[0], &args.token).await?;
            sent += 1;
        }
        let took = step.elapsed().as_secs_f64();
        let delivered = drain(&histogram, n * sent, Duration::from_secs(5)).await;
        let p99 = histogram.quantile(0.99);
        let complete = delivered >= n * sent;
        let per_second = delivered as f64 / took;
        println!(
            "rate msgs_per_s={rate} sent={sent} delivered={delivered} expected={} deliveries_per_s={per_second:.0} p50_ms={:.2} p99_ms={p99:.2}",
            n * sent,
            histogram.quantile(0.5)
        );
        if !complete || p99 >= 100.0 || (sent as f64) < f64::from(rate) * 4.5 {
            break;
        }
        best = Some((f64::from(rate), per_second, p99));
    }
    match best {
        Some((rate, per_second, p99)) => {
            println!(
                "sustained msgs_per_s={rate} deliveries_per_s={per_second:.0} p99_ms={p99:.2}"
            );
        }
        None => println!("sustained msgs_per_s=0 deliveries_per_s=0 p99_ms=nan"),
    }
    Ok(())
}
