//! The vector service against a real PostgreSQL with pgvector, as the runtime role under
//! row-level security.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers fail loudly, like the tests that call them"
)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sovereign_db::{AsyncPgConnection, Db, PoolSettings, RunQueryDsl};
use sovereign_tenancy::TenantAdmin;
use sovereign_test_db::TestDatabase;
use sovereign_vector::{
    Collection, HashEmbedder, IndexRequest, IndexState, NewCollection, PayloadKind, PointInput,
    PointSelector, SearchRequest, VectorError, VectorSettings, Vectors,
};
use uuid::Uuid;

/// A filter and which of the 60 points it selects.
type Case = (Value, Box<dyn Fn(usize) -> bool>);

struct Harness {
    vectors: Vectors,
    a: Uuid,
    b: Uuid,
    db: TestDatabase,
}

fn pool(url: &sovereign_core::settings::SecretUrl, size: usize) -> Db {
    Db::new(
        url,
        PoolSettings {
            max_size: size,
            wait_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            recycle_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

async fn harness() -> Harness {
    let db = TestDatabase::migrated().await;
    let admin = TenantAdmin::new(pool(db.tenant_admin_url(), 1));
    let a = admin.create("tenant-a", "Tenant A").await.unwrap().id;
    let b = admin.create("tenant-b", "Tenant B").await.unwrap().id;
    let vectors = Vectors::new(
        pool(db.url(), 4),
        Arc::new(HashEmbedder::new(16)),
        VectorSettings::default(),
    );
    Harness { vectors, a, b, db }
}

fn new_collection(v: Value) -> NewCollection {
    serde_json::from_value(v).unwrap()
}

fn search(v: Value) -> SearchRequest {
    serde_json::from_value(v).unwrap()
}

fn point(id: &str, vector: Vec<f32>, payload: Value) -> PointInput {
    PointInput {
        id: id.to_owned(),
        vector: Some(vector),
        text: None,
        payload: match payload {
            Value::Object(map) => Some(map),
            _ => None,
        },
    }
}

/// Deterministic pseudo-random vectors.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        #[expect(clippy::cast_precision_loss, reason = "test data")]
        let x = (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        x * 2.0 - 1.0
    }

    fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next()).collect()
    }
}

async fn fill(
    h: &Harness,
    tenant: Uuid,
    name: &str,
    n: usize,
    dim: usize,
    seed: u64,
    payload: impl Fn(usize) -> Value,
) {
    let mut rng = Lcg(seed);
    let mut batch = Vec::new();
    for i in 0..n {
        batch.push(point(&format!("{name}-{i}"), rng.vector(dim), payload(i)));
        if batch.len() == 1000 {
            h.vectors
                .upsert(tenant, name, std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        h.vectors.upsert(tenant, name, batch).await.unwrap();
    }
}

fn codes(e: &VectorError) -> Vec<(String, String)> {
    match e {
        VectorError::Invalid(errors) => errors
            .iter()
            .map(|e| (e.field.clone(), e.code.to_string()))
            .collect(),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test]
async fn collections_are_created_listed_described_and_deleted_with_their_storage() {
    let h = harness().await;
    let c = h
        .vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 3, "distance": "l2"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (c.name.as_str(), c.dimension, c.index, c.points),
        ("docs", 3, IndexState::Ready, Some(0))
    );
    let again = h
        .vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 3})),
        )
        .await
        .unwrap_err();
    assert!(matches!(again, VectorError::CollectionExists), "{again:?}");
    // The same name in another tenant is another collection.
    h.vectors
        .create_collection(
            h.b,
            &new_collection(json!({"name": "docs", "dimension": 5, "defer_index": true})),
        )
        .await
        .unwrap();
    let listed: Vec<Collection> = h.vectors.list_collections(h.a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dimension, 3);
    assert_eq!(
        h.vectors.collection(h.b, "docs").await.unwrap().index,
        IndexState::None
    );

    let bad = h
        .vectors
        .create_collection(
            h.a,
            &new_collection(
                json!({"name": "-x", "dimension": 0, "hnsw": {"m": 1, "ef_construction": 2}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&bad),
        [
            ("name".to_owned(), "invalid_name".to_owned()),
            ("dimension".to_owned(), "out_of_range".to_owned()),
            ("hnsw.m".to_owned(), "out_of_range".to_owned()),
            ("hnsw.ef_construction".to_owned(), "out_of_range".to_owned()),
        ]
    );

    h.vectors
        .upsert(
            h.a,
            "docs",
            vec![point("p", vec![1.0, 2.0, 3.0], json!({}))],
        )
        .await
        .unwrap();
    let partition = format!("vector_points_{}", c.id.simple());
    assert!(table_exists(&mut h.db.owner_conn().await, &partition).await);
    h.vectors.delete_collection(h.a, "docs").await.unwrap();
    assert!(!table_exists(&mut h.db.owner_conn().await, &partition).await);
    assert!(matches!(
        h.vectors.delete_collection(h.a, "docs").await.unwrap_err(),
        VectorError::CollectionNotFound
    ));
    // Tenant B's collection of the same name is untouched.
    assert_eq!(
        h.vectors.collection(h.b, "docs").await.unwrap().dimension,
        5
    );
}

async fn table_exists(conn: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS exists")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result::<Exists>(conn)
        .await
        .unwrap()
        .exists
}

#[tokio::test]
async fn points_round_trip_through_upsert_get_payload_changes_and_delete() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 3, "distance": "dot"})),
        )
        .await
        .unwrap();
    let uuid = Uuid::new_v4();
    let upserted = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![
                point("one", vec![1.0, 0.0, 0.0], json!({"tag": "x", "n": 1})),
                point(
                    &uuid.to_string().to_uppercase(),
                    vec![0.0, 1.0, 0.0],
                    json!({}),
                ),
                // A later point with the same id wins.
                point("one", vec![0.5, 0.5, 0.0], json!({"tag": "y"})),
            ],
        )
        .await
        .unwrap();
    assert_eq!(upserted.points, 2);
    let ids = ["one".to_owned(), uuid.to_string(), "missing".to_owned()];
    let got = h
        .vectors
        .points(h.a, "docs", &ids, true, true)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, "one");
    assert_eq!(got[0].vector.as_deref(), Some(&[0.5, 0.5, 0.0][..]));
    assert_eq!(got[0].payload, Some(json!({"tag": "y"})));
    assert_eq!(got[1].id, uuid.to_string(), "UUIDs are stored lower-cased");

    // Merge, then overwrite.
    let update = |v: Value| serde_json::from_value(v).unwrap();
    h.vectors
        .set_payload(
            h.a,
            "docs",
            update(json!({"ids": ["one"], "payload": {"n": 2}})),
            false,
        )
        .await
        .unwrap();
    let got = h
        .vectors
        .points(h.a, "docs", &ids[..1], true, false)
        .await
        .unwrap();
    assert_eq!(got[0].payload, Some(json!({"tag": "y", "n": 2})));
    assert_eq!(got[0].vector, None);
    h.vectors
        .set_payload(
            h.a,
            "docs",
            update(json!({"ids": ["one"], "payload": {"only": true}})),
            true,
        )
        .await
        .unwrap();
    let got = h
        .vectors
        .points(h.a, "docs", &ids[..1], true, false)
        .await
        .unwrap();
    assert_eq!(got[0].payload, Some(json!({"only": true})));

    // Replacing a point replaces its vector and payload.
    h.vectors
        .upsert(
            h.a,
            "docs",
            vec![point("one", vec![0.0, 0.0, 1.0], json!({"v": 2}))],
        )
        .await
        .unwrap();
    let got = h
        .vectors
        .points(h.a, "docs", &ids[..1], true, true)
        .await
        .unwrap();
    assert_eq!(got[0].vector.as_deref(), Some(&[0.0, 0.0, 1.0][..]));

    let deleted = h
        .vectors
        .delete_points(
            h.a,
            "docs",
            &PointSelector {
                ids: Some(ids.to_vec()),
                filter: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(deleted.points, 2);
    assert!(
        h.vectors
            .points(h.a, "docs", &ids, true, true)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_points_are_refused_whole_with_every_problem_named() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 3})),
        )
        .await
        .unwrap();
    let e = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![
                point("ok", vec![1.0, 0.0, 0.0], json!({})),
                point("short", vec![1.0, 0.0], json!({})),
            ],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, VectorError::DimensionMismatch { field, expected: 3, got: 2 } if field == "points[1].vector"),
        "{e:?}"
    );
    let e = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![point("zero", vec![0.0, 0.0, 0.0], json!({}))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [("points[0].vector".to_owned(), "zero_vector".to_owned())]
    );
    let e = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![
                point("", vec![1.0, 0.0, 0.0], json!({})),
                PointInput {
                    id: "both".into(),
                    vector: Some(vec![1.0, 0.0, 0.0]),
                    text: Some("x".into()),
                    payload: None,
                },
                point("big", vec![1.0, 0.0, 0.0], json!({"x": "a".repeat(70_000)})),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [
            ("points[0].id".to_owned(), "invalid_id".to_owned()),
            ("points[1]".to_owned(), "vector_or_text".to_owned()),
            ("points[2].payload".to_owned(), "too_large".to_owned()),
        ]
    );
    // Nothing of a refused batch was stored.
    assert_eq!(
        h.vectors.collection(h.a, "docs").await.unwrap().points,
        Some(0)
    );

    // Text needs an embedder of the collection's dimension (16 here).
    let e = h
        .vectors
        .search(h.a, "docs", search(json!({"text": "hello"})))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VectorError::EmbedderMismatch {
                embedder: 16,
                collection: 3
            }
        ),
        "{e:?}"
    );
    let e = h
        .vectors
        .search(h.a, "docs", search(json!({"vector": [1, 2]})))
        .await
        .unwrap_err();
    assert!(matches!(e, VectorError::DimensionMismatch { .. }), "{e:?}");
    let e = h
        .vectors
        .search(
            h.a,
            "docs",
            search(json!({"vector": [1, 2, 3], "limit": 0, "ef": 5000})),
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [
            ("limit".to_owned(), "out_of_range".to_owned()),
            ("ef".to_owned(), "out_of_range".to_owned())
        ]
    );
    let e = h
        .vectors
        .search(h.a, "docs", search(json!({"vector": [1, 2, 3], "filter": {"must": [{"key": "tag", "match": {"value": "x"}}]}})))
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [(
            "filter.must[0].key".to_owned(),
            "key_not_indexed".to_owned()
        )]
    );
}

#[tokio::test]
async fn text_points_are_embedded_and_found_by_text() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "notes", "dimension": 16})),
        )
        .await
        .unwrap();
    let text = |id: &str, t: &str| PointInput {
        id: id.into(),
        vector: None,
        text: Some(t.into()),
        payload: None,
    };
    h.vectors
        .upsert(
            h.a,
            "notes",
            vec![
                text("pw", "how to reset a forgotten password"),
                text("tax", "quarterly tax report for the board"),
                text("cat", "feeding the office cat"),
            ],
        )
        .await
        .unwrap();
    let hits = h
        .vectors
        .search(
            h.a,
            "notes",
            search(json!({"text": "forgotten password reset", "limit": 3})),
        )
        .await
        .unwrap();
    assert_eq!(hits[0].id, "pw");
    assert!(hits[0].score > hits[1].score);
    assert!(
        hits[0].score <= 1.0 + 1e-5 && hits[0].score > 0.5,
        "{hits:?}"
    );
}

/// Every operator of the filter language, on all four payload kinds, against the answer
/// computed here from the payloads.
#[tokio::test]
async fn every_filter_operator_selects_exactly_the_matching_points() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 4})),
        )
        .await
        .unwrap();
    let categories = ["news", "blog", "docs"];
    let payload = |i: usize| {
        let mut p = json!({"category": categories[i % 3], "year": 2000 + (i % 20), "meta": {"score": (i as f64) / 10.0}});
        if i.is_multiple_of(4) {
            p["public"] = json!(i.is_multiple_of(8));
        }
        p
    };
    fill(&h, h.a, "docs", 60, 4, 7, payload).await;
    for (key, kind) in [
        ("category", PayloadKind::Keyword),
        ("year", PayloadKind::Integer),
        ("meta.score", PayloadKind::Float),
        ("public", PayloadKind::Bool),
    ] {
        h.vectors
            .create_index(
                h.a,
                "docs",
                IndexRequest::Payload {
                    key: key.into(),
                    kind,
                },
                true,
            )
            .await
            .unwrap();
    }
    let c = h.vectors.collection(h.a, "docs").await.unwrap();
    assert_eq!(c.payload_indexes.len(), 4);

    let cases: Vec<Case> = vec![
        (
            json!({"must": [{"key": "category", "match": {"value": "news"}}]}),
            Box::new(|i| i % 3 == 0),
        ),
        (
            json!({"must": [{"key": "category", "match": {"any": ["news", "blog"]}}]}),
            Box::new(|i| i % 3 != 2),
        ),
        (
            json!({"must": [{"key": "year", "range": {"gte": 2005, "lt": 2010}}]}),
            Box::new(|i| (5..10).contains(&(i % 20))),
        ),
        (
            json!({"must": [{"key": "year", "range": {"gt": 2017}}]}),
            Box::new(|i| i % 20 > 17),
        ),
        (
            json!({"must": [{"key": "meta.score", "range": {"lte": 1.0}}]}),
            Box::new(|i| i <= 10),
        ),
        (
            json!({"must": [{"key": "year", "match": {"value": 2003}}]}),
            Box::new(|i| i % 20 == 3),
        ),
        (
            json!({"must": [{"key": "public", "exists": true}]}),
            Box::new(|i| i % 4 == 0),
        ),
        (
            json!({"must": [{"key": "public", "exists": false}]}),
            Box::new(|i| i % 4 != 0),
        ),
        (
            json!({"must": [{"key": "public", "match": {"value": true}}]}),
            Box::new(|i| i % 8 == 0),
        ),
        // must_not keeps points without the key.
        (
            json!({"must_not": [{"key": "public", "match": {"value": true}}]}),
            Box::new(|i| i % 8 != 0),
        ),
        (
            json!({"should": [{"key": "category", "match": {"value": "docs"}}, {"key": "year", "range": {"lt": 2002}}]}),
            Box::new(|i| i % 3 == 2 || i % 20 < 2),
        ),
        (
            json!({"must": [{"key": "category", "match": {"value": "blog"}}],
                "must_not": [{"should": [{"key": "year", "range": {"lt": 2010}}, {"key": "public", "exists": true}]}]}),
            Box::new(|i| i % 3 == 1 && i % 20 >= 10 && i % 4 != 0),
        ),
    ];
    let query = Lcg(99).vector(4);
    for (filter, expected) in cases {
        let want: HashSet<String> = (0..60)
            .filter(|i| expected(*i))
            .map(|i| format!("docs-{i}"))
            .collect();
        for exact in [false, true] {
            let hits = h
                .vectors
                .search(
                    h.a,
                    "docs",
                    search(
                        json!({"vector": query, "filter": filter, "limit": 100, "exact": exact}),
                    ),
                )
                .await
                .unwrap();
            let got: HashSet<String> = hits.iter().map(|p| p.id.clone()).collect();
            assert_eq!(got, want, "{filter} (exact: {exact})");
        }
        // The same filter selects the same points for deletion (checked on a copy).
        let selector: PointSelector = serde_json::from_value(json!({"filter": filter})).unwrap();
        let _ = selector;
    }
    let deleted = h
        .vectors
        .delete_points(
            h.a,
            "docs",
            &serde_json::from_value(
                json!({"filter": {"must": [{"key": "category", "match": {"value": "news"}}]}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(deleted.points, 20);
    assert_eq!(
        h.vectors.collection(h.a, "docs").await.unwrap().points,
        Some(40)
    );
    let changed = h
        .vectors
        .set_payload(h.a, "docs", serde_json::from_value(json!({"filter": {"must": [{"key": "year", "range": {"gte": 2018}}]}, "payload": {"late": true}})).unwrap(), false)
        .await
        .unwrap();
    assert_eq!(
        changed.points,
        (0..60).filter(|i| i % 3 != 0 && i % 20 >= 18).count() as u64
    );
}

#[tokio::test]
async fn scores_thresholds_offsets_and_recommendations() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 2})),
        )
        .await
        .unwrap();
    // Unit vectors at 0°, 10°, …, 170°.
    let points = (0..18)
        .map(|i| {
            let a = f32::from(u8::try_from(i).unwrap()) * 10f32.to_radians();
            point(
                &format!("d{}", i * 10),
                vec![a.cos(), a.sin()],
                json!({"deg": i * 10}),
            )
        })
        .collect();
    h.vectors.upsert(h.a, "docs", points).await.unwrap();
    let hits = h
        .vectors
        .search(
            h.a,
            "docs",
            search(json!({"vector": [1, 0], "limit": 3, "with_vector": true})),
        )
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["d0", "d10", "d20"]);
    assert!(
        (hits[1].score - 10f32.to_radians().cos()).abs() < 1e-4,
        "{hits:?}"
    );
    assert_eq!(hits[0].payload, Some(json!({"deg": 0})));
    assert!(hits[0].vector.is_some());
    let page2 = h
        .vectors
        .search(
            h.a,
            "docs",
            search(json!({"vector": [1, 0], "limit": 3, "offset": 3, "with_payload": false})),
        )
        .await
        .unwrap();
    assert_eq!(
        page2.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        ["d30", "d40", "d50"]
    );
    assert_eq!(page2[0].payload, None);
    // cos 40° ≈ 0.77, cos 50° ≈ 0.64: 0°…40° pass.
    let close = h
        .vectors
        .search(
            h.a,
            "docs",
            search(json!({"vector": [1, 0], "limit": 18, "score_threshold": 0.7})),
        )
        .await
        .unwrap();
    assert_eq!(close.len(), 5);

    let rec: sovereign_vector::RecommendRequest =
        serde_json::from_value(json!({"positive": ["d90"], "limit": 2})).unwrap();
    let hits = h.vectors.recommend(h.a, "docs", rec).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|p| p.id.as_str()).collect();
    assert!(
        ids.iter().all(|id| *id == "d80" || *id == "d100"),
        "{ids:?}; the example itself is left out"
    );
    // Towards 90° and away from 170°: 2·(0,1) − (cos170, sin170) points below 90°.
    let rec: sovereign_vector::RecommendRequest =
        serde_json::from_value(json!({"positive": ["d90"], "negative": ["d170"], "limit": 1}))
            .unwrap();
    let hits = h.vectors.recommend(h.a, "docs", rec).await.unwrap();
    let angle = (2.0f32 - 170f32.to_radians().sin())
        .atan2(-170f32.to_radians().cos())
        .to_degrees();
    let nearest = format!("d{}", ((angle / 10.0).round() * 10.0) as i32);
    assert_eq!(hits[0].id, nearest);
    let rec: sovereign_vector::RecommendRequest =
        serde_json::from_value(json!({"positive": [[0.0, 1.0]], "filter": {}, "limit": 1}))
            .unwrap();
    assert_eq!(
        h.vectors.recommend(h.a, "docs", rec).await.unwrap()[0].id,
        "d90"
    );
    let rec: sovereign_vector::RecommendRequest =
        serde_json::from_value(json!({"positive": ["nope"]})).unwrap();
    let e = h.vectors.recommend(h.a, "docs", rec).await.unwrap_err();
    assert_eq!(
        codes(&e),
        [("positive[0]".to_owned(), "point_not_found".to_owned())]
    );
}

/// SECURITY item 20: a tenant with 1% of the points gets k results, all its own; a 1%-selective
/// filter on a big collection still gets k results (iterative index scans).
#[tokio::test]
async fn a_small_tenant_gets_k_results_of_its_own_and_filtered_search_gets_k() {
    let h = harness().await;
    for t in [h.a, h.b] {
        h.vectors
            .create_collection(t, &new_collection(json!({"name": "docs", "dimension": 8})))
            .await
            .unwrap();
        h.vectors
            .create_index(
                t,
                "docs",
                IndexRequest::Payload {
                    key: "rare".into(),
                    kind: PayloadKind::Bool,
                },
                true,
            )
            .await
            .unwrap();
    }
    fill(&h, h.a, "docs", 30, 8, 1, |_| json!({"owner": "a"})).await;
    fill(
        &h,
        h.b,
        "docs",
        3000,
        8,
        2,
        |i| json!({"owner": "b", "rare": i % 100 == 0}),
    )
    .await;
    let query = Lcg(5).vector(8);
    let hits = h
        .vectors
        .search(
            h.a,
            "docs",
            search(json!({"vector": query, "limit": 10, "ef": 10})),
        )
        .await
        .unwrap();
    assert_eq!(hits.len(), 10);
    assert!(
        hits.iter()
            .all(|p| p.payload == Some(json!({"owner": "a"}))),
        "{hits:?}"
    );

    // 30 of 3,000 points match; with ef 10 a plain HNSW scan would see about one of them.
    let filtered = h
        .vectors
        .search(
            h.b,
            "docs",
            search(json!({"vector": query, "limit": 10, "ef": 10,
            "filter": {"must": [{"key": "rare", "match": {"value": true}}]}})),
        )
        .await
        .unwrap();
    assert_eq!(filtered.len(), 10);
    assert!(
        filtered
            .iter()
            .all(|p| p.payload.as_ref().unwrap()["rare"] == json!(true))
    );
    // The plan depends on the partition's statistics: the first load analysed it at 1,000
    // points, and autovacuum refreshes them whenever it gets round to it. Refresh them now, as
    // autovacuum would, so the plan does not depend on its timing (with the statistics of 1,000
    // points the planner sometimes prefers a sequential scan of this small table).
    {
        use diesel_async::RunQueryDsl;
        let mut owner = h.db.owner_conn().await;
        diesel::sql_query("ANALYZE vector_points")
            .execute(&mut owner)
            .await
            .unwrap();
    }
    let plan = h
        .vectors
        .explain_search(
            h.b,
            "docs",
            search(json!({"vector": query, "limit": 10,
            "filter": {"must": [{"key": "rare", "match": {"value": true}}]}})),
        )
        .await
        .unwrap();
    assert!(plan.contains("_hnsw"), "{plan}");
    // Results are the true nearest matching points (compare with an exact search).
    let exact = h
        .vectors
        .search(
            h.b,
            "docs",
            search(json!({"vector": query, "limit": 10, "exact": true,
            "filter": {"must": [{"key": "rare", "match": {"value": true}}]}})),
        )
        .await
        .unwrap();
    let overlap = filtered
        .iter()
        .filter(|p| exact.iter().any(|e| e.id == p.id))
        .count();
    assert!(overlap >= 8, "recall {overlap}/10");
}

#[tokio::test]
async fn searches_use_the_hnsw_index_once_built_and_a_deferred_index_builds_on_request() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "big", "dimension": 16, "defer_index": true})),
        )
        .await
        .unwrap();
    fill(&h, h.a, "big", 5000, 16, 3, |_| json!({})).await;
    let query = search(json!({"vector": Lcg(4).vector(16), "limit": 10}));
    let before = h
        .vectors
        .explain_search(h.a, "big", query.clone())
        .await
        .unwrap();
    assert!(!before.contains("_hnsw"), "{before}");
    let exact = h.vectors.search(h.a, "big", query.clone()).await.unwrap();

    let started = h
        .vectors
        .create_index(h.a, "big", IndexRequest::Hnsw, false)
        .await
        .unwrap();
    assert_eq!(started.index, IndexState::Building);
    // Another build request waits for the first (the same index), then reports it ready.
    let done = h
        .vectors
        .create_index(h.a, "big", IndexRequest::Hnsw, true)
        .await
        .unwrap();
    assert_eq!(done.index, IndexState::Ready);
    let after = h
        .vectors
        .explain_search(h.a, "big", query.clone())
        .await
        .unwrap();
    assert!(
        after.contains("Index Scan using") && after.contains("_hnsw"),
        "{after}"
    );
    let approx = h.vectors.search(h.a, "big", query.clone()).await.unwrap();
    let overlap = approx
        .iter()
        .filter(|p| exact.iter().any(|e| e.id == p.id))
        .count();
    assert!(overlap >= 9, "recall {overlap}/10");
    // `exact` bypasses the index.
    let forced = h
        .vectors
        .explain_search(
            h.a,
            "big",
            search(json!({"vector": Lcg(4).vector(16), "limit": 10, "exact": true})),
        )
        .await
        .unwrap();
    assert!(!forced.contains("_hnsw"), "{forced}");
}

#[tokio::test]
async fn another_tenant_sees_no_collection_and_no_point_and_sql_cannot_reach_them() {
    let h = harness().await;
    let c = h
        .vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "secret", "dimension": 2})),
        )
        .await
        .unwrap();
    h.vectors
        .upsert(
            h.a,
            "secret",
            vec![point("s1", vec![1.0, 0.0], json!({"x": 1}))],
        )
        .await
        .unwrap();
    let v = &h.vectors;
    let b = h.b;
    let not_found = |e: VectorError| assert!(matches!(e, VectorError::CollectionNotFound), "{e:?}");
    not_found(v.collection(b, "secret").await.unwrap_err());
    not_found(
        v.search(b, "secret", search(json!({"vector": [1, 0]})))
            .await
            .unwrap_err(),
    );
    not_found(
        v.points(b, "secret", &["s1".to_owned()], true, true)
            .await
            .unwrap_err(),
    );
    not_found(
        v.upsert(b, "secret", vec![point("x", vec![1.0, 0.0], json!({}))])
            .await
            .unwrap_err(),
    );
    not_found(
        v.delete_points(
            b,
            "secret",
            &PointSelector {
                ids: Some(vec!["s1".into()]),
                filter: None,
            },
        )
        .await
        .unwrap_err(),
    );
    not_found(v.delete_collection(b, "secret").await.unwrap_err());
    not_found(
        v.create_index(b, "secret", IndexRequest::Hnsw, true)
            .await
            .unwrap_err(),
    );
    assert!(v.list_collections(b).await.unwrap().is_empty());

    // At the SQL level, as the runtime role in tenant B's scope: the partition shows nothing,
    // takes nothing, and the index functions do not find A's collection.
    let runtime = pool(h.db.url(), 1);
    let table = format!("vector_points_{}", c.id.simple());
    let scoped = table.clone();
    let result: Result<(), sovereign_db::DbError> = runtime
        .tenant_transaction(b, |conn| {
            Box::pin(async move {
                let table = scoped;
                #[derive(diesel::QueryableByName)]
                struct N {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let n: N = diesel::sql_query(format!("SELECT count(*) AS n FROM {table}"))
                    .get_result(conn)
                    .await?;
                assert_eq!(n.n, 0);
                let n: N = diesel::sql_query("SELECT count(*) AS n FROM vector_points")
                    .get_result(conn)
                    .await?;
                assert_eq!(n.n, 0);
                let updated = diesel::sql_query(format!("UPDATE {table} SET payload = '{{}}'"))
                    .execute(conn)
                    .await?;
                assert_eq!(updated, 0);
                Ok(())
            })
        })
        .await;
    result.unwrap();
    for sql in [
        format!("SELECT sovereign_vector_build_index('{}')::text", c.id),
        format!("SELECT sovereign_vector_index_payload('{}', 'x', 'keyword')::text", c.id),
        format!("INSERT INTO {table} (tenant_id, collection_id, id, embedding) VALUES ('{b}', '{}', 'evil', '[1,0]')", c.id),
        format!("INSERT INTO {table} (tenant_id, collection_id, id, embedding) VALUES ('{}', '{}', 'evil', '[1,0]')", h.a, c.id),
        "CREATE TABLE vector_points_evil PARTITION OF vector_points FOR VALUES IN ('00000000-0000-0000-0000-000000000000')".to_owned(),
    ] {
        let refused: Result<usize, sovereign_db::DbError> = runtime
            .tenant_transaction(b, |conn| Box::pin(async move { Ok(diesel::sql_query(sql).execute(conn).await?) }))
            .await;
        assert!(refused.is_err(), "{refused:?}");
    }
    // A is untouched.
    let mine = v
        .points(h.a, "secret", &["s1".to_owned()], true, false)
        .await
        .unwrap();
    assert_eq!(mine[0].payload, Some(json!({"x": 1})));
}

#[tokio::test]
async fn deleting_a_tenant_drops_its_collections_storage_and_the_catalog_stays_tenant_owned() {
    let h = harness().await;
    let c = h
        .vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 2})),
        )
        .await
        .unwrap();
    h.vectors
        .upsert(h.a, "docs", vec![point("p", vec![1.0, 0.0], json!({}))])
        .await
        .unwrap();
    // Every table with a tenant_id, partitions included, forces RLS with a policy.
    let mut owner = h.db.owner_conn().await;
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
    }
    let violations: Vec<Name> = diesel::sql_query(
        "SELECT c.relname::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND n.nspname = 'public'
            AND EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id')
            AND (NOT c.relrowsecurity OR NOT c.relforcerowsecurity
                 OR NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = c.oid))",
    )
    .load(&mut owner)
    .await
    .unwrap();
    assert!(
        violations.is_empty(),
        "{:?}",
        violations.iter().map(|v| &v.name).collect::<Vec<_>>()
    );

    let admin = TenantAdmin::new(pool(h.db.tenant_admin_url(), 1));
    let a = sovereign_tenancy::TenantRef::Id(h.a);
    admin
        .set_status(&a, sovereign_tenancy::TenantStatus::Suspended)
        .await
        .unwrap();
    admin.delete(&a).await.unwrap();
    assert!(!table_exists(&mut owner, &format!("vector_points_{}", c.id.simple())).await);
}

/// Two instances share the database; each remembers collections it used. Changes made through
/// one are seen by the other on its next call.
#[tokio::test]
async fn another_instances_changes_are_seen_at_once_despite_the_cached_collection() {
    let h = harness().await;
    let other = Vectors::new(
        pool(h.db.url(), 2),
        Arc::new(HashEmbedder::new(16)),
        VectorSettings::default(),
    );
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 2})),
        )
        .await
        .unwrap();
    h.vectors
        .upsert(
            h.a,
            "docs",
            vec![point("old", vec![1.0, 0.0], json!({"k": "x"}))],
        )
        .await
        .unwrap();
    // `other` caches the collection.
    let hits = other
        .search(h.a, "docs", search(json!({"vector": [1, 0]})))
        .await
        .unwrap();
    assert_eq!(hits[0].id, "old");

    // Indexed through the first instance: the second accepts the filter at once.
    h.vectors
        .create_index(
            h.a,
            "docs",
            IndexRequest::Payload {
                key: "k".into(),
                kind: PayloadKind::Keyword,
            },
            true,
        )
        .await
        .unwrap();
    let hits = other
        .search(h.a, "docs", search(json!({"vector": [1, 0], "filter": {"must": [{"key": "k", "match": {"value": "x"}}]}})))
        .await
        .unwrap();
    assert_eq!(hits.len(), 1);

    // Deleted and re-created with another dimension: the second instance uses the new one.
    h.vectors.delete_collection(h.a, "docs").await.unwrap();
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 3})),
        )
        .await
        .unwrap();
    h.vectors
        .upsert(
            h.a,
            "docs",
            vec![point("new", vec![0.0, 0.0, 1.0], json!({}))],
        )
        .await
        .unwrap();
    let hits = other
        .search(h.a, "docs", search(json!({"vector": [0, 0, 1]})))
        .await
        .unwrap();
    assert_eq!(hits[0].id, "new");
    // Deleted for good: not found, not an internal error.
    h.vectors.delete_collection(h.a, "docs").await.unwrap();
    let gone = other
        .points(h.a, "docs", &["new".to_owned()], true, false)
        .await
        .unwrap_err();
    assert!(matches!(gone, VectorError::CollectionNotFound), "{gone:?}");
}

/// JSON allows U+0000 in strings; `jsonb` does not. Such payloads and filter values are a
/// client's 422, never a database error.
#[tokio::test]
async fn nul_characters_in_payloads_and_filters_are_refused_clearly() {
    let h = harness().await;
    h.vectors
        .create_collection(
            h.a,
            &new_collection(json!({"name": "docs", "dimension": 2})),
        )
        .await
        .unwrap();
    h.vectors
        .create_index(
            h.a,
            "docs",
            IndexRequest::Payload {
                key: "k".into(),
                kind: PayloadKind::Keyword,
            },
            true,
        )
        .await
        .unwrap();
    let e = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![point("p", vec![1.0, 0.0], json!({"k": "a\u{0}b"}))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [("points[0].payload".to_owned(), "nul_character".to_owned())]
    );
    let e = h
        .vectors
        .upsert(
            h.a,
            "docs",
            vec![point("p", vec![1.0, 0.0], json!({"a\u{0}": [1, {"x": 2}]}))],
        )
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [("points[0].payload".to_owned(), "nul_character".to_owned())]
    );
    let update = serde_json::from_value(json!({"ids": ["p"], "payload": {"x": "\u{0}"}})).unwrap();
    let e = h
        .vectors
        .set_payload(h.a, "docs", update, false)
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [("payload".to_owned(), "nul_character".to_owned())]
    );
    let e = h
        .vectors
        .search(h.a, "docs", search(json!({"vector": [1, 0], "filter": {"must": [{"key": "k", "match": {"any": ["ok", "\u{0}"]}}]}})))
        .await
        .unwrap_err();
    assert_eq!(
        codes(&e),
        [(
            "filter.must[0].match.any[1]".to_owned(),
            "nul_character".to_owned()
        )]
    );
}
