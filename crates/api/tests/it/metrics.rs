//! `/metrics`: its own listener, Prometheus text that parses, histograms as histograms, every
//! named family, and labels that URLs cannot multiply.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::common::TestApp;

/// A parsed exposition: family → type, and every sample's series (name with labels).
struct Scrape {
    types: BTreeMap<String, String>,
    series: BTreeSet<String>,
}

/// Parses the text format strictly enough to fail on anything malformed.
fn parse(text: &str) -> Scrape {
    let mut types = BTreeMap::new();
    let mut series = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "{line}");
            continue;
        }
        let (sample, value) = line.rsplit_once(' ').expect("a sample and a value");
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number in {line}"));
        let name = sample.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = sample.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        series.insert(sample.to_owned());
    }
    Scrape { types, series }
}

async fn scrape(app: &TestApp) -> Scrape {
    let address = app.metrics_address.as_ref().expect("a metrics listener");
    let response = app
        .client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    parse(&response.text().await.unwrap())
}

#[tokio::test]
async fn the_scrape_parses_has_every_family_and_histograms_are_histograms() {
    let app = TestApp::spawn_with(
        &[("VECTOR_EMBEDDER", "hash"), ("EMBEDDING_DIMENSIONS", "16")],
        None,
    )
    .await;
    // Exercise each subsystem once.
    let tokens = app.signup_as("metrics@example.com", "admin").await;
    app.post_json(
        "/api/v1/auth/login",
        None,
        json!({"email": "metrics@example.com", "password": "wrong password here"}),
    )
    .await;
    app.post_json(
        "/api/v1/vector/collections",
        Some(&tokens.access),
        json!({"name": "m", "dimension": 16}),
    )
    .await;
    app.post_json(
        "/api/v1/vector/collections/m/search",
        Some(&tokens.access),
        json!({"text": "hello", "limit": 1}),
    )
    .await;
    app.post_json(
        "/api/v1/realtime/publish",
        Some(&tokens.access),
        json!({"channel": "public:x", "payload": 1}),
    )
    .await;
    let scrape = scrape(&app).await;
    for family in [
        "sovereign_http_requests_total",
        "sovereign_http_request_duration_seconds",
        "sovereign_http_requests_in_flight",
        "sovereign_db_pool_connections",
        "sovereign_db_pool_waiters",
        "sovereign_db_pool_acquire_seconds",
        "sovereign_cache_degraded",
        "sovereign_auth_events_total",
        "sovereign_ws_connections",
        "sovereign_ws_messages_in_total",
        "sovereign_ws_messages_out_total",
        "sovereign_ws_published_total",
        "sovereign_embedder_duration_seconds",
        "sovereign_build_info",
    ] {
        assert!(
            scrape.types.contains_key(family),
            "no {family} in {:?}",
            scrape.types.keys()
        );
    }
    for histogram in [
        "sovereign_http_request_duration_seconds",
        "sovereign_db_pool_acquire_seconds",
        "sovereign_embedder_duration_seconds",
    ] {
        assert_eq!(scrape.types[histogram], "histogram", "{histogram}");
        assert!(
            scrape
                .series
                .iter()
                .any(|s| s.starts_with(&format!("{histogram}_bucket{{"))
                    && s.contains("le=\"+Inf\"")),
            "{histogram} has no buckets"
        );
    }
    // Requests are labelled by route template, not by path.
    assert!(
        scrape
            .series
            .iter()
            .any(|s| s.starts_with("sovereign_http_requests_total{")
                && s.contains("route=\"/api/v1/vector/collections/{name}/search\"")
                && s.contains("method=\"POST\"")
                && s.contains("status=\"2xx\""))
    );
    assert!(
        scrape
            .series
            .iter()
            .any(|s| s.contains("event=\"login_failed\""))
    );
    assert!(
        scrape
            .series
            .iter()
            .any(|s| s.starts_with("sovereign_build_info{") && s.contains("version="))
    );
    // The API port does not serve metrics.
    assert_eq!(app.get("/metrics").await.status(), 404);
}

#[tokio::test]
async fn a_thousand_random_unknown_urls_add_no_series() {
    // Every request reaches the router (none is turned away by the rate limiter first).
    let app = TestApp::spawn_with(&[("RATE_LIMIT_ENABLED", "false")], None).await;
    // One unknown URL first, so the shared `unmatched` series exist.
    assert_eq!(app.get("/no/such/page").await.status(), 404);
    let before = scrape(&app).await.series;
    for n in 0..1000 {
        let path = format!("/random/{n}/{}", uuid::Uuid::new_v4());
        let method = if n % 2 == 0 {
            reqwest::Method::GET
        } else {
            reqwest::Method::from_bytes(b"BREW").unwrap()
        };
        let response = app
            .client
            .request(method, app.url(&path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    let after = scrape(&app).await.series;
    // The recorder is the process's: tests running meanwhile add series of their own routes.
    // What these requests could add is an `unmatched` series, or one labelled with their path
    // or their method.
    let new: Vec<_> = after
        .difference(&before)
        .filter(|s| {
            s.contains("route=\"unmatched\"") || s.contains("/random/") || s.contains("BREW")
        })
        .collect();
    // Only the method of the odd requests may be new (as OTHER), never a path.
    assert!(
        new.iter()
            .all(|s| s.contains("method=\"OTHER\"") && s.contains("route=\"unmatched\"")),
        "{new:?}"
    );
    assert!(after.iter().all(|s| !s.contains("/random/")));
}

#[tokio::test]
async fn a_metrics_token_is_required_when_configured() {
    let app = TestApp::spawn_with(&[("METRICS_TOKEN", "a-scrape-token-for-tests")], None).await;
    let address = app.metrics_address.clone().unwrap();
    let url = format!("{address}/metrics");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        app.client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = app
        .client
        .get(&url)
        .bearer_auth("a-scrape-token-for-tests")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

/// Histogram samples wait in the recorder until an upkeep folds them into buckets. A server
/// nobody scrapes must still run it, or it grows without bound (`cargo xtask bench memory`
/// measures that); the recorder comes with a thread of its own for it.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_recorder_runs_its_upkeep_without_a_scraper() {
    let _app = TestApp::spawn_with(&[("METRICS_ADDR", "off")], None).await;
    let upkeep_threads = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "metrics-upkeep")
        .count();
    assert_eq!(upkeep_threads, 1, "one upkeep thread per process");
}
