//! User administration: lists (paging with a cap, search with literal wildcards, filters and an
//! allow-listed sort), and step-up before an address changes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, expect_problem, hour_old};

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get_auth(&format!("/api/v1/users{query}"), token).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

fn emails(page: &Value) -> Vec<&str> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn listing_pages_searches_filters_and_sorts() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    for name in ["carol", "dave", "erin", "frank", "50%_off"] {
        app.register(&format!("{name}@example.com")).await;
    }
    app.sql("UPDATE users SET full_name = 'Percent Person' WHERE email = '50%_off@example.com'")
        .await;
    app.sql("UPDATE users SET is_active = false WHERE email = 'dave@example.com'")
        .await;

    let all = list(&app, &admin.access, "?sort=email").await;
    assert_eq!(all["total"], 6);
    assert_eq!(
        emails(&all),
        [
            "50%_off@example.com",
            "admin@example.com",
            "carol@example.com",
            "dave@example.com",
            "erin@example.com",
            "frank@example.com"
        ]
    );
    let desc = list(&app, &admin.access, "?sort=-email&limit=2&page=2").await;
    assert_eq!(
        (
            desc["total"].as_i64(),
            desc["page"].as_u64(),
            desc["limit"].as_u64()
        ),
        (Some(6), Some(2), Some(2))
    );
    assert_eq!(emails(&desc), ["dave@example.com", "carol@example.com"]);

    // `%` and `_` are literal: "%_" matches only the address that contains them.
    let literal = list(&app, &admin.access, "?search=%25_").await;
    assert_eq!(emails(&literal), ["50%_off@example.com"]);
    let by_name = list(&app, &admin.access, "?search=PERCENT").await;
    assert_eq!(emails(&by_name), ["50%_off@example.com"]);
    let inactive = list(&app, &admin.access, "?is_active=false").await;
    assert_eq!(emails(&inactive), ["dave@example.com"]);
    let admins = list(&app, &admin.access, "?role=admin").await;
    assert_eq!(emails(&admins), ["admin@example.com"]);

    // Out-of-range paging and unknown sorts are refused, not clamped or passed to SQL.
    for (query, field) in [
        ("?limit=1000000", "limit"),
        ("?limit=0", "limit"),
        ("?page=0", "page"),
        ("?sort=password_hash", "sort"),
        ("?sort=email;DROP TABLE users", "sort"),
    ] {
        let response = app
            .get_auth(&format!("/api/v1/users{query}"), &admin.access)
            .await;
        let problem = expect_problem(response, 422, "validation_failed").await;
        assert_eq!(problem.errors[0].field, field, "{query}");
    }
    let response = app.get_auth("/api/v1/users?role=root", &admin.access).await;
    expect_problem(response, 400, "invalid_query").await;
    assert_eq!(list(&app, &admin.access, "?limit=100").await["total"], 6);

    // A soft-deleted account leaves lists and frees its address.
    let carol = list(&app, &admin.access, "?search=carol").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/users/{carol}"),
            Some(&admin.access),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(list(&app, &admin.access, "").await["total"], 5);
    app.register("carol@example.com").await;
    let again = list(&app, &admin.access, "?search=carol").await;
    assert_ne!(again["items"][0]["id"], carol.as_str());

    // Administrators change addresses; a taken one is a conflict.
    let erin = list(&app, &admin.access, "?search=erin").await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let taken = app
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{erin}"),
            Some(&admin.access),
            &[],
            Some(json!({"email": "frank@example.com"})),
        )
        .await;
    expect_problem(taken, 409, "email_taken").await;
    let moved: Value = app
        .call(
            Method::PUT,
            &format!("/api/v1/users/{erin}"),
            Some(&admin.access),
            &[],
            Some(json!({"email": "Erin.New@example.com", "full_name": "Erin"})),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (moved["email"].as_str(), moved["email_verified"].as_bool()),
        (Some("erin.new@example.com"), Some(false))
    );
}

#[tokio::test]
async fn an_administrator_changes_an_address_only_after_a_recent_sign_in() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await;
    let user = app.signup("user@example.com").await;
    let id = app
        .get_auth("/api/v1/users/me", &user.access)
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stale = hour_old(&app, &admin).await;
    let stale = stale.as_str();
    let path = format!("/api/v1/users/{id}");
    // The name changes; the address — how an account is recovered — needs step-up.
    let renamed = app
        .call(
            Method::PATCH,
            &path,
            Some(stale),
            &[],
            Some(json!({"full_name": "U"})),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let moved = app
        .call(
            Method::PATCH,
            &path,
            Some(stale),
            &[],
            Some(json!({"email": "attacker@example.com"})),
        )
        .await;
    expect_problem(moved, 401, "reauthentication_required").await;
    let fresh = app.login("admin@example.com").await;
    let moved = app
        .call(
            Method::PATCH,
            &path,
            Some(&fresh.access),
            &[],
            Some(json!({"email": "new@example.com"})),
        )
        .await;
    assert_eq!(moved.status(), 200);
}
