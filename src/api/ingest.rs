//! `POST /api/v1/events`: the agents' ingestion endpoint.
//!
//! Body: a JSON array of events or NDJSON (`schemas/events.schema.json`), optionally gzip
//! (`Content-Encoding: gzip`). The reply comes only after the events are durable and
//! visible, and lists each event's sequence number and whether it was a re-send.
//!
//! Statuses: 200 stored (or all duplicates); 400 invalid (the message names event index and
//! field; nothing of the batch is stored); 401/403 token problems; 409 an id re-sent with a
//! different body; 413 a size limit (the message names the limit); 503 + `Retry-After`
//! when the write queue is full.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use serde::Serialize;

use super::metrics::METRICS;
use super::{AppState, Caller, Error};
use crate::event::validate;
use crate::log::Appended;

/// The reply to a successful ingest.
#[derive(Debug, Serialize)]
pub struct IngestReply {
    /// One entry per event, in request order.
    pub events: Vec<Appended>,
    /// Events newly stored by this request.
    pub stored: usize,
    /// Events that were already stored (re-sends).
    pub duplicates: usize,
}

/// Read the body within `limit` bytes, decompressing gzip if the client says so.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Error> {
    let too_large = |actual| Error::TooLarge {
        what: "the request body".into(),
        actual,
        limit: "max_body_bytes",
        limit_value: limit,
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > limit {
            return Err(too_large(len));
        }
    }
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit + 1))?;
    match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").to_ascii_lowercase())
        .as_deref()
    {
        None | Some("identity") => Ok(raw),
        Some("gzip") => {
            // Decompress at most limit + 1 bytes: a gzip bomb stops here.
            let mut out = Vec::with_capacity(raw.len() * 4);
            flate2::read::MultiGzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| Error::BadRequest(format!("body is not valid gzip: {e}")))?;
            if out.len() > limit {
                return Err(Error::TooLarge {
                    what: "the decompressed request body".into(),
                    actual: out.len(),
                    limit: "max_body_bytes",
                    limit_value: limit,
                });
            }
            Ok(out.into())
        }
        Some(other) => Err(Error::BadRequest(format!(
            "unsupported Content-Encoding {other:?} (use gzip or none)"
        ))),
    }
}

pub async fn post_events(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestReply>, Error> {
    let started = Instant::now();
    METRICS.requests.fetch_add(1, Ordering::Relaxed);
    caller.require_write()?;
    let config = &state.config;
    let body = read_body(&headers, body, config.max_body_bytes).await?;
    let values = validate::parse_body(&body)?;
    if values.is_empty() {
        return Err(Error::BadRequest(
            "the batch is empty: send at least one event".into(),
        ));
    }
    if values.len() > config.max_events_per_request {
        return Err(Error::TooLarge {
            what: "the number of events".into(),
            actual: values.len(),
            limit: "max_events_per_request",
            limit_value: config.max_events_per_request,
        });
    }
    if body.len() > config.max_event_bytes {
        // Only a body larger than the limit can hold an event larger than the limit.
        for (i, v) in values.iter().enumerate() {
            let size = serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
            if size > config.max_event_bytes {
                return Err(Error::TooLarge {
                    what: format!("events[{i}]"),
                    actual: size,
                    limit: "max_event_bytes",
                    limit_value: config.max_event_bytes,
                });
            }
        }
    }
    let events = validate::validate_batch(values, caller.0.deployment, &config.limits())?;
    let n = events.len();
    let appended = state.log.try_append(events).await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    METRICS
        .events_ingested
        .fetch_add((n - duplicates) as u64, Ordering::Relaxed);
    METRICS
        .duplicates
        .fetch_add(duplicates as u64, Ordering::Relaxed);
    METRICS
        .bytes_ingested
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    METRICS.batch_size.observe(n as f64);
    METRICS.ack_latency.observe(started.elapsed().as_secs_f64());
    Ok(Json(IngestReply {
        stored: n - duplicates,
        duplicates,
        events: appended,
    }))
}
