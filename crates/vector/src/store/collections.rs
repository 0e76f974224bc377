//! Collections: create, list, read and delete them, build their HNSW and payload indexes, and
//! the health of vector search.

use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Integer, Text};
use sovereign_core::FieldError;
use sovereign_db::{DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::Vectors;
use super::checks::valid_name;
use super::sql::{COLLECTION_COLUMNS, CollectionRow, Version};
use super::targets::load;
use crate::error::VectorError;
use crate::filter;
use crate::model::{
    Collection, HnswConfig, IndexRequest, IndexState, MAX_DIMENSION, NewCollection,
};

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
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

impl Vectors {
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
}
