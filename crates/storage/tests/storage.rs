//! The storage service on both backends against a real PostgreSQL, as the runtime role under
//! row-level security: buckets, streamed writes with limits, replacement without a mix,
//! listings, quotas, tenant isolation, and the sweeper after an abandoned upload.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{KINDS, Kind, blobs, body, bucket, harness, pending, read, typed};
use futures_util::{StreamExt, stream};
use sovereign_storage::{Put, StorageError};
use uuid::Uuid;

#[tokio::test]
async fn objects_are_streamed_checked_replaced_whole_and_listed() {
    for kind in KINDS {
        objects_are_streamed_checked_replaced_whole_and_listed_on(kind).await;
    }
}

async fn objects_are_streamed_checked_replaced_whole_and_listed_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("docs", &["text/*"], Some(64)))
        .await
        .unwrap();
    assert!(matches!(
        s.create_bucket(h.a, &bucket("docs", &[], None)).await,
        Err(StorageError::BucketExists)
    ));
    let info = s
        .put(
            h.a,
            "docs",
            "notes/a.txt",
            typed("text/plain"),
            body(&[b"hello ", b"world"]),
        )
        .await
        .unwrap();
    assert_eq!(info.size, 11);
    assert_eq!(
        info.sha256,
        "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    );
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"hello world");
    let (_, mut part) = s
        .get(h.a, "docs", "notes/a.txt", Some(6..11))
        .await
        .unwrap();
    assert_eq!(&part.next().await.unwrap().unwrap()[..], b"world");

    // Limits: too large mid-stream, wrong type, hostile keys; nothing stored.
    let before = blobs(&h).await;
    let big = s
        .put(
            h.a,
            "docs",
            "big.txt",
            typed("text/plain"),
            body(&[&[b'x'; 40], &[b'y'; 40]]),
        )
        .await;
    assert!(
        matches!(big, Err(StorageError::TooLarge { limit: 64 })),
        "{big:?}"
    );
    let html = s
        .put(
            h.a,
            "docs",
            "x.html",
            typed("application/javascript"),
            body(&[b"x"]),
        )
        .await;
    assert!(matches!(html, Err(StorageError::TypeNotAllowed(_))));
    for key in ["../escape", "/abs", "a//b", "a\\b", "a\u{7}b"] {
        let refused = s
            .put(h.a, "docs", key, typed("text/plain"), body(&[b"x"]))
            .await;
        assert!(matches!(refused, Err(StorageError::Invalid(_))), "{key:?}");
    }
    assert_eq!(blobs(&h).await, before, "no bytes left behind");
    assert!(matches!(
        s.head(h.a, "docs", "big.txt").await,
        Err(StorageError::ObjectNotFound)
    ));

    // A replacement is whole: the new bytes, the old blob removed; create-only refuses.
    s.put(
        h.a,
        "docs",
        "notes/a.txt",
        typed("text/plain"),
        body(&[b"second"]),
    )
    .await
    .unwrap();
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"second");
    assert_eq!(blobs(&h).await, before, "one blob per object");
    let create_only = Put {
        create_only: true,
        ..typed("text/plain")
    };
    assert!(matches!(
        s.put(h.a, "docs", "notes/a.txt", create_only, body(&[b"third"]))
            .await,
        Err(StorageError::ObjectExists)
    ));
    assert_eq!(read(s, h.a, "docs", "notes/a.txt").await, b"second");

    // Listing by prefix, in pages.
    for key in ["notes/b.txt", "notes/c.txt", "notesx.txt", "other/d.txt"] {
        s.put(h.a, "docs", key, typed("text/plain"), body(&[b"."]))
            .await
            .unwrap();
    }
    let page = s.list(h.a, "docs", "notes/", None, 2, None).await.unwrap();
    let keys: Vec<_> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["notes/a.txt", "notes/b.txt"]);
    let rest = s
        .list(h.a, "docs", "notes/", page.next.as_deref(), 2, None)
        .await
        .unwrap();
    let keys: Vec<_> = rest.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, ["notes/c.txt"]);
    assert!(rest.next.is_none());

    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (5, 6 + 4));
    let someone = Some(Uuid::now_v7());
    assert!(matches!(
        s.delete(h.a, "docs", "notes/a.txt", someone).await,
        Err(StorageError::ObjectNotFound)
    ));
    s.delete(h.a, "docs", "notes/a.txt", None).await.unwrap();
    assert_eq!(s.usage(h.a).await.unwrap().bytes, 4);
    assert!(matches!(
        s.delete_bucket(h.a, "docs").await,
        Err(StorageError::BucketNotEmpty)
    ));
}

#[tokio::test]
async fn tenants_see_only_their_own_buckets_and_objects() {
    for kind in KINDS {
        tenants_see_only_their_own_buckets_and_objects_on(kind).await;
    }
}

async fn tenants_see_only_their_own_buckets_and_objects_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("shared-name", &[], None))
        .await
        .unwrap();
    s.put(
        h.a,
        "shared-name",
        "secret.txt",
        typed("text/plain"),
        body(&[b"a's"]),
    )
    .await
    .unwrap();
    assert!(matches!(
        s.get(h.b, "shared-name", "secret.txt", None).await,
        Err(StorageError::BucketNotFound)
    ));
    s.create_bucket(h.b, &bucket("shared-name", &[], None))
        .await
        .unwrap();
    assert!(matches!(
        s.get(h.b, "shared-name", "secret.txt", None).await,
        Err(StorageError::ObjectNotFound)
    ));
    assert!(
        s.list(h.b, "shared-name", "", None, 10, None)
            .await
            .unwrap()
            .objects
            .is_empty()
    );
}

#[tokio::test]
async fn the_quota_refuses_what_would_pass_it_and_keeps_nothing() {
    for kind in KINDS {
        the_quota_refuses_what_would_pass_it_and_keeps_nothing_on(kind).await;
    }
}

async fn the_quota_refuses_what_would_pass_it_and_keeps_nothing_on(kind: Kind) {
    let h = harness(kind, 10).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("quota", &[], None))
        .await
        .unwrap();
    s.put(h.a, "quota", "a", typed("text/plain"), body(&[b"12345678"]))
        .await
        .unwrap();
    let over = s
        .put(h.a, "quota", "b", typed("text/plain"), body(&[b"123"]))
        .await;
    assert!(matches!(over, Err(StorageError::QuotaExceeded)), "{over:?}");
    assert!(matches!(
        s.head(h.a, "quota", "b").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(blobs(&h).await, 1, "the refused upload's bytes are gone");
    // Replacing within the quota counts the difference.
    s.put(
        h.a,
        "quota",
        "a",
        typed("text/plain"),
        body(&[b"1234567890"]),
    )
    .await
    .unwrap();
    assert_eq!(s.usage(h.a).await.unwrap().bytes, 10);
}

#[tokio::test]
async fn an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned() {
    for kind in KINDS {
        an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned_on(
            kind,
        )
        .await;
    }
}

async fn an_upload_whose_client_goes_away_leaves_nothing_and_the_sweeper_clears_the_abandoned_on(
    kind: Kind,
) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("uploads", &[], None))
        .await
        .unwrap();
    let broken = stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let failed = s
        .put(h.a, "uploads", "x", typed("text/plain"), broken)
        .await;
    assert!(
        matches!(failed, Err(StorageError::Interrupted(_))),
        "{failed:?}"
    );
    assert!(matches!(
        s.head(h.a, "uploads", "x").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(blobs(&h).await, 0);

    // An upload cut off for good (the server stopped): its blob stays recorded as pending,
    // with no object, until the sweeper removes it.
    let (release, never) = tokio::sync::oneshot::channel::<()>();
    let chunks =
        stream::iter(vec![Ok(Bytes::from_static(b"partial"))]).chain(stream::once(async move {
            let _ = never.await;
            Err(std::io::Error::other("never sent"))
        }));
    let task = tokio::spawn({
        let s = s.clone();
        let a = h.a;
        async move {
            s.put(a, "uploads", "y", typed("text/plain"), Box::pin(chunks))
                .await
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pending(&h).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::task::yield_now().await;
    }
    task.abort();
    let _ = task.await;
    drop(release);
    assert!(matches!(
        s.head(h.a, "uploads", "y").await,
        Err(StorageError::ObjectNotFound)
    ));
    assert_eq!(pending(&h).await, 1);
    // A sweep leaves uploads younger than its age alone, then takes the abandoned one.
    assert_eq!(s.sweep(Duration::from_secs(3600)).await.unwrap().blobs, 0);
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().blobs, 1);
    assert_eq!(pending(&h).await, 0);
    assert_eq!(blobs(&h).await, 0, "no orphan bytes after the sweep");
    assert_eq!(s.sweep(Duration::ZERO).await.unwrap().blobs, 0);
}

#[tokio::test]
async fn concurrent_writes_to_one_key_leave_one_whole_version() {
    for kind in KINDS {
        concurrent_writes_to_one_key_leave_one_whole_version_on(kind).await;
    }
}

async fn concurrent_writes_to_one_key_leave_one_whole_version_on(kind: Kind) {
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("race", &[], None))
        .await
        .unwrap();
    let versions: Vec<Vec<u8>> = (0u8..8).map(|i| vec![b'a' + i; 50_000]).collect();
    let writes = versions.iter().map(|bytes| {
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        s.put(
            h.a,
            "race",
            "same-key",
            typed("application/octet-stream"),
            stream::iter(chunks),
        )
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    let got = read(s, h.a, "race", "same-key").await;
    assert!(versions.contains(&got), "one whole version, never a mix");
    let info = s.head(h.a, "race", "same-key").await.unwrap();
    assert_eq!(info.size, 50_000);
    assert_eq!(blobs(&h).await, 1, "the replaced versions' bytes are gone");
    let usage = s.usage(h.a).await.unwrap();
    assert_eq!((usage.objects, usage.bytes), (1, 50_000));
}

#[tokio::test]
async fn many_large_writes_at_once_share_the_memory_budget_and_all_land() {
    for kind in KINDS {
        many_large_writes_at_once_share_the_memory_budget_and_all_land_on(kind).await;
    }
}

/// Six writes of 15 MiB at once under an 8 MiB budget (on S3, one 5 MiB part's reservation at a
/// time). Each must land whole; none may wait forever on the budget.
async fn many_large_writes_at_once_share_the_memory_budget_and_all_land_on(kind: Kind) {
    use sha2::{Digest, Sha256};
    let h = harness(kind, 1 << 30).await;
    let s = &h.storage;
    s.create_bucket(h.a, &bucket("large", &[], None))
        .await
        .unwrap();
    let size = 15 << 20;
    let writes = (0u8..6).map(|i| {
        let chunk = Bytes::from(vec![i; 1 << 16]);
        let chunks = stream::iter(
            (0..size / (1 << 16)).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        );
        let s = s.clone();
        let a = h.a;
        async move {
            let written = tokio::time::timeout(
                Duration::from_secs(120),
                s.put(
                    a,
                    "large",
                    &format!("{i}.bin"),
                    typed("application/octet-stream"),
                    chunks,
                ),
            )
            .await
            .unwrap_or_else(|_| panic!("write {i} never landed: waiting forever for the budget"))
            .unwrap();
            (i, written)
        }
    });
    for (i, info) in futures_util::future::join_all(writes).await {
        let expected: String = Sha256::digest(vec![i; size])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(info.sha256, expected);
        assert_eq!(info.size, i64::try_from(size).unwrap());
    }
    assert_eq!(blobs(&h).await, 6);
}
