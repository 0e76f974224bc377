//! Graceful shutdown: what SIGTERM triggers.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use tokio::sync::Notify;

use crate::common::TestApp;

#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

async fn slow(gate: web::Data<Arc<Gate>>) -> HttpResponse {
    gate.entered.notify_one();
    gate.release.notified().await;
    HttpResponse::Ok().body("finished")
}

#[tokio::test]
async fn a_graceful_stop_lets_in_flight_requests_finish() {
    let gate = Arc::new(Gate::default());
    let routes = {
        let gate = Arc::clone(&gate);
        Arc::new(move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(web::Data::new(Arc::clone(&gate)))
                .route("/test/slow", web::get().to(slow));
        })
    };
    let app = TestApp::spawn_with(&[], Some(routes)).await;
    let in_flight = tokio::spawn(app.client.get(app.url("/test/slow")).send());
    gate.entered.notified().await;

    let stopped = tokio::spawn(app.stop(true));
    gate.release.notify_one();

    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request completes");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    stopped.await.unwrap();

    // Stopped means stopped: nothing listens any more.
    assert!(app.client.get(app.url("/health")).send().await.is_err());
}
