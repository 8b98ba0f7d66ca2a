//! Views: ingest with every projection, reads on a large store, and rebuild.
//!
//! The store: 1,000,000+ events over 10,000+ assets (materializations with row counts and
//! schemas, runs, checks), one asset with 1,000,000 partitions, one with 100,000, a
//! 100,000-asset lineage graph (each asset depends on two earlier ones), and a year of
//! daily row counts. Reads go through `projection::Reader` (one snapshot per read, as a
//! request does). Besides criterion's estimates, each read is timed 20,000 times and its
//! p50/p99 printed (`read-latency` lines), since the floors are about p99.
//!
//! `ASSETLOG_BENCH_EVENTS` scales the main stream (default 1,000,000); `ASSETLOG_BENCH_DIR`
//! builds the store in that (new) directory and keeps it, for timing `assetlog rebuild` on it.

#[path = "common/store.rs"]
mod store;

use std::time::{Duration, Instant};

use assetlog::projection::{self, lineage, materializations, partitions, rowcounts, Reader};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use store::{build, key};

fn percentiles(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort_unstable();
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

/// A named read to time.
type Read = Box<dyn Fn()>;

fn bench_views(c: &mut Criterion) {
    // `ASSETLOG_BENCH_DIR` keeps the store (in a new directory) for `assetlog rebuild` runs.
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("ASSETLOG_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let (log, ingest, total) = build(&dir);
    println!(
        "store: {total} events, built with all views in {:.1} s ({:.0} events/s, batches of 1000, fsync on)",
        ingest.as_secs_f64(),
        total as f64 / ingest.as_secs_f64()
    );
    let mut g = c.benchmark_group("reads");
    g.measurement_time(Duration::from_secs(5));
    let asset = key("warehouse/table_4242");
    let reads: Vec<(&str, Read)> = vec![
        (
            "latest_materialization",
            Box::new({
                let log = log.clone();
                let asset = asset.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    let a = projection::assets::by_key(&rd, 1, &asset).unwrap().unwrap();
                    assert!(a.latest_materialization.is_some());
                }
            }),
        ),
        (
            "history_page_100",
            Box::new({
                let log = log.clone();
                let asset = asset.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    let q = materializations::HistoryQuery {
                        limit: 100,
                        ..Default::default()
                    };
                    let h = materializations::history(
                        &rd,
                        1,
                        &asset,
                        materializations::Kind::Materializations,
                        &q,
                    )
                    .unwrap();
                    assert_eq!(h.len(), 100);
                }
            }),
        ),
        (
            "partition_counts_100k",
            Box::new({
                let log = log.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    assert_eq!(
                        partitions::counts(&rd, 1, &key("big/hundred_k"))
                            .unwrap()
                            .materialized,
                        100_000
                    );
                }
            }),
        ),
        (
            "partition_counts_1m",
            Box::new({
                let log = log.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    assert_eq!(
                        partitions::counts(&rd, 1, &key("big/million"))
                            .unwrap()
                            .materialized,
                        1_000_000
                    );
                }
            }),
        ),
        (
            "lineage_5_hops_100k_graph",
            Box::new({
                let log = log.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    let t = lineage::traverse(
                        &rd,
                        1,
                        &key("graph/n99999"),
                        lineage::Direction::Upstream,
                        5,
                        10_000,
                    )
                    .unwrap();
                    assert!(t.nodes.len() >= 5);
                }
            }),
        ),
        (
            "row_counts_1_year_daily",
            Box::new({
                let log = log.clone();
                move || {
                    let rd = Reader::new(&log, 1);
                    let s =
                        rowcounts::row_counts(&rd, 1, &key("series/daily"), None, None, None, 1000)
                            .unwrap();
                    assert_eq!(s.len(), 365);
                }
            }),
        ),
    ];
    for (name, f) in &reads {
        g.bench_function(*name, |b| b.iter(f));
        let (p50, p99) = percentiles(f);
        println!(
            "read-latency {name}: p50 {:.1} us, p99 {:.1} us",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
    g.finish();

    // Rebuild: one timed run always; the criterion group (10 full rebuilds) on request.
    let t = Instant::now();
    projection::rebuild(&log, |_, _| {}).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "rebuild: {total} events in {secs:.1} s ({:.0} events/s)",
        total as f64 / secs
    );
    if std::env::var("ASSETLOG_BENCH_REBUILD").is_ok() {
        let mut g = c.benchmark_group("rebuild");
        g.sample_size(10);
        g.measurement_time(Duration::from_secs(60));
        g.throughput(Throughput::Elements(total));
        g.bench_function(BenchmarkId::new("all_views", total), |b| {
            b.iter(|| projection::rebuild(&log, |_, _| {}).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, bench_views);
criterion_main!(benches);
