//! File storage over HTTP on the local-disk backend (both backends are tested in
//! `sovereign-storage`): streamed uploads with their limits, downloads with ranges, ETags and
//! headers that keep user content from running as a page of this origin, owners, public buckets.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, expect_problem, json_of};

async fn put(
    app: &TestApp,
    token: &str,
    path: &str,
    content_type: &str,
    body: &'static [u8],
) -> reqwest::Response {
    app.client
        .put(app.url(&format!("/api/v1/storage/buckets/{path}")))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(
    app: &TestApp,
    token: Option<&str>,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/v1/storage/buckets/{path}")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn uploads_stream_in_with_limits_and_downloads_never_run_as_pages() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;
    json_of(
        app.post_json(
            "/api/v1/storage/buckets",
            Some(&admin),
            json!({"name": "docs", "max_object_bytes": 64, "allowed_types": ["text/*"]}),
        )
        .await,
        201,
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/storage/buckets",
            Some(&user),
            json!({"name": "mine"}),
        )
        .await,
        403,
        "forbidden",
    )
    .await;

    let stored = json_of(
        put(
            &app,
            &user,
            "docs/objects/notes/a.txt",
            "text/plain",
            b"hello world",
        )
        .await,
        201,
    )
    .await;
    assert_eq!(stored["size"], 11);
    let whole = get(&app, Some(&user), "docs/objects/notes/a.txt", &[]).await;
    assert_eq!(whole.status(), 200);
    let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", stored["sha256"].as_str().unwrap()));
    assert_eq!(whole.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        whole.headers()["content-security-policy"],
        "default-src 'none'; sandbox"
    );
    assert_eq!(whole.headers()["content-disposition"], "inline");
    assert_eq!(whole.bytes().await.unwrap(), "hello world");
    let part = get(
        &app,
        Some(&user),
        "docs/objects/notes/a.txt",
        &[("range", "bytes=6-")],
    )
    .await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], "bytes 6-10/11");
    assert_eq!(part.bytes().await.unwrap(), "world");
    let bad = get(
        &app,
        Some(&user),
        "docs/objects/notes/a.txt",
        &[("range", "bytes=20-")],
    )
    .await;
    expect_problem(bad, 416, "range_not_satisfiable").await;
    let same = get(
        &app,
        Some(&user),
        "docs/objects/notes/a.txt",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(same.status(), 304);

    // HTML is accepted by `text/*` but only ever downloaded.
    json_of(
        put(
            &app,
            &user,
            "docs/objects/page.html",
            "text/html",
            b"<script>1</script>",
        )
        .await,
        201,
    )
    .await;
    let page = get(&app, Some(&user), "docs/objects/page.html", &[]).await;
    assert_eq!(page.headers()["content-disposition"], "attachment");

    // Limits: size mid-stream, type, keys, create-only.
    expect_problem(
        put(
            &app,
            &user,
            "docs/objects/big.txt",
            "text/plain",
            &[b'x'; 100],
        )
        .await,
        413,
        "object_too_large",
    )
    .await;
    expect_problem(
        put(&app, &user, "docs/objects/a.png", "image/png", b"png").await,
        422,
        "content_type_not_allowed",
    )
    .await;
    expect_problem(
        put(&app, &user, "docs/objects/a//b", "text/plain", b"x").await,
        422,
        "validation_failed",
    )
    .await;
    let again = app
        .client
        .put(app.url("/api/v1/storage/buckets/docs/objects/notes/a.txt"))
        .bearer_auth(&user)
        .header("content-type", "text/plain")
        .header("if-none-match", "*")
        .body("again")
        .send()
        .await
        .unwrap();
    expect_problem(again, 409, "object_exists").await;
    let usage = json_of(app.get_auth("/api/v1/storage/usage", &admin).await, 200).await;
    assert_eq!(usage["objects"], 2);
}

#[tokio::test]
async fn users_own_what_they_write_and_public_buckets_need_no_credentials() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let ada = app.signup("ada@example.com").await.access;
    let bob = app.signup("bob@example.com").await.access;
    for (name, public) in [("private", false), ("public", true)] {
        json_of(
            app.post_json(
                "/api/v1/storage/buckets",
                Some(&admin),
                json!({"name": name, "public": public}),
            )
            .await,
            201,
        )
        .await;
    }
    json_of(
        put(
            &app,
            &ada,
            "private/objects/ada.txt",
            "text/plain",
            b"ada's",
        )
        .await,
        201,
    )
    .await;
    // Bob can neither read, overwrite, delete nor list Ada's object.
    expect_problem(
        get(&app, Some(&bob), "private/objects/ada.txt", &[]).await,
        404,
        "object_not_found",
    )
    .await;
    expect_problem(
        put(
            &app,
            &bob,
            "private/objects/ada.txt",
            "text/plain",
            b"bob's",
        )
        .await,
        403,
        "not_owner",
    )
    .await;
    let deleted = app
        .call(
            Method::DELETE,
            "/api/v1/storage/buckets/private/objects/ada.txt",
            Some(&bob),
            &[],
            None,
        )
        .await;
    expect_problem(deleted, 404, "object_not_found").await;
    let listed = json_of(
        app.get_auth("/api/v1/storage/buckets/private/objects", &bob)
            .await,
        200,
    )
    .await;
    assert_eq!(listed["objects"], json!([]));
    let all = json_of(
        app.get_auth("/api/v1/storage/buckets/private/objects", &admin)
            .await,
        200,
    )
    .await;
    assert_eq!(all["objects"][0]["key"], "ada.txt");
    assert_eq!(
        get(&app, Some(&ada), "private/objects/ada.txt", &[])
            .await
            .bytes()
            .await
            .unwrap(),
        "ada's"
    );
    // Without credentials: private needs them, public does not.
    expect_problem(
        get(&app, None, "private/objects/ada.txt", &[]).await,
        401,
        "not_authenticated",
    )
    .await;
    json_of(
        put(&app, &ada, "public/objects/logo.txt", "text/plain", b"logo").await,
        201,
    )
    .await;
    let open = get(&app, None, "public/objects/logo.txt", &[]).await;
    assert_eq!(open.status(), 200);
    assert_eq!(open.bytes().await.unwrap(), "logo");
    // Ada deletes her own; the bucket can then go.
    let gone = app
        .call(
            Method::DELETE,
            "/api/v1/storage/buckets/private/objects/ada.txt",
            Some(&ada),
            &[],
            None,
        )
        .await;
    assert_eq!(gone.status(), 204);
    let bucket = app
        .call(
            Method::DELETE,
            "/api/v1/storage/buckets/private",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(bucket.status(), 204);
}
