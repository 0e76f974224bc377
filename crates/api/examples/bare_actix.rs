//! The benchmark baseline: a bare actix-web server answering `GET /health` with a fixed JSON
//! body, no middleware. `cargo xtask bench http` runs it next to Sovereign so the cost of
//! Sovereign's request handling shows as a ratio from one run.
//!
//! `PORT` (default 8080) and `WORKERS` (default: CPU count) configure it.

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    HttpServer::new(|| {
        App::new().route(
            "/health",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"status":"ok"}"#)
            }),
        )
    })
    .workers(workers)
    .bind(("127.0.0.1", port))?
    .run()
    .await
}
