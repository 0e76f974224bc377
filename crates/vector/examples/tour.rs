//! A tour of sovereign-vector without any web framework: a collection, points by vector and by
//! text, a payload index, filtered search, a recommendation, a payload change, and clean-up.
//!
//! `cargo xtask db up` then `cargo run -p sovereign-vector --example tour` (or set DATABASE_URL
//! to a migrated database, as a role that is not its owner). With `EMBEDDING_MODEL_DIR` set, text
//! is embedded by the local model instead of the hashing embedder.

use serde_json::json;
use sovereign_core::settings::from_vars;
use sovereign_db::{DatabaseSettings, Db};
use sovereign_vector::{IndexRequest, PayloadKind, PointInput, VectorSettings, Vectors};
use uuid::Uuid;

/// The default tenant (with multi-tenancy off, everything lives there).
const TENANT: Uuid = Uuid::from_u128(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        "postgres://sovereign_dev:sovereign_dev@127.0.0.1:55432/sovereign".to_owned()
    });
    let mut vars = Vec::new();
    if let Ok(dir) = std::env::var("EMBEDDING_MODEL_DIR") {
        vars.push(("VECTOR_EMBEDDER".to_owned(), "local".to_owned()));
        vars.push(("EMBEDDING_MODEL_DIR".to_owned(), dir));
    }
    // Each crate reads its own settings: the database's and vector search's are all we need.
    let database = from_vars::<DatabaseSettings, _, _, _>([("DATABASE_URL", url)])?.settings;
    let settings = from_vars::<VectorSettings, _, _, _>(vars)?.settings;
    let vectors = Vectors::from_settings(Db::from_settings(&database)?, &settings)?;
    let dimension = vectors.embedder().dimension();
    println!(
        "embedder: {} ({dimension} dimensions)",
        vectors.embedder().name()
    );

    let name = format!("tour-{}", Uuid::now_v7().simple());
    let collection = vectors
        .create_collection(
            TENANT,
            &serde_json::from_value(json!({"name": name, "dimension": dimension}))?,
        )
        .await?;
    println!("created {} (index {:?})", collection.name, collection.index);

    let text = |id: &str, text: &str, topic: &str| PointInput {
        id: id.to_owned(),
        vector: None,
        text: Some(text.to_owned()),
        payload: json!({"topic": topic}).as_object().cloned(),
    };
    let stored = vectors
        .upsert(
            TENANT,
            &name,
            vec![
                text("pw", "How do I reset a forgotten password?", "accounts"),
                text("2fa", "Turning on two-factor sign-in", "accounts"),
                text("tax", "The quarterly tax report is due", "finance"),
                text("cat", "Feeding the office cat on Fridays", "office"),
            ],
        )
        .await?;
    println!("stored {} points", stored.points);

    vectors
        .create_index(
            TENANT,
            &name,
            IndexRequest::Payload {
                key: "topic".to_owned(),
                kind: PayloadKind::Keyword,
            },
            true,
        )
        .await?;
    let hits = vectors
        .search(
            TENANT,
            &name,
            serde_json::from_value(json!({
                "text": "I forgot my password",
                "limit": 2,
                "filter": {"must": [{"key": "topic", "match": {"value": "accounts"}}]}
            }))?,
        )
        .await?;
    for hit in &hits {
        println!("search: {} score {:.3}", hit.id, hit.score);
    }

    let like = vectors
        .recommend(
            TENANT,
            &name,
            serde_json::from_value(json!({"positive": ["pw"], "limit": 1}))?,
        )
        .await?;
    println!("like `pw`: {}", like[0].id);

    vectors
        .set_payload(
            TENANT,
            &name,
            serde_json::from_value(json!({"ids": ["cat"], "payload": {"reviewed": true}}))?,
            false,
        )
        .await?;
    let cat = vectors
        .points(TENANT, &name, &["cat".to_owned()], true, false)
        .await?;
    println!(
        "payload of `cat`: {}",
        cat[0].payload.clone().unwrap_or_default()
    );

    vectors.delete_collection(TENANT, &name).await?;
    println!("deleted {name}");
    Ok(())
}
