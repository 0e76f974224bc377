//! Prometheus metrics: the process-wide recorder, what the request middleware records, and the
//! `/metrics` listener on its own address (`METRICS_ADDR`, loopback by default; with
//! `METRICS_TOKEN`, a bearer token is required).
//!
//! Labels never come from the URL: requests are labelled by route template, method and status
//! class, and every path no route matches shares the route label `unmatched`, so no client can
//! create a series. Histograms have explicit buckets (without them the exporter would render
//! summaries).

use std::sync::OnceLock;
use std::time::Duration;

use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::{ExposeSecret, SecretString};

use crate::state::AppState;

/// Latency buckets in seconds: 1 ms to 10 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets. The recorder keeps every sample
/// until then; without a timer only a scrape would do it, and a server nobody scrapes (most small
/// deployments, and every one with `METRICS_ADDR=off`) would grow without bound.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use, with a thread that runs its upkeep every
/// [`UPKEEP_INTERVAL`]. A process has one: servers started in the same process (tests) share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), BUCKETS)
            .map(PrometheusBuilder::build_recorder)
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe();
        metrics::gauge!("sovereign_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        let upkeep = handle.clone();
        let started = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = started {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; memory grows until /metrics is scraped");
        }
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "sovereign_http_requests_total",
        "HTTP requests by route template, method and status class"
    );
    describe_histogram!(
        "sovereign_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route template, method and status class"
    );
    describe_gauge!(
        "sovereign_http_requests_in_flight",
        "HTTP requests being served"
    );
    describe_gauge!(
        "sovereign_db_pool_connections",
        "Database pool connections by state (open, idle, max)"
    );
    describe_gauge!(
        "sovereign_db_pool_waiters",
        "Tasks waiting for a database connection"
    );
    describe_histogram!(
        "sovereign_db_pool_acquire_seconds",
        Unit::Seconds,
        "Time to get a database connection from the pool"
    );
    describe_counter!(
        "sovereign_cache_operations_total",
        "Redis operations by outcome (ok, error, unavailable, short_circuited)"
    );
    describe_gauge!(
        "sovereign_cache_degraded",
        "1 while the cache fails and rate limits fall back to stricter per-instance limits"
    );
    describe_counter!(
        "sovereign_rate_limited_total",
        "Requests refused by a rate limit, by policy"
    );
    describe_counter!(
        "sovereign_auth_events_total",
        "Authentication events: login, login_failed, refresh, refresh_repeated, refresh_token_reused, revocation"
    );
    describe_gauge!("sovereign_ws_connections", "Open websocket connections");
    describe_counter!(
        "sovereign_ws_messages_in_total",
        "Websocket frames received from clients"
    );
    describe_counter!(
        "sovereign_ws_messages_out_total",
        "Websocket frames queued to clients"
    );
    describe_counter!(
        "sovereign_ws_published_total",
        "Realtime messages published"
    );
    describe_counter!(
        "sovereign_ws_slow_consumers_total",
        "Websocket clients disconnected for reading too slowly"
    );
    describe_counter!(
        "sovereign_ws_closed_total",
        "Websockets closed by the server, by close code"
    );
    describe_histogram!(
        "sovereign_embedder_duration_seconds",
        Unit::Seconds,
        "Embedding latency per call, by embedder"
    );
    describe_gauge!(
        "sovereign_build_info",
        "Always 1; the labels describe the build"
    );
}

/// The in-flight gauge, looked up once: it changes twice per request.
fn in_flight() -> &'static metrics::Gauge {
    static GAUGE: OnceLock<metrics::Gauge> = OnceLock::new();
    GAUGE.get_or_init(|| {
        handle();
        metrics::gauge!("sovereign_http_requests_in_flight")
    })
}

/// A request is starting.
pub(crate) fn request_started() {
    in_flight().increment(1.0);
}

/// A request finished: counted and timed by route template (or `unmatched`), method (or
/// `OTHER`) and status class.
pub(crate) fn request_finished(
    route: Option<&str>,
    method: &Method,
    status: StatusCode,
    took: Duration,
) {
    in_flight().decrement(1.0);
    let route = route.unwrap_or("unmatched").to_owned();
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let class = match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    let labels = [
        ("route", route),
        ("method", method.to_owned()),
        ("status", class.to_owned()),
    ];
    metrics::counter!("sovereign_http_requests_total", &labels).increment(1);
    metrics::histogram!("sovereign_http_request_duration_seconds", &labels)
        .record(took.as_secs_f64());
}

/// Samples what is read rather than counted (pool, cache state), then renders.
fn render(state: &AppState) -> String {
    let pool = state.db.pool_status();
    for (kind, value) in [
        ("open", pool.size),
        ("idle", pool.available),
        ("max", pool.max_size),
    ] {
        metrics::gauge!("sovereign_db_pool_connections", "state" => kind).set(value as f64);
    }
    metrics::gauge!("sovereign_db_pool_waiters").set(pool.waiting as f64);
    metrics::gauge!("sovereign_cache_degraded").set(if state.limiter.is_degraded() {
        1.0
    } else {
        0.0
    });
    if let Some(hub) = &state.hub {
        metrics::gauge!("sovereign_ws_connections").set(hub.connections() as f64);
        let (frames_in, frames_out) = sovereign_realtime::frame_counts();
        metrics::counter!("sovereign_ws_messages_in_total").absolute(frames_in);
        metrics::counter!("sovereign_ws_messages_out_total").absolute(frames_out);
    }
    let handle = handle();
    handle.run_upkeep();
    handle.render()
}

async fn scrape(
    req: HttpRequest,
    state: web::Data<AppState>,
    token: web::Data<Option<SecretString>>,
) -> HttpResponse {
    if let Some(token) = token.get_ref() {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(presented.as_bytes(), token.expose_secret().as_bytes()) {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                .finish();
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(render(&state))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `/metrics` listener: one worker on its own address, stopped with the API.
pub(crate) fn listener(
    listener: std::net::TcpListener,
    state: web::Data<AppState>,
    token: Option<SecretString>,
) -> std::io::Result<actix_web::dev::Server> {
    let token = web::Data::new(token);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(token.clone())
            .route("/metrics", web::get().to(scrape))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}
