//! The accounts service against a real PostgreSQL (as the runtime role, under row-level
//! security), without any HTTP.

#![expect(clippy::unwrap_used, reason = "tests fail loudly")]

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sovereign_auth::{
    Accounts, AccountsParts, AuthError, AuthSettings, ClientContext, Outbox, PasswordHasher,
    PasswordPolicy, Registration, TokenKeys,
};
use sovereign_cache::{Cache, Quota};
use sovereign_core::settings::SecretUrl;
use sovereign_db::RunQueryDsl;
use sovereign_db::{Db, PoolSettings};
use sovereign_tenancy::DEFAULT_TENANT_ID;
use sovereign_test_db::TestDatabase;

const PASSWORD: &str = "correct horse battery staple";

struct Harness {
    accounts: Accounts,
    hasher: PasswordHasher,
    outbox: Outbox,
    db: TestDatabase,
}

/// Accounts with no refresh reuse interval: a spent refresh token presented again is reuse at
/// once (what happens after the interval).
async fn harness() -> Harness {
    harness_with(None).await
}

async fn harness_with(cache: Option<Cache>) -> Harness {
    build(cache, Duration::ZERO).await
}

/// Accounts whose spent refresh tokens answer with their successor for `reuse`.
async fn harness_reuse(reuse: Duration) -> Harness {
    build(None, reuse).await
}

async fn build(cache: Option<Cache>, reuse: Duration) -> Harness {
    let db = TestDatabase::migrated().await;
    let pool = Db::new(
        db.url(),
        PoolSettings {
            max_size: 8,
            wait_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            recycle_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let hasher = PasswordHasher::new(4, 4).unwrap();
    let outbox = Outbox::new();
    let accounts = Accounts::new(AccountsParts {
        db: pool,
        cache: cache.unwrap_or_else(|| Cache::in_memory(&format!("t{}", db.name()))),
        limiter: None,
        keys: TokenKeys::hs256(
            b"0123456789abcdef0123456789abcdef-test-only",
            "sovereign",
            "sovereign-api",
            Duration::from_secs(900),
        ),
        hasher: hasher.clone(),
        policy: PasswordPolicy { min_chars: 12 },
        mailer: Arc::new(outbox.clone()),
        settings: AuthSettings {
            refresh_token_ttl: Duration::from_secs(3600),
            refresh_reuse_interval: reuse,
            password_reset_ttl: Duration::from_secs(1800),
            email_verify_ttl: Duration::from_secs(3600),
            account_quota: Quota::per_minute(1000).unwrap(),
            public_url: "http://app.test".to_owned(),
            ..sovereign_core::settings::defaults::<AuthSettings>().unwrap()
        },
    });
    Harness {
        accounts,
        hasher,
        outbox,
        db,
    }
}

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn register(h: &Harness, email: &str) {
    h.accounts
        .register(
            DEFAULT_TENANT_ID,
            Registration {
                email: email.to_owned(),
                password: secret(PASSWORD),
                full_name: "Test".to_owned(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_and_known_addresses_fail_alike_and_both_pay_a_hash() {
    let h = harness().await;
    register(&h, "known@example.com").await;
    let client = ClientContext::default();

    let before = h.hasher.verifications();
    let unknown = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "nobody@example.com",
            &secret(PASSWORD),
            &client,
        )
        .await;
    assert!(matches!(unknown, Err(AuthError::InvalidCredentials)));
    assert_eq!(
        h.hasher.verifications(),
        before + 1,
        "an unknown address still runs bcrypt"
    );

    let wrong = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "known@example.com",
            &secret("wrong password here"),
            &client,
        )
        .await;
    assert!(matches!(wrong, Err(AuthError::InvalidCredentials)));
    assert_eq!(h.hasher.verifications(), before + 2);

    let malformed = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "not an address",
            &secret(PASSWORD),
            &client,
        )
        .await;
    assert!(matches!(malformed, Err(AuthError::InvalidCredentials)));
    assert_eq!(
        h.hasher.verifications(),
        before + 3,
        "even a malformed address runs bcrypt"
    );

    assert!(
        h.accounts
            .login(
                DEFAULT_TENANT_ID,
                "KNOWN@example.com ",
                &secret(PASSWORD),
                &client
            )
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn registering_a_taken_address_answers_the_same_and_tells_the_owner() {
    let h = harness().await;
    register(&h, "taken@example.com").await;
    let welcome = h
        .outbox
        .wait_for("taken@example.com", "Confirm", Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        welcome
            .body
            .contains("http://app.test/verify-email?token=sovev_")
    );
    // Same result, no error, and the owner hears of it.
    register(&h, "Taken@Example.com").await;
    assert!(
        h.outbox
            .wait_for(
                "taken@example.com",
                "tried to register",
                Duration::from_secs(5)
            )
            .await
            .is_some()
    );
}

#[tokio::test]
async fn eight_concurrent_refreshes_inside_the_reuse_interval_get_one_successor_pair() {
    let h = harness_reuse(Duration::from_secs(5)).await;
    register(&h, "parallel@example.com").await;
    let client = ClientContext::default();
    let pair = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "parallel@example.com",
            &secret(PASSWORD),
            &client,
        )
        .await
        .unwrap();
    let attempts = (0..8).map(|_| {
        let accounts = h.accounts.clone();
        let token = pair.refresh_token.clone();
        tokio::spawn(async move { accounts.refresh(&token, &ClientContext::default()).await })
    });
    let results: Vec<_> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let first = &results[0];
    assert_ne!(first.refresh_token, pair.refresh_token);
    for other in &results {
        assert_eq!(
            other.refresh_token, first.refresh_token,
            "one successor, never a branch"
        );
        assert_eq!(
            other.access_token, first.access_token,
            "the same access token too"
        );
        assert_eq!(other.session_id, pair.session_id);
    }
    // Nothing was revoked: the session and its successor work.
    assert!(h.accounts.authenticate(&first.access_token).await.is_ok());
    // One successor on record, not eight.
    let mut owner = h.db.owner_conn().await;
    let rows: Vec<Count> =
        diesel::sql_query("SELECT count(*) AS n FROM refresh_tokens WHERE session_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(pair.session_id)
            .load(&mut owner)
            .await
            .unwrap();
    assert_eq!(rows[0].n, 2, "the first token and its one successor");
    let next = h
        .accounts
        .refresh(&first.refresh_token, &client)
        .await
        .unwrap();
    assert!(h.accounts.authenticate(&next.access_token).await.is_ok());
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[tokio::test]
async fn after_the_reuse_interval_a_replay_revokes_the_session() {
    let h = harness_reuse(Duration::from_secs(5)).await;
    register(&h, "late@example.com").await;
    let client = ClientContext::default();
    let pair = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "late@example.com",
            &secret(PASSWORD),
            &client,
        )
        .await
        .unwrap();
    let next = h
        .accounts
        .refresh(&pair.refresh_token, &client)
        .await
        .unwrap();
    // Inside the interval: the same pair again.
    let again = h
        .accounts
        .refresh(&pair.refresh_token, &client)
        .await
        .unwrap();
    assert_eq!(again.refresh_token, next.refresh_token);
    // The interval passes (the spent token is dated back rather than waited for).
    let mut owner = h.db.owner_conn().await;
    diesel::sql_query("UPDATE refresh_tokens SET spent_at = spent_at - interval '6 seconds' WHERE spent_at IS NOT NULL")
        .execute(&mut owner)
        .await
        .unwrap();
    let replay = h.accounts.refresh(&pair.refresh_token, &client).await;
    assert!(matches!(replay, Err(AuthError::RefreshReused)));
    assert!(
        h.accounts.authenticate(&next.access_token).await.is_err(),
        "the session is revoked"
    );
    assert!(
        h.accounts
            .refresh(&next.refresh_token, &client)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_cannot_both_succeed() {
    let h = harness().await;
    register(&h, "race@example.com").await;
    let client = ClientContext::default();
    for round in 0..5 {
        let pair = h
            .accounts
            .login(
                DEFAULT_TENANT_ID,
                "race@example.com",
                &secret(PASSWORD),
                &client,
            )
            .await
            .unwrap();
        let attempts = (0..8).map(|_| {
            let accounts = h.accounts.clone();
            let token = pair.refresh_token.clone();
            tokio::spawn(async move { accounts.refresh(&token, &ClientContext::default()).await })
        });
        let results: Vec<_> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert!(
            winners.len() <= 1,
            "round {round}: {} refreshes succeeded",
            winners.len()
        );
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(AuthError::RefreshReused))),
            "round {round}: the losers are treated as reuse"
        );
        // The reuse revoked the session: whatever the winner got is dead too.
        for winner in winners {
            assert!(h.accounts.authenticate(&winner.access_token).await.is_err());
            assert!(
                h.accounts
                    .refresh(&winner.refresh_token, &client)
                    .await
                    .is_err()
            );
        }
        assert!(h.accounts.authenticate(&pair.access_token).await.is_err());
    }
}

#[tokio::test]
async fn a_replayed_refresh_token_revokes_the_session_and_only_it() {
    let h = harness().await;
    register(&h, "replay@example.com").await;
    let client = ClientContext::default();
    let login = |h: &Harness| {
        let accounts = h.accounts.clone();
        async move {
            accounts
                .login(
                    DEFAULT_TENANT_ID,
                    "replay@example.com",
                    &secret(PASSWORD),
                    &ClientContext::default(),
                )
                .await
                .unwrap()
        }
    };
    let victim = login(&h).await;
    let other = login(&h).await;
    let next = h
        .accounts
        .refresh(&victim.refresh_token, &client)
        .await
        .unwrap();
    assert!(h.accounts.authenticate(&next.access_token).await.is_ok());

    let replay = h.accounts.refresh(&victim.refresh_token, &client).await;
    assert!(matches!(replay, Err(AuthError::RefreshReused)));
    assert!(
        h.accounts.authenticate(&next.access_token).await.is_err(),
        "the family is revoked"
    );
    assert!(
        h.accounts
            .refresh(&next.refresh_token, &client)
            .await
            .is_err()
    );
    assert!(
        h.accounts.authenticate(&other.access_token).await.is_ok(),
        "another session of the same account lives on"
    );
    // An unknown token is simply invalid (and revokes nothing).
    let forged =
        sovereign_auth::opaque::mint(sovereign_auth::opaque::Kind::Refresh, DEFAULT_TENANT_ID);
    assert!(matches!(
        h.accounts.refresh(&forged.token, &client).await,
        Err(AuthError::InvalidToken(_))
    ));
    assert!(h.accounts.authenticate(&other.access_token).await.is_ok());
}

#[tokio::test]
async fn a_token_for_another_tenant_finds_nothing() {
    let h = harness().await;
    register(&h, "home@example.com").await;
    let pair = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "home@example.com",
            &secret(PASSWORD),
            &ClientContext::default(),
        )
        .await
        .unwrap();
    // Re-label the refresh token with another tenant: row-level security hides the row.
    let relabelled = pair.refresh_token.replacen(
        &DEFAULT_TENANT_ID.simple().to_string(),
        &uuid::Uuid::from_u128(2).simple().to_string(),
        1,
    );
    assert_ne!(relabelled, pair.refresh_token);
    assert!(matches!(
        h.accounts
            .refresh(&relabelled, &ClientContext::default())
            .await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn the_hot_path_answers_from_memory_until_a_revocation_arrives() {
    use sovereign_auth::revocation::Revocation;

    let h = harness().await;
    let started = tokio::time::Instant::now();
    while !h.accounts.remembering() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the revocation listener never started"
        );
        tokio::task::yield_now().await;
    }
    register(&h, "memory@example.com").await;
    let pair = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "memory@example.com",
            &secret(PASSWORD),
            &ClientContext::default(),
        )
        .await
        .unwrap();
    h.accounts.authenticate(&pair.access_token).await.unwrap();

    // Revoke behind the service's back: memory still vouches for the token (no database read)…
    let mut owner = h.db.owner_conn().await;
    diesel::sql_query("UPDATE sessions SET revoked_at = now()")
        .execute(&mut owner)
        .await
        .unwrap();
    assert!(h.accounts.authenticate(&pair.access_token).await.is_ok());
    // …until the revocation is announced, as every revoking operation does after its commit.
    h.accounts
        .announce(Revocation::Session(pair.session_id))
        .await;
    assert!(h.accounts.authenticate(&pair.access_token).await.is_err());
}

#[tokio::test]
async fn every_account_table_is_tenant_owned_and_hidden_without_a_tenant() {
    use diesel::QueryableByName;
    use diesel::sql_types::{BigInt, Text};

    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Text)]
        name: String,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let h = harness().await;
    register(&h, "hidden@example.com").await;
    let mut owner = h.db.owner_conn().await;
    let forced: Vec<String> = diesel::sql_query(
        "SELECT relname::text AS name FROM pg_class
          WHERE relname IN ('users', 'sessions', 'refresh_tokens', 'action_tokens', 'api_keys')
            AND relrowsecurity AND relforcerowsecurity
            AND EXISTS (SELECT FROM pg_policy WHERE polrelid = pg_class.oid)
          ORDER BY 1",
    )
    .load::<Table>(&mut owner)
    .await
    .unwrap()
    .into_iter()
    .map(|t| t.name)
    .collect();
    assert_eq!(
        forced,
        [
            "action_tokens",
            "api_keys",
            "refresh_tokens",
            "sessions",
            "users"
        ]
    );

    // As the runtime role and outside a tenant transaction, the registered account is invisible.
    let mut runtime =
        <sovereign_db::AsyncPgConnection as sovereign_db::AsyncConnection>::establish(
            h.db.url().expose(),
        )
        .await
        .unwrap();
    for table in ["users", "action_tokens"] {
        let seen: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut runtime)
            .await
            .unwrap();
        assert_eq!(seen.n, 0, "{table}");
        let all: Count = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
            .get_result(&mut owner)
            .await
            .unwrap();
        assert_eq!(all.n, 1, "{table} has a row, seen by the owner");
    }
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_stops_the_memory_being_trusted_until_it_answers_again() {
    use sovereign_auth::revocation::{HEARTBEAT_EVERY, HEARTBEAT_GRACE};
    use sovereign_cache::CacheSettings;

    let mut server = sovereign_test_redis::RedisServer::start();
    let cache = Cache::new(&CacheSettings {
        url: Some(SecretUrl::parse(&server.url()).unwrap()),
        prefix: sovereign_test_redis::unique_prefix("frozen"),
        timeout: Duration::from_millis(200),
        ..CacheSettings::default()
    })
    .unwrap();
    // No rate limiter here: the heartbeat alone must notice.
    let h = harness_with(Some(cache)).await;
    until("the memory is trusted with Redis up", || {
        h.accounts.remembering()
    })
    .await;
    register(&h, "frozen@example.com").await;
    let pair = h
        .accounts
        .login(
            DEFAULT_TENANT_ID,
            "frozen@example.com",
            &secret(PASSWORD),
            &ClientContext::default(),
        )
        .await
        .unwrap();
    h.accounts.authenticate(&pair.access_token).await.unwrap();

    server.pause();
    let frozen = tokio::time::Instant::now();
    until("the memory is distrusted once heartbeats stop", || {
        !h.accounts.remembering()
    })
    .await;
    assert!(frozen.elapsed() <= HEARTBEAT_GRACE + HEARTBEAT_EVERY + Duration::from_secs(1));
    // A revocation written while Redis is frozen (its announcement cannot be delivered) is
    // enforced anyway: the database answers.
    let mut owner = h.db.owner_conn().await;
    RunQueryDsl::execute(
        diesel::sql_query("UPDATE sessions SET revoked_at = now()"),
        &mut owner,
    )
    .await
    .unwrap();
    assert!(h.accounts.authenticate(&pair.access_token).await.is_err());

    server.resume();
    until("the memory is trusted again", || h.accounts.remembering()).await;
    assert!(h.accounts.authenticate(&pair.access_token).await.is_err());
}
