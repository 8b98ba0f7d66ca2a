//! Malformed requests get the documented status and a message naming the problem; nothing
//! of them is stored; the server answers a valid request right after each one.

mod common;

use std::io::Write;

use common::*;
use serde_json::{json, Value};

struct Case {
    name: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
    message: &'static str,
}

fn case(name: &'static str, body: impl Into<Vec<u8>>, status: u16, message: &'static str) -> Case {
    Case {
        name,
        body: body.into(),
        headers: vec![],
        status,
        message,
    }
}

fn events(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).unwrap()
}

fn with(extra: Value) -> Value {
    let mut m = mat("x-1");
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn cases() -> Vec<Case> {
    let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
    let mut bomb_src = b"[".to_vec();
    bomb_src.extend(std::iter::repeat_n(b' ', 3 << 20));
    bomb_src.extend(b"]");
    let mut v = vec![
        case("broken JSON", "[{\"id\": \"a\",", 400, "body: invalid JSON"),
        case("not JSON at all", "hello", 400, "must be a JSON array of events or NDJSON"),
        case("empty body", "", 400, "body: is empty"),
        case("empty batch", "[]", 400, "the batch is empty"),
        case("a number instead of events", "[1]", 400, "events[0]: expected a JSON object"),
        case("missing id", events(json!([{"type": "RUN_START", "timestamp": 1, "run_id": "r"}])), 400, "events[0].id: is required"),
        case("id of the wrong type", events(json!([with(json!({"id": 5}))])), 400, "events[0].id: expected a string"),
        case("empty id", events(json!([with(json!({"id": ""}))])), 400, "events[0].id: must not be empty"),
        case("missing type", events(json!([{"id": "a", "timestamp": 1}])), 400, "events[0].type: is required"),
        case("misspelled type", events(json!([with(json!({"type": "ASSET_MATERIALISATION"}))])), 400, "did you mean \"ASSET_MATERIALIZATION\""),
        case("lowercase type", events(json!([with(json!({"type": "run_start"}))])), 400, "did you mean \"RUN_START\""),
        case("missing timestamp", events(json!([{"id": "a", "type": "RUN_START", "run_id": "r"}])), 400, "events[0].timestamp: is required"),
        case("bad timestamp", events(json!([with(json!({"timestamp": "last tuesday"}))])), 400, "events[0].timestamp: expected an RFC 3339"),
        case("negative timestamp", events(json!([with(json!({"timestamp": -5}))])), 400, "events[0].timestamp: expected Unix seconds"),
        case("run event without run id", events(json!([{"id": "a", "type": "RUN_SUCCESS", "timestamp": 1}])), 400, "events[0].run_id: is required for RUN_SUCCESS"),
        case("missing asset key", events(json!([{"id": "a", "type": "ASSET_MATERIALIZATION", "timestamp": 1}])), 400, "events[0].asset_key: is required"),
        case("asset key of numbers", events(json!([with(json!({"asset_key": [1, 2]}))])), 400, "events[0].asset_key[0]: expected a string"),
        case("negative row count", events(json!([mat("ok-0"), with(json!({"metadata": {"dagster/row_count": -1}}))])), 400, "events[1].metadata[\"dagster/row_count\"]: expected a non-negative integer"),
        case("row count as a string", events(json!([with(json!({"metadata": {"dagster/row_count": "12"}}))])), 400, "dagster/row_count\"]: expected a non-negative integer"),
        case("schema as text", events(json!([with(json!({"metadata": {"dagster/column_schema": "id int"}}))])), 400, "expected a table_schema value"),
        case("unknown metadata kind", events(json!([with(json!({"metadata": {"m": {"type": "blob"}}}))])), 400, "unknown metadata kind \"blob\""),
        case("unknown field", events(json!([with(json!({"partiton": "2024-01-01"}))])), 400, "events[0].partiton: unknown field"),
        case("tags with a number", events(json!([with(json!({"tags": {"k": 1}}))])), 400, "events[0].tags[\"k\"]: expected a string"),
        case("check without passed", events(json!([{"id": "c", "type": "ASSET_CHECK_EVALUATION", "timestamp": 1, "asset_key": "a", "check_name": "c"}])), 400, "events[0].passed: is required"),
        case("bad severity", events(json!([{"id": "c", "type": "ASSET_CHECK_EVALUATION", "timestamp": 1, "asset_key": "a", "check_name": "c", "passed": true, "severity": "LOUD"}])), 400, "events[0].severity"),
        case("duplicate ids in one batch", events(json!([mat("d-1"), mat("d-1")])), 400, "events[1].id: duplicate id \"d-1\" within one batch"),
        case("invalid UTF-8", b"[{\"id\": \"a\xff\xfe\", \"type\": \"RUN_START\", \"timestamp\": 1, \"run_id\": \"r\"}]".to_vec(), 400, "invalid JSON"),
        case("10,000-deep nesting", deep, 400, "recursion limit exceeded"),
        case("nesting over the configured depth", events(json!([with(json!({"metadata": {"m": [[[[[[[[[[1]]]]]]]]]]}}))])), 400, "nests deeper than the limit of 8"),
        case("oversize string", events(json!([with(json!({"description": "x".repeat(5000)}))])), 400, "events[0].description: is 5000 bytes long, over the limit of 4096"),
        case("too many metadata entries", events(json!([with(json!({"metadata": (0..20).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}))])), 400, "events[0].metadata: has 20 entries, over the limit of 16"),
        case("too many events", events(Value::Array((0..60).map(|i| mat(&format!("many-{i}"))).collect())), 413, "the number of events is 60, over the limit max_events_per_request = 50"),
        case("oversize body", events(Value::Array((0..40).map(|i| with(json!({"id": format!("big-{i}"), "message": "y".repeat(4000)}))).collect())), 413, "the request body is"),
        case("oversize event", events(json!([with(json!({"metadata": (0..15).map(|i| (format!("k{i}"), json!("z".repeat(4000)))).collect::<serde_json::Map<_, _>>()}))])), 413, "events[0] is"),
        case("NDJSON with a broken line", format!("{}\n{{oops\n", mat("n-1")), 400, "body line 2: invalid JSON"),
        case("a string where an object list goes", events(json!([{"id": "d", "type": "DEFINITIONS", "timestamp": 1, "code_location": "c", "assets": "all"}])), 400, "events[0].assets: expected an array of objects"),
    ];
    let mut gz_bad = case(
        "corrupt gzip",
        b"\x1f\x8b\x08\x00garbage".to_vec(),
        400,
        "not valid gzip",
    );
    gz_bad.headers.push(("content-encoding", "gzip"));
    v.push(gz_bad);
    let mut gz_bomb = case(
        "gzip bomb",
        gzip(&bomb_src),
        413,
        "the decompressed request body is",
    );
    gz_bomb.headers.push(("content-encoding", "gzip"));
    v.push(gz_bomb);
    let mut br = case(
        "unsupported encoding",
        events(json!([mat("e-1")])),
        400,
        "unsupported Content-Encoding \"br\"",
    );
    br.headers.push(("content-encoding", "br"));
    v.push(br);
    v
}

#[tokio::test]
async fn malformed_requests_are_refused_clearly_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &[
            "--max-events-per-request",
            "50",
            "--max-body-bytes",
            "150000",
            "--max-event-bytes",
            "50000",
            "--max-metadata-entries",
            "16",
            "--max-depth",
            "8",
            "--max-string-bytes",
            "4096",
        ],
    );
    let c = client();
    let cases = cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut valid = 0;
    for case in cases {
        let before = last_seq(&server).await;
        let mut req = c
            .post(server.url("/api/v1/events"))
            .bearer_auth(&server.admin)
            .body(case.body.clone());
        for (k, v) in &case.headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, case.status, "{}: {text}", case.name);
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{}: not JSON: {text}", case.name));
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(case.message),
            "{}: message {msg:?} lacks {:?}",
            case.name,
            case.message
        );
        assert_eq!(
            last_seq(&server).await,
            before,
            "{}: something was stored",
            case.name
        );

        // The server still serves a valid request.
        valid += 1;
        let (status, v) = post_events(
            &server,
            &server.admin,
            events(json!([mat(&format!("valid-{valid}"))])),
        )
        .await;
        assert_eq!(status, 200, "after {}: {v}", case.name);
        assert_eq!(v["stored"], 1);
    }
    // Only the valid events were stored.
    let all = read_all(&server, &server.admin).await;
    assert_eq!(all.len(), valid);
    assert!(all
        .iter()
        .all(|e| e["id"].as_str().unwrap().starts_with("valid-")));

    // A gzip body within the limits is accepted.
    let body = gzip(&events(json!([mat("gz-1"), mat("gz-2")])));
    let r = c
        .post(server.url("/api/v1/events"))
        .bearer_auth(&server.admin)
        .header("content-encoding", "gzip")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = c
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("assetlog_rejections_total{reason=\"invalid_event\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("assetlog_rejections_total{reason=\"too_large\"}"));
}

#[tokio::test]
async fn conflicting_resend_is_409_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (s, v) = post_events(&server, &server.admin, events(json!([mat("c-1")]))).await;
    assert_eq!(s, 200);
    let seq = v["events"][0]["seq"].as_u64().unwrap();
    let mut changed = mat("c-1");
    changed["metadata"]["dagster/row_count"] = json!(11);
    let (s, v) = post_events(&server, &server.admin, events(json!([mat("c-2"), changed]))).await;
    assert_eq!(s, 409, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!(
            "events[1]: id \"c-1\" was already stored as seq {seq} with a different body"
        )),
        "{msg}"
    );
    assert_eq!(read_all(&server, &server.admin).await.len(), 1);
    // An exact re-send is a duplicate with the original seq.
    let (s, v) = post_events(&server, &server.admin, events(json!([mat("c-1")]))).await;
    assert_eq!(s, 200);
    assert_eq!(v["events"][0], json!({"seq": seq, "duplicate": true}));
    assert_eq!(
        (v["stored"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
}
