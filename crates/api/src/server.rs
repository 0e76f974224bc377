//! Building and running the HTTP server. Tests build it on port 0 and talk to it over TCP.

use std::net::TcpListener;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::from_fn;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpServer};
use sovereign_auth::{AuthError, Mailer};
use sovereign_cache::CacheError;
use sovereign_core::ErrorKind;
use sovereign_db::DbError;
use sovereign_realtime::Hub;
use sovereign_vector::EmbedError;
use utoipa_actix_web::AppExt;

use crate::edge::EdgeConfig;
use crate::error::ApiError;
use crate::fallback::{KnownRoutes, fallback};
use crate::services::Services;
use crate::settings::{CorsSettings, Settings};
use crate::state::AppState;
use crate::{docs, middleware, openapi, rate_limit, routes};

/// Extra routes mounted next to the API's own, behind the same middleware. Tests use it to
/// exercise extractors and error handling on purpose-built endpoints.
pub type RouteHook = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// What a server is built with besides its settings. Tests replace the mailer with an
/// in-memory outbox and mount extra routes.
#[derive(Default, Clone)]
pub struct BuildOptions {
    pub routes: Option<RouteHook>,
    /// Replaces the mailer the settings describe.
    pub mailer: Option<Arc<dyn Mailer>>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Embedder(#[from] EmbedError),
    #[error(transparent)]
    Storage(#[from] sovereign_storage::StorageError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "the database role `{role}` can bypass row-level security ({why}); \
         connect as a role that is not superuser, not BYPASSRLS and owns no tables \
         (see docs/operations.md)"
    )]
    PrivilegedRole { role: String, why: String },
}

/// A bound, ready-to-run server.
pub struct Application {
    server: Server,
    port: u16,
    hub: Option<Hub>,
    storage: Option<sovereign_storage::Storage>,
    dispatcher: Option<sovereign_events::Dispatcher>,
    metrics: Option<(Server, u16)>,
}

impl Application {
    /// Binds `HOST:PORT` (port 0 picks a free port) and prepares the workers. Connects to the
    /// database only to check the runtime role; the server starts while the database is down.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        Self::build_with_routes(settings, None).await
    }

    /// Like [`Application::build`], with extra routes.
    pub async fn build_with_routes(
        settings: Settings,
        extra_routes: Option<RouteHook>,
    ) -> Result<Self, StartError> {
        Self::build_with(
            settings,
            BuildOptions {
                routes: extra_routes,
                mailer: None,
            },
        )
        .await
    }

    /// Like [`Application::build`], with [`BuildOptions`].
    pub async fn build_with(settings: Settings, options: BuildOptions) -> Result<Self, StartError> {
        let extra_routes = options.routes;
        let services = Services::start(&settings, options.mailer).await?;
        let hub = services.hub.clone();
        let storage = services.storage.clone();
        let dispatcher = services.dispatcher.clone();
        let edge = web::Data::new(EdgeConfig {
            trusted_proxies: settings.network.trusted_proxies.clone(),
            production: settings.environment.is_production(),
        });
        let cors = settings.cors.clone();

        let address = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartError::Bind {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                address: address.clone(),
                source,
            })?
            .port();

        let payload_limit = settings.server.payload_limit;
        let workers = settings.server.workers;
        let shutdown_secs = settings.server.shutdown_timeout.as_secs();
        let document = openapi::document();
        let mut known_routes = KnownRoutes::from_document(&document);
        let docs = if settings.server.docs {
            known_routes.add(docs::OPENAPI_PATH, vec![Method::GET]);
            known_routes.add("/docs", vec![Method::GET]);
            known_routes.add("/docs/{_:.*}", vec![Method::GET]);
            Some(Bytes::from(openapi::to_json(&document)))
        } else {
            None
        };
        let known_routes = web::Data::new(known_routes);
        crate::metrics::handle();
        let metrics_settings = settings.metrics.clone();
        let state = web::Data::new(AppState {
            settings: Arc::new(settings),
            services,
        });
        let state_for_metrics = state.clone();

        let server = HttpServer::new(move || {
            build_app(
                Shared {
                    state: state.clone(),
                    edge: edge.clone(),
                    known_routes: known_routes.clone(),
                },
                payload_limit,
                cors_for(&cors),
                docs.clone(),
                extra_routes.clone(),
            )
        })
        .workers(workers)
        .shutdown_timeout(shutdown_secs)
        .listen(listener)
        .map_err(|source| StartError::Bind { address, source })?
        .run();
        tracing::info!(port, workers, "listening");
        let metrics = match metrics_settings.addr {
            Some(addr) => {
                let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind {
                    address: addr.to_string(),
                    source,
                })?;
                let metrics_port = listener.local_addr().map_or(0, |a| a.port());
                let server =
                    crate::metrics::listener(listener, state_for_metrics, metrics_settings.token)
                        .map_err(|source| StartError::Bind {
                        address: addr.to_string(),
                        source,
                    })?;
                tracing::info!(port = metrics_port, "metrics listening");
                Some((server, metrics_port))
            }
            None => None,
        };
        Ok(Self {
            server,
            port,
            hub,
            storage,
            dispatcher,
            metrics,
        })
    }

    /// The port actually bound.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully.
    #[must_use]
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or [`ServerHandle::stop`]), then lets in-flight requests
    /// finish within `SHUTDOWN_TIMEOUT_SECONDS`.
    ///
    /// The storage sweeper runs every `STORAGE_SWEEP_INTERVAL_SECONDS` meanwhile, and the event
    /// dispatcher competes for its term (`EVENTS_DISPATCH`).
    ///
    /// Websockets are closed with 1001 as soon as the signal arrives, so clients reconnect to
    /// another instance (and recover what they miss) instead of waiting out the timeout.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        if let Some(hub) = self.hub {
            tokio::spawn(async move {
                stop_signal().await;
                tracing::info!("stopping: closing websockets");
                hub.shutdown();
            });
        }
        let sweeper = self.storage.and_then(|storage| {
            let every = storage.settings().sweep_interval?;
            let grace = storage.settings().sweep_grace;
            Some(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    if let Err(e) = storage.sweep(grace).await {
                        tracing::warn!(error = %e, "storage sweep failed; retrying later");
                    }
                }
            }))
        });
        let dispatcher = self
            .dispatcher
            .map(|dispatcher| tokio::spawn(dispatcher.run(std::future::pending())));
        let metrics = self.metrics.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let result = self.server.await;
        if let Some(sweeper) = sweeper {
            sweeper.abort();
        }
        if let Some(dispatcher) = dispatcher {
            dispatcher.abort();
        }
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        result
    }

    /// The port of the `/metrics` listener, when there is one.
    #[must_use]
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(_, port)| *port)
    }

    /// The realtime hub, when websockets are enabled.
    #[must_use]
    pub fn hub(&self) -> Option<&Hub> {
        self.hub.as_ref()
    }
}

/// SIGTERM or SIGINT, whichever comes first (actix listens for the same signals to stop).
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Application data every worker shares.
struct Shared {
    state: web::Data<AppState>,
    edge: web::Data<EdgeConfig>,
    known_routes: web::Data<KnownRoutes>,
}

fn build_app(
    shared: Shared,
    payload_limit: usize,
    cors: Cors,
    docs: Option<Bytes>,
    extra_routes: Option<RouteHook>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(shared.state)
        .app_data(shared.edge)
        .app_data(shared.known_routes)
        .app_data(web::PayloadConfig::new(payload_limit))
        .app_data(
            web::FormConfig::default()
                .limit(payload_limit)
                .error_handler(|e, _| {
                    ApiError::of_kind(ErrorKind::BadRequest, "invalid_form", e.to_string()).into()
                }),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::of_kind(ErrorKind::BadRequest, "invalid_query", e.to_string()).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|e, req| {
            // A literal route that a template also matches (`DELETE /users/me` against
            // `DELETE /users/{id}`) answers 405 like any other unsupported method.
            req.app_data::<web::Data<KnownRoutes>>()
                .and_then(|routes| routes.method_not_allowed(req.method(), req.path()))
                .unwrap_or_else(|| {
                    ApiError::of_kind(ErrorKind::NotFound, "not_found", e.to_string())
                })
                .into()
        }))
        // Outermost last: request context (id, client, headers, log) wraps CORS, which answers
        // preflights before the rate limiter counts anything.
        .wrap(from_fn(rate_limit::rate_limit))
        .wrap(cors)
        .wrap(from_fn(middleware::request_context))
        .into_utoipa_app()
        .configure(routes::register)
        .into_app()
        .configure(move |cfg| {
            if let Some(document) = docs {
                docs::register(cfg, document);
            }
            if let Some(hook) = extra_routes {
                hook(cfg);
            }
        })
        .default_service(web::to(fallback))
}

/// CORS from the settings: the listed origins only (or any origin, without credentials), the
/// methods and headers the API uses, and the response headers clients may read.
fn cors_for(settings: &CorsSettings) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-tenant-id"),
            HeaderName::from_static("x-api-key"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            header::RETRY_AFTER,
            HeaderName::from_static("ratelimit-limit"),
            HeaderName::from_static("ratelimit-remaining"),
            HeaderName::from_static("ratelimit-reset"),
            HeaderName::from_static("ratelimit-policy"),
        ])
        .max_age(600);
    if settings.allowed_origins.iter().any(|o| o == "*") {
        // Settings refuse `*` with credentials, so this never meets `supports_credentials`.
        cors = cors.allow_any_origin().send_wildcard();
    } else {
        for origin in &settings.allowed_origins {
            cors = cors.allowed_origin(origin);
        }
        if settings.allow_credentials {
            cors = cors.supports_credentials();
        }
    }
    cors
}
