//! GraphQL end to end: data ingested through `POST /api/v1/events` on a real server, read
//! back through `POST /graphql` with raw GraphQL documents, subscriptions over a real
//! WebSocket (`graphql-transport-ws`), tenant isolation and limits.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

fn dataset() -> Vec<Value> {
    let ts = |s: i64| 1_767_225_600 + s; // 2026-01-01
    let mut v = vec![
        json!({"id": "defs", "type": "DEFINITIONS", "timestamp": ts(0), "code_location": "analytics", "assets": [
        {"asset_key": ["raw", "orders"], "group_name": "raw", "kinds": ["postgres"]},
        {"asset_key": ["wh", "orders"], "deps": [["raw", "orders"]], "group_name": "wh", "owners": ["team:data"], "tags": {"tier": "gold"}, "kinds": ["snowflake"],
         "partitions": {"type": "static", "keys": ["p1", "p2", "p3", "p4"]}},
        {"asset_key": ["wh", "revenue"], "deps": [["wh", "orders"]], "group_name": "wh"},
        {"asset_key": ["bi", "dashboard"], "deps": [["wh", "revenue"]]}
    ], "checks": [{"asset_key": ["wh", "orders"], "name": "not_empty", "description": "rows > 0", "blocking": true}]}),
    ];
    v.push(json!({"id": "bf", "type": "BACKFILL_CREATED", "timestamp": ts(1), "backfill_id": "bf-1", "partition_names": ["p1", "p2"], "title": "catch up"}));
    for (i, (run, status, part)) in [
        ("run-1", "RUN_SUCCESS", "p1"),
        ("run-2", "RUN_FAILURE", "p2"),
    ]
    .iter()
    .enumerate()
    {
        let t = ts(10 + i as i64 * 100);
        v.push(json!({"id": format!("{run}-start"), "type": "RUN_START", "timestamp": t, "run_id": run, "job_name": "daily",
                      "tags": {"dagster/backfill": "bf-1", "dagster/partition": part, "team": "data"}}));
        v.push(json!({"id": format!("{run}-step"), "type": "STEP_START", "timestamp": t + 1, "run_id": run, "step_key": "orders"}));
        v.push(json!({"id": format!("{run}-plan"), "type": "ASSET_MATERIALIZATION_PLANNED", "timestamp": t + 1, "run_id": run, "asset_key": ["wh", "orders"], "partition": part}));
        v.push(json!({"id": format!("{run}-check-plan"), "type": "ASSET_CHECK_EVALUATION_PLANNED", "timestamp": t + 1, "run_id": run, "asset_key": ["wh", "orders"], "check_name": "not_empty"}));
        if *status == "RUN_SUCCESS" {
            v.push(json!({"id": format!("{run}-mat"), "type": "ASSET_MATERIALIZATION", "timestamp": t + 2, "run_id": run, "step_key": "orders",
                "asset_key": ["wh", "orders"], "partition": part, "metadata": {
                    "dagster/row_count": 100, "dagster/partition_row_count": 40, "lag_s": 2.5,
                    "dagster/column_schema": {"type": "table_schema", "columns": [{"name": "id", "type": "int", "constraints": {"nullable": false}}, {"name": "amount", "type": "float"}]},
                    "dagster/column_lineage": {"type": "column_lineage", "deps_by_column": {"amount": [{"asset_key": ["raw", "orders"], "column_name": "cents"}]}}
                }, "tags": {"dagster/data_version": "v1"}}));
            v.push(json!({"id": format!("{run}-check"), "type": "ASSET_CHECK_EVALUATION", "timestamp": t + 3, "run_id": run, "asset_key": ["wh", "orders"], "check_name": "not_empty", "passed": true}));
            v.push(json!({"id": format!("{run}-step-ok"), "type": "STEP_SUCCESS", "timestamp": t + 3, "run_id": run, "step_key": "orders", "duration_ms": 2000.0}));
        } else {
            v.push(json!({"id": format!("{run}-step-fail"), "type": "STEP_FAILURE", "timestamp": t + 3, "run_id": run, "step_key": "orders", "error": {"message": "boom"}}));
        }
        v.push(
            json!({"id": format!("{run}-end"), "type": status, "timestamp": t + 4, "run_id": run}),
        );
    }
    // Observations of two partitions of the orders table, outside any run.
    for (i, part) in ["p1", "p3"].iter().enumerate() {
        v.push(json!({"id": format!("obs-{part}"), "type": "ASSET_OBSERVATION", "timestamp": ts(500 + i as i64 * 100),
            "asset_key": ["wh", "orders"], "partition": part}));
    }
    // A later schema change and more row counts on the unpartitioned revenue table.
    for d in 0..5 {
        let mut cols = vec![
            json!({"name": "day", "type": "date"}),
            json!({"name": "total", "type": if d < 3 { "int" } else { "bigint" }}),
        ];
        if d >= 3 {
            cols.push(json!({"name": "currency", "type": "text"}));
        }
        v.push(json!({"id": format!("rev-{d}"), "type": "ASSET_MATERIALIZATION", "timestamp": ts(1000 + d * 86400), "run_id": "run-1",
            "asset_key": ["wh", "revenue"], "metadata": {"dagster/row_count": 10 * (d + 1), "dagster/column_schema": {"type": "table_schema", "columns": cols}}}));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_answer_the_ingested_facts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, reply) = post_events(
        &server,
        &server.admin,
        serde_json::to_vec(&dataset()).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let t = &server.admin;

    // Catalog and filters.
    let q = r#"query($prefix: [String!], $group: String, $owner: String, $kind: String, $tag: TagInput, $failing: Boolean) {
        logPosition
        assets(prefix: $prefix, group: $group, owner: $owner, kind: $kind, tag: $tag, hasFailingCheck: $failing) { nodes { id } hasMore } }"#;
    let ids = |d: &Value| {
        d["assets"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let d = data(&server, t, q, json!({})).await;
    assert_eq!(
        ids(&d),
        vec!["bi/dashboard", "raw/orders", "wh/orders", "wh/revenue"]
    );
    assert!(d["logPosition"].as_u64().unwrap() >= dataset().len() as u64);
    assert_eq!(
        ids(&data(&server, t, q, json!({"prefix": ["wh"]})).await),
        vec!["wh/orders", "wh/revenue"]
    );
    assert_eq!(
        ids(&data(&server, t, q, json!({"group": "raw"})).await),
        vec!["raw/orders"]
    );
    assert_eq!(
        ids(&data(&server, t, q, json!({"owner": "team:data"})).await),
        vec!["wh/orders"]
    );
    assert_eq!(
        ids(&data(&server, t, q, json!({"kind": "snowflake"})).await),
        vec!["wh/orders"]
    );
    assert_eq!(
        ids(&data(
            &server,
            t,
            q,
            json!({"tag": {"key": "tier", "value": "gold"}})
        )
        .await),
        vec!["wh/orders"]
    );
    // run-2's planned check execution resolves to EXECUTION_FAILED: a failing check.
    assert_eq!(
        ids(&data(&server, t, q, json!({"failing": true})).await),
        vec!["wh/orders"]
    );

    // One asset, all of it.
    let q = r#"query { asset(key: ["wh", "orders"]) {
        definition { codeLocation groupName owners kinds dependencyKeys partitionsType tags { key value } }
        latestMaterialization { storageId runId partition stepKey tags { key value }
            metadata { __typename ... on IntMetadataEntry { label intValue } ... on TableSchemaMetadataEntry { label schema { columns { name type constraints { nullable } } } }
                       ... on FloatMetadataEntry { label floatValue } ... on TableColumnLineageMetadataEntry { label lineage { columnName columnDeps { assetKey columnName } } } } }
        lastRunId materializationCount
        materializations(partition: "p1", limit: 5) { events { partition runId } hasMore }
        observationCount allObservations: observations { events { partition } }
        p1Observations: observations(partition: "p1") { events { partition } hasMore }
        partitionStats { numKnown numMaterialized numFailed numMaterializing numPartitions numMissing }
        failed: partitions(status: FAILED) { partitions { partition status } }
        rowCounts { value } p1: rowCounts(partition: "p1") { value }
        numericMetadataLabels metadataSeries(label: "lag_s") { value }
        tableSchema { hash schema { columns { name } } }
        columnLineage { columnName columnDeps { assetKey columnName } }
        upstream(depth: 3) { nodes { assetKey depth } truncated }
        downstream(depth: 5) { nodes { assetKey depth } edges { from to } }
        checks { name description blocking latestExecution { status runId } executions { status runId } }
    } }"#;
    let a = &data(&server, t, q, json!({})).await["asset"];
    assert_eq!(a["definition"]["codeLocation"], "analytics");
    // Observations newest first; of one partition, only its own.
    assert_eq!(a["observationCount"], 2);
    assert_eq!(
        a["allObservations"]["events"],
        json!([{"partition": "p3"}, {"partition": "p1"}])
    );
    assert_eq!(
        a["p1Observations"],
        json!({"events": [{"partition": "p1"}], "hasMore": false})
    );
    assert_eq!(a["definition"]["partitionsType"], "STATIC");
    assert_eq!(
        a["definition"]["dependencyKeys"],
        json!([["raw", "orders"]])
    );
    let m = &a["latestMaterialization"];
    assert_eq!(
        (
            m["runId"].as_str(),
            m["partition"].as_str(),
            m["stepKey"].as_str()
        ),
        (Some("run-1"), Some("p1"), Some("orders"))
    );
    assert_eq!(
        m["tags"],
        json!([{"key": "dagster/data_version", "value": "v1"}])
    );
    let md = m["metadata"].as_array().unwrap();
    let by_label = |l: &str| {
        md.iter()
            .find(|e| e["label"] == l)
            .cloned()
            .unwrap_or_else(|| panic!("no {l} in {md:?}"))
    };
    assert_eq!(
        by_label("dagster/row_count"),
        json!({"__typename": "IntMetadataEntry", "label": "dagster/row_count", "intValue": 100})
    );
    assert_eq!(by_label("lag_s")["floatValue"], 2.5);
    assert_eq!(
        by_label("dagster/column_schema")["schema"]["columns"][0],
        json!({"name": "id", "type": "int", "constraints": {"nullable": false}})
    );
    assert_eq!(
        by_label("dagster/column_lineage")["lineage"][0]["columnDeps"][0],
        json!({"assetKey": ["raw", "orders"], "columnName": "cents"})
    );
    assert_eq!(a["lastRunId"], "run-2", "the latest planned run");
    assert_eq!(a["materializationCount"], 1);
    assert_eq!(
        a["materializations"]["events"],
        json!([{"partition": "p1", "runId": "run-1"}])
    );
    assert_eq!(
        a["partitionStats"],
        json!({"numKnown": 2, "numMaterialized": 1, "numFailed": 1, "numMaterializing": 0, "numPartitions": 4, "numMissing": 2})
    );
    assert_eq!(
        a["failed"]["partitions"],
        json!([{"partition": "p2", "status": "FAILED"}])
    );
    assert_eq!(a["rowCounts"], json!([{"value": 100.0}]));
    assert_eq!(a["p1"], json!([{"value": 40.0}]));
    assert_eq!(a["numericMetadataLabels"], json!(["lag_s"]));
    assert_eq!(a["metadataSeries"], json!([{"value": 2.5}]));
    assert_eq!(
        a["tableSchema"]["schema"]["columns"],
        json!([{"name": "id"}, {"name": "amount"}])
    );
    assert_eq!(a["columnLineage"][0]["columnName"], "amount");
    assert_eq!(
        a["upstream"]["nodes"],
        json!([{"assetKey": ["raw", "orders"], "depth": 1}])
    );
    assert_eq!(
        a["downstream"]["nodes"],
        json!([{"assetKey": ["wh", "revenue"], "depth": 1}, {"assetKey": ["bi", "dashboard"], "depth": 2}])
    );
    let check = &a["checks"][0];
    assert_eq!(
        (check["name"].as_str(), check["blocking"].as_bool()),
        (Some("not_empty"), Some(true))
    );
    assert_eq!(
        check["latestExecution"],
        json!({"status": "EXECUTION_FAILED", "runId": "run-2"})
    );
    assert_eq!(
        check["executions"],
        json!([{"status": "EXECUTION_FAILED", "runId": "run-2"}, {"status": "SUCCEEDED", "runId": "run-1"}])
    );

    // Schema history and diff.
    let q = r#"query { asset(key: ["wh", "revenue"]) { schemaHistory { hash schema { columns { name type } } } rowCounts(afterTimestamp: 1767312000) { value } } }"#;
    let r = &data(&server, t, q, json!({})).await["asset"];
    let hist = r["schemaHistory"].as_array().unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(
        r["rowCounts"],
        json!([{"value": 20.0}, {"value": 30.0}, {"value": 40.0}, {"value": 50.0}])
    );
    let q = r#"query($a: String!, $b: String!) { asset(key: ["wh", "revenue"]) { schemaDiff(from: $a, to: $b) { added { name } removed { name } changed { name oldType newType } } } }"#;
    let d = data(
        &server,
        t,
        q,
        json!({"a": hist[0]["hash"], "b": hist[1]["hash"]}),
    )
    .await;
    assert_eq!(
        d["asset"]["schemaDiff"],
        json!({"added": [{"name": "currency"}], "removed": [], "changed": [{"name": "total", "oldType": "int", "newType": "bigint"}]})
    );

    // Runs: filters, one run with events and step stats.
    let q = r#"query($f: RunsFilter) { runs(filter: $f) { nodes { runId status partition backfillId } } }"#;
    let runs = |d: Value| {
        d["runs"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["runId"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        runs(data(&server, t, q, json!({})).await),
        vec!["run-2", "run-1"]
    );
    assert_eq!(
        runs(data(&server, t, q, json!({"f": {"statuses": ["FAILURE"]}})).await),
        vec!["run-2"]
    );
    assert_eq!(runs(data(&server, t, q, json!({"f": {"jobName": "daily", "tags": [{"key": "dagster/partition", "value": "p1"}]}})).await), vec!["run-1"]);
    assert_eq!(
        runs(
            data(
                &server,
                t,
                q,
                json!({"f": {"backfillId": "bf-1", "createdAfter": 1767225650.0}})
            )
            .await
        ),
        vec!["run-2"]
    );
    let q = r#"query { run(runId: "run-1") { status jobName startTime endTime stats { stepsSucceeded materializations events }
        stepStats { stepKey status attempts }
        events(limit: 3) { events { storageId type } cursor hasMore }
        mats: events(types: ["ASSET_MATERIALIZATION"]) { events { type assetKey partition metadata { __typename } } } } }"#;
    let r = &data(&server, t, q, json!({})).await["run"];
    assert_eq!(r["status"], "SUCCESS");
    // run-1 also produced the five revenue materializations.
    assert_eq!(
        r["stats"],
        json!({"stepsSucceeded": 1, "materializations": 6, "events": 13})
    );
    assert_eq!(
        r["stepStats"],
        json!([{"stepKey": "orders", "status": "SUCCESS", "attempts": 1}])
    );
    assert_eq!(r["events"]["hasMore"], true);
    let first: Vec<&str> = r["events"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        first,
        vec!["RUN_START", "STEP_START", "ASSET_MATERIALIZATION_PLANNED"]
    );
    assert_eq!(r["mats"]["events"][0]["partition"], "p1");
    assert_eq!(
        r["mats"]["events"][0]["metadata"].as_array().unwrap().len(),
        5
    );
    // Walk the rest of the run's events with the cursor: no gaps, no repeats.
    let mut cursor = r["events"]["cursor"].clone();
    let mut seen: Vec<u64> = r["events"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["storageId"].as_u64().unwrap())
        .collect();
    loop {
        let d = data(&server, t, r#"query($c: Int) { run(runId: "run-1") { events(afterCursor: $c, limit: 2) { events { storageId } cursor hasMore } } }"#, json!({"c": cursor})).await;
        let page = &d["run"]["events"];
        seen.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["storageId"].as_u64().unwrap()),
        );
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
        cursor = page["cursor"].clone();
    }
    assert_eq!(seen.len(), 13);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // Backfills with partition progress.
    let q = r#"query { backfills { id } backfill(id: "bf-1") { status title numPartitions runStatusCounts { status count } partitionStatuses { partition runStatus } runs { runId } } }"#;
    let d = data(&server, t, q, json!({})).await;
    assert_eq!(d["backfills"], json!([{"id": "bf-1"}]));
    let b = &d["backfill"];
    assert_eq!(
        b["runStatusCounts"],
        json!([{"status": "FAILURE", "count": 1}, {"status": "SUCCESS", "count": 1}])
    );
    assert_eq!(
        b["partitionStatuses"],
        json!([{"partition": "p1", "runStatus": "SUCCESS"}, {"partition": "p2", "runStatus": "FAILURE"}])
    );

    // The response carries the log position it is consistent at.
    let v = gql(&server, t, "{ logPosition }", json!({})).await;
    assert_eq!(v["extensions"]["logPosition"], v["data"]["logPosition"]);

    // Introspection works.
    let v = data(
        &server,
        t,
        "{ __schema { queryType { name } subscriptionType { name } } }",
        json!({}),
    )
    .await;
    assert_eq!(v["__schema"]["subscriptionType"]["name"], "Subscription");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_pagination_walks_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let events: Vec<Value> = (0..250)
        .map(|i| json!({"id": format!("m{i}"), "type": "ASSET_MATERIALIZATION", "timestamp": 1_700_000_000 + i, "asset_key": ["ns", format!("t{:03}", (i * 37) % 250)]}))
        .collect();
    assert_eq!(
        post_events(&server, &server.admin, serde_json::to_vec(&events).unwrap())
            .await
            .0,
        200
    );
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let d = data(&server, &server.admin, r#"query($c: String) { assets(cursor: $c, limit: 7) { nodes { id latestMaterialization { storageId } } cursor hasMore } }"#, json!({"c": cursor})).await;
        let page = &d["assets"];
        for n in page["nodes"].as_array().unwrap() {
            assert!(n["latestMaterialization"]["storageId"].as_u64().is_some());
            seen.push(n["id"].as_str().unwrap().to_string());
        }
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
        cursor = page["cursor"].clone();
    }
    let mut expected: Vec<String> = (0..250).map(|i| format!("ns/t{i:03}")).collect();
    expected.sort();
    assert_eq!(seen, expected);
}

/// History pages newest first by time, whatever order the events arrived in, and each page
/// resumes after the storage id the previous one ended with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_newest_first_by_time_from_a_storage_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // Timestamps in a shuffled order: storage ids do not follow time.
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"id": format!("m{i}"), "type": "ASSET_MATERIALIZATION", "timestamp": 1_700_000_000 + (i * 7) % 30, "asset_key": "t"}))
        .collect();
    let (status, _) =
        post_events(&server, &server.admin, serde_json::to_vec(&events).unwrap()).await;
    assert_eq!(status, 200);
    let q = r#"query($c: Int) { asset(key: ["t"]) { latestMaterialization { storageId }
        materializations(beforeStorageId: $c, limit: 4) { events { storageId timestamp } cursor hasMore } } }"#;
    let (mut cursor, mut times, mut first) = (Value::Null, Vec::new(), None);
    loop {
        let a = data(&server, &server.admin, q, json!({"c": cursor})).await["asset"].clone();
        let page = &a["materializations"];
        for e in page["events"].as_array().unwrap() {
            first.get_or_insert(e["storageId"].clone());
            times.push(e["timestamp"].as_f64().unwrap() as i64 - 1_700_000_000);
        }
        assert_eq!(
            a["latestMaterialization"]["storageId"],
            first.clone().unwrap()
        );
        if !page["hasMore"].as_bool().unwrap() {
            break;
        }
        cursor = page["cursor"].clone();
    }
    assert_eq!(times, (0..30).rev().collect::<Vec<_>>());

    // A storage id that is not this tenant's event is an error that names the argument.
    let (agent_b, _) = token_for(&server, "team-b", "agent").await;
    let (status, _) = post_events(
        &server,
        &agent_b,
        serde_json::to_vec(&vec![
            json!({"id": "b1", "type": "ASSET_MATERIALIZATION", "timestamp": 1, "asset_key": "t"}),
        ])
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let other = last_seq(&server).await;
    for bad in [other, other + 1000] {
        let v = gql(&server, &server.admin, q, json!({"c": bad})).await;
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(&format!(
                    "beforeStorageId {bad} is not an event of this deployment"
                )),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated_and_limits_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        post_events(
            &server,
            &server.admin,
            serde_json::to_vec(&dataset()).unwrap()
        )
        .await
        .0,
        200
    );
    let (viewer_b, _) = token_for(&server, "team-b", "viewer").await;
    let d = data(&server, &viewer_b, r#"{ assets { nodes { id } } asset(key: ["wh", "orders"]) { id } runs { nodes { runId } } run(runId: "run-1") { runId } backfills { id } backfill(id: "bf-1") { id } }"#, json!({})).await;
    assert_eq!(
        d,
        json!({"assets": {"nodes": []}, "asset": null, "runs": {"nodes": []}, "run": null, "backfills": [], "backfill": null})
    );
    // Without a token: 401 before any GraphQL runs.
    let r = client()
        .post(server.url("/graphql"))
        .json(&json!({"query": "{ logPosition }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Limits give errors that name them.
    let v = gql(
        &server,
        &server.admin,
        "{ assets(limit: 5000) { nodes { id } } }",
        json!({}),
    )
    .await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("page size limit"),
        "{v}"
    );
    let deep = format!("{{ __schema {{ types {{ {} name {} }} }} }}", "fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType {", "} } } } } } } } } } } } } } } }");
    let v = gql(&server, &server.admin, &deep, json!({})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("depth limit is 16"),
        "{v}"
    );
    let wide: String = (0..400)
        .map(|i| format!("a{i}: assets(limit: 1000) {{ nodes {{ id }} }} "))
        .collect();
    let v = gql(&server, &server.admin, &format!("{{ {wide} }}"), json!({})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complexity limit is 20000"),
        "{v}"
    );
}

async fn ws_connect(
    server: &Server,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = server.url("/graphql").replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}})
            .to_string(),
    ))
    .await
    .unwrap();
    let ack: Value = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
            .await
            .expect("no message within 20 s")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ping" && v["type"] != "ka" {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_live_events_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ev = |id: &str, t: &str| json!({"id": id, "type": t, "timestamp": 1_700_000_000, "run_id": "live"});
    assert_eq!(
        post_events(
            &server,
            &server.admin,
            serde_json::to_vec(&vec![ev("e1", "RUN_START")]).unwrap()
        )
        .await
        .0,
        200
    );

    let mut ws = ws_connect(&server, &server.admin).await;
    let sub =
        r#"subscription($c: Int) { runEvents(runId: "live", afterCursor: $c) { storageId type } }"#;
    ws.send(Message::text(
        json!({"id": "1", "type": "subscribe", "payload": {"query": sub}}).to_string(),
    ))
    .await
    .unwrap();
    let first = next_json(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["runEvents"]["type"], "RUN_START",
        "stored events come first: {first}"
    );
    // Appended after the subscription started.
    let asset_sub = r#"subscription { assetEvents(prefix: ["wh"]) { type assetKey } }"#;
    let mut ws2 = ws_connect(&server, &server.admin).await;
    ws2.send(Message::text(
        json!({"id": "2", "type": "subscribe", "payload": {"query": asset_sub}}).to_string(),
    ))
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut mat = ev("e2", "ASSET_MATERIALIZATION");
    mat["asset_key"] = json!(["wh", "t"]);
    let (s, reply) = post_events(
        &server,
        &server.admin,
        serde_json::to_vec(&vec![mat, ev("e3", "RUN_SUCCESS")]).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let second = next_json(&mut ws).await;
    assert_eq!(
        second["payload"]["data"]["runEvents"]["type"],
        "ASSET_MATERIALIZATION"
    );
    let last_seen = second["payload"]["data"]["runEvents"]["storageId"]
        .as_u64()
        .unwrap();
    assert_eq!(last_seen, reply["events"][0]["seq"].as_u64().unwrap());
    let a = next_json(&mut ws2).await;
    assert_eq!(
        a["payload"]["data"]["assetEvents"],
        json!({"type": "ASSET_MATERIALIZATION", "assetKey": ["wh", "t"]})
    );
    drop(ws); // the client drops...

    // ...and reconnects with the last storage id it saw: it gets what it missed.
    let mut ws = ws_connect(&server, &server.admin).await;
    ws.send(Message::text(json!({"id": "3", "type": "subscribe", "payload": {"query": sub, "variables": {"c": last_seen}}}).to_string())).await.unwrap();
    let resumed = next_json(&mut ws).await;
    assert_eq!(
        resumed["payload"]["data"]["runEvents"]["type"],
        "RUN_SUCCESS"
    );

    // Another tenant's subscription sees nothing of this run.
    let (viewer_b, _) = token_for(&server, "team-b", "viewer").await;
    let mut wsb = ws_connect(&server, &viewer_b).await;
    wsb.send(Message::text(
        json!({"id": "4", "type": "subscribe", "payload": {"query": sub}}).to_string(),
    ))
    .await
    .unwrap();
    let (s, _) = post_events(
        &server,
        &server.admin,
        serde_json::to_vec(&vec![ev("e4", "ENGINE_EVENT")]).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let nothing = tokio::time::timeout(std::time::Duration::from_millis(500), wsb.next()).await;
    assert!(
        nothing.is_err() || matches!(nothing, Ok(Some(Ok(Message::Ping(_))))),
        "tenant B received {nothing:?}"
    );

    // A bad token is refused at connection_init.
    let url = server.url("/graphql").replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut bad, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    bad.send(Message::text(
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer alog_nope_nope"}})
            .to_string(),
    ))
    .await
    .unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), bad.next())
        .await
        .unwrap();
    assert!(
        matches!(closed, Some(Ok(Message::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
}
