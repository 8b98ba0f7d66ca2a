//! Parquet export throughput (issue 6): the events table of a 5,000,000-event store
//! (override with `ASSETLOG_BENCH_EXPORT_EVENTS`; `ASSETLOG_BENCH_EXPORT_MIX=heavy` for a
//! materialization-only stream), written to a file as `assetlog export` does. The store is built once (log only: exporting the events table reads no view)
//! under `target/bench-stores/` and reused.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use assetlog::event::validate::{validate_batch, Limits};
use assetlog::event::Event;
use assetlog::export::{self, Plan, Table};
use assetlog::log::{Log, LogOptions};
use assetlog::projection::Reader;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

fn events() -> u64 {
    std::env::var("ASSETLOG_BENCH_EXPORT_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000_000)
}

const TYPES: [&str; 3] = ["bigint", "varchar", "timestamp"];

fn mix() -> String {
    std::env::var("ASSETLOG_BENCH_EXPORT_MIX").unwrap_or_else(|_| "realistic".into())
}

/// One run's events. `realistic` (the default) is the load generator's stream: per step
/// STEP_START, ASSET_MATERIALIZATION_PLANNED, LOG_MESSAGE, ASSET_MATERIALIZATION (row
/// counts, a 10-column schema, 6 entries), ASSET_CHECK_EVALUATION, STEP_SUCCESS, with
/// RUN_STARTING, RUN_START and RUN_SUCCESS around 8 steps (51 events, 8 of them
/// materializations). `heavy`: 18 such materializations between RUN_START and RUN_SUCCESS.
fn run_events(run: u64, first_id: u64) -> Vec<Event> {
    let ts = 1_700_000_000.0 + run as f64;
    let r = format!("run-{run}");
    let part = format!("2026-10-{:02}", 1 + run % 28);
    let mut v: Vec<Value> = Vec::new();
    let mat = |step: u64| {
        let cols: Vec<Value> = (0..10)
            .map(|i| {
                json!({"name": format!("col_{i}"), "type": TYPES[i % 3],
                            "constraints": {"nullable": i != 0, "unique": i == 0}})
            })
            .collect();
        let rows = 1000 + (run * 7 + step) % 100_000;
        json!({"type": "ASSET_MATERIALIZATION", "timestamp": ts, "run_id": r, "step_key": format!("step_{step}"),
               "asset_key": ["warehouse", format!("table_{}", (run * 8 + step) % 10_000)], "partition": part,
               "metadata": {"dagster/row_count": rows, "dagster/partition_row_count": rows / 10,
                            "dagster/column_schema": {"type": "table_schema", "columns": cols},
                            "dagster/table_name": format!("db.warehouse.t{step}"), "duration_s": 1.5,
                            "dagster/uri": "s3://lake/t"},
               "tags": {"dagster/data_version": format!("{rows:x}")}})
    };
    if mix() == "heavy" {
        v.push(json!({"type": "RUN_START", "timestamp": ts, "run_id": r}));
        v.extend((0..18).map(mat));
    } else {
        for t in ["RUN_STARTING", "RUN_START"] {
            v.push(
                json!({"type": t, "timestamp": ts, "run_id": r, "job_name": "daily",
                          "tags": {"dagster/partition": part}}),
            );
        }
        for step in 0..8u64 {
            let key = format!("step_{step}");
            let asset = json!(["warehouse", format!("table_{}", (run * 8 + step) % 10_000)]);
            v.push(json!({"type": "STEP_START", "timestamp": ts, "run_id": r, "step_key": key}));
            v.push(
                json!({"type": "ASSET_MATERIALIZATION_PLANNED", "timestamp": ts, "run_id": r,
                          "asset_key": asset, "partition": part}),
            );
            v.push(
                json!({"type": "LOG_MESSAGE", "timestamp": ts, "run_id": r, "step_key": key,
                          "level": "INFO", "message": "loaded rows"}),
            );
            v.push(mat(step));
            v.push(json!({"type": "ASSET_CHECK_EVALUATION", "timestamp": ts, "run_id": r, "step_key": key,
                          "asset_key": asset, "check_name": "row_count_positive", "passed": step != 3,
                          "partition": part, "metadata": {"rows": 5}}));
            v.push(
                json!({"type": "STEP_SUCCESS", "timestamp": ts, "run_id": r, "step_key": key,
                          "duration_ms": 1500.0}),
            );
        }
    }
    v.push(json!({"type": "RUN_SUCCESS", "timestamp": ts, "run_id": r}));
    for (k, e) in v.iter_mut().enumerate() {
        e["id"] = json!(format!("e{}", first_id + k as u64));
    }
    validate_batch(v, 1, &Limits::default()).unwrap()
}

fn store() -> Log {
    let n = events();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("target/bench-stores/export-{}-{n}", mix()));
    let options = LogOptions {
        sync: false,
        ..LogOptions::default()
    };
    let log = Log::open(&dir, options).unwrap();
    if log.last_seq() == n {
        return log;
    }
    assert_eq!(
        log.last_seq(),
        0,
        "{} holds a partial store: delete it",
        dir.display()
    );
    let t0 = Instant::now();
    let mut batch = Vec::with_capacity(6000);
    let (mut written, mut run) = (0u64, 0u64);
    while written < n {
        let mut evs = run_events(run, written + batch.len() as u64);
        run += 1;
        evs.truncate((n - written - batch.len() as u64) as usize);
        batch.extend(evs);
        if batch.len() >= 5000 || written + batch.len() as u64 == n {
            written += batch.len() as u64;
            log.append_blocking(std::mem::take(&mut batch)).unwrap();
        }
    }
    log.db().flush().unwrap();
    eprintln!("built {n} events in {:?}", t0.elapsed());
    log
}

fn bench(c: &mut Criterion) {
    let log = store();
    let names = [(1u32, "default".to_string())].into_iter().collect();
    let out = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("export");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(60))
        .throughput(Throughput::Elements(events()));
    for (name, tables) in [
        ("events", vec![Table::Events]),
        (
            "append_tables",
            vec![
                Table::Events,
                Table::Materializations,
                Table::Observations,
                Table::RowCounts,
                Table::LineageEdges,
            ],
        ),
    ] {
        g.bench_function(format!("{name}/{}/{}", mix(), events()), |b| {
            b.iter(|| {
                let reader = Reader::new(&log, 1);
                let plan =
                    Plan::new(tables.clone(), 0, None, None, reader.position().unwrap()).unwrap();
                let outputs = tables
                    .iter()
                    .map(|t| {
                        let f = std::fs::File::create(out.path().join(t.name())).unwrap();
                        BufWriter::with_capacity(1 << 20, f)
                    })
                    .collect();
                let w = export::export(&reader, &names, &plan, outputs, &mut |_| {}).unwrap();
                assert_eq!(w[0].rows, events());
            })
        });
    }
    g.finish();
    // Peak RSS of this process (the store was built by an earlier run when reused).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(hwm) = status.lines().find(|l| l.starts_with("VmHWM")) {
        eprintln!(
            "peak RSS of the bench process: {}",
            hwm.trim_start_matches("VmHWM:").trim()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
