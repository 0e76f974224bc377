//! `TestApp`: the real server on port 0, against its own migrated database.

use std::net::TcpListener;

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use serde_json::{Value, json};
use sovereign_api::{Application, BuildOptions, Problem, RouteHook, Settings};
use sovereign_auth::Outbox;
use sovereign_db::RunQueryDsl;
use sovereign_test_db::TestDatabase;

/// The password test accounts use (not on the common-password list, 28 characters).
pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub address: String,
    /// `http://127.0.0.1:<port>` of the `/metrics` listener, when there is one.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub db: Option<TestDatabase>,
    /// Every mail the server sent.
    pub outbox: Outbox,
    handle: ServerHandle,
}

/// Tokens from a sign-in.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
    pub session: String,
}

impl Tokens {
    fn from_json(body: &Value) -> Self {
        Self {
            access: body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            refresh: body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
            session: body["session_id"].as_str().expect("session_id").to_owned(),
        }
    }
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
        ("METRICS_ADDR", "127.0.0.1:0"),
    ];
    // Each server's files in a directory of its own, outside the repository.
    let storage_dir = tempdir();
    let storage_dir = storage_dir.to_string_lossy().into_owned();
    all.push(("STORAGE_DIR", &storage_dir));
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

    /// The server against a fresh migrated database, with extra settings and routes. Tenant
    /// administration uses the database's tenant-admin login, and bcrypt runs at cost 4 unless
    /// `vars` say otherwise.
    pub async fn spawn_with(vars: &[(&str, &str)], routes: Option<RouteHook>) -> Self {
        let db = TestDatabase::migrated().await;
        let settings = settings(db.url().expose(), &test_vars(&db, vars));
        let mut app = Self::start(settings, routes).await;
        app.db = Some(db);
        app
    }

    /// A second server sharing this one's database (and, through `vars`, its Redis).
    pub async fn sibling(&self, vars: &[(&str, &str)]) -> Self {
        let db = self.db.as_ref().expect("a test database");
        Self::start(settings(db.url().expose(), &test_vars(db, vars)), None).await
    }

    /// Two servers sharing one database, the machine's Redis (under a prefix of their own) and
    /// a signing key: two instances of one deployment.
    pub async fn pair(test: &str, vars: &[(&str, &str)]) -> (Self, Self) {
        let url = sovereign_test_redis::shared_url();
        let prefix = sovereign_test_redis::unique_prefix(test);
        let mut all = vec![
            ("REDIS_URL", url.as_str()),
            ("CACHE_PREFIX", prefix.as_str()),
            // Both must sign and verify with one key (development otherwise picks a random one).
            (
                "SECRET_KEY",
                "a shared test key that is at least 32 bytes long, 9f3c",
            ),
        ];
        all.extend_from_slice(vars);
        let a = Self::spawn_with(&all, None).await;
        let b = a.sibling(&all).await;
        (a, b)
    }

    /// The server with `DATABASE_URL` pointing at a port where nothing listens.
    pub async fn spawn_without_database(routes: Option<RouteHook>) -> Self {
        let port = closed_port();
        let url = format!("postgres://nobody@127.0.0.1:{port}/nothing");
        Self::start(settings(&url, &[]), routes).await
    }

    /// The server with the given settings (no test database of its own).
    pub async fn start(settings: Settings, routes: Option<RouteHook>) -> Self {
        let outbox = Outbox::new();
        // With SMTP configured, the real mailer is under test; otherwise mail goes to `outbox`.
        let mailer = settings
            .mail
            .smtp
            .is_none()
            .then(|| Arc::new(outbox.clone()) as Arc<dyn sovereign_auth::Mailer>);
        let app = Application::build_with(settings, BuildOptions { routes, mailer })
            .await
            .expect("the server builds");
        let address = format!("http://127.0.0.1:{}", app.port());
        let metrics_address = app
            .metrics_port()
            .map(|port| format!("http://127.0.0.1:{port}"));
        let handle = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self {
            address,
            metrics_address,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            db: None,
            outbox,
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

/// `vars` plus the defaults every account test wants.
fn test_vars<'a>(db: &'a TestDatabase, vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    // Cost 4 keeps account tests fast; staging and production refuse less than 10.
    let strict = vars
        .iter()
        .any(|(k, v)| *k == "ENVIRONMENT" && !v.starts_with("dev"));
    let mut all = vec![
        ("DATABASE_ADMIN_URL", db.tenant_admin_url().expose()),
        ("BCRYPT_COST", if strict { "10" } else { "4" }),
    ];
    all.retain(|(k, _)| !vars.iter().any(|(v, _)| v == k));
    all.extend_from_slice(vars);
    all
}

impl TestApp {
    /// Sends `method path` with an optional bearer token, extra headers and a JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the server answers")
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: Value,
    ) -> reqwest::Response {
        self.call(reqwest::Method::POST, path, token, &[], Some(body))
            .await
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.call(reqwest::Method::GET, path, Some(token), &[], None)
            .await
    }

    /// Registers `email` with [`PASSWORD`] in the default tenant.
    pub async fn register(&self, email: &str) {
        let response = self
            .post_json(
                "/api/v1/auth/register",
                None,
                json!({"email": email, "password": PASSWORD, "full_name": "Test User"}),
            )
            .await;
        assert_eq!(
            response.status(),
            202,
            "{}",
            response.text().await.unwrap_or_default()
        );
    }

    /// Signs in with [`PASSWORD`]; panics unless it works.
    pub async fn login(&self, email: &str) -> Tokens {
        self.login_in(email, &[]).await
    }

    /// Signs in with extra headers (e.g. `X-Tenant-ID`).
    pub async fn login_in(&self, email: &str, headers: &[(&str, &str)]) -> Tokens {
        let response = self
            .call(
                reqwest::Method::POST,
                "/api/v1/auth/login",
                None,
                headers,
                Some(json!({"email": email, "password": PASSWORD})),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("a JSON body");
        assert_eq!(status, 200, "{body}");
        Tokens::from_json(&body)
    }

    /// Registers and signs in.
    pub async fn signup(&self, email: &str) -> Tokens {
        self.register(email).await;
        self.login(email).await
    }

    /// Registers, gives the account `role` behind the API's back, and signs in.
    pub async fn signup_as(&self, email: &str, role: &str) -> Tokens {
        self.register(email).await;
        self.sql(&format!(
            "UPDATE users SET role = '{role}' WHERE email = '{email}'"
        ))
        .await;
        self.login(email).await
    }

    /// Runs SQL as the database owner (a superuser: row-level security does not apply).
    pub async fn sql(&self, statement: &str) -> usize {
        let mut conn = self
            .db
            .as_ref()
            .expect("a test database")
            .owner_conn()
            .await;
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"))
    }
}

/// The Python interpreter with the test tools (PyJWT, aiosmtpd): `TEST_PYTHON`, which
/// `cargo xtask ci` sets, or the project's `.sovereign/venv`.
pub fn python() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("TEST_PYTHON") {
        return path.into();
    }
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.sovereign/venv/bin/python");
    assert!(
        venv.exists(),
        "no Python test tools: run `cargo xtask ci` once (it makes .sovereign/venv), or set TEST_PYTHON"
    );
    venv
}

/// A fresh, empty directory under the system's temporary directory.
pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sovereign-test-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
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

/// The JSON body of `response`, which must have `status`.
pub async fn json_of(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(got, status, "{body}");
    body
}

/// An access token of `tokens`' session as if signed in an hour ago (aal1): the session's
/// `auth_time` dated back, then refreshed.
pub async fn hour_old(app: &TestApp, tokens: &Tokens) -> String {
    app.sql(&format!(
        "UPDATE sessions SET auth_time = now() - interval '1 hour' WHERE id = '{}'",
        tokens.session
    ))
    .await;
    let pair = json_of(
        app.post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await,
        200,
    )
    .await;
    pair["access_token"].as_str().unwrap().to_owned()
}
