//! `loadgen`: an agent simulator for assetlog's ingest endpoint.
//!
//! Each simulated agent sends a realistic stream (a definitions event, then runs with their
//! lifecycle, steps, planned materializations, materializations with row counts and
//! schemas, partitions, checks, log lines, and the odd backfill) in batches over HTTP, and
//! re-sends a share of batches as a retry would. At the end it reports events/s and the
//! ack latency percentiles, and checks the server's duplicate count against its own.
//!
//! ```text
//! loadgen --url http://127.0.0.1:7878 --token-file data/admin-token --agents 4 --batch 500 --events 1000000
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "Simulate agents pushing events to assetlog")]
struct Args {
    /// Base URL of the server
    #[arg(long, default_value = "http://127.0.0.1:7878")]
    url: String,
    /// Bearer token (agent or admin)
    #[arg(long, env = "ASSETLOG_TOKEN", conflicts_with = "token_file")]
    token: Option<String>,
    /// File holding the token (e.g. data/admin-token)
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Concurrent agents (each one connection, one request in flight)
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Events per request
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Total new events to send (stop earlier if --duration passes)
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Stop after this many seconds
    #[arg(long, default_value_t = 600)]
    duration: u64,
    /// Share of requests re-sent as a retry would (the server must answer duplicates)
    #[arg(long, default_value_t = 0.02)]
    retry_share: f64,
    /// Prefix of event ids (use a new one per run against the same store)
    #[arg(long, default_value = "lg")]
    prefix: String,
    /// Random seed
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Generates one agent's stream, each event written straight as JSON text: the agents
/// share the machine with the server, so they should cost it as little as they can.
struct Stream {
    agent: usize,
    prefix: String,
    n: u64,
    run: u64,
    step: u32,
    steps_in_run: u32,
    rng: rand::rngs::StdRng,
    queue: std::collections::VecDeque<String>,
    /// The table schema every materialization carries (the same each time).
    schema: String,
}

const TYPES: [&str; 3] = ["bigint", "varchar", "timestamp"];

fn schema(cols: usize) -> Value {
    let cols: Vec<Value> = (0..cols)
        .map(|i| {
            json!({"name": format!("col_{i}"), "type": TYPES[i % 3],
                        "constraints": {"nullable": i != 0, "unique": i == 0}})
        })
        .collect();
    json!({"type": "table_schema", "columns": cols})
}

impl Stream {
    fn new(agent: usize, prefix: &str, seed: u64) -> Stream {
        Stream {
            agent,
            prefix: prefix.to_string(),
            n: 0,
            run: 0,
            step: 0,
            steps_in_run: 0,
            rng: rand::rngs::StdRng::seed_from_u64(seed + agent as u64),
            queue: std::collections::VecDeque::new(),
            schema: schema(10).to_string(),
        }
    }

    /// Start an event: `{"id":"…","type":"…","timestamp":…` (the caller adds the rest and
    /// the closing brace).
    fn begin(&mut self, event_type: &str, ts: f64) -> String {
        self.n += 1;
        let mut e = String::with_capacity(256);
        let _ = write!(
            e,
            r#"{{"id":"{}-a{}-{}","type":"{event_type}","timestamp":{ts}"#,
            self.prefix, self.agent, self.n
        );
        e
    }

    fn now() -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0)
    }

    fn run_id(&self) -> String {
        format!("{}-a{}-run{}", self.prefix, self.agent, self.run)
    }

    /// The partition the current run materializes.
    fn partition(&self) -> String {
        format!("2026-{:02}-{:02}", 1 + self.run % 12, 1 + self.run % 28)
    }

    fn asset(&self, step: u32) -> String {
        format!(r#"["warehouse","agent{}_table{}"]"#, self.agent, step % 50)
    }

    /// Refill the queue with the events of one step (or a run boundary).
    fn refill(&mut self) {
        let ts = Self::now();
        if self.n == 0 {
            let assets: Vec<String> = (0..50)
                .map(|i| {
                    let deps = if i > 0 { self.asset(i - 1) } else { String::new() };
                    format!(
                        r#"{{"asset_key":{},"deps":[{deps}],"group_name":"warehouse","kinds":["snowflake"],"#,
                        self.asset(i)
                    ) + r#""partitions":{"type":"time_window","start":"2024-01-01"}}"#
                })
                .collect();
            let mut e = self.begin("DEFINITIONS", ts);
            let _ = write!(
                e,
                r#","code_location":"agent{}","assets":[{}]}}"#,
                self.agent,
                assets.join(",")
            );
            self.queue.push_back(e);
        }
        if self.step == 0 {
            self.run += 1;
            self.steps_in_run = self.rng.gen_range(3..12);
            let run = self.run_id();
            let partition = self.partition();
            if self.run.is_multiple_of(50) {
                let mut e = self.begin("BACKFILL_CREATED", ts);
                let _ = write!(
                    e,
                    r#","backfill_id":"bf-{}-{}","partition_names":["{partition}"]}}"#,
                    self.agent, self.run
                );
                self.queue.push_back(e);
            }
            for t in ["RUN_STARTING", "RUN_START"] {
                let mut e = self.begin(t, ts);
                let _ = write!(
                    e,
                    r#","run_id":"{run}","job_name":"daily","tags":{{"dagster/partition":"{partition}"}}}}"#
                );
                self.queue.push_back(e);
            }
        }
        let partition = self.partition();
        let run = self.run_id();
        let step = self.step;
        let asset = self.asset(step);
        let rows: u64 = self.rng.gen_range(1000..1_000_000);
        let mut e = self.begin("STEP_START", ts);
        let _ = write!(e, r#","run_id":"{run}","step_key":"step_{step}"}}"#);
        self.queue.push_back(e);
        let mut e = self.begin("ASSET_MATERIALIZATION_PLANNED", ts);
        let _ = write!(
            e,
            r#","run_id":"{run}","asset_key":{asset},"partition":"{partition}"}}"#
        );
        self.queue.push_back(e);
        let mut e = self.begin("LOG_MESSAGE", ts);
        let _ = write!(
            e,
            r#","run_id":"{run}","step_key":"step_{step}","level":"INFO","message":"loaded {rows} rows"}}"#
        );
        self.queue.push_back(e);
        let mut e = self.begin("ASSET_MATERIALIZATION", ts);
        let _ = write!(
            e,
            r#","run_id":"{run}","step_key":"step_{step}","asset_key":{asset},"partition":"{partition}""#
        );
        let _ = write!(
            e,
            r#","metadata":{{"dagster/row_count":{rows},"dagster/partition_row_count":{},"#,
            rows / 10
        );
        let _ = write!(
            e,
            r#""dagster/column_schema":{},"dagster/table_name":"db.warehouse.t{step}","#,
            self.schema
        );
        let _ = write!(
            e,
            r#""duration_s":1.5,"dagster/uri":"s3://lake/t"}},"tags":{{"dagster/data_version":"{rows:x}"}}}}"#
        );
        self.queue.push_back(e);
        let passed = self.rng.gen_bool(0.9);
        let mut e = self.begin("ASSET_CHECK_EVALUATION", ts);
        let _ = write!(
            e,
            r#","run_id":"{run}","step_key":"step_{step}","asset_key":{asset},"partition":"{partition}""#
        );
        let _ = write!(
            e,
            r#","check_name":"row_count_positive","passed":{passed},"metadata":{{"rows":{rows}}}}}"#
        );
        self.queue.push_back(e);
        let mut e = self.begin("STEP_SUCCESS", ts);
        let _ = write!(
            e,
            r#","run_id":"{run}","step_key":"step_{step}","duration_ms":1500.0}}"#
        );
        self.queue.push_back(e);
        self.step += 1;
        if self.step >= self.steps_in_run {
            self.step = 0;
            let t = if self.rng.gen_bool(0.95) {
                "RUN_SUCCESS"
            } else {
                "RUN_FAILURE"
            };
            let mut e = self.begin(t, ts);
            let _ = write!(e, r#","run_id":"{run}"}}"#);
            self.queue.push_back(e);
        }
    }

    /// The next `size` events as one JSON array.
    fn next_batch(&mut self, size: usize) -> Vec<u8> {
        while self.queue.len() < size {
            self.refill();
        }
        let mut body = Vec::with_capacity(size * 400);
        body.push(b'[');
        for (i, e) in self.queue.drain(..size).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(e.as_bytes());
        }
        body.push(b']');
        body
    }
}

#[derive(Default)]
struct Totals {
    stored: AtomicU64,
    duplicates_reported: AtomicU64,
    duplicates_sent: AtomicU64,
    requests: AtomicU64,
    busy: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give --token or --token-file"),
    };
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(args.agents)
        .build_http();
    let url: hyper::Uri = format!("{}/api/v1/events", args.url.trim_end_matches('/')).parse()?;
    let totals = Arc::new(Totals::default());
    let budget = Arc::new(AtomicU64::new(args.events));
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for agent in 0..args.agents {
        let (client, url, token, totals, budget) = (
            client.clone(),
            url.clone(),
            token.clone(),
            totals.clone(),
            budget.clone(),
        );
        let (batch, retry_share, prefix, seed) =
            (args.batch, args.retry_share, args.prefix.clone(), args.seed);
        tasks.push(tokio::spawn(async move {
            let mut stream = Stream::new(agent, &prefix, seed);
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 31 + agent as u64);
            let mut latencies = Vec::new();
            let mut last: Option<Bytes> = None;
            // A request answered 503 was not stored: send it again as it was.
            let mut busy_again: Option<(Bytes, bool)> = None;
            while Instant::now() < deadline {
                let (body, retry) = match busy_again.take() {
                    Some(b) => b,
                    None => match (&last, rng.gen_bool(retry_share)) {
                        (Some(prev), true) => (prev.clone(), true),
                        _ => {
                            let want = budget
                                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                                    (b > 0).then(|| b.saturating_sub(batch as u64))
                                })
                                .map(|b| b.min(batch as u64) as usize)
                                .unwrap_or(0);
                            if want == 0 {
                                break;
                            }
                            (Bytes::from(stream.next_batch(want)), false)
                        }
                    },
                };
                let req = hyper::Request::post(url.clone())
                    .header("authorization", format!("Bearer {token}"))
                    .header("content-type", "application/json")
                    .body(Full::new(body.clone()))
                    .expect("request");
                let t0 = Instant::now();
                let resp = match client.request(req).await {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("agent {agent}: request failed: {e}");
                        totals.errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let status = resp.status();
                let bytes = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                totals.requests.fetch_add(1, Ordering::Relaxed);
                if status == 503 {
                    totals.busy.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    busy_again = Some((body, retry));
                    continue;
                }
                if !status.is_success() {
                    totals.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "agent {agent}: {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    );
                    continue;
                }
                latencies.push(t0.elapsed());
                let reply: Value = serde_json::from_slice(&bytes).unwrap_or_default();
                totals
                    .stored
                    .fetch_add(reply["stored"].as_u64().unwrap_or(0), Ordering::Relaxed);
                let dups = reply["duplicates"].as_u64().unwrap_or(0);
                totals
                    .duplicates_reported
                    .fetch_add(dups, Ordering::Relaxed);
                if retry {
                    totals.duplicates_sent.fetch_add(
                        reply["events"]
                            .as_array()
                            .map(|a| a.len() as u64)
                            .unwrap_or(0),
                        Ordering::Relaxed,
                    );
                }
                last = Some(body);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    let stored = totals.stored.load(Ordering::Relaxed);
    let report = json!({
        "agents": args.agents,
        "batch": args.batch,
        "elapsed_s": (elapsed * 100.0).round() / 100.0,
        "events_stored": stored,
        "events_per_s": (stored as f64 / elapsed).round(),
        "requests": totals.requests.load(Ordering::Relaxed),
        "duplicates_sent": totals.duplicates_sent.load(Ordering::Relaxed),
        "duplicates_reported": totals.duplicates_reported.load(Ordering::Relaxed),
        "busy_503": totals.busy.load(Ordering::Relaxed),
        "errors": totals.errors.load(Ordering::Relaxed),
        "ack_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if totals.duplicates_reported.load(Ordering::Relaxed)
        != totals.duplicates_sent.load(Ordering::Relaxed)
    {
        bail!("the server reported a different number of duplicates than were re-sent");
    }
    if totals.errors.load(Ordering::Relaxed) > 0 {
        bail!("some requests failed");
    }
    Ok(())
}
