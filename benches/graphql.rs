//! GraphQL over HTTP on the large store (`common/store.rs`): a real server on a loopback
//! port, queried with an HTTP client, one request at a time. Besides criterion's estimates
//! each query is sent 2,000 times and its p50/p99 printed (`http-latency` lines).

#[path = "common/store.rs"]
mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use assetlog::api::{router, AppState};
use assetlog::config::Config;
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

fn bench_graphql(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, total) = store::build(dir.path());
    assetlog::auth::bootstrap(&log).unwrap();
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(AppState::new(log.clone(), Config::default()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        addr
    });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/graphql");
    let send = Arc::new(move |q: &str| -> Value {
        rt.block_on(async {
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"query": q}))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            assert!(v.get("errors").is_none(), "{v}");
            v
        })
    });
    println!("store: {total} events");
    let queries = [
        (
            "latest_materialization",
            r#"{ asset(key: ["warehouse", "table_4242"]) { latestMaterialization { storageId timestamp runId } } }"#,
        ),
        (
            "catalog_page_100_with_latest_and_checks",
            r#"{ assets(prefix: ["warehouse"], limit: 100) { nodes { id latestMaterialization { storageId timestamp metadata { __typename ... on IntMetadataEntry { label intValue } } } checks { name latestExecution { status } } } cursor } }"#,
        ),
        (
            "lineage_5_hops_100k_graph",
            r#"{ asset(key: ["graph", "n99999"]) { upstream(depth: 5, maxNodes: 10000) { nodes { assetKey depth } } } }"#,
        ),
        (
            "run_with_1000_events",
            r#"{ run(runId: "run-big") { status events(limit: 1000) { events { storageId type timestamp } } } }"#,
        ),
    ];
    let mut g = c.benchmark_group("graphql_http");
    g.measurement_time(Duration::from_secs(5));
    for (name, q) in queries {
        let send = send.clone();
        g.bench_function(name, |b| b.iter(|| send(q)));
        let mut samples: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                send(q);
                t.elapsed()
            })
            .collect();
        samples.sort_unstable();
        println!(
            "http-latency {name}: p50 {:.2} ms, p99 {:.2} ms",
            samples[1000].as_secs_f64() * 1e3,
            samples[1980].as_secs_f64() * 1e3
        );
    }
    g.finish();
}

criterion_group!(benches, bench_graphql);
criterion_main!(benches);
