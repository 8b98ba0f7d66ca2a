//! GraphQL over the views at `/graphql`: POST for queries, GET for GraphiQL, WebSocket
//! (`graphql-transport-ws`) for subscriptions. Every request runs on one RocksDB snapshot
//! of the caller's deployment; the log position it is consistent at is the `logPosition`
//! field and the `logPosition` response extension.
//!
//! Limits: query depth ([`MAX_DEPTH`]), complexity ([`MAX_COMPLEXITY`]) and page size
//! ([`MAX_PAGE`]), each a GraphQL error naming the limit.

pub mod types;

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{
    Context, Data, EmptyMutation, InputObject, Object, Result, Schema, Subscription,
};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::response::{Html, IntoResponse, Response};
use futures_util::Stream;

use super::{AppState, Caller};
use crate::auth::Principal;
use crate::event::{AssetKey, DeploymentId, Event, Seq};
use crate::log::Log;
use crate::projection::{self, runs, OwnedReader, Reader};
use types::*;

pub const MAX_DEPTH: usize = 16;
pub const MAX_COMPLEXITY: usize = 20_000;
pub const MAX_PAGE: usize = 1000;

pub type AssetlogSchema = Schema<Query, EmptyMutation, Subscription>;

/// Build the schema (also what `schemas/schema.graphql` is generated from).
pub fn schema() -> AssetlogSchema {
    Schema::build(Query, EmptyMutation, Subscription)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// Per-request context: one snapshot, one deployment, one event loader.
pub struct Ctx {
    reader: Arc<OwnedReader>,
    log: Arc<Log>,
    events: DataLoader<EventLoader>,
}

impl Ctx {
    pub fn new(log: Arc<Log>, deployment: DeploymentId) -> Ctx {
        let reader = Arc::new(OwnedReader::new(log.clone(), deployment));
        Ctx {
            events: DataLoader::new(
                EventLoader {
                    reader: reader.clone(),
                },
                tokio::spawn,
            ),
            reader,
            log,
        }
    }

    pub fn reader(&self) -> &Reader<'_> {
        self.reader.reader()
    }

    pub fn deployment(&self) -> DeploymentId {
        self.reader.reader().deployment
    }

    pub fn at_seq(&self) -> Seq {
        self.reader.reader().at_seq
    }

    pub fn log(&self) -> &Log {
        &self.log
    }

    /// One event by seq, batched with the other loads of the same request.
    pub async fn event(&self, seq: Seq) -> Result<Arc<Event>> {
        self.events
            .load_one(seq)
            .await?
            .ok_or_else(|| async_graphql::Error::new(format!("no event at storage id {seq}")))
    }
}

pub fn ctx<'a>(c: &'a Context<'_>) -> &'a Ctx {
    c.data_unchecked::<Ctx>()
}

/// Check a page size.
pub fn page_limit(limit: usize) -> Result<usize> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(async_graphql::Error::new(format!(
            "limit must be between 1 and {MAX_PAGE} (the page size limit), not {limit}"
        )));
    }
    Ok(limit)
}

/// Loads events from the log by seq with one multi-get per batch.
pub struct EventLoader {
    reader: Arc<OwnedReader>,
}

impl Loader<Seq> for EventLoader {
    type Value = Arc<Event>;
    type Error = Arc<crate::log::Error>;

    async fn load(
        &self,
        keys: &[Seq],
    ) -> std::result::Result<HashMap<Seq, Self::Value>, Self::Error> {
        let events = self.reader.reader().events(keys).map_err(Arc::new)?;
        let dep = self.reader.reader().deployment;
        Ok(keys
            .iter()
            .copied()
            .zip(events)
            // Views only point at their own deployment's events; this is the last guard.
            .filter(|(_, e)| e.envelope.deployment == dep)
            .map(|(k, e)| (k, Arc::new(e)))
            .collect())
    }
}

#[derive(InputObject, Default)]
pub struct TagInput {
    pub key: String,
    pub value: String,
}

#[derive(InputObject, Default)]
pub struct RunsFilter {
    pub statuses: Option<Vec<RunStatus>>,
    pub job_name: Option<String>,
    pub tags: Option<Vec<TagInput>>,
    /// Unix seconds.
    pub created_after: Option<f64>,
    pub created_before: Option<f64>,
    pub backfill_id: Option<String>,
}

#[derive(async_graphql::SimpleObject)]
pub struct AssetConnection {
    pub nodes: Vec<Asset>,
    /// Pass as `cursor` for the next page (the last asset's key as `a/b/c` JSON array).
    pub cursor: Option<String>,
    pub has_more: bool,
}

#[derive(async_graphql::SimpleObject)]
pub struct RunConnection {
    pub nodes: Vec<Run>,
    /// Pass as `cursor` for the next page (the last run's id).
    pub cursor: Option<String>,
    pub has_more: bool,
}

pub struct Query;

#[Object]
impl Query {
    /// The log position this response is consistent at.
    async fn log_position(&self, c: &Context<'_>) -> u64 {
        ctx(c).at_seq()
    }

    /// The asset catalog in key order, filtered; walk it with `cursor`.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn assets(
        &self,
        c: &Context<'_>,
        prefix: Option<Vec<String>>,
        group: Option<String>,
        owner: Option<String>,
        tag: Option<TagInput>,
        kind: Option<String>,
        #[graphql(desc = "Only assets with (true) or without (false) a failing check")]
        has_failing_check: Option<bool>,
        #[graphql(desc = "Only assets not materialized since this Unix time")] stale_since: Option<
            f64,
        >,
        cursor: Option<String>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<AssetConnection> {
        let cx = ctx(c);
        let limit = page_limit(limit)?;
        let filter = projection::assets::AssetFilter {
            prefix: prefix.unwrap_or_default(),
            group,
            owner,
            tag: tag.map(|t| (t.key, t.value)),
            kind,
            include_wiped: false,
        };
        let cursor_key = match cursor {
            Some(c) => {
                Some(AssetKey(serde_json::from_str(&c).map_err(|_| {
                    async_graphql::Error::new(format!("bad cursor {c:?}"))
                })?))
            }
            None => None,
        };
        let stale_us = stale_since.map(|s| (s * 1e6) as i64);
        let mut nodes = Vec::new();
        let mut next = cursor_key;
        let mut has_more = false;
        'pages: loop {
            let page = projection::assets::list(
                cx.reader(),
                cx.deployment(),
                &filter,
                next.as_ref(),
                limit + 1,
            )?;
            let exhausted = page.len() <= limit;
            for a in page {
                next = Some(a.key.clone());
                let stale_ok = stale_us.is_none_or(|t| {
                    a.latest_materialization
                        .as_ref()
                        .is_none_or(|m| m.timestamp_us < t)
                });
                let check_ok = match has_failing_check {
                    None => true,
                    Some(want) => failing_check(cx, &a.key)? == want,
                };
                if stale_ok && check_ok {
                    if nodes.len() == limit {
                        has_more = true;
                        break 'pages;
                    }
                    nodes.push(Asset(a));
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(AssetConnection {
            cursor: nodes
                .last()
                .map(|a| serde_json::to_string(&a.0.key.0).unwrap_or_default()),
            has_more,
            nodes,
        })
    }

    /// One asset by key.
    async fn asset(&self, c: &Context<'_>, key: Vec<String>) -> Result<Option<Asset>> {
        let cx = ctx(c);
        Ok(projection::assets::by_key(cx.reader(), cx.deployment(), &AssetKey(key))?.map(Asset))
    }

    /// Runs, newest first, filtered; walk them with `cursor`.
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn runs(
        &self,
        c: &Context<'_>,
        filter: Option<RunsFilter>,
        cursor: Option<String>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<RunConnection> {
        let cx = ctx(c);
        let limit = page_limit(limit)?;
        let f = filter.unwrap_or_default();
        let filter = runs::RunFilter {
            statuses: f
                .statuses
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            job_name: f.job_name,
            tags: f
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect(),
            created_after_us: f.created_after.map(|s| (s * 1e6) as i64),
            created_before_us: f.created_before.map(|s| (s * 1e6) as i64),
            backfill_id: f.backfill_id,
        };
        let mut rows = runs::list(
            cx.reader(),
            cx.deployment(),
            &filter,
            cursor.as_deref(),
            limit + 1,
        )?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Ok(RunConnection {
            cursor: rows.last().map(|r| r.run_id.clone()),
            has_more,
            nodes: rows.into_iter().map(Run).collect(),
        })
    }

    async fn run(&self, c: &Context<'_>, run_id: String) -> Result<Option<Run>> {
        let cx = ctx(c);
        Ok(runs::get(cx.reader(), cx.deployment(), &run_id)?.map(Run))
    }

    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn backfills(
        &self,
        c: &Context<'_>,
        cursor: Option<String>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<Vec<Backfill>> {
        let cx = ctx(c);
        let limit = page_limit(limit)?;
        Ok(
            projection::backfills::list(cx.reader(), cx.deployment(), cursor.as_deref(), limit)?
                .into_iter()
                .map(Backfill)
                .collect(),
        )
    }

    async fn backfill(&self, c: &Context<'_>, id: String) -> Result<Option<Backfill>> {
        let cx = ctx(c);
        Ok(projection::backfills::get(cx.reader(), cx.deployment(), &id)?.map(Backfill))
    }
}

fn failing_check(cx: &Ctx, key: &AssetKey) -> Result<bool> {
    for (name, _) in projection::checks::of_asset(cx.reader(), cx.deployment(), key)? {
        if let Some(e) = projection::checks::latest(cx.reader(), cx.deployment(), key, &name)? {
            if matches!(
                projection::checks::resolve(cx.reader(), cx.deployment(), &e)?,
                projection::checks::ResolvedStatus::Failed
                    | projection::checks::ResolvedStatus::ExecutionFailed
            ) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// An asset event seen by a subscription.
#[derive(async_graphql::SimpleObject, Clone)]
pub struct AssetEventNotification {
    pub storage_id: u64,
    #[graphql(name = "type")]
    pub event_type: String,
    pub asset_key: Vec<String>,
    pub partition: Option<String>,
    pub run_id: Option<String>,
    pub timestamp: f64,
}

pub struct Subscription;

/// The subscriber's log and deployment, from its token.
pub struct SubscriptionScope {
    pub log: Arc<Log>,
    pub deployment: DeploymentId,
}

#[Subscription]
impl Subscription {
    /// Events of one run, from `afterCursor` on (stored ones first, then live): a client
    /// that reconnects with the last `storageId` it saw misses nothing.
    async fn run_events(
        &self,
        c: &Context<'_>,
        run_id: String,
        after_cursor: Option<u64>,
    ) -> Result<impl Stream<Item = RunEvent>> {
        let scope = c.data::<SubscriptionScope>()?;
        let (log, dep) = (scope.log.clone(), scope.deployment);
        let mut from = after_cursor.map(|s| s + 1).unwrap_or(1);
        let mut tail = log.subscribe();
        Ok(async_stream_lite(move |tx| async move {
            loop {
                let chunk = match log.read_run(dep, &run_id, from, 1000) {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let n = chunk.len();
                for (seq, ev) in chunk {
                    from = seq + 1;
                    if tx.send(RunEvent::new(seq, ev)).await.is_err() {
                        return;
                    }
                }
                if n == 1000 {
                    continue;
                }
                if tail.changed().await.is_err() {
                    return;
                }
            }
        }))
    }

    /// Asset events (materializations, observations, planned, failed, wipes, checks) of
    /// assets under `prefix`, from `afterCursor` on.
    async fn asset_events(
        &self,
        c: &Context<'_>,
        prefix: Option<Vec<String>>,
        after_cursor: Option<u64>,
    ) -> Result<impl Stream<Item = AssetEventNotification>> {
        let scope = c.data::<SubscriptionScope>()?;
        let (log, dep) = (scope.log.clone(), scope.deployment);
        let prefix = prefix.unwrap_or_default();
        let mut from = after_cursor
            .map(|s| s + 1)
            .unwrap_or_else(|| log.last_seq() + 1);
        let mut tail = log.subscribe();
        Ok(async_stream_lite(move |tx| async move {
            loop {
                let chunk = match log.read_deployment(dep, from, 1000) {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let n = chunk.len();
                for (seq, ev) in chunk {
                    from = seq + 1;
                    let Some(key) = ev.body.asset_key() else {
                        continue;
                    };
                    if !key.0.starts_with(&prefix) {
                        continue;
                    }
                    let re = RunEvent::new(seq, ev.clone());
                    let note = AssetEventNotification {
                        storage_id: seq,
                        event_type: re.event_type,
                        asset_key: key.0.clone(),
                        partition: match &ev.body {
                            crate::event::EventBody::AssetMaterialization(a)
                            | crate::event::EventBody::AssetObservation(a) => a.partition.clone(),
                            _ => None,
                        },
                        run_id: ev.envelope.run_id.clone(),
                        timestamp: ev.envelope.timestamp_us as f64 / 1e6,
                    };
                    if tx.send(note).await.is_err() {
                        return;
                    }
                }
                if n == 1000 {
                    continue;
                }
                if tail.changed().await.is_err() {
                    return;
                }
            }
        }))
    }
}

/// A stream fed by a task through a small bounded channel (a slow subscriber slows its own
/// producer, never the server).
fn async_stream_lite<T: Send + 'static, F, Fut>(f: F) -> impl Stream<Item = T>
where
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// `POST /graphql`.
pub async fn graphql_post(
    State(state): State<AppState>,
    caller: Caller,
    req: GraphQLRequest,
) -> GraphQLResponse {
    let cx = Ctx::new(state.log.clone(), caller.0.deployment);
    let at = cx.at_seq();
    let mut resp = state
        .graphql
        .execute(req.into_inner().data(cx).data(SubscriptionScope {
            log: state.log.clone(),
            deployment: caller.0.deployment,
        }))
        .await;
    resp.extensions
        .insert("logPosition".into(), async_graphql::Value::from(at));
    for e in &mut resp.errors {
        // Name the limit in async-graphql's own limit errors.
        if e.message.starts_with("Query is nested too deep") {
            e.message = format!("query is nested too deep: the depth limit is {MAX_DEPTH}");
        } else if e.message.starts_with("Query is too complex") {
            e.message = format!("query is too complex: the complexity limit is {MAX_COMPLEXITY}");
        }
    }
    resp.into()
}

/// `GET /graphql`: GraphiQL, or a WebSocket upgrade for subscriptions.
pub async fn graphql_get(
    State(state): State<AppState>,
    protocol: Result<
        GraphQLProtocol,
        <GraphQLProtocol as axum::extract::FromRequestParts<AppState>>::Rejection,
    >,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match (ws, protocol) {
        (Ok(ws), Ok(protocol)) => {
            let schema = state.graphql.clone();
            let tokens = state.tokens.clone();
            let log = state.log.clone();
            ws.protocols(ALL_WEBSOCKET_PROTOCOLS)
                .on_upgrade(move |socket| {
                    GraphQLWebSocket::new(socket, schema, protocol)
                        .on_connection_init(move |payload| async move {
                            let principal = authenticate_init(&tokens, &payload)?;
                            let mut data = Data::default();
                            data.insert(SubscriptionScope {
                                log: log.clone(),
                                deployment: principal.deployment,
                            });
                            data.insert(Ctx::new(log, principal.deployment));
                            Ok(data)
                        })
                        .serve()
                })
                .into_response()
        }
        _ => Html(include_str!("graphiql/index.html")).into_response(),
    }
}

/// `GET /graphiql/assets/{file}`: GraphiQL's scripts, vendored so the page works without
/// internet access (versions and licenses in `graphiql/LICENSES.txt`).
pub async fn graphiql_asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (
            include_bytes!("graphiql/graphiql.min.js"),
            "text/javascript",
        ),
        "graphiql.min.css" => (include_bytes!("graphiql/graphiql.min.css"), "text/css"),
        "react.production.min.js" => (
            include_bytes!("graphiql/react.production.min.js"),
            "text/javascript",
        ),
        "react-dom.production.min.js" => (
            include_bytes!("graphiql/react-dom.production.min.js"),
            "text/javascript",
        ),
        _ => return super::Error::NotFound(format!("no asset {file:?}")).into_response(),
    };
    (
        [
            (axum::http::header::CONTENT_TYPE, kind),
            (axum::http::header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// The token of a WebSocket connection: `{"Authorization": "Bearer ..."}` in the
/// `connection_init` payload.
fn authenticate_init(
    tokens: &crate::auth::Tokens,
    payload: &serde_json::Value,
) -> Result<Principal> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(|v| v.as_str())
        .ok_or_else(|| {
            async_graphql::Error::new(
                "connection_init needs {\"Authorization\": \"Bearer <token>\"}",
            )
        })?;
    let secret = header.strip_prefix("Bearer ").unwrap_or(header).trim();
    tokens
        .authenticate(secret)
        .map_err(|_| async_graphql::Error::new("internal error"))?
        .ok_or_else(|| async_graphql::Error::new("invalid or revoked token"))
}
