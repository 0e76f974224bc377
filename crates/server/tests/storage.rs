//! File storage as the served binary does it: an upload cut off by killing the server leaves
//! nothing after `sovereign storage sweep`, and a 1 GiB upload streams through with the server's
//! memory flat.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{STRONG_KEY, Served, run, run_with_stdin};
use diesel::sql_types::BigInt;
use serde_json::{Value, json};
use sovereign_test_db::TestDatabase;

const MIB: usize = 1 << 20;
const PASSWORD: &str = "a long and unusual root passphrase";

/// A served binary with a superuser, storage under `dir`, and a bucket `files`.
struct Server {
    served: Served,
    base: String,
    token: String,
    client: reqwest::Client,
}

fn vars<'a>(db: &'a TestDatabase, dir: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("DATABASE_URL", db.url().expose()),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
        ("BCRYPT_COST", "4"),
        ("SECRET_KEY", STRONG_KEY),
        ("STORAGE_DIR", dir),
    ]
}

async fn serve(db: &TestDatabase, dir: &str) -> Server {
    let vars = vars(db, dir);
    let created = run_with_stdin(
        &vars,
        &[
            "create-superuser",
            "--email",
            "root@example.com",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(created.status.success(), "{created:?}");
    let served = Served::start(&vars);
    let port = served.wait_for("listening", |l| l["message"] == "listening")["port"]
        .as_u64()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "root@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().expect("a token").to_owned();
    let bucket = client
        .post(format!("{base}/api/v1/storage/buckets"))
        .bearer_auth(&token)
        .json(&json!({"name": "files"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bucket.status(), 201);
    Server {
        served,
        base,
        token,
        client,
    }
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sovereign-storage-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(next).unwrap().map_while(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found
}

async fn count(db: &TestDatabase, table: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.owner_conn().await;
    diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
        .get_result::<Count>(&mut conn)
        .await
        .unwrap()
        .n
}

#[tokio::test]
async fn a_server_killed_mid_upload_leaves_no_orphan_after_the_sweep() {
    let db = TestDatabase::migrated().await;
    let dir = temp_dir();
    let dir_text = dir.to_string_lossy().into_owned();
    let mut server = serve(&db, &dir_text).await;

    // An upload that sends 12 MiB (past the writer's buffer, so bytes reach the disk) and then
    // waits forever.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let upload = tokio::spawn(
        server
            .client
            .put(format!(
                "{}/api/v1/storage/buckets/files/objects/big.bin",
                server.base
            ))
            .bearer_auth(&server.token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send(),
    );
    let chunk = Bytes::from(vec![7u8; MIB]);
    for _ in 0..12 {
        tx.send(Ok(chunk.clone())).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while files(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no bytes reached the disk");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed without a chance to clean up.
    let mut child = server.served.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(tx);
    let _ = upload.await;

    assert_eq!(count(&db, "storage_objects").await, 0, "no object appeared");
    assert_eq!(count(&db, "storage_blobs").await, 1, "the blob is recorded");
    assert!(!files(&dir).is_empty(), "its bytes are on the disk");

    let vars = vars(&db, &dir_text);
    let swept = run(&vars, &["storage", "sweep", "--older-than", "0"]);
    assert!(swept.status.success(), "{swept:?}");
    assert!(
        String::from_utf8_lossy(&swept.stdout).contains("removed 1 abandoned blobs"),
        "{swept:?}"
    );
    assert_eq!(count(&db, "storage_blobs").await, 0);
    assert_eq!(files(&dir), Vec::<PathBuf>::new(), "no orphan bytes");
    std::fs::remove_dir_all(&dir).ok();
}

/// The receiver as a stream.
fn tokio_stream(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The resident memory of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_1_gib_upload_streams_through_with_the_server_memory_flat() {
    const SIZE: usize = 1 << 30;
    let db = TestDatabase::migrated().await;
    let dir = temp_dir();
    let server = serve(&db, &dir.to_string_lossy()).await;
    let pid = server.served.child.as_ref().unwrap().id();
    let put = |key: &str, body: reqwest::Body| {
        server
            .client
            .put(format!(
                "{}/api/v1/storage/buckets/files/objects/{key}",
                server.base
            ))
            .bearer_auth(&server.token)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    // Warm: the first upload's buffers are allocated before the baseline.
    assert_eq!(
        put("warm.bin", reqwest::Body::from(vec![1u8; 32 * MIB]))
            .await
            .unwrap()
            .status(),
        201
    );
    let baseline = rss(pid);
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampler = tokio::spawn({
        let peak = Arc::clone(&peak);
        async move {
            loop {
                peak.fetch_max(rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    });
    let chunk = Bytes::from(vec![9u8; MIB]);
    let chunks = futures_util::stream::iter(
        (0..SIZE / MIB).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let response = put("huge.bin", reqwest::Body::wrap_stream(chunks))
        .await
        .unwrap();
    sampler.abort();
    assert_eq!(response.status(), 201);
    let stored: Value = response.json().await.unwrap();
    assert_eq!(stored["size"], SIZE);
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(
        growth < 64 * MIB as u64,
        "the server grew by {} MiB while streaming 1 GiB",
        growth / MIB as u64
    );
    let on_disk: u64 = files(&dir)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert_eq!(on_disk, (SIZE + 32 * MIB) as u64);
    std::fs::remove_dir_all(&dir).ok();
}
