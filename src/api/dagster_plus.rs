//! The Dagster+ storage API over HTTP, under `/dagster-plus` (the client's `url` is
//! `http://host:port/dagster-plus`):
//!
//! | route | what |
//! |-------|------|
//! | `POST /dagster-plus/graphql` | the GraphQL operations of [`crate::dagster_plus::ops`] |
//! | `POST /dagster-plus/store_events` | a zlib-compressed serdes `StoreEventBatchRequest` in a multipart body |
//! | `GET /dagster-plus/gen_logs_url` | a URL on this server to upload one compute log to |
//! | `PUT /dagster-plus/compute_logs/{id}` | that upload (the client sends no credentials: the id is the capability) |
//! | `GET /api/v1/compute-logs?run_id=&step_key=&io_type=` | a stored compute log, native API (bearer token) |
//!
//! The credential is the `Dagster-Cloud-Api-Token` header (an assetlog token); a
//! `Dagster-Cloud-Deployment` header naming another deployment than the token's is refused.
//! Errors are GraphQL-shaped (`{"errors": [{"message"}]}`), which the client reports
//! without retrying; a full write queue is a 503 without such a body, which it retries with
//! the same `Idempotency-Key`.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::metrics::METRICS;
use super::{AppState, Caller};
use crate::auth::Principal;
use crate::dagster_plus::ops::{self, OpError};
use crate::dagster_plus::{operation_name, store::Registry};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dagster-plus/graphql", post(graphql))
        .route("/dagster-plus/store_events", post(store_events))
        .route("/dagster-plus/gen_logs_url", get(gen_logs_url))
        .route("/dagster-plus/compute_logs/{id}", put(upload))
        .route("/api/v1/compute-logs", get(read_compute_log))
}

fn gql_error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"errors": [{"message": message.into()}]})),
    )
        .into_response()
}

/// The caller, from `Dagster-Cloud-Api-Token` and `Dagster-Cloud-Deployment`.
fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, Box<Response>> {
    let Some(secret) = headers
        .get("dagster-cloud-api-token")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Box::new(gql_error(
            StatusCode::UNAUTHORIZED,
            "missing Dagster-Cloud-Api-Token header (an assetlog agent token)",
        )));
    };
    let principal = match state.tokens.authenticate(secret.trim()) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Box::new(gql_error(
                StatusCode::UNAUTHORIZED,
                "invalid or revoked Dagster-Cloud-Api-Token",
            )))
        }
        Err(e) => {
            tracing::error!(error = %e, "token lookup failed");
            return Err(Box::new(gql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )));
        }
    };
    if let Some(named) = headers.get("dagster-cloud-deployment") {
        let named = named.to_str().unwrap_or("");
        if named != principal.deployment_name {
            return Err(Box::new(gql_error(
                StatusCode::FORBIDDEN,
                format!(
                    "this token belongs to deployment {:?}; it cannot use deployment {named:?}",
                    principal.deployment_name
                ),
            )));
        }
    }
    Ok(principal)
}

fn is_write(op: &str) -> bool {
    op.starts_with("add")
        || op.starts_with("Add")
        || op.starts_with("Store")
        || op.contains("Mutation")
}

async fn graphql(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let Some(query) = request.get("query").and_then(Value::as_str) else {
        return gql_error(StatusCode::BAD_REQUEST, "the body has no \"query\" string");
    };
    let Some(op) = operation_name(query).map(str::to_string) else {
        return gql_error(
            StatusCode::BAD_REQUEST,
            "the query has no named operation (query NAME / mutation NAME)",
        );
    };
    if is_write(&op) && !principal.role.can_write() {
        return gql_error(
            StatusCode::FORBIDDEN,
            format!("a {} token cannot run {op}", principal.role.as_str()),
        );
    }
    let vars = request.get("variables").cloned().unwrap_or(Value::Null);
    let op2 = op.clone();
    let result = with_ctx(&state, &principal, &headers, move |cx| {
        ops::run(cx, &op2, &vars)
    })
    .await;
    METRICS
        .dagster_plus_operations
        .fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(Ok(data)) => Json(json!({"data": data})).into_response(),
        Ok(Err(e)) => op_error(&op, e),
        Err(e) => {
            tracing::error!(error = %e, op, "dagster+ operation panicked");
            gql_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Run `f` on a blocking thread against the operations' context of this request.
async fn with_ctx<T: Send + 'static>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    f: impl FnOnce(&ops::Ctx) -> Result<T, OpError> + Send + 'static,
) -> Result<Result<T, OpError>, tokio::task::JoinError> {
    let log = state.log.clone();
    let limits = state.config.limits();
    let dep = principal.deployment;
    let key = idempotency_key(headers);
    tokio::task::spawn_blocking(move || {
        f(&ops::Ctx {
            log: &log,
            dep,
            idempotency_key: key,
            limits,
        })
    })
    .await
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}

fn op_error(op: &str, e: OpError) -> Response {
    match e {
        OpError::Unsupported(_) | OpError::Invalid(_) => (
            StatusCode::OK,
            Json(json!({"errors": [{"message": format!("{op}: {e}")}]})),
        )
            .into_response(),
        OpError::Store(crate::log::Error::QueueFull { .. }) => {
            // No `errors` key: the client looks at the status and retries.
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "the write queue is full",
            )
                .into_response()
        }
        OpError::Store(e) => {
            let id = format!("{:016x}", rand::random::<u64>());
            tracing::error!(error = ?e, error_id = %id, op, "dagster+ operation failed");
            gql_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("internal error (id {id}); the server log has the details"),
            )
        }
    }
}

/// The zlib-compressed file part of a `multipart/form-data` body.
fn multipart_file(content_type: &str, body: &[u8]) -> Result<Vec<u8>, String> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .ok_or("Content-Type has no multipart boundary")?;
    let delim = format!("--{boundary}");
    let text = body;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let start = find(text, delim.as_bytes(), 0).ok_or("no multipart part")?;
    let headers_end = find(text, b"\r\n\r\n", start).ok_or("a part without headers")? + 4;
    let end =
        find(text, format!("\r\n{delim}").as_bytes(), headers_end).ok_or("an unterminated part")?;
    Ok(text[headers_end..end].to_vec())
}

async fn store_events(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if !principal.role.can_write() {
        return gql_error(StatusCode::FORBIDDEN, "this token cannot write events");
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let part = match multipart_file(ct, &body) {
        Ok(p) => p,
        Err(e) => return gql_error(StatusCode::BAD_REQUEST, format!("store_events: {e}")),
    };
    let mut text = Vec::new();
    let limit = state.config.max_body_bytes as u64;
    if let Err(e) = flate2::read::ZlibDecoder::new(part.as_slice())
        .take(limit + 1)
        .read_to_end(&mut text)
    {
        return gql_error(
            StatusCode::BAD_REQUEST,
            format!("store_events: not zlib data: {e}"),
        );
    }
    if text.len() as u64 > limit {
        return gql_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("store_events: more than max_body_bytes = {limit} after decompression"),
        );
    }
    let request: Value = match serde_json::from_slice(&text) {
        Ok(v) => v,
        Err(e) => {
            return gql_error(
                StatusCode::BAD_REQUEST,
                format!("store_events: not JSON: {e}"),
            )
        }
    };
    let Some(entries) = request
        .get("event_log_entries")
        .and_then(Value::as_array)
        .cloned()
    else {
        return gql_error(
            StatusCode::BAD_REQUEST,
            "store_events: expected a StoreEventBatchRequest with event_log_entries",
        );
    };
    let result = with_ctx(&state, &principal, &headers, move |cx| {
        ops::store(cx, entries)
    })
    .await;
    METRICS
        .dagster_plus_store_events
        .fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(Ok(_)) => Json(json!({"ok": true})).into_response(),
        Ok(Err(e)) => op_error("store_events", e),
        Err(e) => {
            tracing::error!(error = %e, "store_events panicked");
            gql_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// An upload `gen_logs_url` handed out: where its bytes go.
struct Pending {
    deployment: crate::event::DeploymentId,
    run_id: String,
    log_key: String,
    io_type: String,
    at: Instant,
}

fn pending() -> &'static Mutex<HashMap<String, Pending>> {
    static P: OnceLock<Mutex<HashMap<String, Pending>>> = OnceLock::new();
    P.get_or_init(|| Mutex::new(HashMap::new()))
}

/// How long an upload URL stays valid.
const UPLOAD_TTL: Duration = Duration::from_secs(3600);

async fn gen_logs_url(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let principal = match authenticate(&state, &headers) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut log_key = Vec::new();
    let mut params = HashMap::new();
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        if k == "log_key" {
            log_key.push(v);
        } else {
            params.insert(k.to_string(), v);
        }
    }
    let (Some(run_id), Some(io_type)) = (params.get("run_id"), params.get("io_type")) else {
        return gql_error(
            StatusCode::BAD_REQUEST,
            "gen_logs_url needs run_id and io_type",
        );
    };
    if io_type != "stdout" && io_type != "stderr" {
        return gql_error(StatusCode::BAD_REQUEST, "io_type must be stdout or stderr");
    }
    if state
        .config
        .dagster_plus_disable_compute_logs
        .contains(&principal.deployment_name)
    {
        return Json(json!({"skip_upload": true})).into_response();
    }
    let id = format!("{:032x}", rand::random::<u128>());
    {
        let mut p = pending().lock().unwrap_or_else(|e| e.into_inner());
        p.retain(|_, v| v.at.elapsed() < UPLOAD_TTL);
        p.insert(
            id.clone(),
            Pending {
                deployment: principal.deployment,
                run_id: run_id.clone(),
                log_key: log_key.last().cloned().unwrap_or_default(),
                io_type: io_type.clone(),
                at: Instant::now(),
            },
        );
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let scheme = if state.config.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    Json(json!({"url": format!("{scheme}://{host}/dagster-plus/compute_logs/{id}")}))
        .into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or(""),
                    16,
                ) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn upload(State(state): State<AppState>, Path(id): Path<String>, body: Body) -> Response {
    let Some(p) = pending()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id)
        .filter(|p| p.at.elapsed() < UPLOAD_TTL)
    else {
        return (StatusCode::NOT_FOUND, "no such upload (expired or used)").into_response();
    };
    let bytes = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "a compute log over max_body_bytes = {}",
                    state.config.max_body_bytes
                ),
            )
                .into_response()
        }
    };
    let log = state.log.clone();
    let r = tokio::task::spawn_blocking(move || {
        Registry::new(&log).put_compute_log(p.deployment, &p.run_id, &p.log_key, &p.io_type, &bytes)
    })
    .await;
    match r {
        Ok(Ok(())) => {
            METRICS
                .dagster_plus_log_uploads
                .fetch_add(1, Ordering::Relaxed);
            StatusCode::OK.into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "storing a compute log failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "storing a compute log panicked");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeLogQuery {
    run_id: String,
    step_key: String,
    io_type: Option<String>,
}

/// A compute log by run and step: the `LOGS_CAPTURED` event of the run that lists the step
/// names the log key its upload was stored under.
async fn read_compute_log(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<ComputeLogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, super::Error> {
    let Query(q) = query.map_err(|e| super::Error::BadRequest(e.body_text()))?;
    let io = q.io_type.unwrap_or_else(|| "stdout".into());
    if io != "stdout" && io != "stderr" {
        return Err(super::Error::BadRequest(
            "io_type must be stdout or stderr".into(),
        ));
    }
    let dep = caller.0.deployment;
    let log = state.log.clone();
    let found =
        tokio::task::spawn_blocking(move || -> Result<Option<Vec<u8>>, crate::log::Error> {
            for (_, ev) in log.read_run(dep, &q.run_id, 1, usize::MAX)? {
                let Some(raw) = &ev.envelope.raw else {
                    continue;
                };
                let Ok(entry) = serde_json::from_slice::<Value>(raw) else {
                    continue;
                };
                let Some(data) = entry
                    .get("dagster_event")
                    .filter(|d| {
                        d.get("event_type_value").and_then(Value::as_str) == Some("LOGS_CAPTURED")
                    })
                    .and_then(|d| d.get("event_specific_data"))
                else {
                    continue;
                };
                let has_step = data
                    .get("step_keys")
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.iter().any(|k| k.as_str() == Some(q.step_key.as_str())));
                if let (true, Some(key)) = (has_step, data.get("log_key").and_then(Value::as_str)) {
                    if let Some(bytes) =
                        Registry::new(&log).compute_log(dep, &q.run_id, key, &io)?
                    {
                        return Ok(Some(bytes));
                    }
                }
            }
            Ok(None)
        })
        .await
        .map_err(|e| super::Error::Internal(e.into()))??;
    match found {
        Some(bytes) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
        }
        None => Err(super::Error::NotFound(
            "no compute log for that run, step and io_type".into(),
        )),
    }
}
