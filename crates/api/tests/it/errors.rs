//! Every error is a problem body with a stable code and the request id.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sovereign_api::extract::Json;
use sovereign_api::request_id::RequestId;
use sovereign_api::{ApiError, AppState, RouteHook};
use sovereign_db::{DbError, RunQueryDsl, ScopedFutureExt};
use validator::Validate;

use crate::common::{TestApp, expect_problem};

#[derive(Debug, Deserialize, Serialize, Validate)]
#[serde(deny_unknown_fields)]
struct Echo {
    #[validate(length(min = 3, max = 20))]
    name: String,
    #[validate(range(min = 1, max = 10))]
    count: u32,
}

async fn echo(body: Json<Echo>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

async fn upload(body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().body(format!("{} bytes", body.len()))
}

async fn whoami(id: RequestId) -> HttpResponse {
    HttpResponse::Ok().body(id.0)
}

async fn boom() -> HttpResponse {
    panic!("boom: internal secret 4f1a")
}

async fn broken() -> Result<HttpResponse, ApiError> {
    Err(ApiError::internal("SELECT password_hash FROM users failed"))
}

async fn needs_database(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state
        .db
        .transaction(|conn| {
            async move {
                diesel::sql_query("SELECT 1").execute(conn).await?;
                Ok::<_, DbError>(())
            }
            .scope_boxed()
        })
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

fn routes() -> RouteHook {
    Arc::new(|cfg: &mut web::ServiceConfig| {
        cfg.route("/test/echo", web::post().to(echo))
            .route("/test/upload", web::post().to(upload))
            .route("/test/whoami", web::get().to(whoami))
            .route("/test/panic", web::get().to(boom))
            .route("/test/broken", web::get().to(broken))
            .route("/test/database", web::get().to(needs_database));
    })
}

async fn app() -> TestApp {
    TestApp::spawn_with(
        &[
            ("JSON_BODY_LIMIT_BYTES", "1024"),
            ("PAYLOAD_LIMIT_BYTES", "2048"),
        ],
        Some(routes()),
    )
    .await
}

async fn post_echo(
    app: &TestApp,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    app.client
        .post(app.url("/test/echo"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = app().await;
    let problem = expect_problem(app.get("/nope").await, 404, "not_found").await;
    assert!(problem.detail.contains("/nope"), "{}", problem.detail);
}

#[tokio::test]
async fn wrong_method_is_a_405_problem_naming_the_allowed_ones() {
    let app = app().await;
    let response = app.client.delete(app.url("/health")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    let problem = expect_problem(response, 405, "method_not_allowed").await;
    assert_eq!(problem.suggestion.as_deref(), Some("use GET, HEAD"));

    let response = app.client.post(app.url("/")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    expect_problem(response, 405, "method_not_allowed").await;

    // The docs UI is outside the document and still known.
    let response = app
        .client
        .put(app.url("/docs/index.html"))
        .send()
        .await
        .unwrap();
    expect_problem(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = app().await;
    for body in [
        r#"{"name": "abc", "count": "#,
        "{name: abc}",
        "",
        r#"{"name":"abc","count":1} trailing"#,
    ] {
        let problem = expect_problem(
            post_echo(&app, "application/json", body).await,
            400,
            "malformed_json",
        )
        .await;
        assert!(problem.errors.is_empty());
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = app().await;
    let body = r#"{"name":"abc","count":1}"#;
    let problem = expect_problem(
        post_echo(&app, "text/plain", body).await,
        415,
        "unsupported_media_type",
    )
    .await;
    assert!(problem.suggestion.unwrap().contains("application/json"));

    let no_type = app
        .client
        .post(app.url("/test/echo"))
        .body(body)
        .send()
        .await
        .unwrap();
    expect_problem(no_type, 415, "unsupported_media_type").await;

    // JSON with parameters and +json types are accepted.
    let ok = post_echo(&app, "application/json; charset=utf-8", body).await;
    assert_eq!(ok.status(), 200);
    let ok = post_echo(&app, "application/merge-patch+json", body).await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = app().await;
    let big = json!({"name": "x".repeat(2000), "count": 1}).to_string();
    let problem = expect_problem(
        post_echo(&app, "application/json", big).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(problem.detail.contains("1024"), "{}", problem.detail);
}

#[tokio::test]
async fn a_raw_body_over_the_payload_limit_is_a_413_problem() {
    let app = app().await;
    let post = |size: usize| {
        app.client
            .post(app.url("/test/upload"))
            .header("content-type", "application/octet-stream")
            .body(vec![b'x'; size])
            .send()
    };
    let ok = post(2048).await.unwrap();
    assert_eq!(ok.text().await.unwrap(), "2048 bytes");
    expect_problem(post(2049).await.unwrap(), 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_refused_while_reading() {
    let app = app().await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let response = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut request = String::from(
            "POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        for _ in 0..4 {
            let chunk = format!("[{}]", "1,".repeat(200) + "1");
            request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
        }
        request.push_str("0\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("payload_too_large"), "{response}");
}

#[tokio::test]
async fn a_body_of_the_wrong_shape_is_a_422_naming_the_field() {
    let app = app().await;
    let cases = [
        (json!({"name": "abc", "count": "three"}), "count"),
        (json!({"count": 1}), "name"),
        (json!({"name": "abc", "count": 1, "role": "admin"}), "role"),
        (json!("not an object"), "."),
    ];
    for (body, field) in cases {
        let problem = expect_problem(
            post_echo(&app, "application/json", body.to_string()).await,
            422,
            "invalid_body",
        )
        .await;
        assert_eq!(problem.errors.len(), 1, "{body}");
        assert_eq!(problem.errors[0].field, field, "{body}");
    }
}

#[tokio::test]
async fn validation_failures_list_every_field() {
    let app = app().await;
    let body = json!({"name": "ab", "count": 99}).to_string();
    let problem = expect_problem(
        post_echo(&app, "application/json", body).await,
        422,
        "validation_failed",
    )
    .await;
    let fields: Vec<(&str, &str)> = problem
        .errors
        .iter()
        .map(|e| (e.field.as_str(), e.code.as_str()))
        .collect();
    assert_eq!(fields, [("count", "range"), ("name", "length")]);
    assert!(problem.errors.iter().all(|e| !e.message.is_empty()));

    let ok = post_echo(
        &app,
        "application/json",
        json!({"name": "abc", "count": 3}).to_string(),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(
        ok.json::<serde_json::Value>().await.unwrap(),
        json!({"name": "abc", "count": 3})
    );
}

#[tokio::test]
async fn a_panic_is_a_500_problem_that_reveals_nothing_and_the_server_keeps_serving() {
    let app = app().await;
    for _ in 0..3 {
        let response = app.get("/test/panic").await;
        let problem = expect_problem(response, 500, "internal_error").await;
        assert!(!problem.detail.contains("4f1a"), "{}", problem.detail);
        assert!(problem.detail.contains("request id"));
    }
    assert_eq!(app.get("/health").await.status(), 200);
}

#[tokio::test]
async fn internal_errors_reveal_nothing() {
    let app = app().await;
    let response = app.get("/test/broken").await;
    let text = format!(
        "{:?}",
        expect_problem(response, 500, "internal_error").await
    );
    assert!(!text.contains("SELECT"), "{text}");
    assert!(!text.contains("password"), "{text}");
}

#[tokio::test]
async fn a_database_outage_is_a_fast_503_with_retry_after() {
    let app = TestApp::spawn_without_database(Some(routes())).await;
    let started = Instant::now();
    let response = app.get("/test/database").await;
    let elapsed = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "1");
    let problem = expect_problem(response, 503, "database_unavailable").await;
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert!(!problem.detail.contains("127.0.0.1"), "{}", problem.detail);
}

#[tokio::test]
async fn the_database_route_works_when_the_database_does() {
    let app = app().await;
    assert_eq!(app.get("/test/database").await.status(), 204);
}

#[tokio::test]
async fn a_well_formed_request_id_is_echoed_everywhere() {
    let app = app().await;
    let response = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "client-trace:42.a_b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-trace:42.a_b");
    let problem = expect_problem(response, 404, "not_found").await;
    assert_eq!(problem.request_id, "client-trace:42.a_b");

    let ok = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.headers()["x-request-id"], "abc-123");
}

#[tokio::test]
async fn a_malformed_request_id_is_replaced_by_a_generated_one() {
    let app = app().await;
    for bad in ["has spaces", "<script>alert(1)</script>", &"x".repeat(200)] {
        let response = app
            .client
            .get(app.url("/nope"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_ne!(echoed, bad);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed}");
        expect_problem(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn every_response_gets_a_distinct_request_id() {
    let app = app().await;
    let a = app.get("/health").await.headers()["x-request-id"].clone();
    let b = app.get("/health").await.headers()["x-request-id"].clone();
    assert_ne!(a, b);
}

#[tokio::test]
async fn handlers_see_the_id_of_their_own_request() {
    let app = app().await;
    let response = app
        .client
        .get(app.url("/test/whoami"))
        .header("x-request-id", "handler-sees-me")
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "handler-sees-me");

    let response = app.get("/test/whoami").await;
    let header = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.text().await.unwrap(), header);
}
