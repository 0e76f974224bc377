//! The `sovereign` binary as an operator uses it: configuration checks, migrations, the OpenAPI
//! document, and a served process that logs one line per request and stops on SIGTERM.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sovereign_test_db::TestDatabase;

use common::{STRONG_KEY, Served, run, run_with_stdin};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_lists_every_problem_and_exits_non_zero() {
    let out = run(
        &[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "mysql://root:hunter2@db/app"),
            ("SECRET_KEY", "changeme"),
            ("BACKEND_CORS_ORIGINS", "*"),
            ("PORT", "http"),
            ("DEBUG", "true"),
        ],
        &["check-config"],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    for setting in [
        "DATABASE_URL",
        "SECRET_KEY",
        "BACKEND_CORS_ORIGINS",
        "PORT",
        "DEBUG",
    ] {
        assert!(
            stderr.contains(&format!("{setting}:")),
            "{setting} missing:\n{stderr}"
        );
    }
    assert!(stderr.contains("suggestion:"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "a secret leaked:\n{stderr}");
    assert!(stderr.contains("problems"), "{stderr}");
}

#[test]
fn check_config_accepts_a_valid_configuration() {
    let out = run(
        &[
            ("ENVIRONMENT", "production"),
            ("DATABASE_URL", "postgres://app:pw@db:5432/sovereign"),
            ("SECRET_KEY", STRONG_KEY),
            ("BACKEND_CORS_ORIGINS", "https://app.example.com"),
        ],
        &["check-config"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration is valid (production environment)"));
}

#[test]
fn serve_refuses_to_start_with_an_invalid_configuration() {
    let out = run(&[("PORT", "99999")], &["serve"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("PORT"),
        "{stderr}"
    );
}

#[test]
fn openapi_prints_the_document() {
    let out = run(&[], &["openapi"]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/ready"].is_object());
}

#[tokio::test]
async fn migrate_applies_reports_and_reverts() {
    let db = TestDatabase::empty().await;
    let vars = [
        ("DATABASE_URL", db.url().expose()),
        ("DATABASE_OWNER_URL", db.owner_url().expose()),
    ];
    let up = run(&vars, &["migrate"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert!(text(&up.stdout).contains("applied 20261125000001"));

    let again = run(&vars, &["migrate", "up"]);
    assert!(text(&again.stdout).contains("up to date"));

    let status = run(&vars, &["migrate", "status"]);
    assert!(text(&status.stdout).contains("[x] 2026-11-25-000001_foundation"));

    let down = run(&vars, &["migrate", "down", "--all"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
    assert!(text(&down.stdout).contains("reverted 20261125000001"));
    let status = run(&vars, &["migrate", "status"]);
    assert!(text(&status.stdout).contains("[ ] 2026-11-25-000001_foundation"));
}

#[test]
fn migrate_reports_an_unreachable_database() {
    let out = run(
        &[("DATABASE_URL", "postgres://x@127.0.0.1:1/x")],
        &["migrate"],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn serve_logs_one_json_line_per_request_and_stops_gracefully_on_sigterm() {
    let db = TestDatabase::migrated().await;
    let mut served = Served::start(&[
        ("DATABASE_URL", db.url().expose()),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
    ]);
    let listening = served.wait_for("listening", |l| l["message"] == "listening");
    let port = listening["port"].as_u64().unwrap();

    let client = reqwest::Client::new();
    let response = client
        .get(format!(
            "http://127.0.0.1:{port}/ready?token=must-not-be-logged"
        ))
        .header("x-request-id", "cli-test-7")
        .header("x-forwarded-for", "203.0.113.99")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let line = served.wait_for("the request", |l| {
        l["message"] == "request completed" && l["span"]["request_id"] == "cli-test-7"
    });
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 200);
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/ready");
    assert_eq!(line["path"], "/ready");
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
    // No trusted proxies configured: the socket peer, whatever X-Forwarded-For would claim.
    assert_eq!(line["client_ip"], "127.0.0.1");
    assert!(!line.to_string().contains("must-not-be-logged"), "{line}");

    let mut child = served.child.take().unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exited = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the server exits within 10 s of SIGTERM");
    let status = exited.unwrap().unwrap();
    assert!(status.success(), "{status}");
    served.wait_for("the final line", |l| l["message"] == "stopped");
}

#[tokio::test]
async fn server_side_failures_are_logged_with_the_request_id_and_hidden_from_the_client() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://app:s3cret@127.0.0.1:{port}/sovereign");
    let served = Served::start(&[
        ("DATABASE_URL", &unreachable),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
    ]);
    let listening = served.wait_for("listening", |l| l["message"] == "listening");
    let port = listening["port"].as_u64().unwrap();
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/ready"))
        .header("x-request-id", "cli-outage-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("127.0.0.1") && !body.contains("refused"),
        "{body}"
    );

    let cause = served.wait_for("the cause", |l| {
        l["level"] == "WARN" && l["span"]["request_id"] == "cli-outage-1"
    });
    let text = cause.to_string();
    assert!(text.contains("database unavailable"), "{text}");
    assert!(
        !text.contains("s3cret"),
        "a password reached the log: {text}"
    );
}

#[tokio::test]
async fn tenant_commands_create_list_suspend_and_activate_through_the_admin_role() {
    let db = TestDatabase::migrated().await;
    let vars = [
        ("DATABASE_URL", db.url().expose()),
        ("DATABASE_ADMIN_URL", db.tenant_admin_url().expose()),
    ];
    let created = run(&vars, &["tenant", "create", "acme", "--name", "Acme Corp"]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let line = text(&created.stdout);
    assert!(
        line.contains("active") && line.contains("acme") && line.contains("Acme Corp"),
        "{line}"
    );

    let again = run(&vars, &["tenant", "create", "acme"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );
    let bad = run(&vars, &["tenant", "create", "Not A Slug"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("slug"), "{}", text(&bad.stderr));

    let suspended = run(&vars, &["tenant", "suspend", "acme"]);
    assert!(suspended.status.success(), "{}", text(&suspended.stderr));
    assert!(text(&suspended.stdout).contains("suspended"));
    let listed = text(&run(&vars, &["tenant", "list"]).stdout);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(
        lines[0].contains("default") && lines[0].contains("active"),
        "{listed}"
    );
    assert!(
        lines[1].contains("acme") && lines[1].contains("suspended"),
        "{listed}"
    );

    let id = lines[1].split_whitespace().next().unwrap();
    let activated = run(&vars, &["tenant", "activate", id]);
    assert!(activated.status.success(), "{}", text(&activated.stderr));
    assert!(text(&activated.stdout).contains("active"));
    let missing = run(&vars, &["tenant", "suspend", "ghost"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no such tenant"),
        "{}",
        text(&missing.stderr)
    );

    // The server's runtime role is refused by PostgreSQL itself.
    let runtime_only = [("DATABASE_URL", db.url().expose())];
    let refused = run(&runtime_only, &["tenant", "create", "rogue"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("permission denied"),
        "{}",
        text(&refused.stderr)
    );
}

#[tokio::test]
async fn create_superuser_reads_the_password_from_stdin_and_applies_the_policy() {
    let db = TestDatabase::migrated().await;
    let vars = [("DATABASE_URL", db.url().expose()), ("BCRYPT_COST", "4")];
    let with_stdin = |args: &[&str], input: &str| run_with_stdin(&vars, args, input);
    let args = [
        "create-superuser",
        "--email",
        "Root@Example.com",
        "--full-name",
        "Root",
        "--password-stdin",
    ];
    let weak = with_stdin(&args, "password1234\n");
    assert!(!weak.status.success());
    assert!(
        text(&weak.stderr).contains("too common"),
        "{}",
        text(&weak.stderr)
    );

    let created = with_stdin(&args, "a long and unusual root passphrase\n");
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(
        text(&created.stdout).contains("created superadmin"),
        "{}",
        text(&created.stdout)
    );
    assert!(!text(&created.stdout).contains("passphrase"));

    let again = with_stdin(&args, "a long and unusual root passphrase\n");
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("email already in use"),
        "{}",
        text(&again.stderr)
    );

    let missing = run(&vars, &["create-superuser", "--email", "x@example.com"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("--password-stdin"));

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        role: String,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        email_verified: bool,
        #[diesel(sql_type = diesel::sql_types::Text)]
        password_hash: String,
    }
    let mut owner = db.owner_conn().await;
    let row: Row = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT role, email_verified, password_hash FROM users WHERE email = 'root@example.com'",
        ),
        &mut owner,
    )
    .await
    .unwrap();
    assert_eq!(row.role, "superadmin");
    assert!(row.email_verified);
    assert!(row.password_hash.starts_with("$2b$04$"));
}

#[tokio::test]
async fn security_events_are_logged_without_secrets() {
    let db = TestDatabase::migrated().await;
    let served = Served::start(&[
        ("DATABASE_URL", db.url().expose()),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
        ("BCRYPT_COST", "4"),
        ("SECRET_KEY", STRONG_KEY),
        // A replay is reuse at once (no reuse interval), so the second refresh below is one.
        ("REFRESH_TOKEN_REUSE_SECONDS", "0"),
    ]);
    let listening = served.wait_for("listening", |l| l["message"] == "listening");
    let port = listening["port"].as_u64().unwrap();
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let password = "an unguessable secret passphrase";
    let register = client
        .post(url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "logged@example.com", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 202);
    let failed = client
        .post(url("/api/v1/auth/login"))
        .header("x-request-id", "security-1")
        .json(&serde_json::json!({"email": "logged@example.com", "password": "wrong guess, wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let event = served.wait_for("a failed login", |l| l["security_event"] == "login_failed");
    assert_eq!(event["span"]["request_id"], "security-1");

    let login: Value = client
        .post(url("/api/v1/auth/login"))
        .json(&serde_json::json!({"email": "logged@example.com", "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = login["refresh_token"].as_str().unwrap();
    for _ in 0..2 {
        client
            .post(url("/api/v1/auth/refresh"))
            .header("x-request-id", "security-2")
            .json(&serde_json::json!({"refresh_token": refresh}))
            .send()
            .await
            .unwrap();
    }
    let reuse = served.wait_for("a refresh token reuse", |l| {
        l["security_event"] == "refresh_token_reused"
    });
    for line in [&event, &reuse] {
        let text = line.to_string();
        for secret in [
            password,
            "wrong guess",
            refresh,
            login["access_token"].as_str().unwrap(),
        ] {
            assert!(!text.contains(secret), "a secret reached the log: {text}");
        }
        assert!(
            !text.contains("logged@example.com"),
            "an address reached the log: {text}"
        );
    }
}

#[tokio::test]
async fn outside_development_mail_without_smtp_is_dropped_and_its_tokens_never_logged() {
    let db = TestDatabase::migrated().await;
    let served = Served::start(&[
        ("DATABASE_URL", db.url().expose()),
        ("ENVIRONMENT", "production"),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
        ("BCRYPT_COST", "10"),
        ("SECRET_KEY", STRONG_KEY),
    ]);
    served.wait_for("the warning", |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("SMTP_HOST is unset"))
    });
    let listening = served.wait_for("listening", |l| l["message"] == "listening");
    let port = listening["port"].as_u64().unwrap();
    let register = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "quiet@example.com", "password": "an unguessable secret passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 202);
    let dropped = served.wait_for("the dropped mail", |l| {
        l["message"] == "mail dropped: SMTP_HOST is unset"
    });
    assert_eq!(dropped["subject"], "Confirm your email address");
    let text = dropped.to_string();
    assert!(
        !text.contains("token=") && !text.contains("sovev_"),
        "{text}"
    );
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_the_ticket_never_reaches_the_log() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let db = TestDatabase::migrated().await;
    let mut served = Served::start(&[
        ("DATABASE_URL", db.url().expose()),
        ("PORT", "0"),
        ("WORKERS", "1"),
        ("LOG_FORMAT", "json"),
        ("SHUTDOWN_TIMEOUT_SECONDS", "20"),
        ("BCRYPT_COST", "4"),
        ("BACKEND_CORS_ORIGINS", "https://app.example.com"),
        ("METRICS_ADDR", "off"),
    ]);
    let listening = served.wait_for("listening", |l| l["message"] == "listening");
    let port = listening["port"].as_u64().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let account = serde_json::json!({
        "email": "sigterm@example.com",
        "password": "correct horse battery staple",
        "full_name": "Sig Term",
    });
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 202);
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"email": account["email"], "password": account["password"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let ticket: Value = client
        .post(format!("{base}/api/v1/realtime/ticket"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();

    let mut request = format!("ws://127.0.0.1:{port}/api/v1/ws?ticket={ticket}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://app.example.com".parse().unwrap());
    request
        .headers_mut()
        .insert("x-request-id", "ws-sigterm-1".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let welcome = socket.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"));

    // The handshake's log line names the route, never the ticket.
    let line = served.wait_for("the handshake", |l| {
        l["message"] == "request completed" && l["span"]["request_id"] == "ws-sigterm-1"
    });
    assert_eq!(line["route"], "/api/v1/ws");
    assert!(!line.to_string().contains(&ticket), "{line}");

    let mut child = served.child.take().unwrap();
    let pid = child.id().to_string();
    let signalled = Instant::now();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a close frame within 10 s of SIGTERM")
        {
            Some(Ok(Message::Close(frame))) => break frame.expect("a close code"),
            Some(Ok(_)) => {}
            other => panic!("the socket ended without a close frame: {other:?}"),
        }
    };
    assert_eq!(u16::from(close.code), 1001);
    // Long before the 20 s shutdown timeout: the socket did not hold the shutdown up.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    let exited = tokio::time::timeout(
        Duration::from_secs(15),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("the server exits after SIGTERM");
    assert!(exited.unwrap().unwrap().success());
}
