//! Parquet export, end to end: a real server, data sent over HTTP, files read back by
//! pyarrow, DuckDB and polars (`tests/clients/export_check.py`, which computes every
//! expectation from the data set itself and compares analytic answers with GraphQL).

mod common;

use std::path::Path;
use std::process::Command;

use common::{run_assetlog, token_for, Server, BIN};

const CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/export_check.py");

fn python(args: &[&str]) {
    let out = Command::new(common::python())
        .arg(CHECK)
        .args(args)
        .output()
        .expect("run .venv/bin/python (tools/test installs it with pyarrow, duckdb and polars)");
    assert!(
        out.status.success(),
        "export_check.py {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn export(dir: &Path, args: &[&str]) -> String {
    run_assetlog(dir, &[&["export"], args].concat())
}

#[tokio::test(flavor = "multi_thread")]
async fn http_export_read_by_pyarrow_duckdb_and_polars() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    let (agent, _) = token_for(&server, "analytics", "agent").await;
    let (viewer, _) = token_for(&server, "analytics", "viewer").await;
    let (other, _) = token_for(&server, "other", "agent").await;
    // Another tenant's data, which the analytics export must not contain.
    let (status, _) = common::post_events(
        &server,
        &other,
        serde_json::to_vec(&[common::mat("x-1")]).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    for part in ["1", "2"] {
        python(&["ingest", &server.base, &agent, part]);
    }
    let out = tmp.path().join("http");
    python(&["http", &server.base, &viewer, out.to_str().unwrap()]);

    // Bad requests are 4xx with a message naming the problem.
    let c = common::client();
    for (path, status, says) in [
        ("/api/v1/export/nope.parquet", 404, "no table"),
        ("/api/v1/export/events.csv", 404, ".parquet"),
        (
            "/api/v1/export/events.parquet?since=999999",
            400,
            "beyond the end",
        ),
        ("/api/v1/export/runs.parquet?until=3", 400, "snapshot table"),
        (
            "/api/v1/export/events.parquet?since=5&until=2",
            400,
            "before since",
        ),
        ("/api/v1/export/events.parquet?sinse=5", 400, "sinse"),
    ] {
        let r = c
            .get(server.url(path))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{path}: {body}");
    }
    let r = c
        .get(server.url("/api/v1/export/events.parquet"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_exports_add_up_to_a_full_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let inc = tmp.path().join("inc");
    let full = tmp.path().join("full");

    let server = Server::start(&data, &[]);
    let (agent, _) = token_for(&server, "analytics", "agent").await;
    python(&["ingest", &server.base, &agent, "1"]);
    assert!(server.terminate().success());
    let first = export(&data, &["--out", inc.to_str().unwrap(), "--incremental"]);
    assert!(first.contains("events\t"), "{first}");

    // A plain export into a directory that holds one is refused, not silently doubled.
    let again = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["export", "--out", inc.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--incremental"));

    let server = Server::start(&data, &[]);
    python(&["ingest", &server.base, &agent, "2"]);
    assert!(server.terminate().success());
    // A stray file of an interrupted export must not end up in the union.
    std::fs::write(inc.join("events/events-stray.parquet"), b"junk").unwrap();
    export(&data, &["--out", inc.to_str().unwrap(), "--incremental"]);
    assert!(!inc.join("events/events-stray.parquet").exists());
    let up_to_date = export(&data, &["--out", inc.to_str().unwrap(), "--incremental"]);
    assert!(up_to_date.contains("up to date"), "{up_to_date}");
    export(&data, &["--out", full.to_str().unwrap()]);
    python(&["incremental", inc.to_str().unwrap(), full.to_str().unwrap()]);
}
