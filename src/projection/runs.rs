//! Runs: one record per run (status, times, job, tags, partition, backfill, step stats), and
//! indexes by status and by creation time.
//!
//! Status rule (order-independent): once any terminal event (SUCCESS, FAILURE, CANCELED)
//! is seen, the status is the terminal one with the highest `(timestamp, seq)` and never
//! goes back; before that, the furthest non-terminal state seen (QUEUED < STARTING <
//! STARTED < CANCELING). DEQUEUED changes nothing, as in Dagster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{Result, Rows};
use crate::event::{DeploymentId, Event, EventBody, RunEventKind, Seq, StepEventKind};
use crate::log::Txn;

/// `DagsterRunStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    NotStarted,
    Queued,
    Starting,
    Started,
    Canceling,
    Success,
    Failure,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::NotStarted,
        RunStatus::Queued,
        RunStatus::Starting,
        RunStatus::Started,
        RunStatus::Canceling,
        RunStatus::Success,
        RunStatus::Failure,
        RunStatus::Canceled,
    ];

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Success | RunStatus::Failure | RunStatus::Canceled
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::NotStarted => "NOT_STARTED",
            RunStatus::Queued => "QUEUED",
            RunStatus::Starting => "STARTING",
            RunStatus::Started => "STARTED",
            RunStatus::Canceling => "CANCELING",
            RunStatus::Success => "SUCCESS",
            RunStatus::Failure => "FAILURE",
            RunStatus::Canceled => "CANCELED",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        RunStatus::ALL.iter().copied().find(|r| r.as_str() == s)
    }

    fn code(self) -> u8 {
        self as u8
    }
}

/// What the runs view keeps per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunStatus,
    /// `(timestamp, seq)` of the terminal event that set the status, if any.
    pub terminal_at: Option<(i64, Seq)>,
    pub job_name: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// Earliest event time of the run (its creation, as far as assetlog knows).
    pub created_us: i64,
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    pub update_us: i64,
    pub failure_reason: Option<String>,
    pub steps_succeeded: u64,
    pub steps_failed: u64,
    pub materializations: u64,
    pub expectations: u64,
    pub events: u64,
    /// Distinct steps seen (each has a row, see [`steps`]).
    pub step_count: u64,
    pub first_seq: Seq,
}

/// Per step of a run (a row of its own: a run may have thousands of steps, and its record
/// is rewritten on every event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    pub status: String,
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    pub attempts: u32,
    pub materializations: u64,
}

impl RunRecord {
    pub fn partition(&self) -> Option<&str> {
        self.tags.get("dagster/partition").map(String::as_str)
    }

    pub fn backfill_id(&self) -> Option<&str> {
        self.tags.get("dagster/backfill").map(String::as_str)
    }
}

fn run_key(dep: DeploymentId, run: &str) -> Vec<u8> {
    K::new(keys::RUN, dep).str(run).build()
}

fn status_key(dep: DeploymentId, status: RunStatus, created_us: i64, run: &str) -> Vec<u8> {
    K::new(keys::RUNS_BY_STATUS, dep)
        .u8(status.code())
        .time(created_us)
        .str(run)
        .build()
}

fn time_key(dep: DeploymentId, created_us: i64, run: &str) -> Vec<u8> {
    K::new(keys::RUNS_BY_TIME, dep)
        .time(created_us)
        .str(run)
        .build()
}

fn step_key(dep: DeploymentId, run: &str, step: &str) -> Vec<u8> {
    K::new(keys::RUN_STEP, dep).str(run).str(step).build()
}

/// The steps of a run, by step key.
pub fn steps(rows: &impl Rows, dep: DeploymentId, run: &str) -> Result<Vec<(String, StepStats)>> {
    let prefix = K::new(keys::RUN_STEP, dep).str(run).build();
    rows.scan_prefix(&prefix, false, usize::MAX)?
        .iter()
        .map(|(k, v)| {
            let step = keys::str_at(k, prefix.len())
                .unwrap_or_default()
                .to_string();
            Ok((step, super::dec(v)?))
        })
        .collect()
}

/// The run record, as the writer sees it now.
pub fn get(rows: &impl Rows, dep: DeploymentId, run: &str) -> Result<Option<RunRecord>> {
    rows.get_hot_as(&run_key(dep, run))
}

/// The status of a run, if it has a record (no copy of the record).
pub fn status(rows: &impl Rows, dep: DeploymentId, run: &str) -> Result<Option<RunStatus>> {
    rows.read_hot(&run_key(dep, run), |r: Option<&RunRecord>| {
        r.map(|r| r.status)
    })
}

pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
    let Some(run_id) = ev.envelope.run_id.as_deref() else {
        return Ok(());
    };
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let rk = run_key(dep, run_id);
    // The step row first: the run record counts new steps and steps' outcomes.
    let step = match &ev.body {
        EventBody::Step(s) => Some(apply_step(txn, dep, run_id, ev, s.kind)?),
        _ => None,
    };
    // Only run events change tags (and with them the backfill id).
    let run_event = matches!(ev.body, EventBody::Run(_));
    let change = txn.update(&rk, |slot: &mut Option<RunRecord>| {
        // What the index rows depend on, before the change.
        let before = slot.as_ref().map(|o| {
            let backfill = run_event.then(|| o.backfill_id().map(str::to_string));
            (o.status, o.created_us, backfill.flatten())
        });
        let r = slot.get_or_insert_with(|| RunRecord {
            run_id: run_id.to_string(),
            status: RunStatus::NotStarted,
            terminal_at: None,
            job_name: None,
            tags: BTreeMap::new(),
            created_us: ts,
            start_us: None,
            end_us: None,
            update_us: ts,
            failure_reason: None,
            steps_succeeded: 0,
            steps_failed: 0,
            materializations: 0,
            expectations: 0,
            events: 0,
            step_count: 0,
            first_seq: seq,
        });
        change_record(r, seq, ev);
        if let Some(step) = step {
            r.step_count += u64::from(step.new);
            r.steps_succeeded += u64::from(step.kind == StepEventKind::Success);
            r.steps_failed += u64::from(step.kind == StepEventKind::Failure);
        }
        let backfill = r.backfill_id().map(str::to_string);
        (before, (r.status, r.created_us, backfill), r.step_count > 0)
    })?;
    let (before, (status, created_us, backfill), has_steps) = change;
    // A materialization counts on its step's row. Most runs that materialize have no step
    // events, so no step row to look for (the record's count of steps, read in the same
    // lookup as the update above, which does not change it for a materialization).
    if let (EventBody::AssetMaterialization(_), Some(step), true) =
        (&ev.body, &ev.envelope.step_key, has_steps)
    {
        txn.update(
            &step_key(dep, run_id, step),
            |st: &mut Option<StepStats>| {
                if let Some(st) = st {
                    st.materializations += 1;
                }
            },
        )?;
    }
    let (status_changed, created_changed) = match &before {
        Some((s, created, _)) => (*s != status, *created != created_us),
        None => (true, true),
    };
    if let Some((old_status, created, _)) = &before {
        // The old index rows, keyed as the record was.
        if status_changed || created_changed {
            txn.delete(status_key(dep, *old_status, *created, run_id));
        }
        if created_changed {
            txn.delete(time_key(dep, *created, run_id));
        }
    }
    // A record that other events create has no tags, so no backfill id either. A run whose
    // backfill tag changes leaves the old backfill's runs.
    let old_backfill = before.as_ref().and_then(|b| b.2.as_deref());
    if run_event && old_backfill != backfill.as_deref() {
        if let Some(old) = old_backfill {
            txn.delete(super::backfills::run_key(dep, old, run_id));
        }
        if let Some(b) = &backfill {
            txn.put(super::backfills::run_key(dep, b, run_id), Vec::new());
        }
    }
    if status_changed || created_changed {
        txn.put(status_key(dep, status, created_us, run_id), Vec::new());
    }
    if created_changed {
        txn.put(time_key(dep, created_us, run_id), Vec::new());
    }
    // A run without a record before this event has planned nothing yet (the planned
    // event that would have is applied here first), so only a known run's change counts.
    let outcome = super::partitions::run_outcome;
    if before.is_some_and(|b| outcome(Some(b.0)) != outcome(Some(status))) {
        // Partitions planned by this run resolve differently now.
        super::partitions::on_run_status(txn, dep, run_id)?;
    }
    Ok(())
}

/// What a step event did to its step's row, for the run record.
#[derive(Clone, Copy)]
struct StepChange {
    new: bool,
    kind: StepEventKind,
}

fn apply_step(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    run_id: &str,
    ev: &Event,
    kind: StepEventKind,
) -> Result<StepChange> {
    let ts = ev.envelope.timestamp_us;
    let key = step_key(
        dep,
        run_id,
        ev.envelope.step_key.as_deref().unwrap_or_default(),
    );
    txn.update(&key, |slot: &mut Option<StepStats>| {
        let new = slot.is_none();
        let st = slot.get_or_insert_with(|| StepStats {
            status: "IN_PROGRESS".into(),
            start_us: None,
            end_us: None,
            attempts: 0,
            materializations: 0,
        });
        match kind {
            StepEventKind::Start | StepEventKind::Restarted => {
                st.attempts += 1;
                st.start_us = Some(st.start_us.map_or(ts, |x| x.min(ts)));
            }
            StepEventKind::Success => {
                st.status = "SUCCESS".into();
                st.end_us = Some(ts);
            }
            StepEventKind::Failure => {
                st.status = "FAILURE".into();
                st.end_us = Some(ts);
            }
            StepEventKind::Skipped => {
                st.status = "SKIPPED".into();
                st.end_us = Some(ts);
            }
            StepEventKind::UpForRetry => {}
        }
        StepChange { new, kind }
    })
}

/// The run record's own fields, as one event changes them (step rows aside).
fn change_record(r: &mut RunRecord, seq: Seq, ev: &Event) {
    let ts = ev.envelope.timestamp_us;
    r.events += 1;
    r.created_us = r.created_us.min(ts);
    r.update_us = r.update_us.max(ts);
    if r.job_name.is_none() {
        r.job_name = ev.envelope.job_name.clone();
    }
    match &ev.body {
        EventBody::Run(run) => {
            for (k, v) in &run.tags {
                r.tags.insert(k.clone(), v.clone());
            }
            let next = match run.kind {
                RunEventKind::Enqueued => Some(RunStatus::Queued),
                RunEventKind::Dequeued => None,
                RunEventKind::Starting => Some(RunStatus::Starting),
                RunEventKind::Start => {
                    r.start_us = Some(r.start_us.map_or(ts, |s| s.min(ts)));
                    Some(RunStatus::Started)
                }
                RunEventKind::Canceling => Some(RunStatus::Canceling),
                RunEventKind::Success => Some(RunStatus::Success),
                RunEventKind::Failure => Some(RunStatus::Failure),
                RunEventKind::Canceled => Some(RunStatus::Canceled),
            };
            if let Some(next) = next {
                if next.is_finished() {
                    if r.terminal_at.is_none_or(|at| (ts, seq) > at) {
                        r.status = next;
                        r.terminal_at = Some((ts, seq));
                        r.end_us = Some(ts);
                        // The reason is the standing terminal event's: none unless it failed.
                        r.failure_reason = match next {
                            RunStatus::Failure => run.failure_reason.clone(),
                            _ => None,
                        };
                    }
                } else if r.terminal_at.is_none() && next > r.status {
                    r.status = next;
                }
            }
        }
        EventBody::AssetMaterialization(_) => r.materializations += 1,
        EventBody::Engine(e) if e.kind == crate::event::EventType::StepExpectationResult => {
            r.expectations += 1;
        }
        _ => {}
    }
}

/// A filter over runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub statuses: Vec<RunStatus>,
    pub job_name: Option<String>,
    pub tags: Vec<(String, String)>,
    pub created_after_us: Option<i64>,
    pub created_before_us: Option<i64>,
    pub backfill_id: Option<String>,
}

impl RunFilter {
    fn matches(&self, r: &RunRecord) -> bool {
        (self.statuses.is_empty() || self.statuses.contains(&r.status))
            && self
                .job_name
                .as_ref()
                .is_none_or(|j| r.job_name.as_ref() == Some(j))
            && self.tags.iter().all(|(k, v)| r.tags.get(k) == Some(v))
            && self.created_after_us.is_none_or(|t| r.created_us > t)
            && self.created_before_us.is_none_or(|t| r.created_us < t)
            && self
                .backfill_id
                .as_ref()
                .is_none_or(|b| r.backfill_id() == Some(b.as_str()))
    }
}

/// Runs newest first (by creation time), after the `cursor` run if given.
pub fn list(
    rows: &impl Rows,
    dep: DeploymentId,
    filter: &RunFilter,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<RunRecord>> {
    let lo = K::new(keys::RUNS_BY_TIME, dep).build();
    let mut hi = keys::end_of(&lo);
    if let Some(c) = cursor {
        if let Some(r) = get(rows, dep, c)? {
            hi = time_key(dep, r.created_us, &r.run_id);
        }
    }
    let mut out = Vec::new();
    // The time index, newest first.
    rows.walk(&lo, &hi, true, |k, _| {
        let run = keys::str_at(k, 13).unwrap_or_default();
        if let Some(r) = get(rows, dep, run)? {
            if filter.matches(&r) {
                out.push(r);
            }
        }
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// How many runs have each status.
pub fn count_by_status(rows: &impl Rows, dep: DeploymentId) -> Result<Vec<(RunStatus, usize)>> {
    let mut out = Vec::new();
    for s in RunStatus::ALL {
        let p = K::new(keys::RUNS_BY_STATUS, dep).u8(s.code()).build();
        out.push((s, rows.scan_prefix(&p, false, usize::MAX)?.len()));
    }
    Ok(out)
}
