//! Service information, liveness and readiness.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::header::{CACHE_CONTROL, HeaderValue};
use actix_web::{HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use sovereign_core::Diagnostic;
use utoipa::ToSchema;

use crate::state::AppState;

/// How long readiness waits for each dependency: well inside orchestrators' probe timeouts.
const READINESS_BUDGET: Duration = Duration::from_millis(1500);

/// Name and version of the running service.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceInfo {
    #[schema(example = "sovereign")]
    pub name: String,
    #[schema(example = "0.1.0")]
    pub version: String,
    /// Where the interactive API docs are, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/docs/")]
    pub docs: Option<String>,
}

/// Service name, version and docs location.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Service information", body = ServiceInfo))
)]
#[get("/")]
pub(super) async fn index(state: web::Data<AppState>) -> web::Json<ServiceInfo> {
    web::Json(ServiceInfo {
        name: "sovereign".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        docs: state.settings.server.docs.then(|| "/docs/".to_owned()),
    })
}

/// The liveness report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    #[schema(example = "ok")]
    pub status: String,
}

/// Liveness: the process is up and serving requests. Calls no dependency, so a database
/// outage never makes an orchestrator restart healthy processes.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process is alive", body = Liveness))
)]
#[get("/health")]
pub(super) async fn health() -> HttpResponse {
    no_store(&mut HttpResponse::Ok()).json(Liveness {
        status: "ok".to_owned(),
    })
}

/// State of one dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Reachable and answering.
    Ok,
    /// Unreachable or failing; the service cannot work without it.
    Down,
    /// Unreachable or failing; the service keeps working without it, with reduced guarantees
    /// (for the cache: stricter per-instance rate limits, no cross-instance fan-out).
    Degraded,
}

/// One dependency's health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DependencyCheck {
    pub status: CheckStatus,
    /// Which implementation answered, where there is a choice (`redis` or `memory` for the
    /// cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "redis")]
    pub backend: Option<String>,
    /// Round-trip time of the check, when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 0.8)]
    pub latency_ms: Option<f64>,
    /// Stable code of the failure, when it failed; the cause is in the server's log.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "database_unavailable")]
    pub error: Option<String>,
}

impl DependencyCheck {
    fn ok(backend: Option<String>, latency: Duration) -> Self {
        Self {
            status: CheckStatus::Ok,
            backend,
            latency_ms: Some(latency.as_secs_f64() * 1000.0),
            error: None,
        }
    }

    fn failed(status: CheckStatus, backend: Option<String>, error: &dyn Diagnostic) -> Self {
        Self {
            status,
            backend,
            latency_ms: None,
            error: Some(error.code().to_owned()),
        }
    }
}

/// Overall readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
    NotReady,
}

/// The readiness report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub status: ReadyStatus,
    /// Each dependency by name (`database`, `cache`, `vector` when vector search is on:
    /// pgvector's version in `backend`, with the embedder; `realtime` when websockets are on:
    /// whether messages cross instances, and the open connections).
    pub checks: BTreeMap<String, DependencyCheck>,
}

/// Readiness: each dependency's state and latency. Answers within two seconds; 503 when the
/// database is unreachable (or, with vector search on, pgvector is missing). A failing cache
/// shows as `degraded` without failing readiness: the service keeps serving without it.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Every required dependency is reachable", body = Readiness),
        (status = 503, description = "A required dependency is down", body = Readiness),
    )
)]
#[get("/ready")]
pub(super) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let vector_check = async {
        match &state.vectors {
            Some(vectors) => Some(vectors.health(READINESS_BUDGET).await),
            None => None,
        }
    };
    let (database, cache, vector) = futures_util::join!(
        state.db.health(READINESS_BUDGET),
        state.cache.health(),
        vector_check
    );
    let database = match database {
        Ok(latency) => DependencyCheck::ok(None, latency),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: database check failed");
            DependencyCheck::failed(CheckStatus::Down, None, &e)
        }
    };
    let backend = Some(state.cache.backend().as_str().to_owned());
    let cache = match cache {
        Ok(report) => DependencyCheck::ok(backend, report.latency),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: cache check failed; serving degraded");
            DependencyCheck::failed(CheckStatus::Degraded, backend, &e)
        }
    };
    let vector = vector.map(|result| match result {
        Ok(report) => DependencyCheck::ok(
            Some(format!(
                "pgvector {}; embedder {} ({} dimensions)",
                report.pgvector, report.embedder, report.dimension
            )),
            report.latency,
        ),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: vector check failed");
            DependencyCheck::failed(CheckStatus::Down, None, &e)
        }
    });
    // Realtime: degraded while messages cannot cross instances (the shared cache fails).
    let realtime = state.hub.as_ref().map(|hub| {
        let status = hub.status();
        let crossing = status.shared;
        let degraded = status.degraded || (crossing && cache.status != CheckStatus::Ok);
        DependencyCheck {
            status: if degraded {
                CheckStatus::Degraded
            } else {
                CheckStatus::Ok
            },
            backend: Some(format!(
                "fan-out {}; {} connections",
                if crossing && !degraded {
                    "redis"
                } else {
                    "local"
                },
                status.connections
            )),
            latency_ms: None,
            error: degraded.then(|| "realtime_local_only".to_owned()),
        }
    });
    let ready = database.status == CheckStatus::Ok
        && vector.as_ref().is_none_or(|v| v.status == CheckStatus::Ok);
    let mut checks = BTreeMap::new();
    checks.insert("database".to_owned(), database);
    checks.insert("cache".to_owned(), cache);
    if let Some(vector) = vector {
        checks.insert("vector".to_owned(), vector);
    }
    if let Some(realtime) = realtime {
        checks.insert("realtime".to_owned(), realtime);
    }
    let report = Readiness {
        status: if ready {
            ReadyStatus::Ready
        } else {
            ReadyStatus::NotReady
        },
        checks,
    };
    let mut response = if ready {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    no_store(&mut response).json(report)
}

fn no_store(response: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    response.insert_header((CACHE_CONTROL, HeaderValue::from_static("no-store")))
}
