//! The large store the read benches share: 1,000,000+ events over 10,000+ assets, one asset
//! with 1,000,000 partitions, one with 100,000, a 100,000-asset lineage graph, a year of
//! daily row counts, and a run with 1,000 events.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use assetlog::event::{sample, AssetKey, Event, EventBody};
use assetlog::log::{Log, LogOptions};
use assetlog::projection;

pub const ASSETS: usize = 10_000;

pub fn key(s: &str) -> AssetKey {
    AssetKey(s.split('/').map(str::to_string).collect())
}

fn with_partition(mut e: Event, asset: &str, partition: String) -> Event {
    if let EventBody::AssetMaterialization(a) = &mut e.body {
        a.asset_key = key(asset);
        a.partition = Some(partition);
    }
    e
}

fn definitions(id: String, location: usize, first: usize, n: usize) -> Event {
    let assets = (first..first + n)
        .map(|i| assetlog::event::AssetDefinition {
            asset_key: key(&format!("graph/n{i}")),
            deps: [i / 2, i.saturating_sub(1)]
                .into_iter()
                .filter(|d| *d < i)
                .map(|d| key(&format!("graph/n{d}")))
                .collect(),
            description: None,
            group_name: Some(format!("g{}", i % 10)),
            owners: vec![],
            tags: vec![],
            kinds: vec![],
            code_version: None,
            partitions: None,
            automation_condition: None,
            metadata: Default::default(),
            job_names: vec![],
            is_source: false,
        })
        .collect();
    Event {
        envelope: assetlog::event::Envelope {
            event_id: id,
            deployment: 1,
            timestamp_us: 1,
            run_id: None,
            step_key: None,
            job_name: None,
            message: None,
            raw: None,
        },
        body: EventBody::Definitions(assetlog::event::Definitions {
            code_location: format!("loc{location}"),
            version: None,
            assets,
            checks: vec![],
        }),
    }
}

/// Build the large store; returns it and how long ingest took.
pub fn build(dir: &std::path::Path) -> (Arc<Log>, Duration, u64) {
    let n: usize = std::env::var("ASSETLOG_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let log = projection::open(dir, LogOptions::default(), |_, _| {}).unwrap();
    let t0 = Instant::now();
    let mut id = 0u64;
    let mut next = || {
        id += 1;
        id
    };
    // Lineage graph: 100,000 assets in 10 code locations.
    for loc in 0..10 {
        let i = next();
        log.append_blocking(vec![definitions(
            format!("defs{i}"),
            loc,
            loc * 10_000,
            10_000,
        )])
        .unwrap();
    }
    // Main stream: materializations over 10,000 assets, with run events.
    let mut batch = Vec::with_capacity(1000);
    for k in 0..n {
        let i = next();
        let asset = k % ASSETS;
        let run = format!("run-{}", k / 50);
        if k % 50 == 0 {
            batch.push(sample::run_event(
                1,
                format!("e{i}"),
                &run,
                assetlog::event::RunEventKind::Start,
                1_700_000_000_000_000 + k as i64,
            ));
        } else {
            batch.push(sample::materialization(
                1,
                format!("e{i}"),
                &run,
                asset,
                None,
                1_700_000_000_000_000 + k as i64,
            ));
        }
        if batch.len() == 1000 {
            log.append_blocking(std::mem::take(&mut batch)).unwrap();
        }
    }
    // Partitioned assets: 1,000,000 and 100,000 partitions.
    for (asset, parts) in [("big/million", 1_000_000usize), ("big/hundred_k", 100_000)] {
        for p in 0..parts {
            let i = next();
            let e = sample::materialization(
                1,
                format!("e{i}"),
                "run-parts",
                0,
                None,
                1_700_000_000_000_000 + p as i64,
            );
            batch.push(with_partition(e, asset, format!("p{p:07}")));
            if batch.len() == 1000 {
                log.append_blocking(std::mem::take(&mut batch)).unwrap();
            }
        }
    }
    // A run with 1,000 events.
    for k in 0..1000 {
        let i = next();
        batch.push(sample::run_event(
            1,
            format!("e{i}"),
            "run-big",
            assetlog::event::RunEventKind::Start,
            1_700_000_000_000_000 + k,
        ));
    }
    // A year of daily row counts on one asset.
    for d in 0..365i64 {
        let i = next();
        let mut e = sample::materialization(
            1,
            format!("e{i}"),
            "run-daily",
            0,
            None,
            1_700_000_000_000_000 + d * 86_400_000_000,
        );
        if let EventBody::AssetMaterialization(a) = &mut e.body {
            a.asset_key = key("series/daily");
        }
        batch.push(e);
    }
    log.append_blocking(std::mem::take(&mut batch)).unwrap();
    let elapsed = t0.elapsed();
    let total = log.last_seq();
    (log, elapsed, total)
}
