//! The vector service: collections and points in PostgreSQL, searched through pgvector.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::BoxedSqlQuery;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use serde_json::Value;
use sovereign_core::FieldError;
use sovereign_db::{AsyncPgConnection, Db, DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use crate::embed::{Embedder, MAX_TEXT_CHARS, normalize};
use crate::error::{EmbedError, VectorError};
use crate::filter::{self, Bind, SqlFilter};
use crate::model::{
    Affected, Collection, Distance, Example, HnswConfig, IndexRequest, IndexState, MAX_DIMENSION,
    MAX_LIMIT, MAX_OFFSET, MAX_PAYLOAD_BYTES, MAX_POINT_ID_CHARS, NewCollection, PayloadKind,
    PayloadUpdate, Point, PointInput, PointSelector, QueryOptions, RecommendRequest, ScoredPoint,
    SearchRequest,
};
use crate::settings::VectorSettings;

/// Runs an operation; when it failed because the cached description of its collection was
/// stale, drops the description and runs it once more.
macro_rules! fresh_on_stale {
    ($self:ident, $tenant:expr, $name:expr, $call:expr) => {{
        match $call.await {
            Err(e) if is_stale(&e) => {
                $self.forget($tenant, $name).await;
                $call.await
            }
            other => other,
        }
    }};
}

/// Whether an error may come from a stale cached collection: its partition is gone (it was
/// deleted, perhaps re-created with another dimension, on another instance), or the request was
/// checked against a description that has changed since (a payload key indexed, or re-indexed
/// with another type, elsewhere). Client mistakes are among these, so they cost one more read of
/// the collection: the error path pays, not searches.
fn is_stale(result: &VectorError) -> bool {
    match result {
        VectorError::Db(DbError::Query(diesel::result::Error::DatabaseError(_, info))) => {
            info.message().starts_with("relation") && info.message().ends_with("does not exist")
        }
        VectorError::Invalid(_)
        | VectorError::DimensionMismatch { .. }
        | VectorError::EmbedderMismatch { .. } => true,
        _ => false,
    }
}

/// Most ids one read or delete may name, and most examples of a recommendation.
pub const MAX_IDS: usize = 1000;
pub const MAX_EXAMPLES: usize = 64;

/// Vector search for every tenant. Each call names its tenant, and runs in a transaction
/// scoped to it, so row-level security decides which collections exist. Cheap to clone.
#[derive(Clone)]
pub struct Vectors {
    db: Db,
    embedder: Arc<dyn Embedder>,
    settings: VectorSettings,
    /// Collections recently used, by tenant and name, so a search costs one transaction. An
    /// entry can only be stale in ways that fail safely and are retried with a fresh read: a
    /// deleted collection's partition is gone ("relation does not exist"), and payload indexes
    /// are only ever added (a filter on a key indexed elsewhere is re-checked).
    targets: moka::future::Cache<(Uuid, String), Arc<Target>>,
}

/// How long a collection's description is reused without reading it again.
const TARGET_TTL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for Vectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vectors")
            .field("embedder", &self.embedder.name())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// What `/ready` reports about vector search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VectorHealth {
    /// pgvector's version in the database.
    pub pgvector: String,
    pub embedder: String,
    pub dimension: usize,
    pub latency: Duration,
}

#[derive(QueryableByName)]
struct CollectionRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: Uuid,
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Integer)]
    dimension: i32,
    #[diesel(sql_type = Text)]
    distance: String,
    #[diesel(sql_type = Integer)]
    hnsw_m: i32,
    #[diesel(sql_type = Integer)]
    hnsw_ef_construction: i32,
    #[diesel(sql_type = Jsonb)]
    payload_indexes: Value,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = Bool)]
    index_ready: bool,
    #[diesel(sql_type = Bool)]
    index_building: bool,
}

const COLLECTION_COLUMNS: &str = "c.id, c.name, c.dimension, c.distance, c.hnsw_m, \
     c.hnsw_ef_construction, c.payload_indexes, c.created_at, c.updated_at, \
     to_regclass(quote_ident(sovereign_vector_partition(c.id) || '_hnsw')) IS NOT NULL AS index_ready, \
     EXISTS (SELECT FROM pg_stat_progress_create_index p \
              WHERE p.relid = to_regclass(quote_ident(sovereign_vector_partition(c.id)))) AS index_building";

impl CollectionRow {
    fn into_collection(self) -> Collection {
        let payload_indexes = self
            .payload_indexes
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), PayloadKind::parse(v.as_str()?)?)))
                    .collect()
            })
            .unwrap_or_default();
        Collection {
            id: self.id,
            name: self.name,
            dimension: u32::try_from(self.dimension).unwrap_or(0),
            distance: Distance::parse(&self.distance).unwrap_or(Distance::Cosine),
            hnsw: HnswConfig {
                m: u16::try_from(self.hnsw_m).unwrap_or(16),
                ef_construction: u16::try_from(self.hnsw_ef_construction).unwrap_or(64),
            },
            index: if self.index_ready {
                IndexState::Ready
            } else if self.index_building {
                IndexState::Building
            } else {
                IndexState::None
            },
            payload_indexes,
            points: None,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct PointRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Nullable<Jsonb>)]
    payload: Option<Value>,
    #[diesel(sql_type = Nullable<Text>)]
    vector: Option<String>,
}

#[derive(QueryableByName)]
struct ScoredRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Double)]
    dist: f64,
    #[diesel(sql_type = Nullable<Jsonb>)]
    payload: Option<Value>,
    #[diesel(sql_type = Nullable<Text>)]
    vector: Option<String>,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

/// A loaded collection: its row, and the name of its partition.
struct Target {
    collection: Collection,
}

impl Target {
    fn table(&self) -> String {
        partition(self.collection.id)
    }

    fn dimension(&self) -> usize {
        self.collection.dimension as usize
    }

    /// `embedding` as the collection's typed vector: the expression of its HNSW index.
    fn embedding(&self) -> String {
        format!("embedding::vector({})", self.collection.dimension)
    }

    /// The distance operator its index orders by.
    fn operator(&self) -> &'static str {
        match self.collection.distance {
            Distance::L2 => "<->",
            Distance::Cosine | Distance::Dot => "<#>",
        }
    }

    /// The score of a distance the operator returned.
    fn score(&self, dist: f64) -> f32 {
        #[expect(clippy::cast_possible_truncation, reason = "scores are f32")]
        match self.collection.distance {
            Distance::L2 => dist as f32,
            Distance::Cosine | Distance::Dot => (-dist) as f32,
        }
    }

    /// The largest distance a score threshold admits.
    fn max_dist(&self, threshold: f32) -> f64 {
        match self.collection.distance {
            Distance::L2 => f64::from(threshold),
            Distance::Cosine | Distance::Dot => -f64::from(threshold),
        }
    }
}

/// The quoted name of a collection's partition of `vector_points`.
fn partition(collection: Uuid) -> String {
    format!("\"vector_points_{}\"", collection.simple())
}

/// pgvector's text form of a vector.
fn vector_text(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{x}");
    }
    s.push(']');
    s
}

fn parse_vector(text: &str) -> Vec<f32> {
    text.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A point id as stored: UUIDs in their canonical lower-case form, other strings as given.
fn point_id(id: &str, field: &str, errors: &mut Vec<FieldError>) -> String {
    if let Ok(uuid) = Uuid::parse_str(id) {
        return uuid.hyphenated().to_string();
    }
    let chars = id.chars().count();
    if chars == 0 || chars > MAX_POINT_ID_CHARS || id.chars().any(char::is_control) {
        errors.push(FieldError::new(
            field,
            "invalid_id",
            format!("ids are 1–{MAX_POINT_ID_CHARS} printable characters"),
        ));
    }
    id.to_owned()
}

fn bind_all(
    mut query: BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery>,
    binds: Vec<Bind>,
) -> BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    for bind in binds {
        query = match bind {
            Bind::Json(v) => query.bind::<Jsonb, _>(v),
            Bind::JsonArray(v) => query.bind::<Array<Jsonb>, _>(v),
            Bind::Float(v) => query.bind::<Double, _>(v),
        };
    }
    query
}

impl Vectors {
    /// Embeds `texts`, timing the embedder for the metrics.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, VectorError> {
        let started = Instant::now();
        let result = self.embedder.embed(texts).await;
        metrics::histogram!("sovereign_embedder_duration_seconds", "embedder" => self.embedder.name())
            .record(started.elapsed().as_secs_f64());
        Ok(result?)
    }

    /// The service as the settings describe it, with their embedder. Loading the local model
    /// reads its files, so call this once, at start-up.
    pub fn from_settings(db: Db, settings: &VectorSettings) -> Result<Self, EmbedError> {
        let embedder = crate::embed::from_settings(&settings.embedder)?;
        Ok(Self::new(db, embedder, settings.clone()))
    }

    /// The embedder that turns texts into vectors.
    #[must_use]
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    pub fn new(db: Db, embedder: Arc<dyn Embedder>, settings: VectorSettings) -> Self {
        Self {
            db,
            embedder,
            settings,
            targets: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(TARGET_TTL)
                .build(),
        }
    }

    /// pgvector answers and the embedder is configured.
    pub async fn health(&self, budget: Duration) -> Result<VectorHealth, DbError> {
        let started = Instant::now();
        let check = async {
            let mut conn = self.db.conn().await?;
            let rows: Vec<Version> = diesel::sql_query(
                "SELECT extversion AS version FROM pg_extension WHERE extname = 'vector'",
            )
            .load(&mut conn)
            .await?;
            rows.into_iter().next().map(|v| v.version).ok_or_else(|| {
                DbError::Unavailable("the vector extension is not installed".to_owned())
            })
        };
        let pgvector = tokio::time::timeout(budget, check)
            .await
            .map_err(|_| DbError::Timeout)??;
        Ok(VectorHealth {
            pgvector,
            embedder: self.embedder.name(),
            dimension: self.embedder.dimension(),
            latency: started.elapsed(),
        })
    }

    // ----- collections -------------------------------------------------------------------

    pub async fn create_collection(
        &self,
        tenant: Uuid,
        new: &NewCollection,
    ) -> Result<Collection, VectorError> {
        let mut errors = Vec::new();
        if !valid_name(&new.name) {
            errors.push(FieldError::new(
                "name",
                "invalid_name",
                "1–64 letters, digits, `_` or `-`, starting with a letter or digit",
            ));
        }
        if new.dimension == 0 || new.dimension > MAX_DIMENSION {
            errors.push(FieldError::new(
                "dimension",
                "out_of_range",
                format!("from 1 to {MAX_DIMENSION}"),
            ));
        }
        let HnswConfig { m, ef_construction } = new.hnsw;
        if !(2..=100).contains(&m) {
            errors.push(FieldError::new("hnsw.m", "out_of_range", "from 2 to 100"));
        }
        if !(4..=1000).contains(&ef_construction) || ef_construction < 2 * m {
            errors.push(FieldError::new(
                "hnsw.ef_construction",
                "out_of_range",
                "from 4 to 1000, and at least 2·m",
            ));
        }
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        let id = Uuid::now_v7();
        let name = new.name.clone();
        let distance = new.distance.as_str();
        let dimension = i32::try_from(new.dimension).unwrap_or(0);
        let build = !new.defer_index;
        let result = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    // Creating the partition locks the parent table briefly; never queue
                    // behind a long lock holder.
                    diesel::sql_query("SELECT set_config('lock_timeout', '5s', true)")
                        .execute(conn)
                        .await?;
                    diesel::sql_query(
                        "INSERT INTO vector_collections
                             (id, tenant_id, name, dimension, distance, hnsw_m, hnsw_ef_construction)
                         VALUES ($1, sovereign_current_tenant(), $2, $3, $4, $5, $6)",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(id)
                    .bind::<Text, _>(name)
                    .bind::<Integer, _>(dimension)
                    .bind::<Text, _>(distance)
                    .bind::<Integer, _>(i32::from(m))
                    .bind::<Integer, _>(i32::from(ef_construction))
                    .execute(conn)
                    .await?;
                    if build {
                        // Empty: instant. Inserts then maintain it.
                        diesel::sql_query("SELECT sovereign_vector_build_index($1)::text AS version")
                            .bind::<diesel::sql_types::Uuid, _>(id)
                            .load::<Version>(conn)
                            .await?;
                    }
                    Ok::<_, DbError>(())
                }
                .scope_boxed()
            })
            .await;
        match result {
            Ok(()) => self.collection(tenant, &new.name).await,
            Err(e) if e.is_unique_violation() => Err(VectorError::CollectionExists),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_collections(&self, tenant: Uuid) -> Result<Vec<Collection>, VectorError> {
        let rows: Vec<CollectionRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::sql_query(format!(
                        "SELECT {COLLECTION_COLUMNS} FROM vector_collections c ORDER BY c.name"
                    ))
                    .load(conn)
                    .await
                    .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(CollectionRow::into_collection)
            .collect())
    }

    /// One collection, with its exact point count.
    pub async fn collection(&self, tenant: Uuid, name: &str) -> Result<Collection, VectorError> {
        let name = name.to_owned();
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let mut target = load(conn, &name).await?;
                    let count: Count =
                        diesel::sql_query(format!("SELECT count(*) AS n FROM {}", target.table()))
                            .get_result(conn)
                            .await?;
                    target.collection.points = Some(u64::try_from(count.n).unwrap_or(0));
                    Ok(target.collection)
                }
                .scope_boxed()
            })
            .await
    }

    /// Deletes a collection and all its points (its partition is dropped: instant at any size).
    pub async fn delete_collection(&self, tenant: Uuid, name: &str) -> Result<(), VectorError> {
        self.forget(tenant, name).await;
        let name = name.to_owned();
        self.db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::sql_query("SELECT set_config('lock_timeout', '5s', true)")
                        .execute(conn)
                        .await?;
                    let deleted =
                        diesel::sql_query("DELETE FROM vector_collections WHERE name = $1")
                            .bind::<Text, _>(name)
                            .execute(conn)
                            .await?;
                    if deleted == 0 {
                        Err(VectorError::CollectionNotFound)
                    } else {
                        Ok(())
                    }
                }
                .scope_boxed()
            })
            .await
    }

    /// Builds the HNSW index or a payload index. The build runs in a task of its own, so it
    /// completes even when the caller goes away; with `wait`, this returns when it is done,
    /// otherwise at once (the collection's `index` then reads `building` while it runs).
    pub async fn create_index(
        &self,
        tenant: Uuid,
        name: &str,
        request: IndexRequest,
        wait: bool,
    ) -> Result<Collection, VectorError> {
        if let IndexRequest::Payload { key, .. } = &request
            && !filter::valid_key(key)
        {
            return Err(VectorError::invalid(
                "key",
                "invalid_key",
                "a dotted path of up to 4 identifiers (letters, digits, `_`), e.g. `meta.lang`",
            ));
        }
        let mut collection = self.collection(tenant, name).await?;
        let db = self.db.clone();
        let memory = self.settings.index_memory.clone();
        let limit = self.settings.index_timeout;
        let id = collection.id;
        let job = request.clone();
        let build = tokio::spawn(async move {
            let started = Instant::now();
            let result = db
                .long_tenant_transaction(tenant, limit, |conn| {
                    async move {
                        diesel::sql_query("SELECT set_config('maintenance_work_mem', $1, true)")
                            .bind::<Text, _>(memory)
                            .execute(conn)
                            .await?;
                        match job {
                            IndexRequest::Hnsw => {
                                diesel::sql_query(
                                    "SELECT sovereign_vector_build_index($1)::text AS version",
                                )
                                .bind::<diesel::sql_types::Uuid, _>(id)
                                .load::<Version>(conn)
                                .await?;
                            }
                            IndexRequest::Payload { key, kind } => {
                                diesel::sql_query(
                                    "SELECT sovereign_vector_index_payload($1, $2, $3)::text AS version",
                                )
                                .bind::<diesel::sql_types::Uuid, _>(id)
                                .bind::<Text, _>(key)
                                .bind::<Text, _>(kind.as_str())
                                .load::<Version>(conn)
                                .await?;
                            }
                        }
                        Ok::<_, DbError>(())
                    }
                    .scope_boxed()
                })
                .await;
            match &result {
                Ok(()) => {
                    tracing::info!(collection = %id, elapsed_ms = started.elapsed().as_millis(), "index built");
                }
                Err(e) => tracing::error!(collection = %id, error = %e, "index build failed"),
            }
            result
        });
        self.forget(tenant, name).await;
        if wait {
            build
                .await
                .map_err(|e| DbError::Unavailable(format!("index build task: {e}")))??;
            self.forget(tenant, name).await;
            return self.collection(tenant, name).await;
        }
        if matches!(request, IndexRequest::Hnsw) && collection.index != IndexState::Ready {
            collection.index = IndexState::Building;
        }
        Ok(collection)
    }

    // ----- points --------------------------------------------------------------------------

    /// Inserts or replaces points in one transaction: all or none. Texts are embedded first.
    async fn upsert_once(
        &self,
        tenant: Uuid,
        name: &str,
        points: Vec<PointInput>,
    ) -> Result<Affected, VectorError> {
        if points.is_empty() || points.len() > self.settings.max_batch {
            return Err(VectorError::invalid(
                "points",
                "invalid_length",
                format!("give 1 to {} points", self.settings.max_batch),
            ));
        }
        let target = self.target(tenant, name).await?;
        let mut errors = Vec::new();
        let mut texts = Vec::new();
        let mut rows: Vec<(String, Option<Vec<f32>>, Value)> = Vec::with_capacity(points.len());
        for (i, point) in points.into_iter().enumerate() {
            let id = point_id(&point.id, &format!("points[{i}].id"), &mut errors);
            let payload = Value::Object(point.payload.unwrap_or_default());
            check_payload(&payload, &format!("points[{i}].payload"), &mut errors);
            match (point.vector, point.text) {
                (Some(v), None) => rows.push((id, Some(v), payload)),
                (None, Some(text)) => {
                    check_text(&text, &format!("points[{i}].text"), &mut errors);
                    texts.push((rows.len(), text));
                    rows.push((id, None, payload));
                }
                _ => errors.push(FieldError::new(
                    format!("points[{i}]"),
                    "vector_or_text",
                    "give exactly one of `vector` and `text`",
                )),
            }
        }
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        for (i, (_, vector, _)) in rows.iter_mut().enumerate() {
            if let Some(v) = vector {
                check_vector(&target, v, &format!("points[{i}].vector"))?;
            }
        }
        if !texts.is_empty() {
            self.check_embedder(&target)?;
            let inputs: Vec<String> = texts.iter().map(|(_, t)| t.clone()).collect();
            let vectors = self.embed(&inputs).await?;
            for ((row, _), mut v) in texts.into_iter().zip(vectors) {
                if target.collection.distance == Distance::Cosine {
                    normalize(&mut v);
                }
                rows[row].1 = Some(v);
            }
        }
        // The last of several points with one id wins, as if they were sent one by one.
        let mut seen = HashSet::new();
        let mut ids = Vec::with_capacity(rows.len());
        let mut vectors = Vec::with_capacity(rows.len());
        let mut payloads = Vec::with_capacity(rows.len());
        for (id, vector, payload) in rows.into_iter().rev() {
            if seen.insert(id.clone()) {
                ids.push(id);
                vectors.push(vector_text(&vector.unwrap_or_default()));
                payloads.push(payload);
            }
        }
        let sql = format!(
            "INSERT INTO {table} (tenant_id, collection_id, id, embedding, payload)
             SELECT sovereign_current_tenant(), $1, t.id, t.v::vector, t.p
               FROM unnest($2::text[], $3::text[], $4::jsonb[]) AS t(id, v, p)
             ON CONFLICT (collection_id, id) DO UPDATE
                SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload, updated_at = now()",
            table = target.table()
        );
        let collection = target.collection.id;
        let n = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let n = diesel::sql_query(sql)
                        .bind::<diesel::sql_types::Uuid, _>(collection)
                        .bind::<Array<Text>, _>(ids)
                        .bind::<Array<Text>, _>(vectors)
                        .bind::<Array<Jsonb>, _>(payloads)
                        .execute(conn)
                        .await?;
                    // The first load big enough gets planner statistics at once (see the
                    // migration): without them the planner would not use the HNSW index.
                    diesel::sql_query("SELECT sovereign_vector_analyze($1, true)::text AS version")
                        .bind::<diesel::sql_types::Uuid, _>(collection)
                        .load::<Version>(conn)
                        .await?;
                    Ok::<_, DbError>(n)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Affected { points: n as u64 })
    }

    /// The points with these ids that exist, in the order asked.
    async fn points_once(
        &self,
        tenant: Uuid,
        name: &str,
        ids: &[String],
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<Point>, VectorError> {
        let ids = checked_ids(ids, "ids")?;
        let target = self.target(tenant, name).await?;
        let sql = format!(
            "SELECT id, {payload} AS payload, {vector} AS vector FROM {table} WHERE id = ANY($1)",
            payload = if with_payload {
                "payload"
            } else {
                "NULL::jsonb"
            },
            vector = if with_vector {
                "embedding::text"
            } else {
                "NULL::text"
            },
            table = target.table(),
        );
        let wanted = ids.clone();
        let rows: Vec<PointRow> = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    diesel::sql_query(sql)
                        .bind::<Array<Text>, _>(wanted)
                        .load(conn)
                        .await
                        .map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        let mut by_id: BTreeMap<String, Point> = rows
            .into_iter()
            .map(|r| {
                (
                    r.id.clone(),
                    Point {
                        id: r.id,
                        payload: r.payload,
                        vector: r.vector.as_deref().map(parse_vector),
                    },
                )
            })
            .collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    /// Deletes the points named by id, or matching a filter.
    async fn delete_points_once(
        &self,
        tenant: Uuid,
        name: &str,
        selector: &PointSelector,
    ) -> Result<Affected, VectorError> {
        let target = self.target(tenant, name).await?;
        let (condition, binds) = self.selection(&target, selector, 1)?;
        let sql = format!("DELETE FROM {} WHERE {condition}", target.table());
        self.change(tenant, sql, binds).await
    }

    /// Merges `payload` into the selected points' payloads (`overwrite`: replaces them).
    async fn set_payload_once(
        &self,
        tenant: Uuid,
        name: &str,
        update: PayloadUpdate,
        overwrite: bool,
    ) -> Result<Affected, VectorError> {
        let payload = Value::Object(update.payload);
        let mut errors = Vec::new();
        check_payload(&payload, "payload", &mut errors);
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        let target = self.target(tenant, name).await?;
        let (condition, mut binds) = self.selection(&target, &update.points, 2)?;
        let sql = format!(
            "UPDATE {} SET payload = {}, updated_at = now() WHERE {condition}",
            target.table(),
            if overwrite {
                "$1::jsonb"
            } else {
                "payload || $1::jsonb"
            }
        );
        binds.insert(0, SelectionBind::Filter(Bind::Json(payload)));
        self.change(tenant, sql, binds).await
    }

    // ----- search ---------------------------------------------------------------------------

    /// The nearest points to a vector, or to a text embedded on the way in.
    async fn search_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let target = self.target(tenant, name).await?;
        let query = self
            .query_vector(&target, request.vector, request.text)
            .await?;
        self.nearest(tenant, &target, &query, &request.options, &[])
            .await
    }

    /// Points like the positive examples and unlike the negative ones.
    async fn recommend_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: RecommendRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        if request.positive.is_empty() || request.positive.len() > MAX_EXAMPLES {
            return Err(VectorError::invalid(
                "positive",
                "invalid_length",
                format!("give 1 to {MAX_EXAMPLES} examples"),
            ));
        }
        if request.negative.len() > MAX_EXAMPLES {
            return Err(VectorError::invalid(
                "negative",
                "invalid_length",
                format!("give at most {MAX_EXAMPLES} examples"),
            ));
        }
        let target = self.target(tenant, name).await?;
        let mut ids = Vec::new();
        let mut errors = Vec::new();
        for (list, examples) in [
            ("positive", &request.positive),
            ("negative", &request.negative),
        ] {
            for (i, e) in examples.iter().enumerate() {
                if let Example::Id(id) = e {
                    ids.push(point_id(id, &format!("{list}[{i}]"), &mut errors));
                }
            }
        }
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        let stored: BTreeMap<String, Vec<f32>> = if ids.is_empty() {
            BTreeMap::new()
        } else {
            self.points(tenant, name, &ids, false, true)
                .await?
                .into_iter()
                .map(|p| (p.id, p.vector.unwrap_or_default()))
                .collect()
        };
        let resolve = |list: &str, examples: &[Example]| -> Result<Vec<Vec<f32>>, VectorError> {
            let mut out = Vec::new();
            for (i, e) in examples.iter().enumerate() {
                let field = format!("{list}[{i}]");
                match e {
                    Example::Vector(v) => {
                        let mut v = v.clone();
                        check_vector(&target, &mut v, &field)?;
                        out.push(v);
                    }
                    Example::Id(id) => {
                        let id = point_id(id, &field, &mut Vec::new());
                        let v = stored.get(&id).ok_or_else(|| {
                            VectorError::invalid(
                                field.clone(),
                                "point_not_found",
                                format!("no point `{id}` in this collection"),
                            )
                        })?;
                        out.push(v.clone());
                    }
                }
            }
            Ok(out)
        };
        let positive = resolve("positive", &request.positive)?;
        let negative = resolve("negative", &request.negative)?;
        let mut query = mean(&positive, target.dimension());
        if !negative.is_empty() {
            let neg = mean(&negative, target.dimension());
            for (q, n) in query.iter_mut().zip(neg) {
                *q = 2.0 * *q - n;
            }
        }
        if target.collection.distance == Distance::Cosine && !normalize(&mut query) {
            return Err(VectorError::invalid(
                "negative",
                "zero_vector",
                "the examples cancel out; nothing is like the positives and unlike the negatives",
            ));
        }
        self.nearest(tenant, &target, &query, &request.options, &ids)
            .await
    }

    /// The query plan of a search, as `EXPLAIN` prints it: to check which index it uses.
    async fn explain_search_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<String, VectorError> {
        let target = self.target(tenant, name).await?;
        let query = self
            .query_vector(&target, request.vector, request.text)
            .await?;
        let plan = self.prepare(&target, &query, &request.options, &[])?;
        let lines: Vec<PlanLine> = self.run_plan(tenant, &plan, "EXPLAIN ").await?;
        Ok(lines
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    // ----- operations on a collection's points ----------------------------------------------
    //
    // Each reads the collection through the cache of targets; when the cached description
    // turns out stale, it is dropped and the operation runs once more on a fresh read.

    /// Inserts or replaces points in one transaction: all or none. Texts are embedded first.
    pub async fn upsert(
        &self,
        tenant: Uuid,
        name: &str,
        points: Vec<PointInput>,
    ) -> Result<Affected, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.upsert_once(tenant, name, points.clone())
        )
    }

    /// The points with these ids that exist, in the order asked.
    pub async fn points(
        &self,
        tenant: Uuid,
        name: &str,
        ids: &[String],
        with_payload: bool,
        with_vector: bool,
    ) -> Result<Vec<Point>, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.points_once(tenant, name, ids, with_payload, with_vector)
        )
    }

    /// Deletes the points named by id, or matching a filter.
    pub async fn delete_points(
        &self,
        tenant: Uuid,
        name: &str,
        selector: &PointSelector,
    ) -> Result<Affected, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.delete_points_once(tenant, name, selector)
        )
    }

    /// Merges `payload` into the selected points' payloads (`overwrite`: replaces them).
    pub async fn set_payload(
        &self,
        tenant: Uuid,
        name: &str,
        update: PayloadUpdate,
        overwrite: bool,
    ) -> Result<Affected, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.set_payload_once(tenant, name, update.clone(), overwrite)
        )
    }

    /// The nearest points to a vector, or to a text embedded on the way in.
    pub async fn search(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.search_once(tenant, name, request.clone())
        )
    }

    /// Points like the positive examples and unlike the negative ones.
    pub async fn recommend(
        &self,
        tenant: Uuid,
        name: &str,
        request: RecommendRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.recommend_once(tenant, name, request.clone())
        )
    }

    /// The query plan of a search, as `EXPLAIN` prints it: to check which index it uses.
    pub async fn explain_search(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<String, VectorError> {
        fresh_on_stale!(
            self,
            tenant,
            name,
            self.explain_search_once(tenant, name, request.clone())
        )
    }

    // ----- internals ------------------------------------------------------------------------

    async fn target(&self, tenant: Uuid, name: &str) -> Result<Arc<Target>, VectorError> {
        let key = (tenant, name.to_owned());
        if let Some(target) = self.targets.get(&key).await {
            return Ok(target);
        }
        let owned = name.to_owned();
        let target = Arc::new(
            self.db
                .tenant_transaction(tenant, |conn| {
                    async move { load(conn, &owned).await }.scope_boxed()
                })
                .await?,
        );
        self.targets.insert(key, Arc::clone(&target)).await;
        Ok(target)
    }

    /// Drops the cached description of a collection (after a change, or found stale).
    async fn forget(&self, tenant: Uuid, name: &str) {
        self.targets.invalidate(&(tenant, name.to_owned())).await;
    }

    fn check_embedder(&self, target: &Target) -> Result<(), VectorError> {
        if self.embedder.dimension() == target.dimension() {
            Ok(())
        } else {
            Err(VectorError::EmbedderMismatch {
                embedder: self.embedder.dimension(),
                collection: target.dimension(),
            })
        }
    }

    async fn query_vector(
        &self,
        target: &Target,
        vector: Option<Vec<f32>>,
        text: Option<String>,
    ) -> Result<Vec<f32>, VectorError> {
        match (vector, text) {
            (Some(mut v), None) => {
                check_vector(target, &mut v, "vector")?;
                Ok(v)
            }
            (None, Some(text)) => {
                let mut errors = Vec::new();
                check_text(&text, "text", &mut errors);
                if !errors.is_empty() {
                    return Err(VectorError::Invalid(errors));
                }
                self.check_embedder(target)?;
                let mut v = self
                    .embed(std::slice::from_ref(&text))
                    .await?
                    .pop()
                    .unwrap_or_default();
                if target.collection.distance == Distance::Cosine {
                    normalize(&mut v);
                }
                Ok(v)
            }
            _ => Err(VectorError::invalid(
                "vector",
                "vector_or_text",
                "give exactly one of `vector` and `text`",
            )),
        }
    }

    fn prepare(
        &self,
        target: &Target,
        query: &[f32],
        options: &QueryOptions,
        exclude: &[String],
    ) -> Result<SearchPlan, VectorError> {
        let mut errors = Vec::new();
        if options.limit == 0 || options.limit > MAX_LIMIT {
            errors.push(FieldError::new(
                "limit",
                "out_of_range",
                format!("from 1 to {MAX_LIMIT}"),
            ));
        }
        if options.offset > MAX_OFFSET {
            errors.push(FieldError::new(
                "offset",
                "out_of_range",
                format!("at most {MAX_OFFSET}"),
            ));
        }
        if options.ef.is_some_and(|ef| ef == 0 || ef > 1000) {
            errors.push(FieldError::new("ef", "out_of_range", "from 1 to 1000"));
        }
        if options.score_threshold.is_some_and(|t| !t.is_finite()) {
            errors.push(FieldError::new(
                "score_threshold",
                "not_finite",
                "must be a finite number",
            ));
        }
        // $1 is the query vector, then the filter's values, then the excluded ids.
        let filter = match &options.filter {
            Some(f) => match filter::compile(f, &target.collection.payload_indexes, "filter", 2) {
                Ok(f) => Some(f),
                Err(e) => {
                    errors.extend(e);
                    None
                }
            },
            None => None,
        };
        if !errors.is_empty() {
            return Err(VectorError::Invalid(errors));
        }
        let SqlFilter {
            sql: mut condition,
            binds,
        } = filter.clone().unwrap_or(SqlFilter {
            sql: "true".to_owned(),
            binds: Vec::new(),
        });
        let mut binds: Vec<SearchBind> = binds.into_iter().map(SearchBind::Filter).collect();
        if !exclude.is_empty() {
            let _ = write!(condition, " AND id <> ALL(${}::text[])", binds.len() + 2);
            binds.push(SearchBind::Ids(exclude.to_vec()));
        }
        let fetch = options.limit + options.offset;
        let threshold = match options.score_threshold {
            Some(t) => {
                let n = binds.len() + 2;
                binds.push(SearchBind::Float(target.max_dist(t)));
                format!("WHERE dist <= ${n}")
            }
            None => String::new(),
        };
        let emb = target.embedding();
        let op = target.operator();
        let dim = target.collection.dimension;
        let sql = format!(
            "SELECT id, dist, {payload} AS payload, {vector} AS vector FROM (
                 SELECT id, payload, embedding, {emb} {op} $1::vector({dim}) AS dist
                   FROM {table}
                  WHERE {condition}
                  ORDER BY {emb} {op} $1::vector({dim})
                  LIMIT {fetch}
             ) AS nearest {threshold}
             ORDER BY dist, id
             LIMIT {limit} OFFSET {offset}",
            payload = if options.with_payload {
                "payload"
            } else {
                "NULL::jsonb"
            },
            vector = if options.with_vector {
                "embedding::text"
            } else {
                "NULL::text"
            },
            table = target.table(),
            limit = options.limit,
            offset = options.offset,
        );
        let ef = options
            .ef
            .unwrap_or(self.settings.ef_search)
            .max(fetch)
            .min(1000);
        Ok(SearchPlan {
            sql,
            query: vector_text(query),
            binds,
            ef,
            // Filtered HNSW scans continue until enough rows pass the filter (pgvector 0.8).
            iterative: filter.is_some() || !exclude.is_empty() || options.score_threshold.is_some(),
            exact: options.exact,
        })
    }

    /// Runs a search plan (`prefix`: `EXPLAIN ` for its plan) with its planner settings.
    async fn run_plan<T>(
        &self,
        tenant: Uuid,
        plan: &SearchPlan,
        prefix: &str,
    ) -> Result<Vec<T>, VectorError>
    where
        T: QueryableByName<Pg> + Send + 'static,
    {
        let query = bind_search(
            diesel::sql_query(format!("{prefix}{}", plan.sql)).into_boxed(),
            plan.binds_with_query(),
        );
        Ok(self
            .db
            .tenant_transaction_with(tenant, plan.settings(), |conn| {
                async move { query.load(conn).await.map_err(DbError::from) }.scope_boxed()
            })
            .await?)
    }

    async fn nearest(
        &self,
        tenant: Uuid,
        target: &Target,
        query: &[f32],
        options: &QueryOptions,
        exclude: &[String],
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let plan = self.prepare(target, query, options, exclude)?;
        let rows: Vec<ScoredRow> = self.run_plan(tenant, &plan, "").await?;
        Ok(rows
            .into_iter()
            .map(|r| ScoredPoint {
                score: target.score(r.dist),
                id: r.id,
                payload: r.payload,
                vector: r.vector.as_deref().map(parse_vector),
            })
            .collect())
    }

    /// The `WHERE` condition of a selector, its placeholders from `$first` (after `$1`, the
    /// collection id is never bound: the partition is the collection).
    fn selection(
        &self,
        target: &Target,
        selector: &PointSelector,
        first: usize,
    ) -> Result<(String, Vec<SelectionBind>), VectorError> {
        match (&selector.ids, &selector.filter) {
            (Some(ids), None) => {
                let ids = checked_ids(ids, "ids")?;
                Ok((
                    format!("id = ANY(${first}::text[])"),
                    vec![SelectionBind::Ids(ids)],
                ))
            }
            (None, Some(f)) => {
                let compiled =
                    filter::compile(f, &target.collection.payload_indexes, "filter", first)
                        .map_err(VectorError::Invalid)?;
                Ok((
                    compiled.sql,
                    compiled
                        .binds
                        .into_iter()
                        .map(SelectionBind::Filter)
                        .collect(),
                ))
            }
            _ => Err(VectorError::invalid(
                "ids",
                "ids_or_filter",
                "give exactly one of `ids` and `filter`",
            )),
        }
    }

    async fn change(
        &self,
        tenant: Uuid,
        sql: String,
        binds: Vec<SelectionBind>,
    ) -> Result<Affected, VectorError> {
        let n = self
            .db
            .tenant_transaction(tenant, |conn| {
                async move {
                    let mut query = diesel::sql_query(sql).into_boxed();
                    for bind in binds {
                        query = match bind {
                            SelectionBind::Ids(ids) => query.bind::<Array<Text>, _>(ids),
                            SelectionBind::Filter(b) => bind_all(query, vec![b]),
                        };
                    }
                    query.execute(conn).await.map_err(DbError::from)
                }
                .scope_boxed()
            })
            .await?;
        Ok(Affected { points: n as u64 })
    }
}

enum SelectionBind {
    Ids(Vec<String>),
    Filter(Bind),
}

#[derive(Clone)]
enum SearchBind {
    Query(String),
    Filter(Bind),
    Ids(Vec<String>),
    Float(f64),
}

struct SearchPlan {
    sql: String,
    query: String,
    binds: Vec<SearchBind>,
    ef: u32,
    iterative: bool,
    exact: bool,
}

impl SearchPlan {
    /// The transaction-local planner settings of this search.
    fn settings(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hnsw.ef_search", self.ef.to_string()),
            (
                "hnsw.iterative_scan",
                if self.iterative {
                    "relaxed_order"
                } else {
                    "off"
                }
                .to_owned(),
            ),
            (
                "enable_indexscan",
                if self.exact { "off" } else { "on" }.to_owned(),
            ),
        ]
    }

    fn binds_with_query(&self) -> Vec<SearchBind> {
        let mut all = Vec::with_capacity(self.binds.len() + 1);
        all.push(SearchBind::Query(self.query.clone()));
        all.extend(self.binds.iter().cloned());
        all
    }
}

fn bind_search(
    mut query: BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery>,
    binds: Vec<SearchBind>,
) -> BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    for bind in binds {
        query = match bind {
            SearchBind::Query(v) => query.bind::<Text, _>(v),
            SearchBind::Filter(b) => bind_all(query, vec![b]),
            SearchBind::Ids(ids) => query.bind::<Array<Text>, _>(ids),
            SearchBind::Float(f) => query.bind::<Double, _>(f),
        };
    }
    query
}

async fn load(conn: &mut AsyncPgConnection, name: &str) -> Result<Target, VectorError> {
    let rows: Vec<CollectionRow> = diesel::sql_query(format!(
        "SELECT {COLLECTION_COLUMNS} FROM vector_collections c WHERE c.name = $1"
    ))
    .bind::<Text, _>(name)
    .load(conn)
    .await?;
    rows.into_iter()
        .next()
        .map(|row| Target {
            collection: row.into_collection(),
        })
        .ok_or(VectorError::CollectionNotFound)
}

/// A payload PostgreSQL can store: at most `MAX_PAYLOAD_BYTES`, and no U+0000 in a key or a
/// string (JSON allows it, `jsonb` does not).
fn check_payload(payload: &Value, field: &str, errors: &mut Vec<FieldError>) {
    if serde_json::to_vec(payload).map_or(0, |b| b.len()) > MAX_PAYLOAD_BYTES {
        errors.push(FieldError::new(
            field,
            "too_large",
            format!("at most {} KiB", MAX_PAYLOAD_BYTES / 1024),
        ));
    }
    if filter::has_nul(payload) {
        errors.push(FieldError::new(
            field,
            "nul_character",
            "keys and strings cannot contain U+0000",
        ));
    }
}

fn check_text(text: &str, field: &str, errors: &mut Vec<FieldError>) {
    let chars = text.chars().count();
    if text.trim().is_empty() || chars > MAX_TEXT_CHARS {
        errors.push(FieldError::new(
            field,
            "invalid_text",
            format!("1 to {MAX_TEXT_CHARS} characters, not only spaces"),
        ));
    }
}

/// Checks a vector's length and values; normalises it for cosine collections.
fn check_vector(target: &Target, v: &mut [f32], field: &str) -> Result<(), VectorError> {
    if v.len() != target.dimension() {
        return Err(VectorError::DimensionMismatch {
            field: field.to_owned(),
            expected: target.dimension(),
            got: v.len(),
        });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::invalid(
            field,
            "not_finite",
            "numbers must be finite",
        ));
    }
    if target.collection.distance == Distance::Cosine && !normalize(v) {
        return Err(VectorError::invalid(
            field,
            "zero_vector",
            "a cosine collection cannot hold or search for the zero vector",
        ));
    }
    Ok(())
}

fn checked_ids(ids: &[String], field: &str) -> Result<Vec<String>, VectorError> {
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(VectorError::invalid(
            field,
            "invalid_length",
            format!("give 1 to {MAX_IDS} ids"),
        ));
    }
    let mut errors = Vec::new();
    let ids = ids
        .iter()
        .enumerate()
        .map(|(i, id)| point_id(id, &format!("{field}[{i}]"), &mut errors))
        .collect();
    if errors.is_empty() {
        Ok(ids)
    } else {
        Err(VectorError::Invalid(errors))
    }
}

fn mean(vectors: &[Vec<f32>], dimension: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; dimension];
    for v in vectors {
        for (o, x) in out.iter_mut().zip(v) {
            *o += x;
        }
    }
    #[expect(clippy::cast_precision_loss, reason = "at most 64 examples")]
    let n = vectors.len().max(1) as f32;
    for o in &mut out {
        *o /= n;
    }
    out
}
