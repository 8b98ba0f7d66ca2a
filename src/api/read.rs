//! `GET /api/v1/events`: read the caller's deployment's log, in sequence order.
//!
//! Query: `from` (first seq, default 1), `limit` (default 1000, at most 10000), `run_id`
//! (only that run). The reply's `next_from` continues the walk.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AppState, Caller, Error};
use crate::event::json::to_json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub from: Option<u64>,
    pub limit: Option<usize>,
    pub run_id: Option<String>,
}

pub const MAX_PAGE: usize = 10_000;

pub async fn get_events(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Error> {
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    let limit = q.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Error::BadRequest(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        )));
    }
    let from = q.from.unwrap_or(1).max(1);
    let dep = caller.0.deployment;
    let log = state.log.clone();
    let events = tokio::task::spawn_blocking(move || match &q.run_id {
        Some(run) => log.read_run(dep, run, from, limit),
        None => log.read_deployment(dep, from, limit),
    })
    .await
    .map_err(|e| Error::Internal(e.into()))??;
    let next_from = events.last().map(|(s, _)| s + 1).unwrap_or(from);
    let events: Vec<Value> = events
        .iter()
        .map(|(seq, ev)| {
            let mut v = to_json(ev);
            v["seq"] = json!(seq);
            v
        })
        .collect();
    Ok(Json(json!({"events": events, "next_from": next_from})))
}
