//! Direct uploads, signed URLs, copy, move, metadata, deletes by prefix and object events over
//! HTTP; who may do what (owners, administrators, read-only API keys); and every storage route
//! seen from another tenant.

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::authz::{MULTI, member, tenant};
use crate::common::{TestApp, expect_problem, json_of};
use crate::realtime::{next, open_bearer, subscribe, welcome};

const MIB: usize = 1 << 20;

/// The key the expiry test signs with, shared with the server it starts.
const SECRET: &str = "storage-tests-secret-key-0123456789abcdefghij";

async fn put_bytes(
    app: &TestApp,
    token: Option<&str>,
    url: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app
        .client
        .put(url)
        .header("content-type", "text/plain")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn bucket(app: &TestApp, admin: &str, body: Value) {
    json_of(
        app.post_json("/api/v1/storage/buckets", Some(admin), body)
            .await,
        201,
    )
    .await;
}

async fn store(app: &TestApp, token: &str, bucket: &str, key: &str, body: &'static [u8]) -> Value {
    json_of(
        put_bytes(
            app,
            Some(token),
            &app.url(&format!("/api/v1/storage/buckets/{bucket}/objects/{key}")),
            body.to_vec(),
        )
        .await,
        201,
    )
    .await
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 % 251) as u8).collect()
}

#[tokio::test]
async fn a_direct_upload_is_sent_in_parts_resumed_and_completed_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;
    let other = app.signup("other@example.com").await.access;
    bucket(
        &app,
        &admin,
        json!({"name": "media", "allowed_types": ["video/*"]}),
    )
    .await;
    let mut events = open_bearer(&app, &admin).await;
    welcome(&mut events).await;
    subscribe(&mut events, "storage:media").await;

    expect_problem(
        app.post_json(
            "/api/v1/storage/buckets/media/uploads",
            Some(&user),
            json!({"key": "a.txt", "size": 3, "content_type": "text/plain"}),
        )
        .await,
        422,
        "content_type_not_allowed",
    )
    .await;
    // A type that could not be a header, a part larger than any store takes: 422.
    for body in [
        json!({"key": "a.mp4", "size": 3, "content_type": "video/mp4\r\nX-Evil: 1"}),
        json!({"key": "a.mp4", "size": 3, "content_type": "video/mp4", "part_size": 6_u64 << 30}),
    ] {
        expect_problem(
            app.post_json("/api/v1/storage/buckets/media/uploads", Some(&user), body)
                .await,
            422,
            "validation_failed",
        )
        .await;
    }
    let bytes = data(MIB + MIB / 2);
    let upload = json_of(
        app.post_json(
            "/api/v1/storage/buckets/media/uploads",
            Some(&user),
            json!({"key": "clips/a.mp4", "size": bytes.len(), "content_type": "video/mp4", "part_size": MIB, "metadata": {"take": 2}}),
        )
        .await,
        201,
    )
    .await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let parts = upload["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let url = |i: usize, parts: &[Value]| parts[i]["url"].as_str().unwrap().to_owned();
    let part2 = url(1, parts);
    assert!(
        part2.starts_with(&app.url(&format!("/api/v1/storage/uploads/{id}/parts/2?token="))),
        "{part2}"
    );
    // The signed URL is the credential: without it, or changed, or for another part, nothing.
    let bare = part2.split('?').next().unwrap().to_owned();
    let refused = put_bytes(&app, Some(&user), &bare, bytes[MIB..].to_vec()).await;
    assert_eq!(refused.status(), 400);
    let tampered = part2.replace("token=", "token=x");
    expect_problem(
        put_bytes(&app, None, &tampered, bytes[MIB..].to_vec()).await,
        403,
        "invalid_signature",
    )
    .await;
    let swapped = part2.replace("/parts/2?", "/parts/1?");
    expect_problem(
        put_bytes(&app, None, &swapped, bytes[..MIB].to_vec()).await,
        403,
        "invalid_signature",
    )
    .await;
    expect_problem(
        put_bytes(&app, None, &part2, vec![0; MIB]).await,
        413,
        "object_too_large",
    )
    .await;
    assert_eq!(
        put_bytes(&app, None, &part2, bytes[MIB..].to_vec())
            .await
            .status(),
        204
    );
    let incomplete = expect_problem(
        app.call(
            Method::POST,
            &format!("/api/v1/storage/uploads/{id}/complete"),
            Some(&user),
            &[],
            None,
        )
        .await,
        409,
        "upload_incomplete",
    )
    .await;
    assert!(
        incomplete.detail.contains("parts 1 "),
        "{}",
        incomplete.detail
    );
    // Only its owner (or an administrator) sees or completes it.
    for path in [
        format!("/api/v1/storage/uploads/{id}"),
        format!("/api/v1/storage/uploads/{id}/complete"),
    ] {
        let method = if path.ends_with("complete") {
            Method::POST
        } else {
            Method::GET
        };
        expect_problem(
            app.call(method, &path, Some(&other), &[], None).await,
            404,
            "upload_not_found",
        )
        .await;
    }
    let resumed = json_of(
        app.get_auth(&format!("/api/v1/storage/uploads/{id}"), &user)
            .await,
        200,
    )
    .await;
    let parts = resumed["parts"].as_array().unwrap();
    assert_eq!(parts[0]["received"], false);
    assert_eq!(parts[1]["received"], true);
    assert!(parts[1]["url"].is_null());
    assert_eq!(
        put_bytes(&app, None, &url(0, parts), bytes[..MIB].to_vec())
            .await
            .status(),
        204
    );
    let object = json_of(
        app.call(
            Method::POST,
            &format!("/api/v1/storage/uploads/{id}/complete"),
            Some(&user),
            &[],
            None,
        )
        .await,
        201,
    )
    .await;
    assert_eq!(object["size"], bytes.len());
    assert_eq!(object["metadata"]["take"], 2);
    let digest: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(object["sha256"], digest);
    let got = app
        .client
        .get(app.url("/api/v1/storage/buckets/media/objects/clips/a.mp4"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let event = next(&mut events).await;
    assert_eq!(event["type"], "message", "{event}");
    assert_eq!(event["channel"], "storage:media");
    assert_eq!(event["payload"]["type"], "object.created");
    assert_eq!(event["payload"]["key"], "clips/a.mp4");
    assert_eq!(event["payload"]["sha256"], digest);

    // Aborted: gone for good.
    let aborted = json_of(
        app.post_json(
            "/api/v1/storage/buckets/media/uploads",
            Some(&user),
            json!({"key": "b.mp4", "size": 4, "content_type": "video/mp4"}),
        )
        .await,
        201,
    )
    .await;
    let aborted_id = aborted["id"].as_str().unwrap();
    let response = app
        .call(
            Method::DELETE,
            &format!("/api/v1/storage/uploads/{aborted_id}"),
            Some(&user),
            &[],
            None,
        )
        .await;
    assert_eq!(response.status(), 204);
    expect_problem(
        put_bytes(
            &app,
            None,
            aborted["parts"][0]["url"].as_str().unwrap(),
            b"late".to_vec(),
        )
        .await,
        404,
        "upload_not_found",
    )
    .await;
}

/// The default tenant's id.
async fn tenant_id(app: &TestApp, admin: &str) -> uuid::Uuid {
    let current = json_of(app.get_auth("/api/v1/tenants/current", admin).await, 200).await;
    current["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn signed_urls_read_one_object_without_credentials_until_they_expire() {
    let app = TestApp::spawn_with(&[("SECRET_KEY", SECRET)], None).await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;
    let other = app.signup("other@example.com").await.access;
    bucket(&app, &admin, json!({"name": "private"})).await;
    store(&app, &user, "private", "photos/cat.png", b"\x89PNG cat").await;
    store(&app, &user, "private", "photos/dog.png", b"\x89PNG dog").await;

    expect_problem(
        app.post_json(
            "/api/v1/storage/buckets/private/signed-urls",
            Some(&other),
            json!({"key": "photos/cat.png"}),
        )
        .await,
        404,
        "object_not_found",
    )
    .await;
    expect_problem(
        app.post_json(
            "/api/v1/storage/buckets/private/signed-urls",
            Some(&user),
            json!({"key": "photos/cat.png", "expires_in": 0}),
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let signed = json_of(
        app.post_json(
            "/api/v1/storage/buckets/private/signed-urls",
            Some(&user),
            json!({"key": "photos/cat.png", "expires_in": 60}),
        )
        .await,
        201,
    )
    .await;
    let url = signed["url"].as_str().unwrap();
    let fetched = app.client.get(url).send().await.unwrap();
    assert_eq!(fetched.status(), 200);
    assert_eq!(fetched.headers()["cache-control"], "private, no-cache");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), b"\x89PNG cat");
    // Not for another object, not changed, not without the token.
    for wrong in [
        url.replace("cat.png", "dog.png"),
        url.replace("token=", "token=A"),
    ] {
        expect_problem(
            app.client.get(&wrong).send().await.unwrap(),
            403,
            "invalid_signature",
        )
        .await;
    }
    let bare = url.split('?').next().unwrap();
    expect_problem(
        app.client.get(bare).send().await.unwrap(),
        401,
        "not_authenticated",
    )
    .await;

    // Expired: a token the server's key signed an hour ago.
    let settings = crate::common::settings(
        app.db.as_ref().unwrap().url().expose(),
        &[("SECRET_KEY", SECRET)],
    );
    let storage = sovereign_storage::Storage::new(
        sovereign_db::Db::from_settings(&settings.database).unwrap(),
        settings.storage.clone(),
        settings.auth.secret_key_bytes(),
    )
    .unwrap();
    let token = storage
        .sign_read(
            tenant_id(&app, &admin).await,
            "private",
            "photos/cat.png",
            chrono::Utc::now() - chrono::Duration::hours(1),
        )
        .await
        .unwrap();
    let expired = format!("{bare}?token={token}");
    expect_problem(
        app.client.get(&expired).send().await.unwrap(),
        403,
        "signed_url_expired",
    )
    .await;

    // The key deleted and written again by someone else: the URL does not open their file.
    let deleted = app
        .call(
            Method::DELETE,
            "/api/v1/storage/buckets/private/objects/photos/cat.png",
            Some(&user),
            &[],
            None,
        )
        .await;
    assert_eq!(deleted.status(), 204);
    store(
        &app,
        &other,
        "private",
        "photos/cat.png",
        b"other's private file",
    )
    .await;
    expect_problem(
        app.client.get(url).send().await.unwrap(),
        404,
        "object_not_found",
    )
    .await;
}

#[tokio::test]
async fn objects_are_copied_moved_updated_and_deleted_by_prefix_by_their_owners() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    let user = app.signup("user@example.com").await.access;
    let other = app.signup("other@example.com").await.access;
    bucket(
        &app,
        &admin,
        json!({"name": "docs", "allowed_types": ["text/*"]}),
    )
    .await;
    store(&app, &user, "docs", "a.txt", b"alpha").await;
    store(&app, &other, "docs", "theirs.txt", b"theirs").await;

    let copy = json_of(
        app.post_json(
            "/api/v1/storage/buckets/docs/copy",
            Some(&user),
            json!({"from": "a.txt", "to": "b.txt"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(copy["size"], 5);
    // Another user's object can be neither copied, moved, changed nor deleted.
    for (path, body) in [
        (
            "/api/v1/storage/buckets/docs/copy",
            json!({"from": "theirs.txt", "to": "mine.txt"}),
        ),
        (
            "/api/v1/storage/buckets/docs/move",
            json!({"from": "theirs.txt", "to": "mine.txt"}),
        ),
        (
            "/api/v1/storage/buckets/docs/move",
            json!({"from": "a.txt", "to": "theirs.txt"}),
        ),
    ] {
        let response = app.post_json(path, Some(&user), body).await;
        assert!(
            matches!(response.status().as_u16(), 403 | 404),
            "{path}: {}",
            response.status()
        );
    }
    expect_problem(
        app.call(
            Method::PATCH,
            "/api/v1/storage/buckets/docs/objects/theirs.txt",
            Some(&user),
            &[],
            Some(json!({"metadata": {"x": 1}})),
        )
        .await,
        404,
        "object_not_found",
    )
    .await;

    let moved = json_of(
        app.post_json(
            "/api/v1/storage/buckets/docs/move",
            Some(&user),
            json!({"from": "b.txt", "to": "notes/b.txt"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(moved["key"], "notes/b.txt");
    let patched = json_of(
        app.call(
            Method::PATCH,
            "/api/v1/storage/buckets/docs/objects/notes/b.txt",
            Some(&user),
            &[],
            Some(json!({"metadata": {"lang": "en"}, "content_type": "text/markdown"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(patched["metadata"]["lang"], "en");
    assert_eq!(patched["content_type"], "text/markdown");

    store(&app, &user, "docs", "notes/c.txt", b"c").await;
    expect_problem(
        app.call(
            Method::DELETE,
            "/api/v1/storage/buckets/docs/objects?prefix=",
            Some(&user),
            &[],
            None,
        )
        .await,
        422,
        "validation_failed",
    )
    .await;
    let deleted = json_of(
        app.call(
            Method::DELETE,
            "/api/v1/storage/buckets/docs/objects?prefix=notes/",
            Some(&user),
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["deleted"], 2);
    // An administrator empties the bucket, then deletes it.
    let emptied = json_of(
        app.call(
            Method::DELETE,
            "/api/v1/storage/buckets/docs/objects?prefix=",
            Some(&admin),
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(emptied["deleted"], 2);
    let gone = app
        .call(
            Method::DELETE,
            "/api/v1/storage/buckets/docs",
            Some(&admin),
            &[],
            None,
        )
        .await;
    assert_eq!(gone.status(), 204);
}

#[tokio::test]
async fn a_read_only_api_key_reads_files_and_writes_none() {
    let app = TestApp::spawn().await;
    let admin = app.signup_as("admin@example.com", "admin").await.access;
    bucket(&app, &admin, json!({"name": "files"})).await;
    store(&app, &admin, "files", "a.txt", b"a").await;
    let key = json_of(
        app.post_json(
            "/api/v1/api-keys",
            Some(&admin),
            json!({"name": "reader", "scopes": ["read"]}),
        )
        .await,
        201,
    )
    .await;
    let secret = key["key"].as_str().unwrap();
    let headers = [("X-API-Key", secret)];
    let read = app
        .call(
            Method::GET,
            "/api/v1/storage/buckets/files/objects/a.txt",
            None,
            &headers,
            None,
        )
        .await;
    assert_eq!(read.status(), 200);
    for (method, path, body) in [
        (
            Method::POST,
            "/api/v1/storage/buckets/files/uploads",
            Some(json!({"key": "b", "size": 1, "content_type": "text/plain"})),
        ),
        (
            Method::DELETE,
            "/api/v1/storage/buckets/files/objects/a.txt",
            None,
        ),
        (
            Method::POST,
            "/api/v1/storage/buckets/files/copy",
            Some(json!({"from": "a.txt", "to": "b.txt"})),
        ),
    ] {
        expect_problem(
            app.call(method, path, None, &headers, body).await,
            403,
            "forbidden",
        )
        .await;
    }
    // Asking for an upload hands out URLs that write: not with the read scope.
    let upload = json_of(
        app.post_json(
            "/api/v1/storage/buckets/files/uploads",
            Some(&admin),
            json!({"key": "big.bin", "size": 3, "content_type": "application/octet-stream"}),
        )
        .await,
        201,
    )
    .await;
    let path = format!("/api/v1/storage/uploads/{}", upload["id"].as_str().unwrap());
    expect_problem(
        app.call(Method::GET, &path, None, &headers, None).await,
        403,
        "forbidden",
    )
    .await;
}

/// Every storage route, from an administrator of another tenant that has a bucket of the same
/// name: nothing of the first tenant is found, changed or listed.
#[tokio::test]
async fn another_tenant_finds_nothing_on_any_storage_route() {
    let app = TestApp::spawn_with(MULTI, None).await;
    tenant(&app, "first").await;
    tenant(&app, "second").await;
    let admin = member(&app, "first", "admin@example.com", "admin")
        .await
        .access;
    bucket(&app, &admin, json!({"name": "shared"})).await;
    store(&app, &admin, "shared", "secret.txt", b"secret").await;
    let upload = json_of(
        app.post_json(
            "/api/v1/storage/buckets/shared/uploads",
            Some(&admin),
            json!({"key": "big.bin", "size": 4, "content_type": "application/octet-stream"}),
        )
        .await,
        201,
    )
    .await;
    let id = upload["id"].as_str().unwrap();
    let intruder = member(&app, "second", "intruder@example.com", "admin").await;
    bucket(&app, &intruder.access, json!({"name": "shared"})).await;
    let t = &intruder.access;

    let object = "/api/v1/storage/buckets/shared/objects/secret.txt";
    for (method, path, body) in [
        (Method::GET, object.to_owned(), None),
        (Method::DELETE, object.to_owned(), None),
        (
            Method::PATCH,
            object.to_owned(),
            Some(json!({"metadata": {}})),
        ),
        (
            Method::POST,
            "/api/v1/storage/buckets/shared/copy".to_owned(),
            Some(json!({"from": "secret.txt", "to": "x"})),
        ),
        (
            Method::POST,
            "/api/v1/storage/buckets/shared/move".to_owned(),
            Some(json!({"from": "secret.txt", "to": "x"})),
        ),
        (
            Method::POST,
            "/api/v1/storage/buckets/shared/signed-urls".to_owned(),
            Some(json!({"key": "secret.txt"})),
        ),
    ] {
        expect_problem(
            app.call(method, &path, Some(t), &[], body).await,
            404,
            "object_not_found",
        )
        .await;
    }
    for (method, path) in [
        (Method::GET, format!("/api/v1/storage/uploads/{id}")),
        (
            Method::POST,
            format!("/api/v1/storage/uploads/{id}/complete"),
        ),
        (Method::DELETE, format!("/api/v1/storage/uploads/{id}")),
    ] {
        expect_problem(
            app.call(method, &path, Some(t), &[], None).await,
            404,
            "upload_not_found",
        )
        .await;
    }
    let listed = json_of(
        app.get_auth("/api/v1/storage/buckets/shared/objects", t)
            .await,
        200,
    )
    .await;
    assert_eq!(listed["objects"], json!([]));
    let deleted = json_of(
        app.call(
            Method::DELETE,
            "/api/v1/storage/buckets/shared/objects?prefix=",
            Some(t),
            &[],
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(deleted["deleted"], 0);
    let usage = json_of(app.get_auth("/api/v1/storage/usage", t).await, 200).await;
    assert_eq!(usage["objects"], 0);
    // The first tenant's object is intact.
    let still = app.get_auth(object, &admin).await;
    assert_eq!(still.status(), 200);
    assert_eq!(still.bytes().await.unwrap().as_ref(), b"secret");
}
