//! Registration, sign-in, sessions and password flows over HTTP.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{PASSWORD, TestApp, expect_problem};

#[tokio::test]
async fn register_login_me_refresh_logout() {
    let app = TestApp::spawn().await;
    app.register("Ada@Example.com").await;
    let tokens = app.login("ada@example.com").await;

    let me: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["email"], "ada@example.com",
        "addresses are stored lower-cased"
    );
    assert_eq!(me["role"], "user");
    assert_eq!(me["full_name"], "Test User");
    assert_eq!(me["email_verified"], false);
    let auth_me: Value = app
        .get_auth("/api/v1/auth/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(auth_me, me);

    let response = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let next: Value = response.json().await.unwrap();
    assert_ne!(next["refresh_token"], tokens.refresh.as_str());
    assert_eq!(next["session_id"], tokens.session.as_str());
    let access = next["access_token"].as_str().unwrap();
    assert_eq!(app.get_auth("/api/v1/users/me", access).await.status(), 200);

    let out = app
        .call(Method::POST, "/api/v1/auth/logout", Some(access), &[], None)
        .await;
    assert_eq!(out.status(), 204);
    for token in [access, tokens.access.as_str()] {
        let response = app.get_auth("/api/v1/users/me", token).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer error=\"invalid_token\""
        );
        expect_problem(response, 401, "invalid_token").await;
    }
}

#[tokio::test]
async fn missing_and_malformed_credentials_are_401_with_a_challenge() {
    let app = TestApp::spawn().await;
    let response = app.get("/api/v1/users/me").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    expect_problem(response, 401, "not_authenticated").await;
    for header in [
        "Basic YWxhZGRpbjpvcGVuc2VzYW1l",
        "Bearer",
        "Bearer not.a.jwt",
    ] {
        let response = app
            .get_with("/api/v1/users/me", &[("Authorization", header)])
            .await;
        expect_problem(response, 401, "invalid_token").await;
    }
    // Credentials in the URL are never read.
    let tokens = app.signup("url@example.com").await;
    let response = app
        .get(&format!("/api/v1/users/me?access_token={}", tokens.access))
        .await;
    expect_problem(response, 401, "not_authenticated").await;
}

#[tokio::test]
async fn the_oauth2_password_form_signs_in() {
    let app = TestApp::spawn().await;
    app.register("form@example.com").await;
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "password"),
            ("username", "form@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    let response = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("username", "form@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    expect_problem(response, 400, "unsupported_grant_type").await;
}

async fn register_with(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/api/v1/auth/register",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

#[tokio::test]
async fn the_password_policy_counts_characters_and_refuses_common_ones() {
    let app = TestApp::spawn().await;
    let words = "orbit lantern quarry velvet juniper fathom cobalt meadow tundra saffron harbor \
                 pickle glacier nimbus walrus ember quiver basalt marzipan zephyr kettle obsidian \
                 plume wicket anchovy trellis gossamer hinterland mosaic sprocket lagoon bramble \
                 cinnabar dervish falconry gherkin isthmus jasmine";
    let passphrase = |chars: usize| words.chars().take(chars).collect::<String>();
    // 70 different emoji, in no order a guesser would try.
    let emoji: String = (0..70u32)
        .filter_map(|i| char::from_u32(0x1F300 + (i * 37) % 256))
        .collect();
    for (i, (password, ok)) in [
        ("vX7#kq9!Lm2".to_owned(), false),             // 11
        ("kq3vzmt8rwpx".to_owned(), true),             // 12
        (passphrase(64), true),                        // 64
        (passphrase(128), true),                       // 128
        ("🔑🌲🐙🎻🦊🌵🍄🎲🪁🧭🪐🫖".to_owned(), true), // 12 emoji, 48 bytes
        (emoji, true),                                 // 280 bytes, far past bcrypt's 72
        (passphrase(257), false),
        ("qwerty123456".to_owned(), false), // on the common list
        ("Password1234".to_owned(), false), // case does not help
        // Long enough, but repetitive, sequential or a keyboard walk.
        ("passwordpassword".to_owned(), false),
        ("aaaaaaaaaaaa".to_owned(), false),
        ("abcdefghijkl".to_owned(), false),
        ("123456789012".to_owned(), false),
        ("qwertyuiopas".to_owned(), false),
        ("letmein12345".to_owned(), false),
    ]
    .into_iter()
    .enumerate()
    {
        let email = format!("p{i}@example.com");
        let response = register_with(&app, &email, &password).await;
        if ok {
            assert_eq!(response.status(), 202, "{password}");
            let login = app
                .post_json(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": email, "password": password}),
                )
                .await;
            assert_eq!(login.status(), 200, "{password}");
        } else {
            let problem = expect_problem(response, 422, "validation_failed").await;
            assert_eq!(problem.errors[0].field, "password", "{password}");
            if i >= 7 {
                assert!(
                    ["too_common", "too_weak"].contains(&problem.errors[0].code.as_str()),
                    "{password}: {:?}",
                    problem.errors[0]
                );
                assert!(
                    problem.errors[0].message.contains("passphrase"),
                    "the refusal suggests a passphrase: {:?}",
                    problem.errors[0]
                );
            }
        }
    }
}

#[tokio::test]
async fn passwords_sharing_72_bytes_do_not_open_each_other() {
    let app = TestApp::spawn().await;
    let shared = "a fairly long shared passphrase prefix that fills all of bcrypt's 72 bytes";
    assert!(shared.len() >= 72);
    let response = register_with(&app, "long@example.com", &format!("{shared} one")).await;
    assert_eq!(response.status(), 202);
    let wrong = app
        .post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": "long@example.com", "password": format!("{shared} two")}),
        )
        .await;
    expect_problem(wrong, 401, "invalid_credentials").await;
    let right = app
        .post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": "long@example.com", "password": format!("{shared} one")}),
        )
        .await;
    assert_eq!(right.status(), 200);
}

/// Status and body with the per-request parts removed.
async fn comparable(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let mut body: Value = response.json().await.unwrap();
    body.as_object_mut().unwrap().remove("request_id");
    (status, body)
}

#[tokio::test]
async fn responses_do_not_reveal_which_accounts_exist() {
    let app = TestApp::spawn().await;
    app.register("exists@example.com").await;
    let login = |email: &'static str| {
        let app = &app;
        async move {
            comparable(
                app.post_json(
                    "/api/v1/auth/login",
                    None,
                    json!({"email": email, "password": "not the password at all"}),
                )
                .await,
            )
            .await
        }
    };
    let known = login("exists@example.com").await;
    assert_eq!(known.0, 401);
    assert_eq!(login("missing@example.com").await, known);

    let register = |email: &'static str| {
        let app = &app;
        async move { comparable(register_with(app, email, PASSWORD).await).await }
    };
    let taken = register("exists@example.com").await;
    assert_eq!(taken.0, 202);
    assert_eq!(register("fresh@example.com").await, taken);

    let forgot = |email: &'static str| {
        let app = &app;
        async move {
            comparable(
                app.post_json(
                    "/api/v1/auth/password/forgot",
                    None,
                    json!({"email": email}),
                )
                .await,
            )
            .await
        }
    };
    let known = forgot("exists@example.com").await;
    assert_eq!(known.0, 202);
    assert_eq!(forgot("missing@example.com").await, known);
    // Only the real account got mail.
    assert!(
        app.outbox
            .wait_for(
                "exists@example.com",
                "Reset your password",
                std::time::Duration::from_secs(5)
            )
            .await
            .is_some()
    );
    assert!(
        !app.outbox
            .sent()
            .iter()
            .any(|m| m.to == "missing@example.com")
    );
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let app = TestApp::spawn().await;
    let this = app.signup("change@example.com").await;
    let other = app.login("change@example.com").await;
    let wrong = app
        .post_json(
            "/api/v1/auth/password/change",
            Some(&this.access),
            json!({"current_password": "not my password!", "new_password": "a brand new passphrase"}),
        )
        .await;
    let problem = expect_problem(wrong, 422, "wrong_password").await;
    assert_eq!(problem.errors[0].field, "current_password");
    assert_eq!(
        app.get_auth("/api/v1/users/me", &other.access)
            .await
            .status(),
        200
    );

    let changed = app
        .post_json(
            "/api/v1/auth/password/change",
            Some(&this.access),
            json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(changed.status(), 204);
    assert_eq!(
        app.get_auth("/api/v1/users/me", &this.access)
            .await
            .status(),
        200,
        "this session stays"
    );
    expect_problem(
        app.get_auth("/api/v1/users/me", &other.access).await,
        401,
        "invalid_token",
    )
    .await;
    let refresh = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": other.refresh}),
        )
        .await;
    expect_problem(refresh, 401, "invalid_token").await;
    let old = app
        .post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": "change@example.com", "password": PASSWORD}),
        )
        .await;
    expect_problem(old, 401, "invalid_credentials").await;
}

#[tokio::test]
async fn a_reset_link_works_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let session = app.signup("reset@example.com").await;
    let response = app
        .post_json(
            "/api/v1/auth/password/forgot",
            None,
            json!({"email": "RESET@example.com"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    let mail = app
        .outbox
        .wait_for(
            "reset@example.com",
            "Reset your password",
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("a reset mail");
    let token = sovereign_auth::mailer::token_in(&mail.body)
        .unwrap()
        .to_owned();
    assert!(token.starts_with("sovpr_"));
    // The reset token is no access token.
    expect_problem(
        app.get_auth("/api/v1/users/me", &token).await,
        401,
        "invalid_token",
    )
    .await;

    let weak = app
        .post_json(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "new_password": "short"}),
        )
        .await;
    expect_problem(weak, 422, "validation_failed").await;
    let done = app
        .post_json(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "new_password": "the reset passphrase"}),
        )
        .await;
    assert_eq!(
        done.status(),
        204,
        "a refused weak password does not spend the token"
    );
    let again = app
        .post_json(
            "/api/v1/auth/password/reset",
            None,
            json!({"token": token, "new_password": "another passphrase!"}),
        )
        .await;
    expect_problem(again, 401, "invalid_token").await;
    expect_problem(
        app.get_auth("/api/v1/users/me", &session.access).await,
        401,
        "invalid_token",
    )
    .await;
    let login = app
        .post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": "reset@example.com", "password": "the reset passphrase"}),
        )
        .await;
    let body: Value = login.json().await.unwrap();
    let me: Value = app
        .get_auth("/api/v1/users/me", body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["email_verified"], true,
        "receiving the mail proves the address"
    );
}

#[tokio::test]
async fn email_verification_and_session_management() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("verify@example.com").await;
    let welcome = app
        .outbox
        .wait_for(
            "verify@example.com",
            "Confirm",
            std::time::Duration::from_secs(5),
        )
        .await
        .expect("a welcome mail");
    let first = sovereign_auth::mailer::token_in(&welcome.body)
        .unwrap()
        .to_owned();
    let response = app
        .call(
            Method::POST,
            "/api/v1/auth/verify-email/request",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(response.status(), 202);
    let confirmed = app
        .post_json(
            "/api/v1/auth/verify-email/confirm",
            None,
            json!({"token": first}),
        )
        .await;
    assert_eq!(confirmed.status(), 204);
    let me: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    let again = app
        .post_json(
            "/api/v1/auth/verify-email/confirm",
            None,
            json!({"token": first}),
        )
        .await;
    expect_problem(again, 401, "invalid_token").await;

    let phone = app
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            &[("User-Agent", "phone/1.0")],
            Some(json!({"email": "verify@example.com", "password": PASSWORD})),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let sessions: Value = app
        .get_auth("/api/v1/auth/sessions", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<_> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], tokens.session.as_str());
    assert!(sessions.iter().any(|s| s["user_agent"] == "phone/1.0"));
    let revoked = app
        .call(
            Method::DELETE,
            &format!(
                "/api/v1/auth/sessions/{}",
                phone["session_id"].as_str().unwrap()
            ),
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(revoked.status(), 204);
    expect_problem(
        app.get_auth("/api/v1/users/me", phone["access_token"].as_str().unwrap())
            .await,
        401,
        "invalid_token",
    )
    .await;
    let out = app
        .call(
            Method::POST,
            "/api/v1/auth/logout?all=true",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(out.status(), 204);
    expect_problem(
        app.get_auth("/api/v1/users/me", &tokens.access).await,
        401,
        "invalid_token",
    )
    .await;
}

#[tokio::test]
async fn parallel_refreshes_of_one_token_get_the_same_pair_and_sign_nothing_out() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("parallel@example.com").await;
    let answers = futures_util::future::join_all((0..8).map(|_| {
        app.post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
    }))
    .await;
    let mut pairs = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 200);
        pairs.push(answer.json::<Value>().await.unwrap());
    }
    for pair in &pairs {
        assert_eq!(pair["refresh_token"], pairs[0]["refresh_token"]);
        assert_eq!(pair["access_token"], pairs[0]["access_token"]);
    }
    let access = pairs[0]["access_token"].as_str().unwrap();
    assert_eq!(app.get_auth("/api/v1/users/me", access).await.status(), 200);
}

#[tokio::test]
async fn a_refresh_token_replay_signs_the_session_out() {
    // No reuse interval: a replay is reuse at once (as it is after the interval).
    let app = TestApp::spawn_with(&[("REFRESH_TOKEN_REUSE_SECONDS", "0")], None).await;
    let tokens = app.signup("replay@example.com").await;
    let next: Value = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await
        .json()
        .await
        .unwrap();
    let replay = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.refresh}),
        )
        .await;
    expect_problem(replay, 401, "refresh_token_reused").await;
    let access = next["access_token"].as_str().unwrap();
    expect_problem(
        app.get_auth("/api/v1/users/me", access).await,
        401,
        "invalid_token",
    )
    .await;
    // Nor does a refresh token pass as an access token, or the other way round.
    expect_problem(
        app.get_auth("/api/v1/users/me", &tokens.refresh).await,
        401,
        "invalid_token",
    )
    .await;
    let swapped = app
        .post_json(
            "/api/v1/auth/refresh",
            None,
            json!({"refresh_token": tokens.access}),
        )
        .await;
    expect_problem(swapped, 401, "invalid_token").await;
}

#[tokio::test]
async fn a_login_storm_queues_behind_the_hash_limit_while_health_answers() {
    // Cost 10 and one hash at a time: 20 logins take a good fraction of a second, in
    // sequence, on the blocking pool. `/health` must answer while they are still queued,
    // which it could not if hashing ran on the (single) HTTP worker.
    let app = TestApp::spawn_with(
        &[
            ("BCRYPT_COST", "10"),
            ("PASSWORD_HASH_CONCURRENCY", "1"),
            ("RATE_LIMIT_ACCOUNT", "100/minute"),
            ("RATE_LIMIT_AUTH", "100/minute"),
        ],
        None,
    )
    .await;
    app.register("storm@example.com").await;
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/login");
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&json!({"email": "storm@example.com", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    // Wait until the storm is under way (the first login has finished).
    let first_done = async {
        loop {
            if logins.iter().any(tokio::task::JoinHandle::is_finished) {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    first_done.await;
    assert_eq!(app.get("/health").await.status(), 200);
    let pending = logins.iter().filter(|h| !h.is_finished()).count();
    assert!(
        pending > 0,
        "/health answered only after every login finished"
    );
    for login in logins {
        assert_eq!(login.await.unwrap(), 200);
    }
}

const THROTTLE: &[(&str, &str)] = &[
    ("RATE_LIMIT_ACCOUNT", "5/minute"),
    ("RATE_LIMIT_AUTH", "10000/minute"),
    ("RATE_LIMIT_API", "10000/minute"),
    ("TRUSTED_PROXIES", "127.0.0.1"),
];

async fn parallel_logins(
    app: &TestApp,
    n: usize,
    email_for: impl Fn(usize) -> String,
    ip_for: impl Fn(usize) -> String,
) -> (usize, usize) {
    let requests = (0..n).map(|i| {
        let request = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("X-Forwarded-For", ip_for(i))
            .json(&json!({"email": email_for(i), "password": "wrong password, wrong"}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + limited, n, "{statuses:?}");
    (unauthorized, limited)
}

#[tokio::test]
async fn two_hundred_parallel_wrong_logins_get_exactly_the_account_quota() {
    let app = TestApp::spawn_with(THROTTLE, None).await;
    app.register("target@example.com").await;
    // From 200 different addresses (through a trusted proxy): the account limit holds.
    let (tried, limited) = parallel_logins(
        &app,
        200,
        |_| "target@example.com".to_owned(),
        |i| format!("10.0.{}.{}", i / 250, i % 250 + 1),
    )
    .await;
    assert_eq!((tried, limited), (5, 195));
    // The correct password is refused too while the account is throttled.
    let response = app
        .post_json(
            "/api/v1/auth/login",
            None,
            json!({"email": "target@example.com", "password": PASSWORD}),
        )
        .await;
    assert!(response.headers().contains_key("retry-after"));
    expect_problem(response, 429, "rate_limited").await;
    // Another account is unaffected.
    app.register("bystander@example.com").await;
    app.login("bystander@example.com").await;
}

#[tokio::test]
async fn one_client_guessing_many_accounts_gets_exactly_the_address_quota() {
    let mut vars = THROTTLE.to_vec();
    vars.retain(|(k, _)| *k != "RATE_LIMIT_AUTH");
    vars.push(("RATE_LIMIT_AUTH", "7/minute"));
    let app = TestApp::spawn_with(&vars, None).await;
    let (tried, limited) = parallel_logins(
        &app,
        50,
        |i| format!("guess{i}@example.com"),
        |_| "203.0.113.9".to_owned(),
    )
    .await;
    assert_eq!((tried, limited), (7, 43));
}

#[tokio::test]
async fn reset_and_verification_requests_are_throttled_per_account() {
    let app = TestApp::spawn_with(THROTTLE, None).await;
    app.register("spam@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let response = app
            .call(
                Method::POST,
                "/api/v1/auth/password/forgot",
                None,
                &[("X-Forwarded-For", &format!("198.51.100.{}", i + 1))],
                Some(json!({"email": "spam@example.com"})),
            )
            .await;
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 202, 202, 202, 429, 429]);
}

#[tokio::test]
async fn bodies_must_be_objects_and_literal_routes_answer_405() {
    let app = TestApp::spawn().await;
    let tokens = app.signup("shape@example.com").await;
    let id: Value = app
        .get_auth("/api/v1/users/me", &tokens.access)
        .await
        .json()
        .await
        .unwrap();
    for (method, path) in [
        (Method::PATCH, "/api/v1/users/me".to_owned()),
        (
            Method::PATCH,
            format!("/api/v1/users/{}", id["id"].as_str().unwrap()),
        ),
        (Method::POST, "/api/v1/auth/login".to_owned()),
    ] {
        let response = app
            .call(
                method.clone(),
                &path,
                Some(&tokens.access),
                &[],
                Some(json!([null, null])),
            )
            .await;
        expect_problem(response, 422, "invalid_body").await;
    }
    // `/users/me` is a route of its own, although `/users/{id}` would match the path.
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    assert_eq!(response.headers()["allow"], "GET, HEAD, PUT, PATCH");
    expect_problem(response, 405, "method_not_allowed").await;
    let response = app
        .call(
            Method::DELETE,
            "/api/v1/users/not-a-uuid",
            Some(&tokens.access),
            &[],
            None,
        )
        .await;
    expect_problem(response, 404, "not_found").await;
}
