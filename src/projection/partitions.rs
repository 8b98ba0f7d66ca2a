//! Partition status per asset: each partition's latest materialization and latest attempt,
//! its resolved status, and per-asset counts by status, kept incrementally so that status
//! counts are one read however many partitions or events an asset has.
//!
//! Resolution (Dagster's semantics, made order-independent): a partition whose latest
//! attempt (planned or failed event, by `(timestamp, seq)`) is later than its latest
//! materialization is FAILED if the attempt failed (a failure event of the failed group, or
//! a planned event whose run ended in FAILURE), MATERIALIZING if the planned run has not
//! finished; otherwise it is MATERIALIZED if it ever materialized (after any wipe), else
//! MISSING. A run's status change re-resolves the partitions it planned.
//!
//! A partition's materialization history has rows (see [`super::materializations`]) only
//! from its second visible materialization on: most partitions materialize once, and
//! until then the state's latest materialization is the whole history. A materialization
//! hidden by a wipe when it arrives stays hidden (wipe times only grow), so it needs no row.

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{later, materializations, EventRef, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, PartitionsDefinition, Seq};
use crate::log::Txn;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PartitionStatus {
    Missing,
    Materialized,
    Failed,
    InProgress,
}

impl PartitionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionStatus::Missing => "MISSING",
            PartitionStatus::Materialized => "MATERIALIZED",
            PartitionStatus::Failed => "FAILED",
            PartitionStatus::InProgress => "MATERIALIZING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AttemptKind {
    Planned,
    /// A failure event; `true` for the failed group, `false` for the skipped group.
    Failed(bool),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionState {
    pub latest_materialization: Option<EventRef>,
    pub materialization_count: u64,
    pub latest_attempt: Option<(EventRef, AttemptKind)>,
    /// Timestamp of the latest wipe of this partition (or of the whole asset).
    pub wiped_at_us: Option<i64>,
    pub status: PartitionStatus,
    /// Whether the history rows hold the visible materializations; if not, there is at most
    /// one, `latest_materialization`.
    pub indexed: bool,
}

impl PartitionState {
    /// Is an event at `timestamp_us` after the partition's latest wipe?
    pub fn visible(&self, timestamp_us: i64) -> bool {
        self.wiped_at_us.is_none_or(|w| timestamp_us > w)
    }
}

/// Per-asset partition counts by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionCounts {
    /// Partitions with any event.
    pub known: u64,
    pub materialized: u64,
    pub failed: u64,
    pub in_progress: u64,
}

impl PartitionCounts {
    fn add(&mut self, s: PartitionStatus, d: i64) {
        let f = match s {
            PartitionStatus::Materialized => &mut self.materialized,
            PartitionStatus::Failed => &mut self.failed,
            PartitionStatus::InProgress => &mut self.in_progress,
            PartitionStatus::Missing => return,
        };
        *f = (*f as i64 + d).max(0) as u64;
    }
}

fn state_key(dep: DeploymentId, asset: u64, partition: &str) -> Vec<u8> {
    K::new(keys::PARTITION, dep)
        .u64(asset)
        .str(partition)
        .build()
}

fn counts_key(dep: DeploymentId, asset: u64) -> Vec<u8> {
    K::new(keys::PARTITION_COUNTS, dep).u64(asset).build()
}

/// Failure reasons in Dagster's "failed" group (the others are "skipped").
fn failed_group(reason: &str) -> bool {
    matches!(
        reason,
        "COMPUTE_FAILED" | "UPSTREAM_COMPUTE_FAILED" | "UNEXPECTED_TERMINATION" | "UNKNOWN"
    )
}

/// What a planned partition's run says, as [`resolve`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Failed,
    /// Not finished yet.
    Going,
    /// Finished otherwise, or no record of the run.
    Other,
}

/// The outcome of a run with `status` (`None`: no record). A run whose status changes
/// within one outcome changes no partition, so [`on_run_status`] is needed only when this
/// changes.
pub fn run_outcome(status: Option<super::runs::RunStatus>) -> RunOutcome {
    match status {
        Some(super::runs::RunStatus::Failure) => RunOutcome::Failed,
        Some(st) if !st.is_finished() => RunOutcome::Going,
        _ => RunOutcome::Other,
    }
}

fn resolve(rows: &impl Rows, dep: DeploymentId, s: &PartitionState) -> Result<PartitionStatus> {
    let visible = |r: &EventRef| s.wiped_at_us.is_none_or(|w| r.timestamp_us > w);
    let mat = s.latest_materialization.as_ref().filter(|m| visible(m));
    if let Some((att, kind)) = &s.latest_attempt {
        if visible(att) && mat.is_none_or(|m| att.order() > m.order()) {
            match kind {
                AttemptKind::Failed(true) => return Ok(PartitionStatus::Failed),
                AttemptKind::Failed(false) => {}
                AttemptKind::Planned => {
                    let run = match &att.run_id {
                        Some(r) => super::runs::status(rows, dep, r)?,
                        None => None,
                    };
                    match run_outcome(run) {
                        RunOutcome::Failed => return Ok(PartitionStatus::Failed),
                        RunOutcome::Going => return Ok(PartitionStatus::InProgress),
                        RunOutcome::Other => {}
                    }
                }
            }
        }
    }
    Ok(if mat.is_some() {
        PartitionStatus::Materialized
    } else {
        PartitionStatus::Missing
    })
}

/// Load, wipe (at `wipe`, or at the asset's latest wipe, if later than the state's), change,
/// re-resolve and store one partition's state, keeping the counts right.
fn update<R>(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    (asset, partition): (u64, &str),
    wipe: Option<i64>,
    change: impl FnOnce(&mut PartitionState) -> R,
) -> Result<R> {
    let key = state_key(dep, asset, partition);
    let old: Option<PartitionState> = txn.record(&key)?;
    let mut s = old.clone().unwrap_or(PartitionState {
        latest_materialization: None,
        materialization_count: 0,
        latest_attempt: None,
        wiped_at_us: None,
        status: PartitionStatus::Missing,
        indexed: false,
    });
    // A wipe of the whole asset covers partitions first seen after it arrived, too.
    let asset_wipe = txn.read(
        &super::assets::key_of(dep, asset),
        |r: Option<&super::assets::AssetRecord>| r.and_then(|r| r.wiped_at.map(|w| w.0)),
    )?;
    match wipe.max(asset_wipe) {
        Some(at) if s.wiped_at_us.is_none_or(|w| w < at) => {
            s.wiped_at_us = Some(at);
            (s.latest_materialization, s.materialization_count) = match s.indexed {
                true => rematerializations(txn, dep, asset, partition, at)?,
                // The only one, if it is still visible.
                false => match s.latest_materialization.take() {
                    Some(m) if m.timestamp_us > at => (Some(m), 1),
                    _ => (None, 0),
                },
            };
        }
        _ => {}
    }
    let out = change(&mut s);
    s.status = resolve(txn, dep, &s)?;
    let ck = counts_key(dep, asset);
    let old_status = old.as_ref().map(|o| o.status);
    if old.is_none() || old_status != Some(s.status) {
        let status = s.status;
        txn.update(&ck, |counts: &mut Option<PartitionCounts>| {
            let counts = counts.get_or_insert_with(PartitionCounts::default);
            if let Some(o) = old_status {
                counts.add(o, -1);
            } else {
                counts.known += 1;
            }
            counts.add(status, 1);
        })?;
    }
    match &old {
        None => txn.put_new_record(key, s),
        Some(o) if o != &s => txn.put_record(key, s),
        Some(_) => {}
    }
    Ok(out)
}

/// Apply an asset event of the asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    match &ev.body {
        EventBody::AssetMaterialization(a) => {
            if let Some(p) = &a.partition {
                let r = EventRef::of(seq, ev, Some(p.clone()));
                // The materializations that get history rows now (see the module's doc).
                let rows: Vec<EventRef> = update(txn, dep, (id, p), None, |s| {
                    if !s.visible(ts) {
                        return Vec::new();
                    }
                    let rows = match (&s.latest_materialization, s.indexed) {
                        (_, true) => vec![r.clone()],
                        (Some(only), false) => {
                            s.indexed = true;
                            vec![only.clone(), r.clone()]
                        }
                        (None, false) => Vec::new(),
                    };
                    s.latest_materialization = later(s.latest_materialization.take(), r);
                    s.materialization_count += 1;
                    rows
                })?;
                for e in rows {
                    txn.put(
                        materializations::partition_key(dep, id, p, e.timestamp_us, e.seq),
                        super::enc(&e.run_id),
                    );
                }
            }
        }
        EventBody::AssetMaterializationPlanned(p) => {
            let parts: Vec<&String> = p.partition.iter().chain(p.partitions.iter()).collect();
            for part in parts {
                let r = EventRef::of(seq, ev, Some(part.clone()));
                if let Some(run) = &ev.envelope.run_id {
                    txn.put(
                        K::new(keys::RUN_PLANNED, dep)
                            .str(run)
                            .u64(id)
                            .str(part)
                            .build(),
                        Vec::new(),
                    );
                }
                update(txn, dep, (id, part), None, |s| {
                    attempt(s, r, AttemptKind::Planned)
                })?;
            }
        }
        EventBody::AssetFailedToMaterialize(f) => {
            if let Some(p) = &f.partition {
                let r = EventRef::of(seq, ev, Some(p.clone()));
                let kind = AttemptKind::Failed(failed_group(&f.reason));
                update(txn, dep, (id, p), None, |s| attempt(s, r, kind))?;
            }
        }
        EventBody::AssetWiped(w) => {
            let parts: Vec<String> = if w.partition_keys.is_empty() {
                txn.names_under(&K::new(keys::PARTITION, dep).u64(id).build())?
            } else {
                w.partition_keys.clone()
            };
            for p in parts {
                update(txn, dep, (id, &p), Some(ts), |_| {})?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The latest visible materialization and the count after a wipe at `wiped_us`: the
/// partition's history rows after that time, the last of them the latest.
fn rematerializations(
    txn: &Txn<'_>,
    dep: DeploymentId,
    asset: u64,
    p: &str,
    wiped_us: i64,
) -> Result<(Option<EventRef>, u64)> {
    let prefix = K::new(keys::PARTITION_MATERIALIZATIONS, dep)
        .u64(asset)
        .str(p);
    let rows = materializations::visible(txn, prefix, Some(wiped_us))?;
    let latest = match rows.last() {
        Some((k, v)) => {
            let (timestamp_us, seq) = keys::tail_time_seq(k);
            Some(EventRef {
                seq,
                timestamp_us,
                run_id: super::dec(v)?,
                partition: Some(p.to_string()),
            })
        }
        None => None,
    };
    Ok((latest, rows.len() as u64))
}

fn attempt(s: &mut PartitionState, r: EventRef, kind: AttemptKind) {
    if s.latest_attempt
        .as_ref()
        .is_none_or(|(a, _)| r.order() > a.order())
    {
        s.latest_attempt = Some((r, kind));
    }
}

/// Re-resolve the partitions a run planned, after its status changed.
pub fn on_run_status(txn: &mut Txn<'_>, dep: DeploymentId, run: &str) -> Result<()> {
    let prefix = K::new(keys::RUN_PLANNED, dep).str(run).build();
    for (k, _) in txn.scan_prefix(&prefix, false, usize::MAX)? {
        let asset = k
            .get(prefix.len()..prefix.len() + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let Some(p) = keys::str_at(&k, prefix.len() + 8).map(str::to_string) else {
            continue;
        };
        update(txn, dep, (asset, &p), None, |_| {})?;
    }
    Ok(())
}

/// Status counts of an asset: one read.
pub fn counts(rows: &impl Rows, dep: DeploymentId, key: &AssetKey) -> Result<PartitionCounts> {
    match super::asset_id(rows, dep, key)? {
        Some(id) => Ok(rows.get_as(&counts_key(dep, id))?.unwrap_or_default()),
        None => Ok(PartitionCounts::default()),
    }
}

/// One partition's state.
pub fn state(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    partition: &str,
) -> Result<Option<PartitionState>> {
    match super::asset_id(rows, dep, key)? {
        Some(id) => state_of(rows, dep, id, partition),
        None => Ok(None),
    }
}

/// One partition's state, by asset id.
pub fn state_of(
    rows: &impl Rows,
    dep: DeploymentId,
    asset: u64,
    partition: &str,
) -> Result<Option<PartitionState>> {
    rows.get_as(&state_key(dep, asset, partition))
}

/// The timestamp of the latest wipe of one partition (or of its whole asset, once the
/// partition had a state), if any.
pub fn wiped_at(
    rows: &impl Rows,
    dep: DeploymentId,
    asset: u64,
    partition: &str,
) -> Result<Option<i64>> {
    rows.read_hot(
        &state_key(dep, asset, partition),
        |s: Option<&PartitionState>| s.and_then(|s| s.wiped_at_us),
    )
}

/// Which events of an asset's history a wipe of their partition hides, each partition's
/// wipe read once. Only events at or before the asset's latest partition wipe can be.
pub struct PartitionWipes<'a> {
    dep: DeploymentId,
    asset: u64,
    latest: Option<i64>,
    /// Partitions being wiped at a time, whose states do not say so yet.
    wiping: Option<(&'a [String], i64)>,
    known: std::collections::HashMap<String, Option<i64>>,
}

impl<'a> PartitionWipes<'a> {
    pub fn new(
        dep: DeploymentId,
        asset: &super::assets::AssetRecord,
        wiping: Option<(&'a [String], i64)>,
    ) -> PartitionWipes<'a> {
        PartitionWipes {
            dep,
            asset: asset.id,
            latest: asset.partitions_wiped_at,
            wiping,
            known: Default::default(),
        }
    }

    /// Does a wipe of its partition hide `e`?
    pub fn hides(&mut self, rows: &impl Rows, e: &EventRef) -> Result<bool> {
        let may_hide = self.latest.is_some_and(|t| e.timestamp_us <= t);
        let Some(p) = e.partition.as_deref().filter(|_| may_hide) else {
            return Ok(false);
        };
        let w = match self.known.get(p) {
            Some(w) => *w,
            None => {
                let mut w = wiped_at(rows, self.dep, self.asset, p)?;
                if let Some((_, at)) = self.wiping.filter(|(ps, _)| ps.iter().any(|x| x == p)) {
                    w = w.max(Some(at));
                }
                *self.known.entry(p.to_string()).or_insert(w)
            }
        };
        Ok(w.is_some_and(|w| e.timestamp_us <= w))
    }
}

/// Partitions (key order) with the given status, after `cursor`.
pub fn by_status(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    status: Option<PartitionStatus>,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, PartitionState)>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    let prefix = K::new(keys::PARTITION, dep).u64(id).build();
    let hi = keys::end_of(&prefix);
    let lo = match cursor {
        Some(c) => {
            let mut k = state_key(dep, id, c);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let mut out = Vec::new();
    rows.walk(&lo, &hi, false, |k, v| {
        let s: PartitionState = super::dec(v)?;
        if status.is_none_or(|st| st == s.status) {
            let partition = keys::str_at(k, prefix.len()).unwrap_or_default();
            out.push((partition.to_string(), s));
        }
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// How many partitions a definition has, when that is knowable without a clock or a
/// dynamic-partition store (static and multi-dimensional static definitions).
pub fn defined_count(def: &PartitionsDefinition) -> Option<u64> {
    match def {
        PartitionsDefinition::Static { keys } => Some(keys.len() as u64),
        PartitionsDefinition::Multi { dimensions } => dimensions
            .iter()
            .map(|(_, d)| defined_count(d))
            .try_fold(1u64, |acc, n| n.map(|n| acc * n)),
        _ => None,
    }
}
