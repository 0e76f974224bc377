//! The client of `cargo xtask bench vector` (which starts the server and passes the settings
//! below): GloVe 6B 50-d from its `.npy` file, 1,000 held-out queries with exact top-10 ground
//! truth computed here; bulk upsert through the API, index build, recall@10 and QPS through
//! HTTP at 8 connections for several `ef` values beside the same queries in plain SQL on the same
//! index, exact search, filtered search, and the local embedder's texts/s beside the numpy
//! reference.
//!
//! Settings: BENCH_URL, BENCH_TOKEN, BENCH_DATABASE_URL (runtime role), GLOVE_NPY; optional
//! BENCH_MODEL_DIR and BENCH_PYTHON for the embedder part.

#![expect(clippy::unwrap_used, clippy::print_stderr, reason = "a benchmark tool")]
#![expect(clippy::cast_precision_loss, reason = "figures")]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sovereign_db::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

const QUERIES: usize = 1000;
const K: usize = 10;
const CONNECTIONS: usize = 8;
const BATCH: usize = 1000;
const EFS: [u32; 5] = [40, 64, 100, 150, 200];
/// Each search configuration runs the 1,000 queries this many times, interleaved with the others
/// at the same `ef`, so a noisy moment of the shared machine does not decide a comparison.
const PASSES: usize = 2;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// A float32 `.npy` file, row-major: (rows, columns, data).
fn load_npy(path: &str) -> (usize, usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (header_len, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    let fortran = header.contains("'fortran_order': True");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let raw: Vec<f32> = bytes[start + header_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let (rows, cols) = (dims[0], dims[1]);
    // Column-major files store each column contiguously: transpose to one row per vector.
    let data = if fortran {
        let mut out = vec![0.0; rows * cols];
        for c in 0..cols {
            for r in 0..rows {
                out[r * cols + c] = raw[c * rows + r];
            }
        }
        out
    } else {
        raw
    };
    (dims[0], dims[1], data)
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / n).collect()
}

/// Exact top-k by cosine among `candidates` (unit vectors), on all cores.
fn ground_truth(
    base: &[Vec<f32>],
    queries: &[Vec<f32>],
    keep: impl Fn(usize) -> bool + Sync,
) -> Vec<Vec<usize>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = queries.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .chunks(chunk)
            .map(|qs| {
                let keep = &keep;
                s.spawn(move || {
                    qs.iter()
                        .map(|q| {
                            let mut best: Vec<(f32, usize)> = Vec::with_capacity(K + 1);
                            for (i, b) in base.iter().enumerate() {
                                if !keep(i) {
                                    continue;
                                }
                                let d: f32 = q.iter().zip(b).map(|(x, y)| x * y).sum();
                                if best.len() < K || d > best[K - 1].0 {
                                    let at = best.partition_point(|(e, _)| *e >= d);
                                    best.insert(at, (d, i));
                                    best.truncate(K);
                                }
                            }
                            best.into_iter().map(|(_, i)| i).collect()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

struct Run {
    qps: f64,
    recall: f64,
    full: usize,
    p99_ms: f64,
}

/// Runs every query once over `CONNECTIONS` concurrent workers; `query` returns the ids found.
async fn measure<F, Fut>(queries: usize, truth: &[Vec<usize>], query: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<usize>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let query = Arc::new(query);
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS {
        let (next, query) = (Arc::clone(&next), Arc::clone(&query));
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= queries {
                    return out;
                }
                let t = Instant::now();
                let found = query(worker, i).await;
                out.push((i, found, t.elapsed()));
            }
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    let mut hits = 0;
    let mut full = 0;
    let mut latencies: Vec<Duration> = Vec::new();
    for (i, found, latency) in &results {
        let want: HashSet<usize> = truth[*i % truth.len()].iter().copied().collect();
        hits += found.iter().filter(|f| want.contains(f)).count();
        full += usize::from(found.len() == K);
        latencies.push(*latency);
    }
    latencies.sort();
    Run {
        qps: queries as f64 / elapsed.as_secs_f64(),
        recall: hits as f64 / (queries * K) as f64,
        full,
        p99_ms: latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0,
    }
}

fn ids(body: &Value) -> Vec<usize> {
    body["results"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|p| p["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

#[tokio::main]
async fn main() {
    let url = env("BENCH_URL");
    let token = env("BENCH_TOKEN");
    let (rows, dim, data) = load_npy(&env("GLOVE_NPY"));
    let all: Vec<Vec<f32>> = data.chunks_exact(dim).map(<[f32]>::to_vec).collect();
    let base_n = rows - QUERIES;
    let unit: Vec<Vec<f32>> = all.iter().map(|v| normalized(v)).collect();
    let (base, queries) = unit.split_at(base_n);
    eprintln!(
        "GloVe: {rows} × {dim}; {base_n} points, {QUERIES} held-out queries; computing ground truth…"
    );
    let t = Instant::now();
    let truth = ground_truth(base, queries, |_| true);
    let filtered_truth = ground_truth(base, queries, |i| i % 10 == 3);
    eprintln!("ground truth in {:.1?}", t.elapsed());

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONNECTIONS * 2)
        .build()
        .unwrap();
    let api = |path: &str| format!("{url}/api/v1/vector/collections{path}");
    let _ = client
        .delete(api("/glove"))
        .bearer_auth(&token)
        .send()
        .await;
    let created = client
        .post(api(""))
        .bearer_auth(&token)
        .json(
            &json!({"name": "glove", "dimension": dim, "distance": "cosine",
                      "hnsw": {"m": 16, "ef_construction": 64}, "defer_index": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    let collection: Value = client
        .get(api("/glove"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let partition = format!(
        "vector_points_{}",
        collection["id"].as_str().unwrap().replace('-', "")
    );

    // Bulk upsert through the API, raw (not normalised) vectors, 4 requests in flight.
    let t = Instant::now();
    let batches: Vec<Value> = all[..base_n]
        .chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let points: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let i = b * BATCH + j;
                    json!({"id": i.to_string(), "vector": v, "payload": {"bucket": i % 10}})
                })
                .collect();
            json!({"points": points})
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let mut loaders = Vec::new();
    for _ in 0..4 {
        let (client, batches, next, token, target) = (
            client.clone(),
            Arc::clone(&batches),
            Arc::clone(&next),
            token.clone(),
            api("/glove/points"),
        );
        loaders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(batch) = batches.get(i) else { return };
                let r = client
                    .put(&target)
                    .bearer_auth(&token)
                    .json(batch)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            }
        }));
    }
    for l in loaders {
        l.await.unwrap();
    }
    let upsert_secs = t.elapsed().as_secs_f64();

    let index = |body: Value| {
        let (client, token, target) =
            (client.clone(), token.clone(), api("/glove/index?wait=true"));
        async move {
            let t = Instant::now();
            let r = client
                .post(target)
                .bearer_auth(&token)
                .json(&body)
                .timeout(Duration::from_secs(3600))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            t.elapsed().as_secs_f64()
        }
    };
    let hnsw_secs = index(json!({"kind": "hnsw"})).await;
    let payload_secs = index(json!({"kind": "payload", "key": "bucket", "type": "integer"})).await;
    println!(
        "\nGloVe 6B 50-d, {base_n} points, cosine (stored normalised, inner-product HNSW m=16 ef_construction=64), {QUERIES} held-out queries, k={K}"
    );
    println!(
        "bulk upsert through the API (batches of {BATCH}, 4 in flight): {:.0} points/s ({upsert_secs:.1} s)",
        base_n as f64 / upsert_secs
    );
    println!("HNSW index build: {hnsw_secs:.1} s; payload index (bucket): {payload_secs:.1} s");

    // Plain SQL on the same partition and index: session settings, one statement per query.
    let db_url = env("BENCH_DATABASE_URL");
    let tenant = std::env::var("BENCH_TENANT")
        .unwrap_or_else(|_| "00000000-0000-0000-0000-000000000001".to_owned());
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = AsyncPgConnection::establish(&db_url).await.unwrap();
        diesel::sql_query(format!("SET app.tenant_id = '{tenant}'"))
            .execute(&mut c)
            .await
            .unwrap();
        conns.push(Arc::new(tokio::sync::Mutex::new(c)));
    }
    let query_text: Arc<Vec<String>> = Arc::new(
        queries
            .iter()
            .map(|q| {
                format!(
                    "[{}]",
                    q.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
                )
            })
            .collect(),
    );
    let queries_json: Arc<Vec<Value>> = Arc::new(queries.iter().map(|q| json!(q)).collect());

    let owner_url = std::env::var("BENCH_OWNER_URL").ok();
    let reference = match &owner_url {
        Some(url) => Some(prepare_default(url, &all[..base_n]).await),
        None => None,
    };
    println!(
        "\n{:<28} {:>8} {:>10} {:>9} {:>10} {:>10}",
        "search (8 connections)", "ef", "recall@10", "QPS", "p99 ms", "vs SQL"
    );
    for ef in EFS {
        for c in &conns {
            diesel::sql_query(format!("SET hnsw.ef_search = {ef}"))
                .execute(&mut *c.lock().await)
                .await
                .unwrap();
        }
        let sql = format!(
            "SELECT id FROM {partition} ORDER BY embedding::vector({dim}) <#> $1::vector({dim}) LIMIT {K}"
        );
        let (conns2, texts, sql2) = (conns.clone(), Arc::clone(&query_text), sql.clone());
        let raw = measure(PASSES * QUERIES, &truth, move |w, i| {
            let (c, q, sql) = (
                Arc::clone(&conns2[w]),
                texts[i % QUERIES].clone(),
                sql2.clone(),
            );
            async move {
                let rows: Vec<Id> = diesel::sql_query(sql)
                    .bind::<diesel::sql_types::Text, _>(q)
                    .load(&mut *c.lock().await)
                    .await
                    .unwrap();
                rows.iter().filter_map(|r| r.id.parse().ok()).collect()
            }
        })
        .await;
        let (client2, token2, target, qs) = (
            client.clone(),
            token.clone(),
            api("/glove/search"),
            Arc::clone(&queries_json),
        );
        let http = measure(PASSES * QUERIES, &truth, move |_, i| {
            let (client, token, target, body) = (
                client2.clone(),
                token2.clone(),
                target.clone(),
                json!({"vector": qs[i % QUERIES], "limit": K, "ef": ef, "with_payload": false}),
            );
            async move {
                let r = client
                    .post(target)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                ids(&r.json().await.unwrap())
            }
        })
        .await;
        let default = match &reference {
            Some(conns) => Some(measure_default(conns, ef, &query_text, &truth).await),
            None => None,
        };
        println!(
            "{:<28} {ef:>8} {:>10.3} {:>9.0} {:>10.1} {:>10}",
            "plain SQL", raw.recall, raw.qps, raw.p99_ms, ""
        );
        if let Some(d) = default {
            println!(
                "{:<28} {ef:>8} {:>10.3} {:>9.0} {:>10.1} {:>9.2}x",
                "plain SQL, pgvector defaults",
                d.recall,
                d.qps,
                d.p99_ms,
                d.qps / raw.qps
            );
        }
        println!(
            "{:<28} {ef:>8} {:>10.3} {:>9.0} {:>10.1} {:>9.2}x",
            "HTTP API",
            http.recall,
            http.qps,
            http.p99_ms,
            http.qps / raw.qps
        );
    }

    let exact_n = 100;
    let (client2, token2, target, qs) = (
        client.clone(),
        token.clone(),
        api("/glove/search"),
        Arc::clone(&queries_json),
    );
    let exact = measure(exact_n, &truth, move |_, i| {
        let (client, token, target, body) = (
            client2.clone(),
            token2.clone(),
            target.clone(),
            json!({"vector": qs[i], "limit": K, "exact": true, "with_payload": false}),
        );
        async move {
            ids(&client
                .post(target)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap())
        }
    })
    .await;
    println!(
        "{:<28} {:>8} {:>10.3} {:>9.1} {:>10.1}   ({exact_n} queries)",
        "HTTP API, exact", "-", exact.recall, exact.qps, exact.p99_ms
    );

    for ef in [40, 100, 200] {
        let (client2, token2, target, qs) = (
            client.clone(),
            token.clone(),
            api("/glove/search"),
            Arc::clone(&queries_json),
        );
        let filtered = measure(QUERIES, &filtered_truth, move |_, i| {
            let (client, token, target, body) = (
                client2.clone(),
                token2.clone(),
                target.clone(),
                json!({
                "vector": qs[i], "limit": K, "ef": ef, "with_payload": false,
                "filter": {"must": [{"key": "bucket", "match": {"value": 3}}]}}),
            );
            async move {
                ids(&client
                    .post(target)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap())
            }
        })
        .await;
        println!(
            "{:<28} {ef:>8} {:>10.3} {:>9.0} {:>10.1}   ({} of {QUERIES} queries got {K} results)",
            "HTTP API, 10% filter", filtered.recall, filtered.qps, filtered.p99_ms, filtered.full
        );
    }

    if let Some(url) = &owner_url {
        let mut owner = AsyncPgConnection::establish(url).await.unwrap();
        diesel::sql_query("DROP TABLE bench_glove_raw")
            .execute(&mut owner)
            .await
            .unwrap();
    }

    if let (Ok(model), Ok(python)) = (
        std::env::var("BENCH_MODEL_DIR"),
        std::env::var("BENCH_PYTHON"),
    ) {
        embedder_bench(&model, &python).await;
    }
}

type Conns = Vec<Arc<tokio::sync::Mutex<AsyncPgConnection>>>;

/// The reference configuration in plain SQL: pgvector's defaults as its README shows them — raw
/// (not normalised) vectors in a `vector(50)` column, an HNSW index with `vector_cosine_ops`,
/// m=16, ef_construction=64 — searched with `<=>`. Loaded and indexed here (as the owner, in a
/// table of its own that is dropped at the end); returns 8 connections to search it.
async fn prepare_default(owner_url: &str, base: &[Vec<f32>]) -> Conns {
    let mut owner = AsyncPgConnection::establish(owner_url).await.unwrap();
    for sql in [
        "DROP TABLE IF EXISTS bench_glove_raw",
        "CREATE TABLE bench_glove_raw (id integer PRIMARY KEY, embedding vector(50) NOT NULL)",
    ] {
        diesel::sql_query(sql).execute(&mut owner).await.unwrap();
    }
    for (b, chunk) in base.chunks(BATCH).enumerate() {
        let ids: Vec<i32> = (0..chunk.len())
            .map(|j| i32::try_from(b * BATCH + j).unwrap())
            .collect();
        let vectors: Vec<String> = chunk
            .iter()
            .map(|v| {
                format!(
                    "[{}]",
                    v.iter().map(f32::to_string).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        diesel::sql_query(
            "INSERT INTO bench_glove_raw SELECT * FROM unnest($1::int[], $2::text[]::vector[])",
        )
        .bind::<diesel::sql_types::Array<diesel::sql_types::Integer>, _>(ids)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(vectors)
        .execute(&mut owner)
        .await
        .unwrap();
    }
    let t = Instant::now();
    diesel::sql_query("SET maintenance_work_mem = '512MB'")
        .execute(&mut owner)
        .await
        .unwrap();
    diesel::sql_query(
        "CREATE INDEX bench_glove_raw_hnsw ON bench_glove_raw USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    diesel::sql_query("ANALYZE bench_glove_raw")
        .execute(&mut owner)
        .await
        .unwrap();
    println!(
        "reference: pgvector defaults in plain SQL (raw vectors, vector_cosine_ops, m=16, ef_construction=64); index built in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(Arc::new(tokio::sync::Mutex::new(
            AsyncPgConnection::establish(owner_url).await.unwrap(),
        )));
    }
    conns
}

async fn measure_default(
    conns: &Conns,
    ef: u32,
    queries: &Arc<Vec<String>>,
    truth: &[Vec<usize>],
) -> Run {
    for c in conns {
        diesel::sql_query(format!("SET hnsw.ef_search = {ef}"))
            .execute(&mut *c.lock().await)
            .await
            .unwrap();
    }
    let (conns, texts) = (conns.clone(), Arc::clone(queries));
    measure(PASSES * QUERIES, truth, move |w, i| {
        let (c, q) = (Arc::clone(&conns[w]), texts[i % QUERIES].clone());
        async move {
            let rows: Vec<Id> = diesel::sql_query(
                "SELECT id::text AS id FROM bench_glove_raw ORDER BY embedding <=> $1::vector(50) LIMIT 10",
            )
            .bind::<diesel::sql_types::Text, _>(q)
            .load(&mut *c.lock().await)
            .await
            .unwrap();
            rows.iter().filter_map(|r| r.id.parse().ok()).collect()
        }
    })
    .await
}

async fn embedder_bench(model: &str, python: &str) {
    use sovereign_vector::{Embedder, LocalEmbedder};
    let words = [
        "search",
        "vector",
        "tenant",
        "password",
        "database",
        "index",
        "query",
        "server",
        "quickly",
        "the",
        "a",
        "of",
        "and",
        "returns",
        "nearest",
        "neighbours",
        "for",
        "every",
        "user",
        "request",
    ];
    let texts: Vec<String> = (0..512)
        .map(|i| {
            (0..(4 + (i * 7) % 40))
                .map(|j| words[(i * 31 + j * 17) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let embedder = LocalEmbedder::load(std::path::Path::new(model), threads, 32).unwrap();
    embedder.embed(&texts[..8]).await.unwrap();
    let t = Instant::now();
    embedder.embed(&texts).await.unwrap();
    let ours = texts.len() as f64 / t.elapsed().as_secs_f64();
    let sample = &texts[..64];
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vector/tests/py/minilm_reference.py"
    );
    let mut child = std::process::Command::new(python)
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"model_dir": model, "texts": sample})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let out: Value = serde_json::from_slice(&child.wait_with_output().unwrap().stdout).unwrap();
    let reference = sample.len() as f64 / out["seconds"].as_f64().unwrap();
    println!(
        "\nlocal embedder (all-MiniLM-L6-v2, {threads} threads, batches of 32 grouped by length): {ours:.0} texts/s; \
         numpy reference (one text at a time): {reference:.0} texts/s; ratio {:.1}x",
        ours / reference
    );
}
