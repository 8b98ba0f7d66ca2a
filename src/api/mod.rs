//! The HTTP server: routes, shared state, authentication, serving and shutdown.
//!
//! | route | who | what |
//! |-------|-----|------|
//! | `GET /healthz` | anyone | the process is up |
//! | `GET /readyz` | anyone | the store is open and accepts writes |
//! | `GET /metrics` | anyone | Prometheus text |
//! | `POST /api/v1/events` | agent, admin | ingest ([`ingest`]) |
//! | `GET /api/v1/events` | any role | read the caller's deployment's log ([`read`]) |
//! | `GET /api/v1/export/{table}.parquet` | any role | Parquet export ([`export`]) |
//! | `/dagster-plus/...`, `GET /api/v1/compute-logs` | agent (`Dagster-Cloud-Api-Token`) | the Dagster+ storage API ([`dagster_plus`]) |
//! | `/api/v1/deployments`, `/api/v1/tokens` | admin | manage ([`admin`]) |
//! | `POST /graphql`, `GET /graphql` (GraphiQL, WebSocket) | any role | queries ([`graphql`]) |
//!
//! Every data route is scoped to the deployment of the caller's token. A request may name a
//! deployment in the `Assetlog-Deployment` header; naming another than the token's is 403.

pub mod admin;
pub mod dagster_plus;
pub mod error;
pub mod export;
pub mod graphql;
pub mod ingest;
pub mod metrics;
pub mod read;
pub mod tls;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::auth::{Principal, Role, Tokens};
use crate::config::Config;
use crate::log::Log;
pub use error::Error;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub log: Arc<Log>,
    pub tokens: Tokens,
    pub config: Arc<Config>,
    /// Set when shutdown begins: `/readyz` turns 503.
    pub draining: Arc<AtomicBool>,
    pub graphql: graphql::AssetlogSchema,
}

impl AppState {
    pub fn new(log: Arc<Log>, config: Config) -> AppState {
        AppState {
            tokens: Tokens::new(log.clone()),
            log,
            config: Arc::new(config),
            draining: Arc::new(AtomicBool::new(false)),
            graphql: graphql::schema(),
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .route(
            "/api/v1/events",
            post(ingest::post_events).get(read::get_events),
        )
        .route("/api/v1/export/{file}", get(export::get_table))
        .route(
            "/api/v1/deployments",
            post(admin::create_deployment).get(admin::list_deployments),
        )
        .route(
            "/api/v1/tokens",
            post(admin::create_token).get(admin::list_tokens),
        )
        .route("/api/v1/tokens/{id}", delete(admin::revoke_token))
        .route(
            "/graphql",
            post(graphql::graphql_post).get(graphql::graphql_get),
        )
        .route("/graphiql/assets/{file}", get(graphql::graphiql_asset))
        .merge(
            dagster_plus::routes().layer(axum::extract::DefaultBodyLimit::max(
                state.config.max_body_bytes,
            )),
        )
        .fallback(|| async { Error::NotFound("no such route".into()) })
        .with_state(state)
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn metrics_handler(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::METRICS.render(s.log.last_seq(), s.log.queued(), s.log.queue_capacity()),
    )
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl Caller {
    /// Refuse callers that may not write.
    pub fn require_write(&self) -> Result<(), Error> {
        if self.0.role.can_write() {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "a {} token cannot write events",
                self.0.role.as_str()
            )))
        }
    }

    pub fn require_admin(&self) -> Result<(), Error> {
        if self.0.role == Role::Admin {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this needs an admin token; this one is {}",
                self.0.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(Error::MissingToken)?;
        let secret = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(Error::MissingToken)?;
        let principal = state
            .tokens
            .authenticate(secret)
            .map_err(|e| Error::Internal(e.into()))?
            .ok_or(Error::BadToken)?;
        if let Some(named) = parts.headers.get("assetlog-deployment") {
            let named = named.to_str().unwrap_or("");
            if named != principal.deployment_name {
                return Err(Error::Forbidden(format!(
                    "this token belongs to deployment {:?}; it cannot touch deployment {named:?}",
                    principal.deployment_name
                )));
            }
        }
        Ok(Caller(principal))
    }
}

/// Open the store and serve until SIGTERM or SIGINT; then stop accepting, let queued appends
/// finish, flush, and return.
pub fn serve(config: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let log = crate::projection::open(
            &config.data_dir,
            crate::log::LogOptions {
                sync: config.sync,
                queue_capacity: config.queue_capacity,
                ..Default::default()
            },
            |seq, last| {
                if seq % 1_000_000 < 8192 || seq == last {
                    tracing::info!(seq, last, "updating views");
                }
            },
        )?;
        if let Some(path) = crate::auth::bootstrap(&log)? {
            tracing::info!(
                token_file = %path.display(),
                "new store: created deployment \"default\" and an admin token; use it as `Authorization: Bearer $(cat {})`",
                path.display()
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => {
                if !addr.ip().is_loopback() {
                    tracing::warn!(%addr, "serving plain HTTP on a non-loopback address: tokens travel in clear text; configure tls_cert and tls_key");
                }
                None
            }
        };
        tracing::info!(%addr, tls = tls.is_some(), data_dir = %config.data_dir.display(), "assetlog serving");
        let state = AppState::new(log.clone(), config);
        let draining = state.draining.clone();
        let app = router(state);
        let shutdown = async move {
            shutdown_signal().await;
            tracing::info!("shutdown: no new connections; finishing requests in flight");
            draining.store(true, Ordering::Relaxed);
        };
        match tls {
            Some(acceptor) => tls::serve(listener, acceptor, app, shutdown).await?,
            None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await?,
        }
        log.shutdown();
        tracing::info!(last_seq = log.last_seq(), "assetlog stopped");
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
