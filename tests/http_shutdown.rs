//! SIGTERM during load: the server stops accepting, finishes what is in flight, exits 0,
//! and every acknowledged event is there after a restart.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let base = server.base.clone();
    let token = server.admin.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for agent in 0..8 {
        let (base, token, stop) = (base.clone(), token.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut acked = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<Value> =
                    (0..20).map(|i| mat(&format!("a{agent}-{n}-{i}"))).collect();
                n += 1;
                let resp = c
                    .post(format!("{base}/api/v1/events"))
                    .bearer_auth(&token)
                    .body(serde_json::to_vec(&batch).unwrap())
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => {
                        let v: Value = r.json().await.unwrap();
                        for (e, a) in batch.iter().zip(v["events"].as_array().unwrap()) {
                            acked.push((
                                e["id"].as_str().unwrap().to_string(),
                                a["seq"].as_u64().unwrap(),
                            ));
                        }
                    }
                    Ok(r) => {
                        // Refused while draining is fine; a 5xx other than 503 is not.
                        let s = r.status().as_u16();
                        assert!(s == 503, "unexpected status {s}");
                    }
                    Err(_) => break, // the listener is gone
                }
            }
            acked
        }));
    }
    // Let load build up until some events are acknowledged, then SIGTERM.
    while last_seq(&server).await < 2000 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(status.success(), "exit status {status:?}");
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() >= 2000);

    let server = Server::start(dir.path(), &[]);
    let stored = read_all(&server, &server.admin).await;
    let by_seq: std::collections::HashMap<u64, String> = stored
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (id, seq) in &acked {
        assert_eq!(
            by_seq.get(seq),
            Some(id),
            "acknowledged {id} at seq {seq} is missing"
        );
    }
    // The server holds the store's lock; verify after it stops.
    assert!(server.terminate().success());
    run_assetlog(dir.path(), &["verify"]);
}
