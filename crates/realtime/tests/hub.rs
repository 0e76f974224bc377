//! The hub against real caches: the machine's Redis (two hubs sharing it are two instances),
//! the in-process cache, and a private `redis-server` that is killed and restarted.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use serde_json::value::RawValue;
use sovereign_auth::Role;
use sovereign_auth::revocation::{CHANNEL as REVOCATIONS, Revocation};
use sovereign_cache::{Cache, CacheSettings, Quota, RateLimiter};
use sovereign_core::settings::SecretUrl;
use sovereign_realtime::{
    Channel, Close, Connection, CredentialRef, Event, Hub, Identity, RealtimeSettings,
};
use sovereign_test_redis::RedisServer;
use uuid::Uuid;

/// Long enough for a loaded 2-core machine; every wait below returns as soon as its event comes.
const WAIT: Duration = Duration::from_secs(5);

fn redis_cache(prefix: &str) -> Cache {
    Cache::new(&CacheSettings {
        url: Some(SecretUrl::parse(&sovereign_test_redis::shared_url()).unwrap()),
        prefix: prefix.to_owned(),
        timeout: Duration::from_secs(2),
        ..CacheSettings::default()
    })
    .unwrap()
}

async fn hub_on(cache: &Cache, config: RealtimeSettings) -> Hub {
    Hub::start(cache, Arc::new(RateLimiter::new(cache, 4)), config).await
}

/// Two instances sharing one Redis namespace.
async fn two_instances(test: &str, config: &RealtimeSettings) -> (Cache, Hub, Hub) {
    let prefix = sovereign_test_redis::unique_prefix(test);
    let cache = redis_cache(&prefix);
    let one = hub_on(&cache, config.clone()).await;
    let two = hub_on(&redis_cache(&prefix), config.clone()).await;
    (cache, one, two)
}

fn identity(tenant: Uuid, role: Role) -> Identity {
    Identity {
        tenant,
        user: Uuid::now_v7(),
        role,
        credential: CredentialRef::Session(Uuid::now_v7()),
        can_write: true,
        expires_at: None,
    }
}

/// A connected client: skips `welcome`, reads frames as JSON.
struct Client {
    connection: Connection,
    /// Frames read while looking for another type (a publisher's own message may come before
    /// its ack), in order.
    stash: std::collections::VecDeque<Value>,
}

impl Client {
    async fn connect(hub: &Hub, identity: Identity) -> Self {
        let mut client = Self {
            connection: hub.connect(identity).unwrap(),
            stash: std::collections::VecDeque::new(),
        };
        assert_eq!(client.next().await["type"], "welcome");
        client
    }

    async fn send(&mut self, frame: Value) {
        assert!(
            self.connection
                .handle_text(&frame.to_string())
                .await
                .is_none()
        );
    }

    async fn event(&mut self) -> Event {
        tokio::time::timeout(WAIT, self.connection.next_event())
            .await
            .expect("an event in time")
    }

    async fn next(&mut self) -> Value {
        if let Some(frame) = self.stash.pop_front() {
            return frame;
        }
        match self.event().await {
            Event::Send(text) => serde_json::from_str(&text).unwrap(),
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame of `kind`, skipping presence noise; other frames are kept for later.
    async fn next_of(&mut self, kind: &str) -> Value {
        if let Some(at) = self.stash.iter().position(|f| f["type"] == kind) {
            return self.stash.remove(at).unwrap();
        }
        loop {
            let frame = match self.event().await {
                Event::Send(text) => serde_json::from_str::<Value>(&text).unwrap(),
                other => panic!("expected {kind}, got {other:?}"),
            };
            if frame["type"] == kind {
                return frame;
            }
            if frame["type"] != "presence" {
                self.stash.push_back(frame);
            }
        }
    }

    async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(serde_json::json!({"type": "subscribe", "id": 1, "channel": channel}))
            .await;
        self.next_of("ack").await
    }

    /// Nothing but presence frames arrive within `quiet`.
    async fn assert_no_message(&mut self, quiet: Duration) {
        assert!(
            self.stash.iter().all(|f| f["type"] == "presence"),
            "unexpected frames {:?}",
            self.stash
        );
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(event) = tokio::time::timeout_at(deadline, self.connection.next_event()).await
        {
            match event {
                Event::Send(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["type"], "presence", "unexpected frame {frame}");
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}

fn raw(value: &Value) -> Box<RawValue> {
    RawValue::from_string(value.to_string()).unwrap()
}

async fn publish(hub: &Hub, tenant: Uuid, channel: &str, payload: Value) -> u64 {
    hub.publish_as_server(tenant, &Channel::parse(channel).unwrap(), &raw(&payload))
        .await
        .unwrap()
        .offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_instances_and_never_tenants() {
    let (_cache, one, two) = two_instances("cross", &RealtimeSettings::default()).await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let mut a_on_one = Client::connect(&one, identity(a, Role::User)).await;
    let mut a_on_two = Client::connect(&two, identity(a, Role::User)).await;
    let mut b_on_two = Client::connect(&two, identity(b, Role::User)).await;
    for client in [&mut a_on_one, &mut a_on_two, &mut b_on_two] {
        client.subscribe("public:news").await;
    }
    // Tenant A publishes from a connection on instance one; B publishes on the same name.
    a_on_one
        .send(serde_json::json!({"type": "publish", "id": "p", "channel": "public:news", "payload": {"n": 1}}))
        .await;
    let ack = a_on_one.next_of("ack").await;
    assert_eq!(ack["id"], "p");
    assert_eq!(ack["offset"], 1);
    publish(&two, b, "public:news", serde_json::json!({"secret": "b"})).await;

    for client in [&mut a_on_one, &mut a_on_two] {
        let message = client.next_of("message").await;
        assert_eq!(message["payload"], serde_json::json!({"n": 1}));
        assert_eq!(message["channel"], "public:news");
        assert_eq!(message["offset"], 1);
    }
    let message = b_on_two.next_of("message").await;
    assert_eq!(message["payload"], serde_json::json!({"secret": "b"}));
    // Neither side sees the other tenant's message.
    a_on_one.assert_no_message(Duration::from_millis(300)).await;
    a_on_two.assert_no_message(Duration::from_millis(10)).await;
    b_on_two.assert_no_message(Duration::from_millis(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_and_admin_channels_follow_their_rules() {
    let cache = Cache::in_memory(&sovereign_test_redis::unique_prefix("rules"));
    let hub = hub_on(&cache, RealtimeSettings::default()).await;
    let tenant = Uuid::now_v7();
    let user = identity(tenant, Role::User);
    let admin = identity(tenant, Role::Admin);
    let mut alice = Client::connect(&hub, user).await;
    let mut boss = Client::connect(&hub, admin).await;

    let own = format!("user:{}", user.user);
    assert_eq!(alice.subscribe(&own).await["channel"], own.as_str());
    for (client, channel) in [
        (&mut alice, "admin:ops".to_owned()),
        (&mut boss, own.clone()),
    ] {
        client
            .send(serde_json::json!({"type": "subscribe", "id": 2, "channel": channel}))
            .await;
        let error = client.next_of("error").await;
        assert_eq!(error["code"], "forbidden");
        assert_eq!(error["id"], 2);
    }
    // Nobody publishes on a user channel from a socket; the server does.
    alice
        .send(serde_json::json!({"type": "publish", "id": 3, "channel": own, "payload": 1}))
        .await;
    assert_eq!(alice.next_of("error").await["code"], "forbidden");
    publish(&hub, tenant, &own, serde_json::json!("for alice")).await;
    assert_eq!(alice.next_of("message").await["payload"], "for alice");

    assert_eq!(boss.subscribe("admin:ops").await["channel"], "admin:ops");
    boss.send(serde_json::json!({"type": "publish", "id": 4, "channel": "admin:ops", "payload": {"x": 1}}))
        .await;
    assert_eq!(boss.next_of("ack").await["id"], 4);
    assert_eq!(boss.next_of("message").await["payload"]["x"], 1);
    alice.assert_no_message(Duration::from_millis(200)).await;

    // Invalid names are refused with their own code.
    alice
        .send(serde_json::json!({"type": "subscribe", "id": 5, "channel": "private:x"}))
        .await;
    assert_eq!(alice.next_of("error").await["code"], "invalid_channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_recovers_exactly_what_it_missed_or_is_told_it_cannot() {
    let config = RealtimeSettings {
        history_size: 5,
        ..RealtimeSettings::default()
    };
    let (_cache, one, two) = two_instances("recovery", &config).await;
    let tenant = Uuid::now_v7();
    let who = identity(tenant, Role::User);
    let mut client = Client::connect(&one, who).await;
    let ack = client.subscribe("public:feed").await;
    let epoch = ack["epoch"].as_str().unwrap().to_owned();
    assert_eq!(ack["offset"], 0);
    publish(&two, tenant, "public:feed", serde_json::json!(1)).await;
    assert_eq!(client.next_of("message").await["offset"], 1);
    drop(client);

    // Missed while away: 2, 3, 4. Reconnect (to the other instance) from offset 1.
    for n in 2..=4 {
        publish(&one, tenant, "public:feed", serde_json::json!(n)).await;
    }
    let mut back = Client::connect(&two, who).await;
    back.send(serde_json::json!({"type": "subscribe", "id": 9, "channel": "public:feed", "since": {"epoch": epoch, "offset": 1}}))
        .await;
    let recovered = back.next_of("recovered").await;
    assert_eq!(recovered["recovered"], true);
    assert_eq!(recovered["replayed"], 3);
    assert_eq!(recovered["id"], 9);
    for n in 2..=4 {
        let message = back.next_of("message").await;
        assert_eq!(message["offset"], n);
        assert_eq!(message["payload"], n);
    }
    // Live messages follow the replay, without duplicates.
    publish(&one, tenant, "public:feed", serde_json::json!(5)).await;
    assert_eq!(back.next_of("message").await["offset"], 5);
    drop(back);

    // Six more while away: history (5 messages) no longer reaches offset 5.
    for n in 6..=11 {
        publish(&one, tenant, "public:feed", serde_json::json!(n)).await;
    }
    let mut late = Client::connect(&one, who).await;
    late.send(serde_json::json!({"type": "subscribe", "channel": "public:feed", "since": {"epoch": epoch, "offset": 5}}))
        .await;
    let recovered = late.next_of("recovered").await;
    assert_eq!(recovered["recovered"], false);
    assert_eq!(recovered["replayed"], 0);
    assert_eq!(recovered["offset"], 11);
    publish(&one, tenant, "public:feed", serde_json::json!(12)).await;
    assert_eq!(late.next_of("message").await["offset"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_shared_across_instances_with_join_and_leave_events() {
    let (_cache, one, two) = two_instances("presence", &RealtimeSettings::default()).await;
    let tenant = Uuid::now_v7();
    let alice = identity(tenant, Role::User);
    let bob = identity(tenant, Role::User);
    let mut alice_one = Client::connect(&one, alice).await;
    // Alice asks for join and leave events; Bob does not.
    alice_one
        .send(serde_json::json!({"type": "subscribe", "channel": "public:room", "presence": true}))
        .await;
    alice_one.next_of("ack").await;
    let mut bob_two = Client::connect(&two, bob).await;
    bob_two.subscribe("public:room").await;
    let mut alice_two = Client::connect(&two, alice).await;
    alice_two.subscribe("public:room").await;

    // Alice on instance one sees Bob join on instance two.
    loop {
        let frame = alice_one.next_of("presence").await;
        if frame["user"] == bob.user.to_string() {
            assert_eq!(frame["event"], "join");
            break;
        }
    }
    alice_one
        .send(serde_json::json!({"type": "presence", "id": "who", "channel": "public:room"}))
        .await;
    let state = alice_one.next_of("presence_state").await;
    let mut users = state["users"].as_array().unwrap().clone();
    users.sort_by_key(|u| u["user"].as_str().unwrap().to_owned());
    let mut expected = vec![
        serde_json::json!({"user": alice.user, "connections": 2}),
        serde_json::json!({"user": bob.user, "connections": 1}),
    ];
    expected.sort_by_key(|u| u["user"].as_str().unwrap().to_owned());
    assert_eq!(users, expected);

    // Bob, who did not ask for them, gets no presence events: the next frame he sees is a message.
    publish(&one, tenant, "public:room", serde_json::json!("hello")).await;
    let frame = bob_two.next().await;
    assert_eq!(frame["type"], "message", "{frame}");

    // Bob leaves: instance one hears of it, and he is gone from the state.
    drop(bob_two);
    loop {
        let frame = alice_one.next_of("presence").await;
        if frame["user"] == bob.user.to_string() && frame["event"] == "leave" {
            break;
        }
    }
    assert_eq!(
        one.presence(tenant, &Channel::parse("public:room").unwrap())
            .await
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_dropped_and_never_delays_the_others() {
    let config = RealtimeSettings {
        outbound_queue: 16,
        ..RealtimeSettings::default()
    };
    let cache = redis_cache(&sovereign_test_redis::unique_prefix("slow"));
    let hub = hub_on(&cache, config).await;
    let tenant = Uuid::now_v7();
    let mut slow = Client::connect(&hub, identity(tenant, Role::User)).await;
    let mut fast = Client::connect(&hub, identity(tenant, Role::User)).await;
    slow.subscribe("public:firehose").await;
    fast.subscribe("public:firehose").await;

    // The fast client reads as messages come; the slow one never reads.
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let mut received = Vec::new();
        while received.len() < 100 {
            let frame = fast.next_of("message").await;
            received.push((frame["offset"].as_u64().unwrap(), started.elapsed()));
        }
        received
    });
    for n in 0..100 {
        publish(&hub, tenant, "public:firehose", serde_json::json!(n)).await;
    }
    let received = reader.await.unwrap();
    let offsets: Vec<u64> = received.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (1..=100).collect::<Vec<_>>(),
        "every message, in order"
    );

    // The slow client's next event is its close (after the frames it still had queued).
    loop {
        match slow.event().await {
            Event::Close(close) => {
                assert_eq!(close, Close::SLOW_CONSUMER);
                assert_eq!(close.code, 4008);
                break;
            }
            Event::Send(_) => panic!("a slow consumer's close takes precedence over its queue"),
            Event::Recheck => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_close_or_recheck_sockets_on_every_instance_within_a_second() {
    let (cache, one, two) = two_instances("revoke", &RealtimeSettings::default()).await;
    let tenant = Uuid::now_v7();
    let who = identity(tenant, Role::User);
    let CredentialRef::Session(session) = who.credential else {
        unreachable!()
    };
    let mut on_two = Client::connect(&two, who).await;
    let mut other_session = Client::connect(
        &two,
        Identity {
            credential: CredentialRef::Session(Uuid::now_v7()),
            ..who
        },
    )
    .await;
    drop(one);

    // What `Accounts::announce` publishes, from "instance one".
    let started = Instant::now();
    cache
        .publish(REVOCATIONS, &Revocation::Session(session))
        .await
        .unwrap();
    assert!(matches!(on_two.event().await, Event::Close(Close::REVOKED)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    // An account change asks the transport to recheck; a lower role closes.
    cache
        .publish(REVOCATIONS, &Revocation::User(who.user))
        .await
        .unwrap();
    assert!(matches!(other_session.event().await, Event::Recheck));
    other_session.connection.rechecked(Some(Identity {
        role: Role::User,
        ..who
    }));
    other_session
        .assert_no_message(Duration::from_millis(100))
        .await;
    other_session.connection.rechecked(Some(Identity {
        role: Role::Admin,
        ..who
    }));
    assert!(matches!(
        other_session.event().await,
        Event::Close(Close::ROLE_CHANGED)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_have_their_own_codes() {
    let config = RealtimeSettings {
        max_subscriptions: 2,
        max_connections_per_user: 2,
        max_message_bytes: 64,
        publish_quota: Quota::new(3, Duration::from_secs(60)).unwrap(),
        ..RealtimeSettings::default()
    };
    let cache = Cache::in_memory(&sovereign_test_redis::unique_prefix("limits"));
    let hub = hub_on(&cache, config).await;
    let who = identity(Uuid::now_v7(), Role::User);
    let mut client = Client::connect(&hub, who).await;
    client.subscribe("public:a").await;
    client.subscribe("public:b").await;
    client
        .send(serde_json::json!({"type": "subscribe", "id": 1, "channel": "public:c"}))
        .await;
    assert_eq!(
        client.next_of("error").await["code"],
        "too_many_subscriptions"
    );

    client
        .send(serde_json::json!({"type": "publish", "id": 2, "channel": "public:a", "payload": "x".repeat(100)}))
        .await;
    assert_eq!(client.next_of("error").await["code"], "message_too_large");
    for n in 0..3 {
        client
            .send(serde_json::json!({"type": "publish", "id": n, "channel": "public:a", "payload": n}))
            .await;
        assert_eq!(client.next_of("ack").await["id"], n);
    }
    client
        .send(serde_json::json!({"type": "publish", "id": 9, "channel": "public:a", "payload": 9}))
        .await;
    let error = client.next_of("error").await;
    assert_eq!(error["code"], "rate_limited");
    assert!(error["retry_after_ms"].as_u64().unwrap() > 0);

    let _second = hub.connect(who).unwrap();
    let refused = hub.connect(who).unwrap_err();
    assert_eq!(
        sovereign_core::Diagnostic::code(&refused),
        "too_many_connections"
    );

    // Garbage gets an error frame each time, then the connection is closed.
    for _ in 0..10 {
        client.connection.handle_text("{not json").await;
    }
    let mut invalid = 0;
    loop {
        match client.event().await {
            Event::Close(close) => {
                assert_eq!(close.code, 4010);
                break;
            }
            Event::Send(text) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "error" {
                    assert_eq!(frame["code"], "invalid_message");
                    invalid += 1;
                } else {
                    // Earlier publications still on their way.
                    assert!(["message", "presence"].contains(&frame["type"].as_str().unwrap()));
                }
            }
            Event::Recheck => {}
        }
    }
    // The close takes precedence over frames still queued, so not every error need be read.
    assert!(invalid <= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_1001_and_refuses_new_ones() {
    let cache = Cache::in_memory(&sovereign_test_redis::unique_prefix("shutdown"));
    let hub = hub_on(&cache, RealtimeSettings::default()).await;
    let tenant = Uuid::now_v7();
    let mut first = Client::connect(&hub, identity(tenant, Role::User)).await;
    let mut second = Client::connect(&hub, identity(tenant, Role::Admin)).await;
    hub.shutdown();
    for client in [&mut first, &mut second] {
        match client.event().await {
            Event::Close(close) => assert_eq!(close.code, 1001),
            other => panic!("expected a close, got {other:?}"),
        }
    }
    assert!(hub.connect(identity(tenant, Role::User)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_local_delivery_goes_on_and_crossing_resumes_when_it_returns() {
    let mut server = RedisServer::start();
    let cache_for = || {
        Cache::new(&CacheSettings {
            url: Some(SecretUrl::parse(&server.url()).unwrap()),
            prefix: "rt-faults".into(),
            timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(200),
            ..CacheSettings::default()
        })
        .unwrap()
    };
    let (cache_one, cache_two) = (cache_for(), cache_for());
    let one = hub_on(&cache_one, RealtimeSettings::default()).await;
    let two = hub_on(&cache_two, RealtimeSettings::default()).await;
    let tenant = Uuid::now_v7();
    let mut local = Client::connect(&one, identity(tenant, Role::User)).await;
    let mut remote = Client::connect(&two, identity(tenant, Role::User)).await;
    local.subscribe("public:news").await;
    remote.subscribe("public:news").await;
    publish(&one, tenant, "public:news", serde_json::json!("before")).await;
    assert_eq!(local.next_of("message").await["payload"], "before");
    assert_eq!(remote.next_of("message").await["payload"], "before");

    server.kill();
    let started = Instant::now();
    publish(&one, tenant, "public:news", serde_json::json!("during")).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "publishing hung for {:?}",
        started.elapsed()
    );
    assert_eq!(local.next_of("message").await["payload"], "during");
    assert!(one.status().degraded);
    remote.assert_no_message(Duration::from_millis(300)).await;

    server.restart();
    // Recovery is something to wait for: publish until a message crosses again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        publish(&one, tenant, "public:news", serde_json::json!("after")).await;
        if let Ok(Event::Send(text)) =
            tokio::time::timeout(Duration::from_millis(300), remote.connection.next_event()).await
            && text.contains("after")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cross-instance delivery never resumed"
        );
    }
    assert!(!one.status().degraded);
}
