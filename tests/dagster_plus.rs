//! A real Dagster process (the PyPI packages `dagster` and `dagster-cloud`, installed by
//! `tools/test` into `.venv-dagster`) uses assetlog as its Dagster+ control plane's storage:
//! `materialize()` and `dagster api execute_run` (a run worker), with event batching and the
//! `/store_events` transport, and through a proxy that drops responses after they were
//! committed. Every fact Dagster's own instance API reads back is compared with the same
//! workload run on Dagster's default SQLite storage (`tests/clients/dagster_workload.py`);
//! the native GraphQL API must show the same facts.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use common::{client, data, metric, token_for, Server};
use serde_json::{json, Value};

const WORKLOAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/dagster_workload.py"
);

/// The Python with `dagster` and `dagster-cloud` (`ASSETLOG_DAGSTER_PYTHON` overrides it).
fn python() -> PathBuf {
    std::env::var_os("ASSETLOG_DAGSTER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-dagster/bin/python"))
}

fn workload(args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(WORKLOAD)
        .args(args)
        .output()
        .expect("run .venv-dagster/bin/python (tools/test installs dagster and dagster-cloud)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "dagster_workload.py {args:?} failed:\n{text}"
    );
    text
}

/// Run `mode` on a fresh home and return the facts file.
fn run(home: &Path, mode: &str, flags: &[&str]) -> PathBuf {
    let out = home.join("facts.json");
    let mut args = vec![
        "run",
        "--home",
        home.to_str().unwrap(),
        "--mode",
        mode,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    workload(&args);
    out
}

fn sqlite_home(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("dagster.yaml"), "telemetry:\n  enabled: false\n").unwrap();
    dir.to_path_buf()
}

fn assetlog_home(dir: &Path, url: &str, token: &str, deployment: &str, flags: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut args = vec![
        "yaml",
        "--home",
        dir.to_str().unwrap(),
        "--url",
        url,
        "--token",
        token,
        "--deployment",
        deployment,
    ];
    args.extend_from_slice(flags);
    workload(&args);
    dir.to_path_buf()
}

/// Compare two facts files; the only facts left out are those that depend on the storage's
/// declared capabilities (`--storage-neutral`) and `get_asset_check_execution_history`,
/// which `dagster-cloud` 1.13.27 itself does not implement (it raises before any request).
fn compare(sqlite: &Path, assetlog: &Path) {
    workload(&[
        "compare",
        sqlite.to_str().unwrap(),
        assetlog.to_str().unwrap(),
        "--storage-neutral",
        "--ignore",
        "event_log_storage.get_asset_check_execution_history",
    ]);
}

/// What the native views say about the `materialize` workload of one deployment.
async fn native_views_agree(server: &Server, token: &str) {
    let d = data(
        server,
        token,
        r#"{ orders: asset(key: ["shop", "orders"]) {
               rowCounts { value }
               tableSchema { schema { columns { name type } } }
               columnLineage { columnName columnDeps { assetKey columnName } }
               checks { name latestExecution { status severity } } }
             daily: asset(key: ["shop", "daily_sales"]) { partitionStats { numMaterialized } }
             runs(limit: 100) { nodes { runId status partition } } }"#,
        json!({}),
    )
    .await;
    let orders = &d["orders"];
    assert_eq!(
        orders["rowCounts"].as_array().unwrap().last().unwrap()["value"],
        json!(5.0)
    );
    let columns: Vec<&str> = orders["tableSchema"]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["order_id", "customer", "amount"]);
    let amount = orders["columnLineage"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["columnName"] == "amount")
        .expect("column lineage of amount");
    assert_eq!(amount["columnDeps"][0]["columnName"], "amount_cents");
    let checks: Vec<(String, String)> = orders["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["latestExecution"]["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        checks.contains(&("orders_ids_unique".into(), "FAILED".into())),
        "{checks:?}"
    );
    assert!(
        checks.contains(&("orders_not_empty".into(), "SUCCEEDED".into())),
        "{checks:?}"
    );
    assert_eq!(d["daily"]["partitionStats"]["numMaterialized"], 3);
    let statuses: Vec<&str> = d["runs"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "FAILURE").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "SUCCESS").count(),
        4,
        "{statuses:?}"
    );
}

/// The Parquet export of the deployment holds Dagster's materializations, typed.
async fn parquet_has_the_materializations(server: &Server, token: &str) {
    use arrow_array::{Array, Int64Array, StringArray};
    let bytes = client()
        .get(server.url("/api/v1/export/materializations.parquet"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let keys = b.column_by_name("asset_key_str").unwrap();
        let keys = keys.as_any().downcast_ref::<StringArray>().unwrap();
        let counts = b.column_by_name("row_count").unwrap();
        let counts = counts.as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            rows.push((
                keys.value(i).to_string(),
                (!counts.is_null(i)).then(|| counts.value(i)),
            ));
        }
    }
    // raw_orders, orders, orders_summary, three daily_sales partitions, and the runless
    // materialization the workload reports.
    assert!(rows.contains(&("shop/orders".into(), Some(5))), "{rows:?}");
    assert_eq!(
        rows.iter().filter(|(k, _)| k == "shop/daily_sales").count(),
        3,
        "{rows:?}"
    );
}

/// Forwards everything to assetlog, but answers the first `drop` event writes with a 503
/// (no JSON body, so the client retries) after assetlog has committed them: a response
/// lost on the way back.
#[derive(Clone)]
struct Proxy {
    target: String,
    drop: Arc<AtomicUsize>,
}

async fn forward(
    State(p): State<Proxy>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let url = format!(
        "{}{}",
        p.target,
        uri.path_and_query().map_or("/", |x| x.as_str())
    );
    let mut req = client().request(method, url).body(body);
    for (k, v) in &headers {
        if k != "host" && k != "content-length" {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let write = headers.contains_key("x-event-write");
    if write
        && status.is_success()
        && p.drop
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "dropped after commit").into_response();
    }
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

#[tokio::test(flavor = "multi_thread")]
async fn dagster_reads_back_what_it_wrote_as_on_its_own_storage() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let url = server.url("/dagster-plus");

    // Dagster's own storage, the reference.
    let sqlite_materialize = run(
        &sqlite_home(&tmp.path().join("sqlite-m")),
        "materialize",
        &[],
    );
    let sqlite_worker = run(
        &sqlite_home(&tmp.path().join("sqlite-w")),
        "run_worker",
        &[],
    );

    // 1. materialize(), one StoreEvent per event.
    let (agent, _) = token_for(&server, "dp-materialize", "agent").await;
    let home = assetlog_home(&tmp.path().join("m"), &url, &agent, "dp-materialize", &[]);
    let facts = run(&home, "materialize", &[]);
    compare(&sqlite_materialize, &facts);
    native_views_agree(&server, &agent).await;
    parquet_has_the_materializations(&server, &agent).await;

    // 2. A run worker (`dagster api execute_run`, step processes), with event batching and
    //    the `/store_events` transport.
    let (agent, _) = token_for(&server, "dp-worker", "agent").await;
    let flags = ["--batch", "100", "--http"];
    let home = assetlog_home(&tmp.path().join("w"), &url, &agent, "dp-worker", &flags);
    let facts = run(&home, "run_worker", &flags);
    compare(&sqlite_worker, &facts);
    assert!(metric(&server, "assetlog_dagster_plus_store_events_requests_total").await > 0);
    assert!(metric(&server, "assetlog_dagster_plus_compute_log_uploads_total").await > 0);

    // Compute logs: what the steps printed, by run and step, through the native API.
    let runs = data(
        &server,
        &agent,
        "{ runs(limit: 100) { nodes { runId } } }",
        json!({}),
    )
    .await;
    let mut found = false;
    for r in runs["runs"]["nodes"].as_array().unwrap() {
        let resp = client()
            .get(server.url(&format!(
                "/api/v1/compute-logs?run_id={}&step_key=shop__raw_orders&io_type=stderr",
                r["runId"].as_str().unwrap()
            )))
            .bearer_auth(&agent)
            .send()
            .await
            .unwrap();
        if resp.status() == 200
            && resp
                .text()
                .await
                .unwrap()
                .contains("generated 5 raw orders")
        {
            found = true;
        }
    }
    assert!(
        found,
        "no run has the stderr of shop__raw_orders with its log line"
    );

    // 3. Responses lost after commit: the client retries with the same Idempotency-Key and
    //    nothing is stored twice (every per-run event count equals SQLite's).
    let proxy = Proxy {
        target: server.base.clone(),
        drop: Arc::new(AtomicUsize::new(3)),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}/dagster-plus", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (agent, _) = token_for(&server, "dp-retry", "agent").await;
    let home = assetlog_home(&tmp.path().join("r"), &proxy_url, &agent, "dp-retry", &[]);
    let facts = tokio::task::spawn_blocking(move || run(&home, "materialize", &[]))
        .await
        .unwrap();
    assert_eq!(
        proxy.drop.load(Ordering::SeqCst),
        0,
        "the proxy dropped 3 responses"
    );
    compare(&sqlite_materialize, &facts);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_and_unknown_operations_get_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(
        &tmp.path().join("data"),
        &["--dagster-plus-disable-compute-logs", "quiet"],
    );
    let (agent, _) = token_for(&server, "prod", "agent").await;
    let (viewer, _) = token_for(&server, "prod", "viewer").await;
    let (quiet, _) = token_for(&server, "quiet", "agent").await;

    // Compute-log uploads: a one-time URL on assetlog; none for a deployment that opted out.
    let gen = |token: &str| {
        client()
            .get(server.url("/dagster-plus/gen_logs_url?log_key=r1&log_key=compute_logs&log_key=abc&io_type=stdout&size_bytes=3&run_id=r1&key=abc&method=PUT"))
            .header("Dagster-Cloud-Api-Token", token)
            .send()
    };
    let v: Value = gen(&quiet).await.unwrap().json().await.unwrap();
    assert_eq!(v, json!({"skip_upload": true}));
    let v: Value = gen(&agent).await.unwrap().json().await.unwrap();
    let upload = v["url"].as_str().unwrap().to_string();
    let put = |url: String| client().put(url).body("hi\n").send();
    assert_eq!(put(upload.clone()).await.unwrap().status(), 200);
    assert_eq!(
        put(upload).await.unwrap().status(),
        404,
        "an upload URL is good once"
    );
    let post = |token: Option<&str>, deployment: &str, query: &str| {
        let mut r = client()
            .post(server.url("/dagster-plus/graphql"))
            .header("Dagster-Cloud-Deployment", deployment)
            .json(&json!({"query": query, "variables": {}}));
        if let Some(t) = token {
            r = r.header("Dagster-Cloud-Api-Token", t);
        }
        r.send()
    };
    let r = post(None, "prod", "query Secrets { scopedSecrets }")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("Dagster-Cloud-Api-Token"));
    let r = post(Some("nope"), "prod", "query Secrets { x }")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = post(Some(&agent), "other", "query Secrets { x }")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(Some(&viewer), "prod", "mutation StoreEvent { x }")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = post(Some(&agent), "prod", "query getRunPartitionData { x }")
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let msg = v["errors"][0]["message"].as_str().unwrap();
    assert!(
        msg.contains("getRunPartitionData") && msg.contains("does not implement"),
        "{msg}"
    );
    let r = post(Some(&agent), "prod", "query Secrets { x }")
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"data": {"scopedSecrets": []}}));

    // An event of a class assetlog does not know is stored and handed back unchanged.
    let novel = json!({"query": "mutation StoreEvent($eventRecord: EventLogEntryInput!) { eventLogs { StoreEvent(eventRecord: $eventRecord) { ok } } }",
        "variables": {"eventRecord": {"errorInfo": null, "level": 20, "userMessage": "",
            "runId": "r2", "timestamp": 1795722311.25, "stepKey": null, "pipelineName": "job",
            "dagsterEvent": {"eventTypeValue": "FANCY_NEW_EVENT", "pipelineName": "job",
                "stepHandleKey": null, "solidHandleId": null, "stepKindValue": null,
                "loggingTags": "{}", "message": null, "pid": 7, "stepKey": null,
                "eventSpecificData": "{\"__class__\": \"FancyNewData\", \"answer\": 42}"}}}});
    let r = client()
        .post(server.url("/dagster-plus/graphql"))
        .header("Dagster-Cloud-Api-Token", &agent)
        .json(&novel)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(server.url("/dagster-plus/graphql"))
        .header("Dagster-Cloud-Api-Token", &agent)
        .json(
            &json!({"query": "query getRecordsForRun($runId: String!) { x }",
                       "variables": {"runId": "r2"}}),
        )
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let entry = &v["data"]["eventLogs"]["getRecordsForRun"]["records"][0]["eventLogEntry"];
    let de: Value = serde_json::from_str(entry["dagsterEvent"].as_str().unwrap()).unwrap();
    assert_eq!(de["event_type_value"], "FANCY_NEW_EVENT");
    assert_eq!(
        de["event_specific_data"],
        json!({"__class__": "FancyNewData", "answer": 42})
    );
    assert_eq!(de["pid"], 7);

    // A batch larger than axum's default body limit (2 MiB) but within max_body_bytes.
    let records: Vec<Value> = (0..300)
        .map(|i| {
            json!({"errorInfo": null, "level": 20, "userMessage": "x".repeat(10_000),
            "runId": "big", "timestamp": 1795722312.0 + i as f64, "stepKey": null,
            "pipelineName": "job", "dagsterEvent": null})
        })
        .collect();
    let r = client()
        .post(server.url("/dagster-plus/graphql"))
        .header("Dagster-Cloud-Api-Token", &agent)
        .header("Idempotency-Key", "big-1")
        .json(&json!({"query": "mutation StoreEventBatch($eventRecords: [EventLogEntryInput!]!) { eventLogs { StoreEventBatch(eventRecords: $eventRecords) { ok } } }",
                       "variables": {"eventRecords": records}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // The same Idempotency-Key stores an event once.
    let event = json!({"query": "mutation StoreEvent($eventRecord: EventLogEntryInput!) { eventLogs { StoreEvent(eventRecord: $eventRecord) { ok } } }",
        "variables": {"eventRecord": {"errorInfo": null, "level": 20, "userMessage": "hello",
            "runId": "r1", "timestamp": 1795722310.5, "stepKey": null, "pipelineName": "job",
            "dagsterEvent": null}}});
    for _ in 0..3 {
        let r = client()
            .post(server.url("/dagster-plus/graphql"))
            .header("Dagster-Cloud-Api-Token", &agent)
            .header("Idempotency-Key", "k-1")
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let events = common::read_all(&server, &agent).await;
    assert_eq!(events.iter().filter(|e| e["run_id"] == "big").count(), 300);
    let hello: Vec<&Value> = events.iter().filter(|e| e["run_id"] == "r1").collect();
    assert_eq!(hello.len(), 1, "{events:?}");
    assert_eq!(hello[0]["type"], "LOG_MESSAGE");
    assert_eq!(hello[0]["message"], "hello");
    // The client reads it back as it wrote it.
    let r = client()
        .post(server.url("/dagster-plus/graphql"))
        .header("Dagster-Cloud-Api-Token", &agent)
        .json(&json!({"query": "query getRecordsForRun($runId: String!) { eventLogs { getRecordsForRun(runId: $runId) { cursor } } }",
                       "variables": {"runId": "r1"}}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let rec = &v["data"]["eventLogs"]["getRecordsForRun"]["records"][0];
    assert_eq!(rec["eventLogEntry"]["userMessage"], "hello");
    assert_eq!(rec["eventLogEntry"]["timestamp"], json!(1795722310.5));
    assert!(rec["storageId"].is_u64());
}
