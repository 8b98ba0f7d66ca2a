//! Crash safety through HTTP: agents post batches to a real `assetlog serve` on a loopback
//! port and keep every acknowledgement; the server is `kill -9`ed at a random moment, 20
//! rounds on one data directory. After each restart every acknowledged event is there at
//! the seq it was acknowledged with, with its content, and re-sending acknowledged events
//! stores nothing. At the end `assetlog verify` passes, and the views the server kept live
//! through the crashes (read over GraphQL) agree with the log and with views rebuilt by
//! `assetlog rebuild`.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rand::Rng;
use serde_json::{json, Value};

const ASSETS: u64 = 13;
const ROUNDS: u64 = 20;

/// The event for id number `k`: its asset and row count follow from `k`.
fn event(id: &str, k: u64) -> Value {
    json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": 1_767_225_600 + k as i64,
           "run_id": format!("run-{}", k % 5), "asset_key": ["crash", format!("a{}", k % ASSETS)],
           "metadata": {"dagster/row_count": k, "note": format!("event {k}")}})
}

/// (id, k, acknowledged seq)
type Ack = (String, u64, u64);

/// Post batches of 1-40 events until the server goes away; returns what was acknowledged.
async fn agent(
    base: String,
    token: String,
    round: u64,
    agent: u64,
    acks: Arc<AtomicU64>,
) -> Vec<Ack> {
    let c = client();
    let mut acked = Vec::new();
    let mut n = 0u64;
    loop {
        let size = rand::thread_rng().gen_range(1..=40);
        let batch: Vec<(String, u64)> = (0..size)
            .map(|_| {
                n += 1;
                let k = round * 10_000_000 + agent * 1_000_000 + n;
                (format!("r{round}-a{agent}-{n}"), k)
            })
            .collect();
        let body: Vec<Value> = batch.iter().map(|(id, k)| event(id, *k)).collect();
        let resp = c
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&token)
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await;
        let Ok(resp) = resp else { return acked };
        let status = resp.status().as_u16();
        // The body of a reply cut by the kill is no acknowledgement.
        let Ok(v) = resp.json::<Value>().await else {
            return acked;
        };
        if status == 503 || status == 429 {
            continue; // pushed back: this batch was not stored, the next one is new
        }
        assert_eq!(status, 200, "{v}");
        for ((id, k), a) in batch.into_iter().zip(v["events"].as_array().unwrap()) {
            acked.push((id, k, a["seq"].as_u64().unwrap()));
        }
        acks.fetch_add(size, Ordering::Relaxed);
    }
}

/// Every acknowledged event is stored at its seq with its content; returns the log by seq.
async fn check_acked(server: &Server, acked: &[Ack], round: u64) -> HashMap<u64, Value> {
    let stored: HashMap<u64, Value> = read_all(server, &server.admin)
        .await
        .into_iter()
        .map(|e| (e["seq"].as_u64().unwrap(), e))
        .collect();
    for (id, k, seq) in acked {
        let e = stored
            .get(seq)
            .unwrap_or_else(|| panic!("round {round}: acknowledged {id} at seq {seq} is missing"));
        assert_eq!(e["id"], json!(id), "round {round}: seq {seq}");
        assert_eq!(
            e["asset_key"],
            event(id, *k)["asset_key"],
            "round {round}: {id}"
        );
        assert_eq!(
            e["metadata"]["dagster/row_count"]["value"],
            json!(k),
            "round {round}: {id}"
        );
    }
    let mut seqs: Vec<u64> = stored.keys().copied().collect();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "round {round}: seqs have a gap"
    );
    stored
}

/// The `asset` of a GraphQL query, read as the admin.
async fn asset_query(server: &Server, query: &str, variables: Value) -> Value {
    data(server, &server.admin, query, variables).await["asset"].clone()
}

/// Materialization count, latest storage id and the whole row-count series (paged by time)
/// of every asset, over GraphQL.
async fn views(server: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    for a in 0..ASSETS {
        let k = json!(["crash", format!("a{a}")]);
        let mut asset = asset_query(
            server,
            "query($k: [String!]!) { asset(key: $k) { materializationCount \
             latestMaterialization { storageId } } }",
            json!({"k": k}),
        )
        .await;
        let mut series = Vec::new();
        let mut after = 0.0;
        loop {
            let page = asset_query(
                server,
                "query($k: [String!]!, $after: Float) { asset(key: $k) { \
                 rowCounts(afterTimestamp: $after, limit: 1000) { timestamp storageId value } } }",
                json!({"k": k, "after": after}),
            )
            .await["rowCounts"]
                .as_array()
                .unwrap()
                .clone();
            let Some(last) = page.last() else { break };
            // Timestamps are whole seconds, one per event: the next page starts past this one.
            after = last["timestamp"].as_f64().unwrap() + 0.5;
            series.extend(page);
        }
        asset["rowCounts"] = Value::Array(series);
        out.push(asset);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_through_http_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<Ack> = Vec::new();
    for round in 0..ROUNDS {
        let server = Server::start(dir.path(), &[]);
        check_acked(&server, &acked, round).await;
        // Re-sending the previous round's latest acknowledged events stores nothing.
        let latest = &acked[acked.len().saturating_sub(100)..];
        if !latest.is_empty() {
            let body: Vec<Value> = latest.iter().map(|(id, k, _)| event(id, *k)).collect();
            let before = last_seq(&server).await;
            let (status, v) =
                post_events(&server, &server.admin, serde_json::to_vec(&body).unwrap()).await;
            assert_eq!(status, 200, "{v}");
            for ((id, _, seq), a) in latest.iter().zip(v["events"].as_array().unwrap()) {
                assert_eq!(
                    a["seq"].as_u64(),
                    Some(*seq),
                    "round {round}: re-sent {id}: {a}"
                );
            }
            assert_eq!(
                last_seq(&server).await,
                before,
                "round {round}: a re-send stored events"
            );
        }

        let acks = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|a| {
                tokio::spawn(agent(
                    server.base.clone(),
                    server.admin.clone(),
                    round,
                    a,
                    acks.clone(),
                ))
            })
            .collect();
        // Kill at a random moment once acknowledgements flow; nothing checked depends on when.
        let waiting = std::time::Instant::now();
        while acks.load(Ordering::Relaxed) == 0 {
            assert!(
                waiting.elapsed() < Duration::from_secs(60)
                    && !tasks.iter().all(|t| t.is_finished()),
                "round {round}: no batch was acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::thread_rng().gen_range(20..300))).await;
        drop(server); // SIGKILL, then wait for the exit
        for t in tasks {
            acked.extend(t.await.unwrap());
        }
    }
    assert!(
        acked.len() > 1000,
        "only {} events acknowledged in {ROUNDS} rounds",
        acked.len()
    );

    let server = Server::start(dir.path(), &[]);
    let stored = check_acked(&server, &acked, ROUNDS).await;
    let live = views(&server).await;
    // The live views agree with the log: counts, latest and the whole row-count series.
    for (a, view) in live.iter().enumerate() {
        let mut mine: Vec<(u64, u64)> = stored
            .iter()
            .filter(|(_, e)| e["asset_key"][1] == json!(format!("a{a}")))
            .map(|(seq, e)| {
                (
                    *seq,
                    e["metadata"]["dagster/row_count"]["value"]
                        .as_u64()
                        .unwrap(),
                )
            })
            .collect();
        mine.sort_unstable();
        assert_eq!(
            view["materializationCount"].as_u64(),
            Some(mine.len() as u64),
            "a{a}"
        );
        // The latest is the newest by event time (here the row count, k), whatever the
        // arrival order.
        assert_eq!(
            view["latestMaterialization"]["storageId"].as_u64(),
            mine.iter().max_by_key(|m| m.1).map(|m| m.0),
            "a{a}"
        );
        let mut series: Vec<(u64, u64)> = view["rowCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["storageId"].as_u64().unwrap(),
                    p["value"].as_f64().unwrap() as u64,
                )
            })
            .collect();
        series.sort_unstable();
        assert_eq!(series, mine, "a{a}: row counts");
    }
    assert!(server.terminate().success());
    let report = run_assetlog(dir.path(), &["verify"]);
    assert!(
        report.contains(&format!("{} events", stored.len())),
        "{report}"
    );
    run_assetlog(dir.path(), &["rebuild"]);
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        views(&server).await,
        live,
        "views rebuilt from the log differ from the live ones"
    );
}
