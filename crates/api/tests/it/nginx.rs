//! The shipped nginx site in front of the real server: a local nginx (from
//! `deploy/nginx/sovereign.conf`, with local ports and a self-signed certificate) proxies HTTPS
//! and websockets to a production-mode server that trusts only it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::TestApp;

#[path = "../../../../xtask/src/nginx_conf.rs"]
mod nginx_conf;

const STRONG_KEY: &str = "q8Jx2mV7pL0sT4wZ9cR1nB6yK3hD5fGaE8uI2oP7";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nginx: `TEST_NGINX`, or the one on the PATH (`cargo xtask ci` installs nginx-light).
fn nginx_binary() -> PathBuf {
    if let Ok(path) = std::env::var("TEST_NGINX") {
        return path.into();
    }
    for candidate in ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!("no nginx: run `cargo xtask ci` once (it installs nginx-light), or set TEST_NGINX");
}

struct Nginx {
    child: Child,
    dir: PathBuf,
    https_port: u16,
    http_port: u16,
    cert: PathBuf,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(upstream_port: u16) -> Self {
        let dir = crate::common::tempdir();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = Command::new("openssl")
            .args(nginx_conf::self_signed_args(&cert, &key))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(made.success(), "openssl could not make a certificate");
        let (http_port, https_port) = (free_port(), free_port());
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/nginx/sovereign.conf"
        ))
        .unwrap();
        let local = nginx_conf::Local {
            dir: &dir,
            http_port,
            https_port,
            upstream_port,
            cert: &cert,
            key: &key,
        };
        let site = dir.join("sovereign.conf");
        std::fs::write(&site, nginx_conf::site(&shipped, &local).unwrap()).unwrap();
        let main = dir.join("nginx.conf");
        std::fs::write(&main, nginx_conf::main_conf(&dir, &site)).unwrap();
        let nginx = nginx_binary();
        let checked = Command::new(&nginx)
            .arg("-t")
            .arg("-c")
            .arg(&main)
            .arg("-p")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = Command::new(&nginx)
            .arg("-c")
            .arg(&main)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let nginx = Self {
            child,
            dir,
            https_port,
            http_port,
            cert,
        };
        // Started means accepting connections.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", https_port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// An HTTPS client trusting the test certificate, connecting from `source` (a loopback
    /// address of its own, so nginx sees a client that is not the trusted proxy).
    fn client(&self, source: Ipv4Addr) -> reqwest::Client {
        let pem = std::fs::read(&self.cert).unwrap();
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .local_address(IpAddr::V4(source))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https_port)
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sovereign.access.log")).unwrap_or_default()
    }
}

/// A websocket through nginx over TLS, from `source`.
async fn websocket(
    nginx: &Nginx,
    source: Ipv4Addr,
    path: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&nginx.cert).unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
    roots.add(der).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0)).unwrap();
    let tcp = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], nginx.https_port)))
        .await
        .unwrap();
    let mut request = format!("wss://localhost:{}{path}", nginx.https_port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, response) = tokio_tungstenite::client_async_tls_with_config(
        request,
        tcp,
        None,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(config))),
    )
    .await
    .expect("a websocket through nginx");
    assert_eq!(response.status(), 101);
    socket
}

#[tokio::test]
async fn behind_the_shipped_nginx_https_gets_hsts_the_forwarded_client_is_limited_and_websockets_work()
 {
    let app = TestApp::spawn_with(
        &[
            ("ENVIRONMENT", "production"),
            ("SECRET_KEY", STRONG_KEY),
            ("TRUSTED_PROXIES", "127.0.0.1"),
            ("RATE_LIMIT_API", "2/minute"),
            ("BACKEND_CORS_ORIGINS", "https://app.example.com"),
            ("PUBLIC_URL", "https://localhost"),
        ],
        None,
    )
    .await;
    let port: u16 = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let nginx = Nginx::start(port);

    // HTTPS through nginx: HSTS (production, and nginx said the scheme was https).
    let first = nginx.client(Ipv4Addr::new(127, 0, 0, 5));
    let response = first.get(nginx.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // Plain HTTP is redirected to HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/health", nginx.http_port))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 301);
    assert!(
        plain.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("https://")
    );

    // The rate limiter counts the address nginx saw (127.0.0.5), whatever the client claims:
    // its own X-Forwarded-For values open no new buckets, and another client has its own.
    let response = first
        .get(nginx.url("/"))
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refused = first
        .get(nginx.url("/"))
        .header("x-forwarded-for", "203.0.113.2")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    let second = nginx.client(Ipv4Addr::new(127, 0, 0, 6));
    assert_eq!(
        second.get(nginx.url("/")).send().await.unwrap().status(),
        200
    );

    // A websocket through nginx over TLS, with a query string that must stay out of the log.
    let admin = app.signup_as("nginx-admin@example.com", "admin").await;
    let mut socket = websocket(
        &nginx,
        Ipv4Addr::new(127, 0, 0, 7),
        "/api/v1/ws?probe=query-must-not-be-logged",
        &admin.access,
    )
    .await;
    let welcome = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    assert_eq!(welcome["type"], "welcome");
    socket
        .send(Message::text(
            json!({"type": "subscribe", "id": 1, "channel": "public:edge"}).to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(
            json!({"type": "publish", "id": 2, "channel": "public:edge", "payload": "through nginx"})
                .to_string(),
        ))
        .await
        .unwrap();
    let mut saw = false;
    while !saw {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("the message in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            saw = text.contains("through nginx");
        }
    }
    socket.close(None).await.unwrap();

    // nginx logs a websocket when it ends: wait for the line, then check it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = nginx.access_log();
        if log.contains("/api/v1/ws") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for the websocket:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(log.contains("GET /api/v1/ws HTTP/1.1\" 101"), "{log}");
    assert!(!log.contains("query-must-not-be-logged"), "{log}");
    assert!(log.contains("127.0.0.5"), "{log}");
}
