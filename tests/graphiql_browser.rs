//! GraphiQL in a real browser: headless Chromium loads `GET /graphql` from a running
//! server (all scripts served by assetlog itself), GraphiQL runs a query through its own
//! fetcher, and the result shows up in the page. A screenshot is kept under
//! `target/tmp/graphiql.png` as evidence.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

fn chromium() -> &'static str {
    "chromium"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_loads_and_runs_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (s, _) = post_events(
        &server,
        &server.admin,
        serde_json::to_vec(&json!([mat("browser-1")])).unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    let query = "{ assets { nodes { id materializationCount } } }";
    let url = format!(
        "{}/graphql#token={}&run=1&query={}",
        server.base,
        server.admin,
        query
            .replace(' ', "%20")
            .replace('{', "%7B")
            .replace('}', "%7D")
    );
    let profile = dir.path().join("chromium-profile");
    let flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--virtual-time-budget=15000",
        "--window-size=1400,900",
    ];
    let run = |extra: &[&str]| {
        let out = Command::new(chromium())
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs (tools/test installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, dom, err) = tokio::task::block_in_place(|| run(&["--dump-dom"]));
    assert!(ok, "chromium failed: {err}");
    assert!(
        dom.contains("graphiql-container"),
        "GraphiQL did not render: {}",
        &dom[..dom.len().min(2000)]
    );
    // The result pane holds the server's answer to the query GraphiQL sent.
    assert!(
        dom.contains("materializationCount") && dom.contains("warehouse/orders"),
        "no query result in the page: {}",
        &dom[..dom.len().min(4000)]
    );

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("graphiql.png");
    let shot_arg = format!("--screenshot={}", shot.display());
    let profile2 = dir.path().join("chromium-profile-2");
    let url2 = url.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        let out = Command::new(chromium())
            .args(flags)
            .arg(format!("--user-data-dir={}", profile2.display()))
            .arg(&shot_arg)
            .arg(&url2)
            .output()
            .unwrap();
        (
            out.status.success(),
            (),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "screenshot is empty"
    );
}
