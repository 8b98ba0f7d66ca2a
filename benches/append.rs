//! Durable append throughput of the log (fsync on), in events.
//!
//! - `append/batch/{1,100,1000}`: one appender, batches of realistic materializations
//!   (six metadata entries incl. a 10-column schema and a row count).
//! - `append/concurrent_single/16`: 16 threads each appending one event at a time; group
//!   commit lets them share fsyncs.
//! - `append_with_views/batch/1000`: the same, with every projection written in the same
//!   batch (`projection::open`), measured in the same run for the ratio;
//!   `append_with_views/concurrent_batches/2`: two appenders of batches of 1000 at once.
//! - `rocksdb_raw/batch/1000`: the same encoded bytes written straight to RocksDB in one
//!   synced `WriteBatch` per 1000 events (log key only, no dedupe or index): the ceiling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assetlog::event::sample;
use assetlog::log::{codec, keys, Log, LogOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn events(n: usize) -> Vec<assetlog::event::Event> {
    (0..n)
        .map(|_| {
            let i = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            sample::materialization(
                1,
                format!("evt-{i:012}"),
                &format!("run-{}", i / 100),
                (i % 1000) as usize,
                None,
                1_700_000_000_000_000 + i as i64,
            )
        })
        .collect()
}

fn bench_append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    // Warm up the disk and the memtable.
    for _ in 0..20 {
        log.append_blocking(events(1000)).unwrap();
    }
    let mut g = c.benchmark_group("append");
    g.measurement_time(Duration::from_secs(8));
    for size in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(size as u64));
        g.bench_with_input(BenchmarkId::new("batch", size), &size, |b, &size| {
            b.iter_batched(
                || events(size),
                |evs| log.append_blocking(evs).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let threads = 16u64;
    g.throughput(Throughput::Elements(threads));
    g.bench_function(BenchmarkId::new("concurrent_single", threads), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for _ in 0..iters {
                            log.append_blocking(events(1)).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn bench_append_with_views(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let log = assetlog::projection::open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
    for _ in 0..20 {
        log.append_blocking(events(1000)).unwrap();
    }
    let mut g = c.benchmark_group("append_with_views");
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1000));
    g.bench_function(BenchmarkId::new("batch", 1000), |b| {
        b.iter_batched(
            || events(1000),
            |evs| log.append_blocking(evs).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    // Two agents, each with one batch of 1000 in flight: the writer stages one batch while
    // the batch before is written.
    let appenders = 2u64;
    g.throughput(Throughput::Elements(1000 * appenders));
    g.bench_function(BenchmarkId::new("concurrent_batches", appenders), |b| {
        b.iter_custom(|iters| {
            let inputs: Vec<Vec<_>> = (0..appenders)
                .map(|_| (0..iters).map(|_| events(1000)).collect())
                .collect();
            let start = Instant::now();
            let handles: Vec<_> = inputs
                .into_iter()
                .map(|batches| {
                    let log = log.clone();
                    std::thread::spawn(move || {
                        for evs in batches {
                            log.append_blocking(evs).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            start.elapsed()
        })
    });
    g.finish();
}

fn bench_raw_rocksdb(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.set_write_buffer_size(64 << 20);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let db = rocksdb::DB::open(&opts, dir.path()).unwrap();
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    let mut seq = 0u64;
    let mut g = c.benchmark_group("rocksdb_raw");
    g.measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1000));
    g.bench_function(BenchmarkId::new("batch", 1000), |b| {
        b.iter_batched(
            || {
                events(1000)
                    .iter()
                    .map(codec::encode_event)
                    .collect::<Vec<_>>()
            },
            |encoded| {
                let mut batch = rocksdb::WriteBatch::default();
                for v in encoded {
                    seq += 1;
                    batch.put(keys::log(seq), v);
                }
                db.write_opt(batch, &wo).unwrap();
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Encoding and hashing alone: what the writer (or its helper) spends per event.
fn bench_codec(c: &mut Criterion) {
    let evs = events(1000);
    let encoded: Vec<Vec<u8>> = evs.iter().map(codec::encode_event).collect();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1000));
    g.bench_function(BenchmarkId::new("encode_hash", 1000), |b| {
        b.iter(|| {
            evs.iter()
                .map(|e| codec::content_hash(&codec::encode_event(e)))
                .fold(0u128, |a, h| a ^ h)
        })
    });
    g.bench_function(BenchmarkId::new("decode", 1000), |b| {
        b.iter(|| {
            encoded
                .iter()
                .map(|v| {
                    codec::decode_event(v, String::new)
                        .unwrap()
                        .envelope
                        .timestamp_us
                })
                .sum::<i64>()
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_codec,
    bench_append,
    bench_append_with_views,
    bench_raw_rocksdb
);
criterion_main!(benches);
