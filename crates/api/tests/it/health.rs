//! Liveness, readiness and service information.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestApp, closed_port, settings};

#[tokio::test]
async fn index_names_the_service_and_its_version() {
    let app = TestApp::spawn().await;
    let body: Value = app.get("/").await.json().await.unwrap();
    assert_eq!(body["name"], "sovereign");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["docs"], "/docs/");
}

#[tokio::test]
async fn health_is_ok_without_touching_dependencies() {
    let app = TestApp::spawn_without_database(None).await;
    let response = app.get("/health").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn ready_reports_the_database_and_its_latency() {
    let app = TestApp::spawn().await;
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["checks"]["database"]["status"], "ok");
    let latency = body["checks"]["database"]["latency_ms"].as_f64().unwrap();
    assert!(latency > 0.0 && latency < 1500.0, "{latency}");
}

async fn assert_not_ready_within_two_seconds(app: &TestApp) {
    let started = Instant::now();
    let response = app.get("/ready").await;
    let elapsed = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    assert_eq!(body["checks"]["database"]["status"], "down");
    assert!(
        body["checks"]["database"]["error"]
            .as_str()
            .unwrap()
            .starts_with("database_")
    );
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn ready_is_503_within_two_seconds_when_the_database_port_is_closed() {
    let app = TestApp::spawn_without_database(None).await;
    assert_not_ready_within_two_seconds(&app).await;
    // Again: a second probe must not wait on the first one's leftovers.
    assert_not_ready_within_two_seconds(&app).await;
}

#[tokio::test]
async fn ready_is_503_within_two_seconds_when_the_database_never_answers() {
    // Accepts TCP connections (the kernel does, from the backlog) and never speaks.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let url = format!("postgres://nobody@127.0.0.1:{port}/nothing");
    let app = TestApp::start(settings(&url, &[]), None).await;
    assert_not_ready_within_two_seconds(&app).await;
    drop(silent);
}

#[tokio::test]
async fn readiness_recovers_by_itself_when_the_database_comes_back() {
    let db = sovereign_test_db::TestDatabase::migrated().await;
    let real = db.url().clone();
    let port = closed_port();
    let mut via_proxy = (*real).clone();
    via_proxy.set_port(Some(port)).unwrap();
    let app = TestApp::start(settings(via_proxy.as_str(), &[]), None).await;
    assert_eq!(app.get("/ready").await.status(), 503);

    // The database "comes back": a TCP forwarder appears on that port.
    let upstream = format!(
        "{}:{}",
        real.host_str().unwrap(),
        real.port().unwrap_or(5432)
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    let response = app.get("/ready").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ready");
}
