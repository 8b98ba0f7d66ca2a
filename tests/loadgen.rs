//! `tools/loadgen` against a real server: every event it generates is accepted, its
//! retries come back as duplicates, and the store holds exactly what it reports stored.

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_stream_is_accepted_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--url", &server.base, "--token", &server.admin])
        .args(["--agents", "2", "--batch", "300", "--events", "9000"])
        .args(["--retry-share", "0.2"])
        .output()
        .expect("run loadgen");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // loadgen itself fails when a request fails or the duplicate counts disagree.
    assert!(out.status.success(), "loadgen failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("loadgen report is JSON");
    assert_eq!(report["events_stored"], 9000, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["duplicates_reported"].as_u64().unwrap() > 0,
        "a 20% retry share re-sent nothing: {report}"
    );
    assert_eq!(report["duplicates_reported"], report["duplicates_sent"]);
    assert_eq!(last_seq(&server).await, 9000);

    // The stream is the realistic one: every kind of event it promises is there.
    let events = read_all(&server, &server.admin).await;
    assert_eq!(events.len(), 9000);
    for kind in [
        "DEFINITIONS",
        "RUN_STARTING",
        "RUN_START",
        "STEP_START",
        "ASSET_MATERIALIZATION_PLANNED",
        "LOG_MESSAGE",
        "ASSET_MATERIALIZATION",
        "ASSET_CHECK_EVALUATION",
        "STEP_SUCCESS",
        "RUN_SUCCESS",
        "BACKFILL_CREATED",
    ] {
        assert!(
            events.iter().any(|e| e["type"] == kind),
            "no {kind} event in the loadgen stream"
        );
    }
    let defs = events.iter().find(|e| e["type"] == "DEFINITIONS").unwrap();
    let assets = defs["assets"].as_array().unwrap();
    assert_eq!(assets.len(), 50, "{defs}");
    assert_eq!(assets[1]["deps"][0], assets[0]["asset_key"], "{defs}");
    let mat = events
        .iter()
        .find(|e| e["type"] == "ASSET_MATERIALIZATION")
        .unwrap();
    let md = &mat["metadata"];
    assert!(
        md["dagster/row_count"]["value"].as_i64().unwrap() >= 1000,
        "{mat}"
    );
    assert_eq!(
        md["dagster/column_schema"]["columns"]
            .as_array()
            .unwrap()
            .len(),
        10,
        "{mat}"
    );
}
