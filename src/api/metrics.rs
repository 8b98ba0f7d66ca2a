//! Prometheus metrics, hand-rolled on atomics (no registry crate needed for a dozen series).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Process-wide metrics.
pub static METRICS: Metrics = Metrics::new();

/// A histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: [AtomicU64; 16],
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; 16],
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cum = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cum += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cum}");
        }
        cum += self.counts[self.bounds.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6,
            self.count.load(Ordering::Relaxed)
        );
    }
}

pub struct Metrics {
    pub events_ingested: AtomicU64,
    pub bytes_ingested: AtomicU64,
    pub duplicates: AtomicU64,
    pub requests: AtomicU64,
    pub batch_size: Histogram,
    pub ack_latency: Histogram,
    /// Dagster+ API: GraphQL operations, `/store_events` requests, events stored through
    /// either, compute-log uploads.
    pub dagster_plus_operations: AtomicU64,
    pub dagster_plus_store_events: AtomicU64,
    pub dagster_plus_log_uploads: AtomicU64,
    rejections: Mutex<Vec<(&'static str, u64)>>,
}

impl Metrics {
    const fn new() -> Metrics {
        Metrics {
            events_ingested: AtomicU64::new(0),
            bytes_ingested: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            batch_size: Histogram::new(&[1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0]),
            ack_latency: Histogram::new(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            dagster_plus_operations: AtomicU64::new(0),
            dagster_plus_store_events: AtomicU64::new(0),
            dagster_plus_log_uploads: AtomicU64::new(0),
            rejections: Mutex::new(Vec::new()),
        }
    }

    /// Count a rejected request by reason (the error code).
    pub fn rejected(&self, reason: &'static str) {
        let mut r = self.rejections.lock().unwrap_or_else(|p| p.into_inner());
        match r.iter_mut().find(|(k, _)| *k == reason) {
            Some((_, n)) => *n += 1,
            None => r.push((reason, 1)),
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, last_seq: u64, queued: usize, queue_capacity: usize) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        for (name, help, v) in [
            (
                "assetlog_dagster_plus_operations_total",
                "Dagster+ GraphQL operations answered.",
                &self.dagster_plus_operations,
            ),
            (
                "assetlog_dagster_plus_store_events_requests_total",
                "Dagster+ POST /store_events requests.",
                &self.dagster_plus_store_events,
            ),
            (
                "assetlog_dagster_plus_events_total",
                "Events stored through the Dagster+ API (not counting duplicates).",
                &crate::dagster_plus::ops::EVENTS_STORED,
            ),
            (
                "assetlog_dagster_plus_compute_log_uploads_total",
                "Compute logs uploaded through the Dagster+ API.",
                &self.dagster_plus_log_uploads,
            ),
        ] {
            counter(&mut out, name, help, v.load(Ordering::Relaxed));
        }
        counter(
            &mut out,
            "assetlog_events_ingested_total",
            "Events stored (not counting duplicates).",
            self.events_ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "assetlog_bytes_ingested_total",
            "Request body bytes accepted (after decompression).",
            self.bytes_ingested.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "assetlog_duplicates_total",
            "Re-sent events answered with their original sequence number.",
            self.duplicates.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "assetlog_ingest_requests_total",
            "Ingest requests received.",
            self.requests.load(Ordering::Relaxed),
        );
        let _ = writeln!(out, "# HELP assetlog_rejections_total Requests rejected, by reason.\n# TYPE assetlog_rejections_total counter");
        for (reason, n) in self
            .rejections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "assetlog_rejections_total{{reason=\"{reason}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP assetlog_queue_depth Appends waiting for the writer.\n# TYPE assetlog_queue_depth gauge\nassetlog_queue_depth {queued}");
        let _ = writeln!(out, "# HELP assetlog_queue_capacity Appends that may wait before ingest answers 503.\n# TYPE assetlog_queue_capacity gauge\nassetlog_queue_capacity {queue_capacity}");
        let _ = writeln!(out, "# HELP assetlog_log_last_seq Highest committed sequence number.\n# TYPE assetlog_log_last_seq gauge\nassetlog_log_last_seq {last_seq}");
        self.batch_size.render(
            &mut out,
            "assetlog_ingest_batch_events",
            "Events per ingest request.",
        );
        self.ack_latency.render(
            &mut out,
            "assetlog_ack_latency_seconds",
            "Time from request to durable acknowledgement.",
        );
        out
    }
}
