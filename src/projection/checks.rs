//! Asset checks: executions per check (a planned execution is updated in place by its
//! evaluation, matched on run and partition, as Dagster does), a per-check summary, and the
//! definitions of checks. A planned execution resolves against its run at read time:
//! run finished with FAILURE -> EXECUTION_FAILED, finished otherwise or missing -> SKIPPED,
//! not finished -> IN_PROGRESS.

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::runs::RunStatus;
use super::{enc, intern, Result, Rows};
use crate::event::{AssetKey, CheckDefinition, CheckSeverity, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredStatus {
    Planned,
    Succeeded,
    Failed,
}

/// `AssetCheckExecutionResolvedStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolvedStatus {
    InProgress,
    Succeeded,
    Failed,
    ExecutionFailed,
    Skipped,
}

impl ResolvedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolvedStatus::InProgress => "IN_PROGRESS",
            ResolvedStatus::Succeeded => "SUCCEEDED",
            ResolvedStatus::Failed => "FAILED",
            ResolvedStatus::ExecutionFailed => "EXECUTION_FAILED",
            ResolvedStatus::Skipped => "SKIPPED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckExecution {
    /// Seq of the event that created the execution (planned or a run-less evaluation).
    pub id: Seq,
    pub run_id: Option<String>,
    pub partition: Option<String>,
    pub status: StoredStatus,
    pub severity: Option<CheckSeverity>,
    /// Seq and time of the evaluation event, once there is one.
    pub evaluation_seq: Option<Seq>,
    pub evaluated_us: Option<i64>,
    /// The latest timestamp of the execution's events: orders executions (it only grows,
    /// so the latest execution does not depend on arrival order).
    pub timestamp_us: i64,
    pub description: Option<String>,
}

impl CheckExecution {
    fn new(
        id: Seq,
        run: Option<&str>,
        partition: Option<&str>,
        status: StoredStatus,
        ts: i64,
    ) -> Self {
        CheckExecution {
            id,
            run_id: run.map(str::to_string),
            partition: partition.map(str::to_string),
            status,
            severity: None,
            evaluation_seq: None,
            evaluated_us: None,
            timestamp_us: ts,
            description: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckSummary {
    pub definition: Option<CheckDefinition>,
    /// `(timestamp, seq)` of the definitions event that `definition` comes from: an older
    /// one arriving late changes nothing.
    pub defined_at: Option<(i64, Seq)>,
    /// The code location that defines the check.
    pub defined_by: Option<String>,
    /// (timestamp, execution id, partition) of the latest execution, and of the latest
    /// completed one.
    pub latest: Option<(i64, Seq, Option<String>)>,
    pub latest_completed: Option<(i64, Seq, Option<String>)>,
}

/// The checks a code location's latest definitions event defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckLocation {
    pub defined_at: (i64, Seq),
    /// `(asset id, check name)`.
    pub checks: Vec<(u64, String)>,
}

/// Executions are keyed by the creating event's seq and the partition (one planned event
/// can plan several partitions).
fn exec_key(
    dep: DeploymentId,
    asset: u64,
    check: &str,
    id: Seq,
    partition: Option<&str>,
) -> Vec<u8> {
    exec_prefix(dep, asset, check, id)
        .str(partition.unwrap_or(""))
        .build()
}

/// The executions with id `id`, one per partition.
fn exec_prefix(dep: DeploymentId, asset: u64, check: &str, id: Seq) -> K {
    K::new(keys::CHECK_EXECUTION, dep)
        .u64(asset)
        .str(check)
        .u64(id)
}

fn by_run_key(
    dep: DeploymentId,
    asset: u64,
    check: &str,
    run: &str,
    partition: Option<&str>,
) -> Vec<u8> {
    K::new(keys::CHECK_EXECUTION_BY_RUN, dep)
        .u64(asset)
        .str(check)
        .str(run)
        .str(partition.unwrap_or(""))
        .build()
}

fn by_time_prefix(dep: DeploymentId, asset: u64, check: &str) -> K {
    K::new(keys::CHECK_EXECUTION_BY_TIME, dep)
        .u64(asset)
        .str(check)
}

/// Execution `e`'s row in the by-time index, at time `at`.
fn by_time_key(dep: DeploymentId, asset: u64, check: &str, e: &CheckExecution, at: i64) -> Vec<u8> {
    by_time_prefix(dep, asset, check)
        .time(at)
        .u64(e.id)
        .str(e.partition.as_deref().unwrap_or(""))
        .build()
}

/// Write execution `e`, and its row in the by-time index: moved if its time grew from
/// `before` (the time it was stored with, if it was).
fn put_execution(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    asset: u64,
    check: &str,
    e: &CheckExecution,
    before: Option<i64>,
) {
    if let Some(t) = before.filter(|t| *t != e.timestamp_us) {
        txn.delete(by_time_key(dep, asset, check, e, t));
    }
    txn.put(
        by_time_key(dep, asset, check, e, e.timestamp_us),
        Vec::new(),
    );
    txn.put(
        exec_key(dep, asset, check, e.id, e.partition.as_deref()),
        enc(e),
    );
}

fn summary_key(dep: DeploymentId, asset: u64, check: &str) -> Vec<u8> {
    K::new(keys::CHECK, dep).u64(asset).str(check).build()
}

fn touch_summary(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    asset: u64,
    check: &str,
    e: &CheckExecution,
    completed: bool,
) -> Result<()> {
    let me = (e.timestamp_us, e.id, e.partition.clone());
    txn.update(
        &summary_key(dep, asset, check),
        |s: &mut Option<CheckSummary>| {
            let s = s.get_or_insert_with(CheckSummary::default);
            if s.latest.as_ref().is_none_or(|l| me > *l) {
                s.latest = Some(me.clone());
            }
            if completed && s.latest_completed.as_ref().is_none_or(|l| me > *l) {
                s.latest_completed = Some(me);
            }
        },
    )
}

pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let run = ev.envelope.run_id.as_deref();
    match &ev.body {
        EventBody::AssetCheckPlanned(p) => {
            let asset = intern(txn, dep, &p.asset_key)?;
            let parts: Vec<Option<&str>> = if p.partitions.is_empty() {
                vec![None]
            } else {
                p.partitions.iter().map(|s| Some(s.as_str())).collect()
            };
            for part in parts {
                let Some(run) = run else { continue };
                let rk = by_run_key(dep, asset, &p.check_name, run, part);
                if let Some(id) = txn.get(&rk)?.map(|v| keys::tail_u64(&v)) {
                    // The evaluation came first: it stands; the execution's time grows.
                    let ek = exec_key(dep, asset, &p.check_name, id, part);
                    if let Some(mut e) = txn.get_as::<CheckExecution>(&ek)? {
                        let before = e.timestamp_us;
                        e.timestamp_us = e.timestamp_us.max(ts);
                        put_execution(txn, dep, asset, &p.check_name, &e, Some(before));
                        touch_summary(
                            txn,
                            dep,
                            asset,
                            &p.check_name,
                            &e,
                            e.evaluation_seq.is_some(),
                        )?;
                    }
                    continue;
                }
                let e = CheckExecution::new(seq, Some(run), part, StoredStatus::Planned, ts);
                txn.put(rk, seq.to_be_bytes().to_vec());
                put_execution(txn, dep, asset, &p.check_name, &e, None);
                touch_summary(txn, dep, asset, &p.check_name, &e, false)?;
            }
        }
        EventBody::AssetCheckEvaluation(c) => {
            let asset = intern(txn, dep, &c.asset_key)?;
            let status = if c.passed {
                StoredStatus::Succeeded
            } else {
                StoredStatus::Failed
            };
            let existing = match run {
                Some(run) => txn
                    .get(&by_run_key(
                        dep,
                        asset,
                        &c.check_name,
                        run,
                        c.partition.as_deref(),
                    ))?
                    .map(|v| keys::tail_u64(&v)),
                None => None,
            };
            let stored = match existing {
                Some(id) => txn.get_as::<CheckExecution>(&exec_key(
                    dep,
                    asset,
                    &c.check_name,
                    id,
                    c.partition.as_deref(),
                ))?,
                None => None,
            };
            let before = stored.as_ref().map(|e| e.timestamp_us);
            let mut e = stored.unwrap_or_else(|| {
                let id = existing.unwrap_or(seq);
                CheckExecution::new(id, run, c.partition.as_deref(), status, ts)
            });
            // Of two evaluations for one execution, the later (timestamp, seq) stands.
            let newer = match (e.evaluated_us, e.evaluation_seq) {
                (Some(t), Some(s)) => (ts, seq) > (t, s),
                _ => true,
            };
            if newer {
                e.status = status;
                e.severity = Some(c.severity);
                e.evaluation_seq = Some(seq);
                e.evaluated_us = Some(ts);
                e.description = c.description.clone();
            }
            e.timestamp_us = e.timestamp_us.max(ts);
            if let Some(run) = run {
                txn.put(
                    by_run_key(dep, asset, &c.check_name, run, c.partition.as_deref()),
                    e.id.to_be_bytes().to_vec(),
                );
            }
            put_execution(txn, dep, asset, &c.check_name, &e, before);
            touch_summary(txn, dep, asset, &c.check_name, &e, true)?;
        }
        EventBody::Definitions(d) => {
            let lkey = K::new(keys::CHECK_LOCATION, dep)
                .str(&d.code_location)
                .build();
            let old: Option<CheckLocation> = txn.get_as(&lkey)?;
            if old.as_ref().is_some_and(|o| o.defined_at > (ts, seq)) {
                return Ok(()); // an older definition arriving late changes nothing
            }
            let mut defined: Vec<(u64, String)> = Vec::with_capacity(d.checks.len());
            for c in &d.checks {
                let asset = intern(txn, dep, &c.asset_key)?;
                defined.push((asset, c.name.clone()));
                txn.update(
                    &summary_key(dep, asset, &c.name),
                    |s: &mut Option<CheckSummary>| {
                        let s = s.get_or_insert_with(CheckSummary::default);
                        if s.defined_at.is_none_or(|at| (ts, seq) > at) {
                            s.definition = Some(c.clone());
                            s.defined_at = Some((ts, seq));
                            s.defined_by = Some(d.code_location.clone());
                        }
                    },
                )?;
            }
            // Checks the location defined before and no longer does lose their definition
            // (a check with no execution is gone).
            let still: std::collections::HashSet<(u64, &str)> =
                defined.iter().map(|(a, n)| (*a, n.as_str())).collect();
            for (asset, name) in old.map(|o| o.checks).unwrap_or_default() {
                if still.contains(&(asset, name.as_str())) {
                    continue;
                }
                let skey = summary_key(dep, asset, &name);
                let Some(mut s) = txn.get_as::<CheckSummary>(&skey)? else {
                    continue;
                };
                if s.defined_by.as_deref() != Some(d.code_location.as_str())
                    || s.defined_at.is_some_and(|at| at > (ts, seq))
                {
                    continue;
                }
                if s.latest.is_none() {
                    txn.delete(skey);
                } else {
                    // No time kept: another location may define it, whenever.
                    s.definition = None;
                    s.defined_by = None;
                    s.defined_at = None;
                    txn.put(skey, enc(&s));
                }
            }
            txn.put(
                lkey,
                enc(&CheckLocation {
                    defined_at: (ts, seq),
                    checks: defined,
                }),
            );
        }
        _ => {}
    }
    Ok(())
}

/// Resolve an execution's status against its run.
pub fn resolve(rows: &impl Rows, dep: DeploymentId, e: &CheckExecution) -> Result<ResolvedStatus> {
    Ok(match e.status {
        StoredStatus::Succeeded => ResolvedStatus::Succeeded,
        StoredStatus::Failed => ResolvedStatus::Failed,
        StoredStatus::Planned => {
            let run = match &e.run_id {
                Some(r) => super::runs::status(rows, dep, r)?,
                None => None,
            };
            match run {
                None => ResolvedStatus::Skipped,
                Some(RunStatus::Failure) => ResolvedStatus::ExecutionFailed,
                Some(s) if s.is_finished() => ResolvedStatus::Skipped,
                Some(_) => ResolvedStatus::InProgress,
            }
        }
    })
}

/// Executions of a check, newest first by `(timestamp, id)` (the order [`latest`] picks
/// by: an execution's time is that of its latest event), after the execution `cursor` (an
/// execution id, from the previous page).
pub fn history(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    check: &str,
    cursor: Option<Seq>,
    limit: usize,
) -> Result<Vec<CheckExecution>> {
    let Some(asset) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    let prefix = by_time_prefix(dep, asset, check).build();
    let hi = match cursor {
        // Before the cursor's own row (and its other partitions' at that time).
        Some(id) => {
            let at = exec_prefix(dep, asset, check, id).build();
            match rows.scan_prefix(&at, false, 1)?.first() {
                Some((_, v)) => {
                    let e: CheckExecution = super::dec(v)?;
                    by_time_prefix(dep, asset, check)
                        .time(e.timestamp_us)
                        .u64(id)
                        .build()
                }
                None => return Ok(Vec::new()),
            }
        }
        None => keys::end_of(&prefix),
    };
    rows.scan(&prefix, &hi, true, limit)?
        .iter()
        .map(|(k, _)| {
            let id_at = prefix.len() + 8;
            let id = keys::tail_u64(k.get(..id_at + 8).unwrap_or_default());
            let part = keys::str_at(k, id_at + 8).unwrap_or_default();
            rows.get_as(&exec_key(dep, asset, check, id, Some(part)))?
                .ok_or_else(|| crate::log::Error::Corrupt {
                    location: "check execution index".into(),
                    reason: format!("no execution {id} of check {check}"),
                })
        })
        .collect()
}

/// The checks of an asset: (name, summary), by name.
pub fn of_asset(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
) -> Result<Vec<(String, CheckSummary)>> {
    let Some(asset) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    let prefix = K::new(keys::CHECK, dep).u64(asset).build();
    rows.scan_prefix(&prefix, false, usize::MAX)?
        .iter()
        .map(|(k, v)| {
            Ok((
                keys::str_at(k, prefix.len())
                    .unwrap_or_default()
                    .to_string(),
                super::dec(v)?,
            ))
        })
        .collect()
}

/// The latest execution of a check.
pub fn latest(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    check: &str,
) -> Result<Option<CheckExecution>> {
    let Some(asset) = super::asset_id(rows, dep, key)? else {
        return Ok(None);
    };
    let s: Option<CheckSummary> = rows.get_as(&summary_key(dep, asset, check))?;
    match s.and_then(|s| s.latest) {
        Some((_, id, part)) => rows.get_as(&exec_key(dep, asset, check, id, part.as_deref())),
        None => Ok(None),
    }
}
