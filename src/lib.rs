//! # assetlog
//!
//! An event-sourced metadata store for data orchestration. Agents and run workers push
//! events (runs, asset materializations and observations, checks, backfills, definitions)
//! to it; it keeps every event in an append-only log on RocksDB and answers queries.
//!
//! ## Layout
//!
//! The module tree is the architecture; dependencies point one way:
//! `event` <- `log` <- `api` <- `app` <- `main`.
//!
//! - [`event`]: the event model (envelope + typed body, metadata kinds, reserved keys), the
//!   native JSON format ([`event::validate`] in, [`event::json`] out).
//! - [`log`]: the durable append-only log: one writer thread, group commit, idempotent ids,
//!   sequence numbers, run index, tail notifications, the DB format version.
//! - [`config`]: configuration (defaults < TOML file < `ASSETLOG_*` env < flags).
//! - [`telemetry`]: tracing setup (text or JSON logs).
//! - [`projection`]: the views, rebuildable from the log.
//! - [`export`]: Parquet export of the log and the views.
//! - [`dagster_plus`]: the Dagster+ storage API that the `dagster-cloud` package speaks.
//! - [`api`]: the HTTP server (axum): health, readiness, and the APIs built on the log.
//! - [`cli`]: the `assetlog` command line.
//!
//! ## Data flow
//!
//! ```text
//! JSON body -> event::validate (pure, typed errors with paths) -> Vec<Event>
//!   -> Log::append -> writer thread: dedupe, seq, log + indexes in ONE WriteBatch, fsync
//!   -> reply with seqs; tail watch advances
//! ```
//!
//! Start reading at [`log`] for the invariants, then [`event`].

/// mimalloc: the store allocates and frees many small objects per event (keys, decoded
/// records); glibc's malloc showed up as ~30% of append profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dagster_plus;
pub mod event;
pub mod export;
pub mod log;
pub mod projection;
pub mod telemetry;
