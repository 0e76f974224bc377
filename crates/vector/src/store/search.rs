//! Search and recommend: the query vector (given, embedded, or made of examples), the SQL of a
//! filtered nearest-neighbour scan with its planner settings, and its plan for `EXPLAIN`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use diesel::QueryableByName;
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{Array, Double, Jsonb, Nullable, Text};
use serde_json::Value;
use sovereign_core::FieldError;
use sovereign_db::{DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::checks::{as_stored, check_text, check_vector, point_id};
use super::sql::{bind_all, parse_vector, vector_text};
use super::targets::Target;
use super::{MAX_EXAMPLES, Vectors};
use crate::embed::normalize;
use crate::error::VectorError;
use crate::filter::{self, Bind, SqlFilter};
use crate::model::{
    Distance, Example, MAX_LIMIT, MAX_OFFSET, QueryOptions, RecommendRequest, ScoredPoint,
    SearchRequest,
};

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

// Like the operations on points, each reads the collection through the cache of targets and
// runs once more on a fresh read when the cached description was stale
// (`Vectors::fresh_on_stale`), borrowing the caller's request each time.
impl Vectors {
    /// The nearest points to a vector, or to a text embedded on the way in.
    pub async fn search(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let request = &request;
        self.fresh_on_stale(tenant, name, || self.search_once(tenant, name, request))
            .await
    }

    /// Points like the positive examples and unlike the negative ones.
    pub async fn recommend(
        &self,
        tenant: Uuid,
        name: &str,
        request: RecommendRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let request = &request;
        self.fresh_on_stale(tenant, name, || self.recommend_once(tenant, name, request))
            .await
    }

    /// The query plan of a search, as `EXPLAIN` prints it: to check which index it uses.
    pub async fn explain_search(
        &self,
        tenant: Uuid,
        name: &str,
        request: SearchRequest,
    ) -> Result<String, VectorError> {
        let request = &request;
        self.fresh_on_stale(tenant, name, || {
            self.explain_search_once(tenant, name, request)
        })
        .await
    }

    /// One run of [`Vectors::search`].
    async fn search_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: &SearchRequest,
    ) -> Result<Vec<ScoredPoint>, VectorError> {
        let target = self.target(tenant, name).await?;
        let query = self
            .query_vector(&target, request.vector.as_deref(), request.text.as_ref())
            .await?;
        self.nearest(tenant, &target, &query, &request.options, &[])
            .await
    }

    /// One run of [`Vectors::recommend`].
    async fn recommend_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: &RecommendRequest,
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
        let positive = examples(&target, &stored, "positive", &request.positive)?;
        let negative = examples(&target, &stored, "negative", &request.negative)?;
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

    /// One run of [`Vectors::explain_search`].
    async fn explain_search_once(
        &self,
        tenant: Uuid,
        name: &str,
        request: &SearchRequest,
    ) -> Result<String, VectorError> {
        let target = self.target(tenant, name).await?;
        let query = self
            .query_vector(&target, request.vector.as_deref(), request.text.as_ref())
            .await?;
        let plan = self.prepare(&target, &query, &request.options, &[])?;
        let lines: Vec<PlanLine> = self.run_plan(tenant, &plan, "EXPLAIN ").await?;
        Ok(lines
            .into_iter()
            .map(|l| l.line)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// The query of a search: its vector, checked (borrowed unless it must be normalised), or
    /// its text, embedded.
    async fn query_vector<'a>(
        &self,
        target: &Target,
        vector: Option<&'a [f32]>,
        text: Option<&String>,
    ) -> Result<Cow<'a, [f32]>, VectorError> {
        match (vector, text) {
            (Some(v), None) => {
                let divisor = check_vector(target, v, "vector")?;
                Ok(as_stored(v, divisor))
            }
            (None, Some(text)) => {
                let mut errors = Vec::new();
                check_text(text, "text", &mut errors);
                if !errors.is_empty() {
                    return Err(VectorError::Invalid(errors));
                }
                self.check_embedder(target)?;
                let mut v = self
                    .embed(std::slice::from_ref(text))
                    .await?
                    .pop()
                    .unwrap_or_default();
                if target.collection.distance == Distance::Cosine {
                    normalize(&mut v);
                }
                Ok(Cow::Owned(v))
            }
            _ => Err(VectorError::invalid(
                "vector",
                "vector_or_text",
                "give exactly one of `vector` and `text`",
            )),
        }
    }

    /// The SQL, values and planner settings of a scan for the points nearest to `query` that
    /// pass the options' filter, leaving out the points `exclude` names.
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
        let filtered = filter.is_some();
        let SqlFilter {
            sql: mut condition,
            binds,
        } = filter.unwrap_or(SqlFilter {
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
            query: vector_text(query.iter().copied()),
            binds,
            ef,
            // Filtered HNSW scans continue until enough rows pass the filter (pgvector 0.8).
            iterative: filtered || !exclude.is_empty() || options.score_threshold.is_some(),
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
}

/// The vectors of a recommendation's examples: those given, checked (and normalised for cosine
/// collections), and those named by id, from `stored`.
fn examples<'a>(
    target: &Target,
    stored: &'a BTreeMap<String, Vec<f32>>,
    list: &str,
    examples: &'a [Example],
) -> Result<Vec<Cow<'a, [f32]>>, VectorError> {
    let mut out = Vec::with_capacity(examples.len());
    for (i, e) in examples.iter().enumerate() {
        let field = format!("{list}[{i}]");
        match e {
            Example::Vector(v) => {
                let divisor = check_vector(target, v, &field)?;
                out.push(as_stored(v, divisor));
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
                out.push(Cow::Borrowed(v.as_slice()));
            }
        }
    }
    Ok(out)
}

fn mean(vectors: &[Cow<'_, [f32]>], dimension: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; dimension];
    for v in vectors {
        for (o, x) in out.iter_mut().zip(v.iter()) {
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
    mut query: BoxedSqlQuery<'static, Pg, SqlQuery>,
    binds: Vec<SearchBind>,
) -> BoxedSqlQuery<'static, Pg, SqlQuery> {
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
