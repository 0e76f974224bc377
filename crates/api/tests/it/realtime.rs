//! `GET /api/v1/ws` over real sockets: the handshake's authentication and Origin rules, tickets,
//! frames both ways, server-side publishing, caps with their close codes, heartbeats, and
//! revocation across two instances sharing Redis.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use crate::common::{TestApp, Tokens};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const ORIGIN: &str = "https://app.example.com";
/// Generous for a loaded 2-core machine; every wait returns as soon as its frame arrives.
const WAIT: Duration = Duration::from_secs(10);

fn vars() -> Vec<(&'static str, &'static str)> {
    vec![("BACKEND_CORS_ORIGINS", ORIGIN)]
}

pub(crate) fn ws_url(app: &TestApp, query: &str) -> String {
    format!("{}/api/v1/ws{query}", app.address.replacen("http", "ws", 1))
}

/// Opens a socket with the given headers; the handshake's HTTP answer on refusal.
pub(crate) async fn open(url: &str, headers: &[(&str, &str)]) -> Result<Socket, (u16, Value)> {
    let mut request = url.into_client_request().unwrap();
    // Appended: a name given twice is sent twice.
    for (name, value) in headers {
        request.headers_mut().append(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match connect_async(request).await {
        Ok((socket, response)) => {
            assert_eq!(response.status(), 101);
            Ok(socket)
        }
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json"
            );
            let body = response.body().clone().unwrap_or_default();
            Err((status, serde_json::from_slice(&body).unwrap()))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

pub(crate) async fn open_bearer(app: &TestApp, token: &str) -> Socket {
    open(
        &ws_url(app, ""),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap_or_else(|(status, body)| panic!("{status} {body}"))
}

/// The next text frame as JSON, skipping presence events (pings are answered by the library).
pub(crate) async fn next(socket: &mut Socket) -> Value {
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame in time")
            .expect("an open socket")
            .unwrap();
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] != "presence" {
                return frame;
            }
        }
    }
}

pub(crate) async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// Reads until the server closes; returns the close code.
async fn closed_with(socket: &mut Socket) -> u16 {
    loop {
        match tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket failed before closing: {e}"),
            None => panic!("socket ended without a close frame"),
        }
    }
}

/// The server closes `socket` with `code` less than a second after `started`.
async fn closes_within_a_second(socket: &mut Socket, started: Instant, code: u16) {
    assert_eq!(closed_with(socket).await, code);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

pub(crate) async fn welcome(socket: &mut Socket) -> Value {
    let frame = next(socket).await;
    assert_eq!(frame["type"], "welcome", "{frame}");
    frame
}

pub(crate) async fn subscribe(socket: &mut Socket, channel: &str) -> Value {
    send(
        socket,
        json!({"type": "subscribe", "id": channel, "channel": channel}),
    )
    .await;
    let ack = next(socket).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["channel"], channel);
    ack
}

async fn ticket(app: &TestApp, tokens: &Tokens) -> String {
    let response = app
        .call(
            Method::POST,
            "/api/v1/realtime/ticket",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 30);
    body["ticket"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn handshakes_without_valid_credentials_or_from_other_origins_are_refused() {
    let app = TestApp::spawn_with(&vars(), None).await;
    let tokens = app.signup("ws-refusals@example.com").await;
    let url = ws_url(&app, "");

    let (status, body) = open(&url, &[]).await.unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("not_authenticated"))
    );
    assert!(body["request_id"].is_string());
    let (status, body) = open(&url, &[("authorization", "Bearer not-a-token")])
        .await
        .unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token"))
    );

    // The right credentials on a request that is not a websocket handshake.
    crate::common::expect_problem(
        app.get_auth("/api/v1/ws", &tokens.access).await,
        400,
        "not_a_websocket",
    )
    .await;

    // A valid token from a page of another origin.
    let bearer = format!("Bearer {}", tokens.access);
    let (status, body) = open(
        &url,
        &[
            ("authorization", &bearer),
            ("origin", "https://evil.example"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    // The same token from the allowed origin, or from a program (no Origin), is accepted.
    let mut socket = open(&url, &[("authorization", &bearer), ("origin", ORIGIN)])
        .await
        .unwrap();
    welcome(&mut socket).await;
    welcome(&mut open_bearer(&app, &tokens.access).await).await;

    // Tickets: one use, the right origin, and only while fresh.
    let first = ticket(&app, &tokens).await;
    let with_ticket = ws_url(&app, &format!("?ticket={first}"));
    let (status, body) = open(&with_ticket, &[]).await.unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_required"))
    );
    let (status, _) = open(&with_ticket, &[("origin", "https://evil.example")])
        .await
        .unwrap_err();
    assert_eq!(status, 403);
    let mut socket = open(&with_ticket, &[("origin", ORIGIN)]).await.unwrap();
    assert_eq!(
        welcome(&mut socket).await["expires_at"]
            .as_i64()
            .map(|e| e > 0),
        Some(true)
    );
    let (status, body) = open(&with_ticket, &[("origin", ORIGIN)]).await.unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_ticket"))
    );
    let (status, body) = open(
        &ws_url(&app, "?ticket=sovwst_forged"),
        &[("origin", ORIGIN)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_ticket"))
    );

    // API keys connect with their header, never with a ticket.
    let key = app
        .post_json(
            "/api/v1/api-keys",
            Some(&tokens.access),
            json!({"name": "ws", "scopes": ["read"]}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let refused = app
        .call(
            Method::POST,
            "/api/v1/realtime/ticket",
            Some(&key),
            &[],
            None,
        )
        .await;
    assert_eq!(refused.status(), 403);
    let mut keyed = open(&url, &[("x-api-key", &key)]).await.unwrap();
    welcome(&mut keyed).await;
    // A read-only key subscribes but may not publish.
    subscribe(&mut keyed, "public:news").await;
    send(
        &mut keyed,
        json!({"type": "publish", "id": 1, "channel": "public:news", "payload": 1}),
    )
    .await;
    let error = next(&mut keyed).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
}

#[tokio::test]
async fn a_handshake_with_a_repeated_header_or_two_credentials_is_refused() {
    let app = TestApp::spawn_with(&vars(), None).await;
    let ada = app.signup("ws-ada@example.com").await;
    let bob = app.signup("ws-bob@example.com").await;
    let url = ws_url(&app, "");
    let (ada_bearer, bob_bearer) = (
        format!("Bearer {}", ada.access),
        format!("Bearer {}", bob.access),
    );
    // Each alone opens (the control).
    let bob_id = welcome(&mut open_bearer(&app, &bob.access).await).await["user"].clone();
    assert!(bob_id.is_string());

    let refusals: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("authorization", &ada_bearer),
                ("authorization", &bob_bearer),
            ],
            "duplicate_header",
        ),
        (
            &[
                ("authorization", &bob_bearer),
                ("authorization", &ada_bearer),
            ],
            "duplicate_header",
        ),
        (
            &[("authorization", &bob_bearer), ("x-api-key", "sovak_bogus")],
            "ambiguous_credentials",
        ),
        (
            &[
                ("authorization", "Bearer not-a-token"),
                ("x-api-key", "sovak_bogus"),
            ],
            "ambiguous_credentials",
        ),
    ];
    for (headers, code) in refusals {
        let (status, body) = open(&url, headers).await.unwrap_err();
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some(code)),
            "{headers:?}"
        );
    }

    // A ticket beside a header credential is two credentials too, and the ticket is not spent.
    let ticket = ticket(&app, &ada).await;
    let with_ticket = ws_url(&app, &format!("?ticket={ticket}"));
    let (status, body) = open(
        &with_ticket,
        &[("authorization", &bob_bearer), ("origin", ORIGIN)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("ambiguous_credentials"))
    );
    let mut socket = open(&with_ticket, &[("origin", ORIGIN)]).await.unwrap();
    assert_ne!(welcome(&mut socket).await["user"], bob_id);
}

/// The next frame that is not a ping or pong, or `None` when the stream has ended.
async fn next_frame(socket: &mut Socket) -> Option<Result<Message, WsError>> {
    loop {
        let frame = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("a frame or the end in time");
        if !matches!(frame, Some(Ok(Message::Ping(_) | Message::Pong(_)))) {
            return frame;
        }
    }
}

#[tokio::test]
async fn a_client_close_is_answered_with_its_code_and_the_connection_then_ends() {
    let app = TestApp::spawn_with(&vars(), None).await;
    let tokens = app.signup("ws-close@example.com").await;
    for code in [Some(1000), Some(4321), None] {
        let mut socket = open_bearer(&app, &tokens.access).await;
        welcome(&mut socket).await;
        let frame = code.map(|code| CloseFrame {
            code: CloseCode::from(code),
            reason: "done".into(),
        });
        socket.send(Message::Close(frame)).await.unwrap();
        // RFC 6455 §5.5.1: the server echoes the Close (its code), then closes the connection.
        match next_frame(&mut socket).await {
            Some(Ok(Message::Close(answer))) => {
                assert_eq!(answer.map(|f| u16::from(f.code)), code);
            }
            other => panic!("expected a Close frame for {code:?}, got {other:?}"),
        }
        let end = next_frame(&mut socket).await;
        assert!(
            end.is_none(),
            "the stream ends after the closing handshake: {end:?}"
        );
    }
}

#[tokio::test]
async fn an_expired_ticket_is_refused() {
    let mut all = vars();
    all.push(("REALTIME_TICKET_TTL_SECONDS", "1"));
    let app = TestApp::spawn_with(&all, None).await;
    let tokens = app.signup("ws-expiry@example.com").await;
    let response = app
        .call(
            Method::POST,
            "/api/v1/realtime/ticket",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    let stale = response.json::<Value>().await.unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    // What is under test is the lifetime itself, so time has to pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = open(
        &ws_url(&app, &format!("?ticket={stale}")),
        &[("origin", ORIGIN)],
    )
    .await
    .unwrap_err();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_ticket"))
    );
}

#[tokio::test]
async fn messages_flow_from_sockets_and_from_backends() {
    let app = TestApp::spawn_with(&vars(), None).await;
    let admin = app.signup_as("ws-admin@example.com", "admin").await;
    let user = app.signup("ws-user@example.com").await;
    let mut reader = open_bearer(&app, &user.access).await;
    let user_id = welcome(&mut reader).await["user"]
        .as_str()
        .unwrap()
        .to_owned();
    subscribe(&mut reader, "public:news").await;
    subscribe(&mut reader, &format!("user:{user_id}")).await;

    // A user publishes from a socket.
    let mut writer = open_bearer(&app, &user.access).await;
    welcome(&mut writer).await;
    send(
        &mut writer,
        json!({"type": "publish", "id": "w1", "channel": "public:news", "payload": {"text": "hi"}}),
    )
    .await;
    let ack = next(&mut writer).await;
    assert_eq!(
        (
            ack["type"].as_str(),
            ack["id"].as_str(),
            ack["offset"].as_u64()
        ),
        (Some("ack"), Some("w1"), Some(1))
    );
    let message = next(&mut reader).await;
    assert_eq!(message["type"], "message");
    assert_eq!(message["payload"]["text"], "hi");
    assert_eq!(message["publisher"], user_id.as_str());

    // An administrator's backend publishes to the user's own channel; users may not.
    let notify = json!({"channel": format!("user:{user_id}"), "payload": {"note": "for you"}});
    let refused = app
        .post_json(
            "/api/v1/realtime/publish",
            Some(&user.access),
            notify.clone(),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let published = app
        .post_json("/api/v1/realtime/publish", Some(&admin.access), notify)
        .await;
    assert_eq!(published.status(), 202);
    let body: Value = published.json().await.unwrap();
    assert_eq!(body["offset"], 1);
    let message = next(&mut reader).await;
    assert_eq!(message["channel"], format!("user:{user_id}"));
    assert_eq!(message["payload"]["note"], "for you");
    assert!(message["publisher"].is_null());

    // A backend with an admin API key that may write publishes too.
    let key = app
        .post_json(
            "/api/v1/api-keys",
            Some(&admin.access),
            json!({"name": "backend", "role": "admin", "scopes": ["read", "write"]}),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let from_backend = app
        .post_json(
            "/api/v1/realtime/publish",
            Some(&key),
            json!({"channel": "public:news", "payload": "from a backend"}),
        )
        .await;
    assert_eq!(from_backend.status(), 202);
    assert_eq!(next(&mut reader).await["payload"], "from a backend");

    // Bad requests to the publishing route are problems with their codes.
    let bad = app
        .post_json(
            "/api/v1/realtime/publish",
            Some(&admin.access),
            json!({"channel": "nope", "payload": 1}),
        )
        .await;
    crate::common::expect_problem(bad, 422, "invalid_channel").await;
    let big = app
        .post_json(
            "/api/v1/realtime/publish",
            Some(&admin.access),
            json!({"channel": "public:news", "payload": "x".repeat(20_000)}),
        )
        .await;
    crate::common::expect_problem(big, 413, "message_too_large").await;

    // Protocol mistakes answer with error frames; pings with pongs.
    send(
        &mut reader,
        json!({"type": "subscribe", "id": 7, "channel": "admin:ops"}),
    )
    .await;
    let error = next(&mut reader).await;
    assert_eq!(
        (error["code"].as_str(), error["id"].as_i64()),
        (Some("forbidden"), Some(7))
    );
    reader
        .send(Message::text("{\"type\":\"shout\"}"))
        .await
        .unwrap();
    assert_eq!(next(&mut reader).await["code"], "invalid_message");
    send(&mut reader, json!({"type": "ping", "id": 8})).await;
    assert_eq!(next(&mut reader).await, json!({"type": "pong", "id": 8}));

    // A refresh with a new token of the same account is acknowledged with its expiry.
    let again = app.login("ws-user@example.com").await;
    send(
        &mut reader,
        json!({"type": "refresh", "id": 9, "token": again.access}),
    )
    .await;
    let ack = next(&mut reader).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_i64()),
        (Some("ack"), Some(9))
    );
    assert!(ack["expires_at"].as_i64().unwrap() > 0);
    send(
        &mut reader,
        json!({"type": "refresh", "id": 10, "token": admin.access}),
    )
    .await;
    assert_eq!(next(&mut reader).await["code"], "invalid_token");

    let ready: Value = app.get("/ready").await.json().await.unwrap();
    assert_eq!(ready["checks"]["realtime"]["status"], "ok");
    assert!(
        ready["checks"]["realtime"]["backend"]
            .as_str()
            .unwrap()
            .contains("2 connections")
    );
}

#[tokio::test]
async fn oversize_frames_binary_frames_and_silent_clients_are_closed_with_their_codes() {
    let mut all = vars();
    all.extend([
        ("REALTIME_MAX_FRAME_BYTES", "1024"),
        ("REALTIME_PING_INTERVAL_MS", "200"),
        ("REALTIME_PONG_TIMEOUT_MS", "300"),
    ]);
    let app = TestApp::spawn_with(&all, None).await;
    let tokens = app.signup("ws-caps@example.com").await;

    let mut big = open_bearer(&app, &tokens.access).await;
    welcome(&mut big).await;
    big.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(closed_with(&mut big).await, 1009);

    let mut binary = open_bearer(&app, &tokens.access).await;
    welcome(&mut binary).await;
    binary.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(closed_with(&mut binary).await, 1003);

    // One client reads (and so answers pings); the other reads nothing for a while.
    let mut alive = open_bearer(&app, &tokens.access).await;
    let silent = open_bearer(&app, &tokens.access).await;
    welcome(&mut alive).await;
    let started = Instant::now();
    let mut silent = Some(silent);
    let mut code = None;
    while started.elapsed() < Duration::from_millis(1500) {
        send(&mut alive, json!({"type": "ping"})).await;
        assert_eq!(next(&mut alive).await["type"], "pong");
        if started.elapsed() > Duration::from_millis(1200)
            && let Some(mut socket) = silent.take()
        {
            code = Some(closed_with(&mut socket).await);
        }
    }
    assert_eq!(
        code,
        Some(4009),
        "the silent client is closed for its missing pong"
    );
    // The reading client outlived several ping intervals.
    send(&mut alive, json!({"type": "ping", "id": "still"})).await;
    assert_eq!(next(&mut alive).await["id"], "still");
}

async fn pair() -> (TestApp, TestApp) {
    TestApp::pair("ws-revocation", &[("BACKEND_CORS_ORIGINS", ORIGIN)]).await
}

#[tokio::test]
async fn logout_and_role_changes_close_sockets_on_the_other_instance_within_a_second() {
    let (a, b) = pair().await;
    let admin = a.signup_as("ws-rev-admin@example.com", "admin").await;
    let tokens = a.signup("ws-rev@example.com").await;

    // Fan-out across the two instances first.
    let mut on_b = open_bearer(&b, &tokens.access).await;
    let user_id = welcome(&mut on_b).await["user"]
        .as_str()
        .unwrap()
        .to_owned();
    subscribe(&mut on_b, "public:news").await;
    let published = a
        .post_json(
            "/api/v1/realtime/publish",
            Some(&admin.access),
            json!({"channel": "public:news", "payload": "from a"}),
        )
        .await;
    assert_eq!(published.status(), 202);
    assert_eq!(next(&mut on_b).await["payload"], "from a");

    // Logging out on A closes the session's socket on B.
    let started = Instant::now();
    let out = a
        .call(
            Method::POST,
            "/api/v1/auth/logout",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status(), 204);
    closes_within_a_second(&mut on_b, started, 4001).await;

    // A role change made on A revokes the account's sessions, so their sockets on B close.
    let fresh = a.login("ws-rev@example.com").await;
    let mut again = open_bearer(&b, &fresh.access).await;
    welcome(&mut again).await;
    let started = Instant::now();
    let changed = a
        .call(
            Method::PUT,
            &format!("/api/v1/users/{user_id}/role"),
            Some(&admin.access),
            &[],
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(changed.status(), 200, "{}", changed.text().await.unwrap());
    closes_within_a_second(&mut again, started, 4001).await;

    // A profile change keeps the socket open.
    let other = a.login("ws-rev@example.com").await;
    let mut kept = open_bearer(&b, &other.access).await;
    welcome(&mut kept).await;
    let renamed = a
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&other.access),
            &[],
            Some(json!({"full_name": "Renamed"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    send(&mut kept, json!({"type": "ping", "id": "after"})).await;
    assert_eq!(next(&mut kept).await["id"], "after");
}

/// The login token re-signed (with the server's key) to expire `seconds` from now: the shortest
/// configurable lifetime is a minute.
fn expiring_in(token: &str, secret: &str, seconds: i64) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let mut claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["exp"] = json!(chrono::Utc::now().timestamp() + seconds);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn an_expiring_access_token_closes_its_socket_unless_refreshed_in_time() {
    let secret = "a test key for expiring tokens, 32+ bytes long";
    let mut all = vars();
    all.push(("SECRET_KEY", secret));
    let app = TestApp::spawn_with(&all, None).await;
    let tokens = app.signup("ws-expiring@example.com").await;
    let short = expiring_in(&tokens.access, secret, 2);
    // The forged-by-us token is a valid one: the API accepts it.
    assert_eq!(app.get_auth("/api/v1/users/me", &short).await.status(), 200);

    let mut lapsing = open_bearer(&app, &short).await;
    let mut refreshed = open_bearer(&app, &short).await;
    let expires = welcome(&mut lapsing).await["expires_at"].as_i64().unwrap();
    assert!(expires <= chrono::Utc::now().timestamp() + 2);
    welcome(&mut refreshed).await;
    send(
        &mut refreshed,
        json!({"type": "refresh", "id": 1, "token": tokens.access}),
    )
    .await;
    let ack = next(&mut refreshed).await;
    assert_eq!(
        (ack["type"].as_str(), ack["id"].as_i64()),
        (Some("ack"), Some(1))
    );

    let started = Instant::now();
    assert_eq!(closed_with(&mut lapsing).await, 4002);
    assert!(started.elapsed() < Duration::from_secs(5));
    // The refreshed socket outlives the first token.
    send(&mut refreshed, json!({"type": "ping", "id": "later"})).await;
    assert_eq!(next(&mut refreshed).await["id"], "later");
}
