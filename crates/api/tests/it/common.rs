//! `TestApp`: the real server on port 0, against its own migrated database.

use std::net::TcpListener;

use actix_web::dev::ServerHandle;
use serde_json::Value;
use sovereign_api::{Application, Problem, RouteHook};
use sovereign_core::Settings;
use sovereign_test_db::TestDatabase;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: Option<TestDatabase>,
    handle: ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Sends the stop command at once; nobody needs to wait for it.
        drop(self.handle.stop(false));
    }
}

/// Settings for a test server: port 0, one worker, everything else from `vars`.
pub fn settings(database_url: &str, vars: &[(&str, &str)]) -> Settings {
    let mut all = vec![
        ("DATABASE_URL", database_url),
        ("PORT", "0"),
        ("WORKERS", "1"),
    ];
    all.extend_from_slice(vars);
    Settings::from_vars(all.iter().copied())
        .unwrap_or_else(|e| panic!("{e}"))
        .settings
}

impl TestApp {
    /// The server against a fresh migrated database.
    pub async fn spawn() -> Self {
        Self::spawn_with(&[], None).await
    }

    /// The server against a fresh migrated database, with extra settings and routes.
    pub async fn spawn_with(vars: &[(&str, &str)], routes: Option<RouteHook>) -> Self {
        let db = TestDatabase::migrated().await;
        let settings = settings(db.url().expose(), vars);
        let mut app = Self::start(settings, routes).await;
        app.db = Some(db);
        app
    }

    /// The server with `DATABASE_URL` pointing at a port where nothing listens.
    pub async fn spawn_without_database(routes: Option<RouteHook>) -> Self {
        let port = closed_port();
        let url = format!("postgres://nobody@127.0.0.1:{port}/nothing");
        Self::start(settings(&url, &[]), routes).await
    }

    /// The server with the given settings (no test database of its own).
    pub async fn start(settings: Settings, routes: Option<RouteHook>) -> Self {
        let app = Application::build_with_routes(settings, routes)
            .await
            .expect("the server builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            db: None,
            handle,
        }
    }

    /// Stops the server as SIGTERM does (`graceful`: in-flight requests finish first).
    pub fn stop(&self, graceful: bool) -> impl Future<Output = ()> + use<> {
        self.handle.stop(graceful)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// GET with extra request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the server answers")
    }

    /// A request with any method and headers.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("the server answers")
    }
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("a local address").port()
}

/// Checks that `response` is a problem body with `status` and `code`, that its request id
/// matches the `X-Request-ID` header, and returns it.
pub async fn expect_problem(response: reqwest::Response, status: u16, code: &str) -> Problem {
    assert_eq!(response.status().as_u16(), status, "status");
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "content type"
    );
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("an X-Request-ID header");
    let body: Value = response.json().await.expect("a JSON body");
    let problem: Problem = serde_json::from_value(body.clone()).expect("a problem body");
    assert_eq!(problem.status, status, "body status in {body}");
    assert_eq!(problem.code, code, "code in {body}");
    assert_eq!(problem.type_uri, format!("urn:sovereign:problem:{code}"));
    assert_eq!(problem.request_id, header_id, "request id in {body}");
    assert!(!problem.title.is_empty());
    assert!(!problem.detail.is_empty());
    problem
}
