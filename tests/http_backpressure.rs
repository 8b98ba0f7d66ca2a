//! Backpressure: with the writer held and its queue full, ingest answers 503 with
//! `Retry-After` at once instead of queueing without bound; the queued requests complete
//! when the writer resumes. In-process server on a real loopback socket (the test holds
//! the writer through `Log::pause_writer`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use assetlog::api::{router, AppState};
use assetlog::config::Config;
use assetlog::log::{Log, LogOptions};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Log::open(
            dir.path(),
            LogOptions {
                queue_capacity: 2,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    assetlog::auth::bootstrap(&log).unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(AppState::new(
        log.clone(),
        Config {
            queue_capacity: 2,
            ..Default::default()
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = format!("http://{addr}/api/v1/events");
    let c = common::client();

    let pause = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || log.pause_writer().unwrap())
            .await
            .unwrap()
    };
    // Two requests fill the queue and wait.
    let mut waiting = Vec::new();
    for i in 0..2 {
        let (c, url, token) = (c.clone(), url.clone(), token.clone());
        waiting.push(tokio::spawn(async move {
            c.post(url)
                .bearer_auth(token)
                .json(&json!([common::mat(&format!("q-{i}"))]))
                .send()
                .await
                .unwrap()
        }));
    }
    while log.queued() < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The third is refused at once.
    let r = c
        .post(&url)
        .bearer_auth(&token)
        .json(&json!([common::mat("q-2")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "busy");
    assert_eq!(log.last_seq(), 0);
    // Readiness and metrics still answer while the writer is held.
    let m = c
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("assetlog_queue_depth 2"), "{m}");

    drop(pause);
    for w in waiting {
        assert_eq!(w.await.unwrap().status(), 200);
    }
    assert_eq!(log.last_seq(), 2);
    // And the refused request succeeds on retry.
    let r = c
        .post(&url)
        .bearer_auth(&token)
        .json(&json!([common::mat("q-2")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
