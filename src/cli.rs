//! The `assetlog` command line. Every command has `--help`.

use std::io::{BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::event::{json, validate};
use crate::log::{Log, LogOptions};
use crate::telemetry::{self, LogFormat};

/// assetlog: an event-sourced metadata store for data orchestration.
#[derive(Debug, Parser)]
#[command(name = "assetlog", version, about, long_about = None)]
pub struct Cli {
    /// RocksDB directory of the store [default: ./data, or `data_dir` from the config file]
    #[arg(long, global = true, env = "ASSETLOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format on stderr
    #[arg(long, global = true, env = "ASSETLOG_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the store and serve HTTP (health, ingest, queries)
    Serve(ServeArgs),
    /// Append events from a file (JSON array or NDJSON; `-` reads stdin) and print their
    /// sequence numbers
    Append(AppendArgs),
    /// Print events as JSON lines in the native format
    Log(LogArgs),
    /// Check the store: contiguous sequence numbers, every value decodes, indexes agree
    Verify,
    /// Drop every view and rebuild them by replaying the log (the server must be stopped)
    Rebuild,
    /// Export the log and the views as Parquet files with a manifest (on a stopped store;
    /// a running server has `GET /api/v1/export/{table}.parquet`)
    Export(ExportArgs),
    /// Print the GraphQL schema (SDL); `schemas/schema.graphql` is this output
    Schema {
        /// Instead, write the Parquet export's table schemas as JSON into this directory
        /// (`schemas/parquet`)
        #[arg(long)]
        parquet: Option<PathBuf>,
    },
    /// Manage deployments (on a stopped store; a running server has `/api/v1/deployments`)
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Manage tokens (on a stopped store; a running server has `/api/v1/tokens`)
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment (a tenant); does nothing if it exists
    Create {
        /// 1-63 characters of a-z, 0-9, '-' and '_'
        name: String,
    },
    /// List deployments
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (it is shown only this once; only its hash is stored)
    Create {
        /// Deployment the token is bound to
        #[arg(long)]
        deployment: String,
        /// agent: write and read; viewer: read; admin: also manage deployments and tokens
        #[arg(long, value_enum)]
        role: crate::auth::Role,
        /// A note to recognise the token by in `token list`
        #[arg(long)]
        label: Option<String>,
    },
    /// List tokens (ids, deployments, roles; never secrets)
    List,
    /// Revoke a token by id; it is refused from the next request on
    Revoke {
        /// The token id shown by `token list` (the part after `alog_`)
        id: String,
    },
}

/// Flags of `assetlog serve`. Each overrides the config file; env vars are `ASSETLOG_<NAME>`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (same keys as these flags, snake_case)
    #[arg(long, short, env = "ASSETLOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878]
    #[arg(long, env = "ASSETLOG_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// fsync before acknowledging [default: true]
    #[arg(long, env = "ASSETLOG_SYNC")]
    pub sync: Option<bool>,
    /// Requests that may wait for the writer before ingest answers 503 [default: 1024]
    #[arg(long, env = "ASSETLOG_QUEUE_CAPACITY")]
    pub queue_capacity: Option<usize>,
    /// Largest request body after decompression, bytes [default: 33554432]
    #[arg(long, env = "ASSETLOG_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Most events in one request [default: 10000]
    #[arg(long, env = "ASSETLOG_MAX_EVENTS_PER_REQUEST")]
    pub max_events_per_request: Option<usize>,
    /// Largest single event, bytes of JSON [default: 1048576]
    #[arg(long, env = "ASSETLOG_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Most metadata entries or tags on one event [default: 1000]
    #[arg(long, env = "ASSETLOG_MAX_METADATA_ENTRIES")]
    pub max_metadata_entries: Option<usize>,
    /// Deepest JSON nesting in one event [default: 64]
    #[arg(long, env = "ASSETLOG_MAX_DEPTH")]
    pub max_depth: Option<usize>,
    /// Longest string value, bytes [default: 262144]
    #[arg(long, env = "ASSETLOG_MAX_STRING_BYTES")]
    pub max_string_bytes: Option<usize>,
    /// PEM certificate chain: serve HTTPS (TLS 1.2+) with --tls-key
    #[arg(long, env = "ASSETLOG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert
    #[arg(long, env = "ASSETLOG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Deployments (comma-separated) whose Dagster compute logs are not stored
    #[arg(
        long,
        env = "ASSETLOG_DAGSTER_PLUS_DISABLE_COMPUTE_LOGS",
        value_delimiter = ','
    )]
    pub dagster_plus_disable_compute_logs: Option<Vec<String>>,
}

#[derive(Debug, Args)]
pub struct AppendArgs {
    /// File of events: a JSON array or NDJSON; `-` for stdin
    pub file: PathBuf,
    /// Deployment the events belong to (created if new)
    #[arg(long, default_value = "default")]
    pub deployment: String,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// First sequence number to print
    #[arg(long, default_value_t = 1)]
    pub from: u64,
    /// Most events to print
    #[arg(long)]
    pub limit: Option<usize>,
    /// Only events of this run (needs the deployment)
    #[arg(long)]
    pub run: Option<String>,
    /// Deployment whose events to print (all deployments when omitted, except with --run)
    #[arg(long)]
    pub deployment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write: one sub-directory of Parquet files per table, and manifest.json
    #[arg(long)]
    pub out: PathBuf,
    /// Tables to export, comma-separated [default: all: events, runs, materializations,
    /// observations, row_counts, asset_checks, lineage_edges, column_schemas, backfills]
    #[arg(long, value_delimiter = ',', value_parser = parse_table)]
    pub tables: Option<Vec<crate::export::Table>>,
    /// Export only events after this sequence number (and the entities they touched)
    #[arg(long, conflicts_with = "incremental")]
    pub since: Option<u64>,
    /// Continue the export in --out from where its manifest ends
    #[arg(long)]
    pub incremental: bool,
    /// Export only this deployment [default: all deployments]
    #[arg(long)]
    pub deployment: Option<String>,
}

fn parse_table(s: &str) -> Result<crate::export::Table, String> {
    crate::export::Table::parse(s).ok_or_else(|| {
        let names: Vec<&str> = crate::export::Table::ALL.iter().map(|t| t.name()).collect();
        format!("unknown table {s:?}; tables are {}", names.join(", "))
    })
}

/// Parse arguments, run, and map errors to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Open the store with its views (caught up or rebuilt first, with a progress bar).
fn open(dir: &std::path::Path, options: LogOptions) -> anyhow::Result<Arc<Log>> {
    let mut bar: Option<indicatif::ProgressBar> = None;
    let log = crate::projection::open(dir, options, |seq, last| {
        bar.get_or_insert_with(|| progress_bar(last, "updating views"))
            .set_position(seq);
    })
    .with_context(|| opening(dir))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(log)
}

fn opening(dir: &std::path::Path) -> String {
    format!(
        "opening the store at {} (a running server holds it: stop it, or use the HTTP API)",
        dir.display()
    )
}

fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} events ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let Cli {
        data_dir,
        log_format,
        command,
    } = cli;
    match command {
        Command::Serve(args) => {
            let config = serve_config(data_dir, log_format, args)?;
            telemetry::init(config.log_format);
            crate::api::serve(config)
        }
        Command::Append(args) => {
            telemetry::init(log_format.unwrap_or_default());
            let log = open(&data_dir.unwrap_or_else(default_dir), LogOptions::default())?;
            let body = if args.file.as_os_str() == "-" {
                let mut b = Vec::new();
                std::io::stdin().read_to_end(&mut b)?;
                b
            } else {
                std::fs::read(&args.file)
                    .with_context(|| format!("reading {}", args.file.display()))?
            };
            let (dep, _) = log.ensure_deployment(&args.deployment)?;
            let values = validate::parse_body(&body)?;
            let events = validate::validate_batch(values, dep, &validate::Limits::default())?;
            let appended = log.append_blocking(events)?;
            let mut out = BufWriter::new(std::io::stdout().lock());
            for a in &appended {
                writeln!(
                    out,
                    "{}{}",
                    a.seq,
                    if a.duplicate { " duplicate" } else { "" }
                )?;
            }
            out.flush()?;
            log.shutdown();
            Ok(())
        }
        Command::Log(args) => {
            let log = open(&data_dir.unwrap_or_else(default_dir), LogOptions::default())?;
            let deployments = log.deployments()?;
            let dep = match &args.deployment {
                Some(name) => Some(
                    log.deployment_id(name)?
                        .with_context(|| format!("no deployment named {name:?}"))?,
                ),
                None => None,
            };
            let name_of = |id| {
                deployments
                    .iter()
                    .find(|(_, d)| *d == id)
                    .map(|(n, _)| n.as_str())
                    .unwrap_or("?")
            };
            let limit = args.limit.unwrap_or(usize::MAX);
            let mut out = BufWriter::new(std::io::stdout().lock());
            let mut print = |seq: u64, ev: &crate::event::Event| -> std::io::Result<()> {
                let mut v = json::to_json(ev);
                v["seq"] = seq.into();
                v["deployment"] = name_of(ev.envelope.deployment).into();
                serde_json::to_writer(&mut out, &v)?;
                out.write_all(b"\n")
            };
            if let Some(run) = &args.run {
                let Some(dep) = dep.or_else(|| (deployments.len() == 1).then(|| deployments[0].1))
                else {
                    bail!("--run needs --deployment when the store has several deployments");
                };
                for (seq, ev) in log.read_run(dep, run, args.from, limit)? {
                    print(seq, &ev)?;
                }
            } else {
                let mut printed = 0;
                let mut io_err = None;
                log.scan(args.from, |seq, ev| {
                    if dep.is_some_and(|d| d != ev.envelope.deployment) {
                        return true;
                    }
                    if let Err(e) = print(seq, &ev) {
                        io_err = Some(e);
                        return false;
                    }
                    printed += 1;
                    printed < limit
                })?;
                if let Some(e) = io_err {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        return Err(e.into());
                    }
                }
            }
            out.flush().or_else(|e| {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            Ok(())
        }
        Command::Deployment(DeploymentCommand::Create { name }) => admin(data_dir, |log| {
            crate::api::admin::check_deployment_name(&name).map_err(anyhow::Error::msg)?;
            let (id, created) = log.ensure_deployment(&name)?;
            println!(
                "{name} (id {id}){}",
                if created { " created" } else { " exists" }
            );
            Ok(())
        }),
        Command::Deployment(DeploymentCommand::List) => admin(data_dir, |log| {
            for (name, id) in log.deployments()? {
                println!("{id}\t{name}");
            }
            Ok(())
        }),
        Command::Token(TokenCommand::Create {
            deployment,
            role,
            label,
        }) => admin(data_dir, |log| {
            let (secret, record) =
                crate::auth::Tokens::new(log.clone()).create(&deployment, role, label)?;
            eprintln!(
                "token {} for deployment {:?}, role {}; it is shown only now:",
                record.id,
                deployment,
                role.as_str()
            );
            println!("{secret}");
            Ok(())
        }),
        Command::Token(TokenCommand::List) => admin(data_dir, |log| {
            for t in crate::auth::Tokens::new(log.clone()).list()? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    t.id,
                    t.deployment_name,
                    t.role.as_str(),
                    json::format_timestamp(t.created_us),
                    t.label.unwrap_or_default()
                );
            }
            Ok(())
        }),
        Command::Token(TokenCommand::Revoke { id }) => admin(data_dir, |log| {
            crate::auth::Tokens::new(log.clone()).revoke(&id)?;
            println!("revoked {id}");
            Ok(())
        }),
        Command::Rebuild => {
            telemetry::init(log_format.unwrap_or_default());
            let dir = data_dir.unwrap_or_else(default_dir);
            let log = crate::projection::open_to_rebuild(&dir, LogOptions::default())
                .with_context(|| opening(&dir))?;
            let bar = progress_bar(log.last_seq(), "rebuilding views");
            let started = std::time::Instant::now();
            crate::projection::rebuild(&log, |seq, _| bar.set_position(seq))?;
            bar.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            println!(
                "rebuilt views from {} events in {secs:.2} s ({:.0} events/s)",
                log.last_seq(),
                log.last_seq() as f64 / secs.max(1e-9)
            );
            Ok(())
        }
        Command::Export(args) => {
            telemetry::init(log_format.unwrap_or_default());
            let log = open(&data_dir.unwrap_or_else(default_dir), LogOptions::default())?;
            let req = crate::export::dir::Request {
                out: args.out,
                tables: args.tables,
                since: args.since,
                incremental: args.incremental,
                deployment: args.deployment,
            };
            let mut bar: Option<indicatif::ProgressBar> = None;
            let started = std::time::Instant::now();
            let outcome = crate::export::dir::export_dir(&log, &req, &mut |seq, until| {
                bar.get_or_insert_with(|| progress_bar(until, "exporting"))
                    .set_position(seq);
            })?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            match outcome {
                crate::export::dir::Outcome::UpToDate(seq) => {
                    println!("up to date: {} already holds seq {seq}", req.out.display());
                }
                crate::export::dir::Outcome::Exported(info) => {
                    let secs = started.elapsed().as_secs_f64();
                    println!(
                        "exported seq {}..={} in {secs:.2} s ({:.0} events/s)",
                        info.since + 1,
                        info.until,
                        (info.until - info.since) as f64 / secs.max(1e-9)
                    );
                    for f in &info.files {
                        println!(
                            "{}\t{}\t{} rows",
                            f.table,
                            req.out.join(&f.path).display(),
                            f.rows
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Schema { parquet: None } => {
            print!("{}", crate::api::graphql::schema().sdl());
            Ok(())
        }
        Command::Schema { parquet: Some(dir) } => {
            crate::export::docs::write_all(&dir)?;
            println!("wrote {}", dir.display());
            Ok(())
        }
        Command::Verify => {
            telemetry::init(log_format.unwrap_or_default());
            let log = open(&data_dir.unwrap_or_else(default_dir), LogOptions::default())?;
            let bar = progress_bar(log.last_seq(), "verifying");
            let report = log.verify(|seq| bar.set_position(seq))?;
            bar.finish_and_clear();
            if report.problems.is_empty() {
                println!(
                    "ok: {} events, {} dedupe entries, {} run-index entries",
                    report.events, report.dedupe_entries, report.run_entries
                );
                Ok(())
            } else {
                for p in &report.problems {
                    println!("problem: {p}");
                }
                bail!("verify found {} problem(s)", report.problems.len())
            }
        }
    }
}

fn admin(
    cli_dir: Option<PathBuf>,
    f: impl FnOnce(&Arc<Log>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let log = open(&cli_dir.unwrap_or_else(default_dir), LogOptions::default())?;
    crate::auth::bootstrap(&log)?;
    f(&log)
}

fn default_dir() -> PathBuf {
    Config::default().data_dir
}

/// Layer the config: defaults < file < env and flags (clap gives flags precedence over env).
fn serve_config(
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    a: ServeArgs,
) -> anyhow::Result<Config> {
    let mut c = Config::from_file(a.config.as_deref())?;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = a.$field { c.$field = v; } )* };
    }
    set!(
        listen,
        sync,
        queue_capacity,
        max_body_bytes,
        max_events_per_request,
        max_event_bytes,
        max_metadata_entries,
        max_depth,
        max_string_bytes
    );
    if let Some(d) = data_dir {
        c.data_dir = d;
    }
    if let Some(f) = log_format {
        c.log_format = f;
    }
    if a.tls_cert.is_some() {
        c.tls_cert = a.tls_cert;
    }
    if let Some(d) = a.dagster_plus_disable_compute_logs {
        c.dagster_plus_disable_compute_logs = d;
    }
    if a.tls_key.is_some() {
        c.tls_key = a.tls_key;
    }
    c.validate()?;
    Ok(c)
}
