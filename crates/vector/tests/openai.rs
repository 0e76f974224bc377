//! The OpenAI-compatible embedder against an in-process stand-in server speaking the
//! `/v1/embeddings` protocol over real HTTP: batching, order, retries with backoff, refusals,
//! timeouts and malformed answers.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sovereign_core::settings::SecretUrl;
use sovereign_vector::EmbedderSettings;
use sovereign_vector::{EmbedError, Embedder, OpenAiEmbedder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the stand-in answers to the n-th request (0-based), given the request body.
type Script = Arc<dyn Fn(usize, &Value) -> (u16, String) + Send + Sync>;

struct StandIn {
    url: String,
    requests: Arc<AtomicUsize>,
    bodies: Arc<std::sync::Mutex<Vec<Value>>>,
}

async fn stand_in(script: Script) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (count, seen) = (Arc::clone(&requests), Arc::clone(&bodies));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (script, count, seen) =
                (Arc::clone(&script), Arc::clone(&count), Arc::clone(&seen));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // Read the head, then Content-Length bytes of body.
                let body = loop {
                    let n = socket.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break buf[end + 4..end + 4 + length].to_vec();
                        }
                    }
                };
                let body: Value = serde_json::from_slice(&body).unwrap();
                let n = count.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(body.clone());
                let (status, reply) = script(n, &body);
                if status == 0 {
                    // Never answer: the client's timeout must fire.
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                    reply.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    StandIn {
        url,
        requests,
        bodies,
    }
}

/// An embedding of `text`: [length, first byte, 1].
fn fake(text: &str) -> Vec<f32> {
    vec![text.len() as f32, f32::from(text.as_bytes()[0]), 1.0]
}

/// A correct answer, listed in reverse order (clients must use `index`).
fn answer(body: &Value) -> String {
    let inputs = body["input"].as_array().unwrap();
    let mut data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": fake(t.as_str().unwrap())}))
        .collect();
    data.reverse();
    json!({"object": "list", "data": data, "model": "m"}).to_string()
}

fn embedder(url: &str, retries: u32, timeout: Duration) -> OpenAiEmbedder {
    OpenAiEmbedder::new(&EmbedderSettings {
        url: Some(SecretUrl::parse(url).unwrap()),
        model: "m".into(),
        api_key: Some("sk-test".to_owned().into()),
        dimensions: 3,
        timeout,
        batch_size: 2,
        retries,
        ..EmbedderSettings::default()
    })
    .unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i}{}", "x".repeat(i)))
        .collect()
}

#[tokio::test]
async fn texts_go_in_batches_and_come_back_in_order() {
    let server = stand_in(Arc::new(|_, body| (200, answer(body)))).await;
    let e = embedder(&server.url, 0, Duration::from_secs(5));
    let input = texts(5);
    let out = e.embed(&input).await.unwrap();
    assert_eq!(out, input.iter().map(|t| fake(t)).collect::<Vec<_>>());
    assert_eq!(server.requests.load(Ordering::SeqCst), 3, "batches of 2");
    let bodies = server.bodies.lock().unwrap().clone();
    assert_eq!(bodies[0]["model"], "m");
    assert_eq!(bodies[0]["input"], json!([input[0], input[1]]));
}

#[tokio::test]
async fn transient_failures_are_retried_with_backoff_and_refusals_are_not() {
    // Two 503s, then success.
    let server = stand_in(Arc::new(|n, body| {
        if n < 2 {
            (503, "{}".into())
        } else {
            (200, answer(body))
        }
    }))
    .await;
    let started = std::time::Instant::now();
    let out = embedder(&server.url, 3, Duration::from_secs(5))
        .embed(&texts(1))
        .await
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(200 + 400),
        "backed off"
    );

    // Out of retries: the last failure is reported.
    let server = stand_in(Arc::new(|_, _| (429, r#"{"error":"slow down"}"#.into()))).await;
    let e = embedder(&server.url, 1, Duration::from_secs(5))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmbedError::Upstream(m) if m.contains("429") && m.contains("2 attempts")),
        "{e}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);

    // A refusal (bad key, bad model) is final.
    let server = stand_in(Arc::new(|_, _| (401, r#"{"error":"bad key"}"#.into()))).await;
    let e = embedder(&server.url, 3, Duration::from_secs(5))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmbedError::Upstream(m) if m.contains("401") && m.contains("bad key")),
        "{e}"
    );
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_wrong_answer_is_a_protocol_error() {
    let server = stand_in(Arc::new(|_, _| (0, String::new()))).await;
    let started = std::time::Instant::now();
    let e = embedder(&server.url, 0, Duration::from_millis(300))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmbedError::Upstream(m) if m.contains("timed out")),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    let server = stand_in(Arc::new(|_, _| {
        (
            200,
            json!({"data": [{"index": 0, "embedding": [1, 2]}]}).to_string(),
        )
    }))
    .await;
    let e = embedder(&server.url, 0, Duration::from_secs(5))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmbedError::Protocol(m) if m.contains("2 dimensions")),
        "{e}"
    );

    let server = stand_in(Arc::new(|_, _| (200, "not json".into()))).await;
    let e = embedder(&server.url, 0, Duration::from_secs(5))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(matches!(e, EmbedError::Protocol(_)), "{e}");

    // Nothing listens: a connection error, retried, then reported.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", closed.local_addr().unwrap());
    drop(closed);
    let e = embedder(&url, 1, Duration::from_secs(1))
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EmbedError::Upstream(m) if m.contains("cannot connect")),
        "{e}"
    );
}
