//! The cache of collection descriptions ([`Target`]s), and the retry that keeps it safe: an
//! operation that failed in a way a stale description explains runs once more on a fresh read.

use std::sync::Arc;

use diesel::sql_types::Text;
use sovereign_db::{AsyncPgConnection, DbError, RunQueryDsl, ScopedFutureExt};
use uuid::Uuid;

use super::Vectors;
use super::sql::{COLLECTION_COLUMNS, CollectionRow, partition};
use crate::error::VectorError;
use crate::model::{Collection, Distance};

/// A loaded collection: its row, and the name of its partition.
pub(super) struct Target {
    pub(super) collection: Collection,
}

impl Target {
    pub(super) fn table(&self) -> String {
        partition(self.collection.id)
    }

    pub(super) fn dimension(&self) -> usize {
        self.collection.dimension as usize
    }

    /// `embedding` as the collection's typed vector: the expression of its HNSW index.
    pub(super) fn embedding(&self) -> String {
        format!("embedding::vector({})", self.collection.dimension)
    }

    /// The distance operator its index orders by.
    pub(super) fn operator(&self) -> &'static str {
        match self.collection.distance {
            Distance::L2 => "<->",
            Distance::Cosine | Distance::Dot => "<#>",
        }
    }

    /// The score of a distance the operator returned.
    pub(super) fn score(&self, dist: f64) -> f32 {
        #[expect(clippy::cast_possible_truncation, reason = "scores are f32")]
        match self.collection.distance {
            Distance::L2 => dist as f32,
            Distance::Cosine | Distance::Dot => (-dist) as f32,
        }
    }

    /// The largest distance a score threshold admits.
    pub(super) fn max_dist(&self, threshold: f32) -> f64 {
        match self.collection.distance {
            Distance::L2 => f64::from(threshold),
            Distance::Cosine | Distance::Dot => -f64::from(threshold),
        }
    }
}

/// Reads the collection `name` in the tenant's transaction `conn`.
pub(super) async fn load(conn: &mut AsyncPgConnection, name: &str) -> Result<Target, VectorError> {
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

impl Vectors {
    /// The collection `name`, from the cache, or read and remembered.
    pub(super) async fn target(
        &self,
        tenant: Uuid,
        name: &str,
    ) -> Result<Arc<Target>, VectorError> {
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
    pub(super) async fn forget(&self, tenant: Uuid, name: &str) {
        self.targets.invalidate(&(tenant, name.to_owned())).await;
    }

    /// Runs `attempt`, an operation on the collection `name` that reads it through the cache of
    /// targets; when it failed because the cached description was stale, drops the description
    /// and runs `attempt` once more, which reads the collection afresh.
    ///
    /// `attempt` makes a new future each time it is called, from input it borrows: the first
    /// run copies nothing, and only a retry pays, by running the operation again.
    pub(super) async fn fresh_on_stale<T, A, F>(
        &self,
        tenant: Uuid,
        name: &str,
        attempt: A,
    ) -> Result<T, VectorError>
    where
        A: FnMut() -> F,
        F: Future<Output = Result<T, VectorError>>,
    {
        retry_once_if_stale(attempt, || self.forget(tenant, name)).await
    }
}

/// Runs `attempt`; when its error [`is_stale`], runs `refresh`, then `attempt` once more, and
/// returns what that second run returns.
async fn retry_once_if_stale<T, A, F, R, G>(mut attempt: A, refresh: R) -> Result<T, VectorError>
where
    A: FnMut() -> F,
    F: Future<Output = Result<T, VectorError>>,
    R: FnOnce() -> G,
    G: Future<Output = ()>,
{
    match attempt().await {
        Err(e) if is_stale(&e) => {
            refresh().await;
            attempt().await
        }
        other => other,
    }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use diesel::result::{DatabaseErrorKind, Error as DieselError};

    use super::*;
    use crate::error::EmbedError;

    fn database_error(message: &str) -> VectorError {
        VectorError::Db(DbError::Query(DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message.to_owned()),
        )))
    }

    #[test]
    fn errors_a_stale_description_explains_are_stale() {
        for stale in [
            database_error("relation \"vector_points_0190\" does not exist"),
            VectorError::invalid("filter.must[0].key", "key_not_indexed", "not indexed"),
            VectorError::DimensionMismatch {
                field: "vector".to_owned(),
                expected: 3,
                got: 2,
            },
            VectorError::EmbedderMismatch {
                embedder: 16,
                collection: 3,
            },
        ] {
            assert!(is_stale(&stale), "{stale:?}");
        }
        for fresh in [
            VectorError::CollectionNotFound,
            VectorError::CollectionExists,
            database_error("duplicate key value violates unique constraint"),
            database_error("function sovereign_vector_analyze does not exist"),
            VectorError::Db(DbError::Timeout),
            VectorError::Db(DbError::Unavailable("down".to_owned())),
            VectorError::Embedding(EmbedError::Upstream("502".to_owned())),
        ] {
            assert!(!is_stale(&fresh), "{fresh:?}");
        }
    }

    /// Runs `retry_once_if_stale` over attempts that return `results` in turn; returns its
    /// answer, how many attempts ran and how many refreshes.
    async fn run(
        results: Vec<Result<u32, VectorError>>,
    ) -> (Result<u32, VectorError>, usize, usize) {
        let results = std::sync::Mutex::new(results.into_iter());
        let attempts = AtomicUsize::new(0);
        let refreshes = AtomicUsize::new(0);
        let input = vec![7_u32; 4];
        let borrowed = input.as_slice();
        let answer = retry_once_if_stale(
            || {
                attempts.fetch_add(1, Ordering::SeqCst);
                let next = results.lock().unwrap().next().unwrap();
                async move { next.map(|n| n + borrowed[0]) }
            },
            || async {
                refreshes.fetch_add(1, Ordering::SeqCst);
            },
        )
        .await;
        (answer, attempts.into_inner(), refreshes.into_inner())
    }

    #[tokio::test]
    async fn a_success_or_a_lasting_error_runs_once() {
        let (answer, attempts, refreshes) = run(vec![Ok(1)]).await;
        assert_eq!((answer.unwrap(), attempts, refreshes), (8, 1, 0));

        let (answer, attempts, refreshes) = run(vec![Err(VectorError::CollectionNotFound)]).await;
        assert!(matches!(answer, Err(VectorError::CollectionNotFound)));
        assert_eq!((attempts, refreshes), (1, 0));
    }

    #[tokio::test]
    async fn a_stale_error_refreshes_and_runs_once_more() {
        let (answer, attempts, refreshes) = run(vec![
            Err(database_error(
                "relation \"vector_points_0190\" does not exist",
            )),
            Ok(2),
        ])
        .await;
        assert_eq!((answer.unwrap(), attempts, refreshes), (9, 2, 1));

        // The second run's answer is the answer, whatever it is: there is no third.
        let (answer, attempts, refreshes) = run(vec![
            Err(VectorError::invalid("vector", "not_finite", "finite")),
            Err(VectorError::invalid("vector", "not_finite", "finite")),
        ])
        .await;
        assert!(matches!(answer, Err(VectorError::Invalid(_))));
        assert_eq!((attempts, refreshes), (2, 1));

        let (answer, attempts, refreshes) = run(vec![
            Err(VectorError::EmbedderMismatch {
                embedder: 16,
                collection: 3,
            }),
            Err(VectorError::CollectionNotFound),
        ])
        .await;
        assert!(matches!(answer, Err(VectorError::CollectionNotFound)));
        assert_eq!((attempts, refreshes), (2, 1));
    }
}
