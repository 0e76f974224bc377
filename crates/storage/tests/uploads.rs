//! Direct uploads, signed reads, copy, move, delete by prefix and metadata changes, on both
//! backends: parts sent with the URLs the service gives (this server's tokens on the local
//! disk, presigned `PUT`s to the S3 store itself), resumed, checked, completed, aborted, swept.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use common::{Harness, KINDS, Kind, blobs, body, bucket, harness, read, typed};
use futures_util::stream;
use sha2::{Digest, Sha256};
use sovereign_storage::{Destination, NewUpload, ObjectChanges, Part, StorageError, Upload};
use uuid::Uuid;

const MIB: usize = 1 << 20;

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn new_upload(key: &str, size: usize, content_type: &str) -> NewUpload {
    NewUpload {
        key: key.to_owned(),
        size: size as u64,
        content_type: content_type.to_owned(),
        metadata: serde_json::Map::new(),
        part_size: Some(MIB as u64),
        create_only: false,
    }
}

/// Sends a part the way a client would: to the store's presigned URL, or with this server's
/// token. `Err` carries the server's refusal.
async fn send(h: &Harness, part: &Part, bytes: &[u8]) -> Result<(), StorageError> {
    match (&part.url, &part.token) {
        (Some(url), _) => {
            let response = reqwest::Client::new()
                .put(url)
                .body(bytes.to_vec())
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            Ok(())
        }
        (None, Some(token)) => {
            h.storage
                .put_part(
                    token,
                    upload_of(token),
                    part.number,
                    stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]),
                )
                .await
        }
        (None, None) => panic!("part {} has nowhere to go", part.number),
    }
}

/// The upload a part token names (read from its payload, as a client reads its URL's path).
fn upload_of(token: &str) -> Uuid {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split_once('.').unwrap().0)
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    value["u"].as_str().unwrap().parse().unwrap()
}

fn slice(bytes: &[u8], upload: &Upload, number: u32) -> Vec<u8> {
    let start = (number as usize - 1) * upload.part_size as usize;
    let end = (start + upload.part_size as usize).min(bytes.len());
    bytes[start..end].to_vec()
}

#[tokio::test]
async fn direct_uploads_are_checked_resumable_and_leave_nothing_behind() {
    for kind in KINDS {
        direct_uploads_are_checked_resumable_and_leave_nothing_behind_on(kind).await;
    }
}

async fn direct_uploads_are_checked_resumable_and_leave_nothing_behind_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("videos", &["video/*"], Some(4 * MIB as i64)))
        .await
        .unwrap();
    // Refused before any byte: type, size, part size.
    assert!(matches!(
        s.create_upload(h.a, "videos", new_upload("a.txt", 10, "text/plain"), None)
            .await,
        Err(StorageError::TypeNotAllowed(_))
    ));
    assert!(matches!(
        s.create_upload(
            h.a,
            "videos",
            new_upload("big.mp4", 5 * MIB, "video/mp4"),
            None
        )
        .await,
        Err(StorageError::TooLarge { .. })
    ));
    let mut tiny_parts = new_upload("a.mp4", MIB, "video/mp4");
    tiny_parts.part_size = Some(1000);
    assert!(matches!(
        s.create_upload(h.a, "videos", tiny_parts, None).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(matches!(
        s.create_upload(h.a, "../etc", new_upload("a.mp4", 1, "video/mp4"), None)
            .await,
        Err(StorageError::BucketNotFound | StorageError::Invalid(_))
    ));

    let bytes = data(2 * MIB + MIB / 2);
    let owner = Uuid::now_v7();
    let mut declared = new_upload("clips/launch.mp4", bytes.len(), "video/mp4");
    declared
        .metadata
        .insert("title".into(), serde_json::json!("Launch"));
    let upload = s
        .create_upload(h.a, "videos", declared, Some(owner))
        .await
        .unwrap();
    assert_eq!(upload.parts.len(), 3);
    assert_eq!(
        upload.parts.iter().map(|p| p.size).collect::<Vec<_>>(),
        [MIB as u64, MIB as u64, (MIB / 2) as u64]
    );
    match kind {
        Kind::Fs => assert!(upload.parts.iter().all(|p| p.token.is_some())),
        Kind::S3 => assert!(upload.parts.iter().all(|p| {
            p.url
                .as_deref()
                .is_some_and(|u| u.contains("X-Amz-Signature"))
        })),
    }
    // Parts 3 then 2 arrive; completing now names the missing one and makes nothing.
    for number in [3, 2] {
        send(
            &h,
            &upload.parts[number - 1],
            &slice(&bytes, &upload, number as u32),
        )
        .await
        .unwrap();
    }
    let early = s.complete_upload(h.a, upload.id, None).await;
    assert!(
        matches!(&early, Err(StorageError::UploadIncomplete(m)) if m.contains("parts 1 ")),
        "{early:?}"
    );
    assert!(matches!(
        s.head(h.a, "videos", "clips/launch.mp4").await,
        Err(StorageError::ObjectNotFound)
    ));
    // Resuming: what arrived, and a fresh URL for the rest only.
    let resumed = s.upload(h.a, upload.id).await.unwrap();
    assert_eq!(
        resumed.parts.iter().map(|p| p.received).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert!(resumed.parts[1].url.is_none() && resumed.parts[1].token.is_none());
    // A part of the wrong size is refused here (local disk) or at completion (S3).
    let short = send(&h, &resumed.parts[0], &bytes[..100]).await;
    match kind {
        Kind::Fs => assert!(matches!(short, Err(StorageError::Invalid(_))), "{short:?}"),
        Kind::S3 => assert!(matches!(
            s.complete_upload(h.a, upload.id, None).await,
            Err(StorageError::UploadIncomplete(_))
        )),
    }
    if kind == Kind::Fs {
        let long = send(&h, &resumed.parts[0], &vec![0; MIB + 1]).await;
        assert!(
            matches!(long, Err(StorageError::TooLarge { .. })),
            "{long:?}"
        );
    }
    send(&h, &resumed.parts[0], &slice(&bytes, &upload, 1))
        .await
        .unwrap();
    let (bucket_name, info) = s.complete_upload(h.a, upload.id, None).await.unwrap();
    assert_eq!(bucket_name, "videos");
    assert_eq!(info.size, bytes.len() as i64);
    assert_eq!(info.sha256, hex(&Sha256::digest(&bytes)));
    assert_eq!(info.owner_id, Some(owner));
    assert_eq!(info.metadata["title"], "Launch");
    assert_eq!(read(s, h.a, "videos", "clips/launch.mp4").await, bytes);
    // The upload is gone, parts and all: only the object's blob is left.
    assert!(matches!(
        s.upload(h.a, upload.id).await,
        Err(StorageError::UploadNotFound)
    ));
    assert_eq!(blobs(&h).await, 1);
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!(
        (usage.objects, usage.bytes),
        (1, i64::try_from(bytes.len()).unwrap())
    );
    // Another tenant sees no upload of this one.
    assert!(matches!(
        s.upload(h.b, upload.id).await,
        Err(StorageError::UploadNotFound)
    ));

    // Aborted: parts and record go.
    let aborted = s
        .create_upload(h.a, "videos", new_upload("b.mp4", 10, "video/mp4"), None)
        .await
        .unwrap();
    send(&h, &aborted.parts[0], &[1; 10]).await.unwrap();
    assert_eq!(blobs(&h).await, 2);
    s.abort_upload(h.a, aborted.id).await.unwrap();
    assert_eq!(blobs(&h).await, 1);
    assert!(matches!(
        s.complete_upload(h.a, aborted.id, None).await,
        Err(StorageError::UploadNotFound)
    ));

    // Abandoned: the sweeper removes it once expired, and not before.
    let abandoned = s
        .create_upload(h.a, "videos", new_upload("c.mp4", 10, "video/mp4"), None)
        .await
        .unwrap();
    send(&h, &abandoned.parts[0], &[2; 10]).await.unwrap();
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().uploads, 0);
    expire(&h, abandoned.id).await;
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().uploads, 1);
    assert_eq!(blobs(&h).await, 1, "no orphan part after the sweep");
    if kind == Kind::Fs {
        // Its token is worthless now.
        assert!(matches!(
            send(&h, &abandoned.parts[0], &[2; 10]).await,
            Err(StorageError::UploadNotFound)
        ));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Moves an upload's expiry an hour into the past.
async fn expire(h: &Harness, id: Uuid) {
    use diesel::prelude::*;
    use sovereign_db::schema::storage_uploads;
    use sovereign_db::{RunQueryDsl, ScopedFutureExt};
    h.db.tenant_transaction(h.a, |conn| {
        async move {
            diesel::update(storage_uploads::table.find(id))
                .set(storage_uploads::expires_at.eq(Utc::now() - chrono::Duration::hours(1)))
                .execute(conn)
                .await
                .map_err(sovereign_db::DbError::from)
        }
        .scope_boxed()
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn part_tokens_grant_one_part_of_one_upload_and_nothing_else() {
    let h = harness(Kind::Fs, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("files", &[], None))
        .await
        .unwrap();
    let upload = s
        .create_upload(
            h.a,
            "files",
            new_upload("a.bin", MIB + 1, "application/octet-stream"),
            None,
        )
        .await
        .unwrap();
    let token = upload.parts[0].token.clone().unwrap();
    let (payload, tag) = token.split_once('.').unwrap();
    let other = upload.parts[1].token.clone().unwrap();
    let empty = || stream::iter([Ok::<_, std::io::Error>(Bytes::new())]);
    // Part 1's token is no token for part 2, nor for another upload.
    for (number, id) in [(2, upload.id), (1, Uuid::now_v7())] {
        assert!(matches!(
            s.put_part(&token, id, number, empty()).await,
            Err(StorageError::SignatureInvalid)
        ));
    }
    for forged in [
        format!("{payload}.{}", other.split_once('.').unwrap().1),
        format!("{}.{tag}", other.split_once('.').unwrap().0),
        format!("{payload}x.{tag}"),
        "not-a-token".to_owned(),
    ] {
        let refused = s.put_part(&forged, upload.id, 1, empty()).await;
        assert!(
            matches!(refused, Err(StorageError::SignatureInvalid)),
            "{forged}: {refused:?}"
        );
    }
    // A read token is no part token.
    s.put(h.a, "files", "r.txt", typed("text/plain"), body(&[b"r"]))
        .await
        .unwrap();
    let read_token = s
        .sign_read(
            h.a,
            "files",
            "r.txt",
            Utc::now() + chrono::Duration::minutes(5),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.put_part(&read_token, upload.id, 1, empty()).await,
        Err(StorageError::SignatureInvalid)
    ));
}

#[tokio::test]
async fn signed_reads_name_one_object_and_expire() {
    let h = harness(Kind::Fs, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("files", &[], None))
        .await
        .unwrap();
    s.put(h.a, "files", "a/b.txt", typed("text/plain"), body(&[b"hi"]))
        .await
        .unwrap();
    let token = s
        .sign_read(
            h.a,
            "files",
            "a/b.txt",
            Utc::now() + chrono::Duration::minutes(5),
        )
        .await
        .unwrap();
    let (tenant, sha256) = s.verify_read(&token, "files", "a/b.txt").unwrap();
    assert_eq!(tenant, h.a);
    assert_eq!(
        sha256,
        s.head(h.a, "files", "a/b.txt").await.unwrap().sha256,
        "bound to the content it was signed for"
    );
    assert_eq!(s.verify_read(&token, "files", "a//b.txt").ok(), None);
    for (bucket, key) in [("files", "a/c.txt"), ("other", "a/b.txt")] {
        assert!(matches!(
            s.verify_read(&token, bucket, key),
            Err(StorageError::SignatureInvalid)
        ));
    }
    let expired = s
        .sign_read(
            h.a,
            "files",
            "a/b.txt",
            Utc::now() - chrono::Duration::seconds(1),
        )
        .await
        .unwrap();
    assert!(matches!(
        s.verify_read(&expired, "files", "a/b.txt"),
        Err(StorageError::SignatureExpired)
    ));
    assert!(matches!(
        s.sign_read(h.a, "files", "missing", Utc::now()).await,
        Err(StorageError::ObjectNotFound)
    ));
}

#[tokio::test]
async fn objects_are_copied_moved_updated_and_deleted_by_prefix() {
    for kind in KINDS {
        objects_are_copied_moved_updated_and_deleted_by_prefix_on(kind).await;
    }
}

async fn objects_are_copied_moved_updated_and_deleted_by_prefix_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("docs", &["text/*"], None))
        .await
        .unwrap();
    s.create_bucket(h.a, &bucket("images", &["image/*"], None))
        .await
        .unwrap();
    let (me, them) = (Uuid::now_v7(), Uuid::now_v7());
    let mine = |content_type: &str| sovereign_storage::Put {
        owner: Some(me),
        ..typed(content_type)
    };
    s.put(h.a, "docs", "a.txt", mine("text/plain"), body(&[b"alpha"]))
        .await
        .unwrap();
    let to = |key: &str| Destination {
        key: key.to_owned(),
        owner: Some(me),
        ..Destination::default()
    };

    let copy = s.copy(h.a, "docs", "a.txt", to("b.txt")).await.unwrap();
    assert_eq!(copy.size, 5);
    assert_eq!(read(s, h.a, "docs", "b.txt").await, b"alpha");
    assert_eq!(blobs(&h).await, 2, "a copy has bytes of its own");
    // The destination's rules hold: a text file is no image.
    let into_images = Destination {
        bucket: Some("images".into()),
        ..to("a.txt")
    };
    assert!(matches!(
        s.copy(h.a, "docs", "a.txt", into_images.clone()).await,
        Err(StorageError::TypeNotAllowed(_))
    ));
    assert!(matches!(
        s.rename(h.a, "docs", "a.txt", into_images).await,
        Err(StorageError::TypeNotAllowed(_))
    ));
    let create_only = Destination {
        create_only: true,
        ..to("b.txt")
    };
    assert!(matches!(
        s.copy(h.a, "docs", "a.txt", create_only.clone()).await,
        Err(StorageError::ObjectExists)
    ));

    // A move renames without touching the bytes; it replaces what was at the destination.
    let moved = s.rename(h.a, "docs", "a.txt", to("b.txt")).await.unwrap();
    assert_eq!(moved.key, "b.txt");
    assert!(matches!(
        s.head(h.a, "docs", "a.txt").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(read(s, h.a, "docs", "b.txt").await, b"alpha");
    assert_eq!(blobs(&h).await, 1, "the replaced copy's bytes are gone");
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (1, 5));
    // Someone else's object is neither moved nor replaced by a user limited to their own.
    let theirs = Destination {
        only_owner: Some(them),
        ..to("c.txt")
    };
    assert!(matches!(
        s.rename(h.a, "docs", "b.txt", theirs).await,
        Err(StorageError::ObjectNotFound)
    ));

    // Metadata and type.
    let mut metadata = serde_json::Map::new();
    metadata.insert("lang".into(), serde_json::json!("en"));
    let updated = s
        .update(
            h.a,
            "docs",
            "b.txt",
            ObjectChanges {
                metadata: Some(metadata),
                content_type: Some("text/markdown".into()),
            },
            Some(me),
        )
        .await
        .unwrap();
    assert_eq!(updated.metadata["lang"], "en");
    assert_eq!(updated.content_type, "text/markdown");
    assert!(matches!(
        s.update(
            h.a,
            "docs",
            "b.txt",
            ObjectChanges {
                content_type: Some("image/png".into()),
                ..ObjectChanges::default()
            },
            None
        )
        .await,
        Err(StorageError::TypeNotAllowed(_))
    ));
    assert!(matches!(
        s.update(h.a, "docs", "b.txt", ObjectChanges::default(), Some(them))
            .await,
        Err(StorageError::ObjectNotFound)
    ));

    // By prefix: only under it, only the caller's when limited, usage counted down.
    for key in ["logs/1.txt", "logs/2.txt", "logs/sub/3.txt", "logsx.txt"] {
        s.put(h.a, "docs", key, mine("text/plain"), body(&[b"x"]))
            .await
            .unwrap();
    }
    s.put(
        h.a,
        "docs",
        "logs/theirs.txt",
        sovereign_storage::Put {
            owner: Some(them),
            ..typed("text/plain")
        },
        body(&[b"y"]),
    )
    .await
    .unwrap();
    assert_eq!(
        s.delete_prefix(h.a, "docs", "logs/", Some(me))
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.delete_prefix(h.b, "docs", "logs/", None).await.ok(), None);
    let left: Vec<String> = s
        .list(h.a, "docs", "", None, 100, None)
        .await
        .unwrap()
        .objects
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(left, ["b.txt", "logs/theirs.txt", "logsx.txt"]);
    assert_eq!(blobs(&h).await, 3);
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (3, 7));
}

#[tokio::test]
async fn an_upload_is_completed_once_however_many_ask_at_the_same_time() {
    for kind in KINDS {
        an_upload_is_completed_once_however_many_ask_at_the_same_time_on(kind).await;
    }
}

async fn an_upload_is_completed_once_however_many_ask_at_the_same_time_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("files", &[], None))
        .await
        .unwrap();
    let bytes = data(3 * MIB);
    let upload = s
        .create_upload(
            h.a,
            "files",
            new_upload("once.bin", bytes.len(), "application/octet-stream"),
            None,
        )
        .await
        .unwrap();
    for part in &upload.parts {
        send(&h, part, &slice(&bytes, &upload, part.number))
            .await
            .unwrap();
    }
    let attempts = (0..4).map(|_| s.complete_upload(h.a, upload.id, None));
    let outcomes = futures_util::future::join_all(attempts).await;
    let done = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(done, 1, "{outcomes:?}");
    for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        assert!(
            matches!(
                refused,
                StorageError::UploadBusy | StorageError::UploadNotFound
            ),
            "{refused:?}"
        );
    }
    assert_eq!(read(s, h.a, "files", "once.bin").await, bytes);
    assert_eq!(blobs(&h).await, 1, "one object, no part, no second blob");
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!(usage.objects, 1);
}

#[tokio::test]
async fn a_part_sent_after_its_upload_ended_is_swept() {
    for kind in KINDS {
        a_part_sent_after_its_upload_ended_is_swept_on(kind).await;
    }
}

async fn a_part_sent_after_its_upload_ended_is_swept_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("files", &[], None))
        .await
        .unwrap();
    let upload = s
        .create_upload(
            h.a,
            "files",
            new_upload("late.bin", 10, "application/octet-stream"),
            None,
        )
        .await
        .unwrap();
    send(&h, &upload.parts[0], &[1; 10]).await.unwrap();
    s.complete_upload(h.a, upload.id, None).await.unwrap();
    assert_eq!(blobs(&h).await, 1);
    // The same URL again, after completion: S3 takes it (a presigned URL lives until it
    // expires); this server refuses it and keeps nothing.
    let late = send(&h, &upload.parts[0], &[2; 10]).await;
    match kind {
        Kind::S3 => {
            late.unwrap();
            assert_eq!(blobs(&h).await, 2, "the late part is in the store");
        }
        Kind::Fs => assert!(
            matches!(late, Err(StorageError::UploadNotFound)),
            "{late:?}"
        ),
    }
    // Younger than the sweep's age: left alone; then removed.
    assert_eq!(
        s.sweep(Duration::from_secs(3600))
            .await
            .unwrap()
            .orphan_parts,
        0
    );
    let swept = s.sweep(Duration::ZERO).await.unwrap();
    assert_eq!(swept.orphan_parts, usize::from(kind == Kind::S3));
    assert_eq!(blobs(&h).await, 1, "only the object's blob is left");
    assert_eq!(read(s, h.a, "files", "late.bin").await, vec![1; 10]);
}

#[tokio::test]
async fn an_account_has_at_most_100_uploads_in_progress_each_ending_a_week_after_it_began() {
    let h = harness(Kind::Fs, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("files", &[], None))
        .await
        .unwrap();
    let me = Some(Uuid::now_v7());
    let mut first = None;
    for i in 0..100 {
        let upload = s
            .create_upload(
                h.a,
                "files",
                new_upload(&format!("{i}.bin"), 10, "text/plain"),
                me,
            )
            .await
            .unwrap();
        first.get_or_insert(upload.id);
    }
    assert!(matches!(
        s.create_upload(h.a, "files", new_upload("101.bin", 10, "text/plain"), me)
            .await,
        Err(StorageError::QuotaExceeded)
    ));
    // Another account is not held back by this one's uploads.
    s.create_upload(
        h.a,
        "files",
        new_upload("x.bin", 10, "text/plain"),
        Some(Uuid::now_v7()),
    )
    .await
    .unwrap();

    // Declared eight days ago: renewing cannot take it past the seventh day.
    let id = first.unwrap();
    let declared = Utc::now() - chrono::Duration::days(8);
    {
        use diesel::prelude::*;
        use sovereign_db::schema::storage_uploads;
        use sovereign_db::{RunQueryDsl, ScopedFutureExt};
        h.db.tenant_transaction(h.a, |conn| {
            async move {
                diesel::update(storage_uploads::table.find(id))
                    .set(storage_uploads::created_at.eq(declared))
                    .execute(conn)
                    .await
                    .map_err(sovereign_db::DbError::from)
            }
            .scope_boxed()
        })
        .await
        .unwrap();
    }
    let renewed = s.upload(h.a, id).await.unwrap();
    let cap = declared + chrono::Duration::days(7);
    assert!(
        (renewed.expires_at - cap).num_milliseconds().abs() < 5,
        "{} is not {cap}",
        renewed.expires_at
    );
    assert!(matches!(
        s.upload(h.a, id).await,
        Err(StorageError::UploadNotFound)
    ));
}
