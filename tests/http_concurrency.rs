//! Many concurrent clients re-sending overlapping batches: every event is stored exactly
//! once and every reply agrees on each event's sequence number.

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_resends_store_each_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = std::sync::Arc::new(Server::start(dir.path(), &[]));
    let ids: Vec<String> = (0..400).map(|i| format!("ev-{i}")).collect();
    let mut tasks = Vec::new();
    for client_no in 0..16usize {
        let server = server.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut seen: Vec<(String, u64)> = Vec::new();
            // Each client sends overlapping windows of the same id space, several times.
            for round in 0..6usize {
                let start = (client_no * 37 + round * 53) % 350;
                let batch: Vec<Value> = ids[start..start + 50].iter().map(|id| mat(id)).collect();
                let (status, reply) =
                    post_events(&server, &server.admin, serde_json::to_vec(&batch).unwrap()).await;
                assert_eq!(status, 200, "{reply}");
                for (ev, r) in batch.iter().zip(reply["events"].as_array().unwrap()) {
                    seen.push((
                        ev["id"].as_str().unwrap().to_string(),
                        r["seq"].as_u64().unwrap(),
                    ));
                }
            }
            seen
        }));
    }
    let mut seq_of: HashMap<String, u64> = HashMap::new();
    for t in tasks {
        for (id, seq) in t.await.unwrap() {
            let prev = seq_of.insert(id.clone(), seq);
            assert!(
                prev.is_none() || prev == Some(seq),
                "{id} got seqs {prev:?} and {seq}"
            );
        }
    }
    let stored = read_all(&server, &server.admin).await;
    assert_eq!(
        stored.len(),
        seq_of.len(),
        "each distinct id stored exactly once"
    );
    for ev in &stored {
        let id = ev["id"].as_str().unwrap();
        assert_eq!(ev["seq"].as_u64(), seq_of.get(id).copied(), "{id}");
    }
    let seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=stored.len() as u64).collect::<Vec<_>>());
}
