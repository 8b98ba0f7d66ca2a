//! Backfills: the record as created and updated (the status of the latest update by
//! `(timestamp, seq)` stands), and progress from the runs tagged `dagster/backfill` (a run
//! counts for its partition, or for each partition of the range it covers).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::runs::RunStatus;
use super::{enc, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillRecord {
    pub backfill_id: String,
    pub status: String,
    pub status_at: (i64, Seq),
    pub created_us: Option<i64>,
    pub asset_selection: Vec<AssetKey>,
    pub partition_names: Vec<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
    pub job_name: Option<String>,
    pub from_failure: bool,
    pub error: Option<String>,
}

fn key(dep: DeploymentId, id: &str) -> Vec<u8> {
    K::new(keys::BACKFILL, dep).str(id).build()
}

pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let (id, created) = match &ev.body {
        EventBody::BackfillCreated(b) => (&b.backfill_id, Some(b)),
        EventBody::BackfillUpdated(u) => (&u.backfill_id, None),
        _ => return Ok(()),
    };
    let k = key(dep, id);
    let mut r: BackfillRecord = txn.get_as(&k)?.unwrap_or(BackfillRecord {
        backfill_id: id.clone(),
        status: "REQUESTED".into(),
        status_at: (i64::MIN, 0),
        created_us: None,
        asset_selection: Vec::new(),
        partition_names: Vec::new(),
        title: None,
        description: None,
        tags: Vec::new(),
        job_name: None,
        from_failure: false,
        error: None,
    });
    match (&ev.body, created) {
        (_, Some(b)) => {
            r.created_us = Some(r.created_us.map_or(ts, |c| c.min(ts)));
            r.asset_selection = b.asset_selection.clone();
            r.partition_names = b.partition_names.clone();
            r.title = b.title.clone();
            r.description = b.description.clone();
            r.tags = b.tags.clone();
            r.job_name = b.job_name.clone();
            r.from_failure = b.from_failure;
            if (ts, seq) > r.status_at {
                r.status = b.status.clone();
                r.status_at = (ts, seq);
            }
        }
        (EventBody::BackfillUpdated(u), None) if (ts, seq) > r.status_at => {
            r.status = u.status.clone();
            r.status_at = (ts, seq);
            r.error = u.error.as_ref().map(|e| e.message.clone());
        }
        _ => {}
    }
    txn.put(k, enc(&r));
    Ok(())
}

pub fn get(rows: &impl Rows, dep: DeploymentId, id: &str) -> Result<Option<BackfillRecord>> {
    rows.get_as(&key(dep, id))
}

/// Backfills by id, after `cursor`.
pub fn list(
    rows: &impl Rows,
    dep: DeploymentId,
    cursor: Option<&str>,
    limit: usize,
) -> Result<Vec<BackfillRecord>> {
    let prefix = K::new(keys::BACKFILL, dep).build();
    let lo = match cursor {
        Some(c) => {
            let mut k = key(dep, c);
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    rows.scan(&lo, &keys::end_of(&prefix), false, limit)?
        .iter()
        .map(|(_, v)| super::dec(v))
        .collect()
}

fn runs_prefix(dep: DeploymentId, id: &str) -> K {
    K::new(keys::BACKFILL_RUNS, dep).str(id)
}

/// The row that lists `run` among the runs of backfill `id`.
pub(super) fn run_key(dep: DeploymentId, id: &str, run: &str) -> Vec<u8> {
    runs_prefix(dep, id).str(run).build()
}

/// Run ids of a backfill.
pub fn run_ids(rows: &impl Rows, dep: DeploymentId, id: &str) -> Result<Vec<String>> {
    rows.names_under(&runs_prefix(dep, id).build())
}

/// Progress: runs of the backfill by status, and per partition the status of its latest run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    pub runs_by_status: BTreeMap<&'static str, u64>,
    pub partitions: BTreeMap<String, &'static str>,
}

/// A run covers the partition of its `dagster/partition` tag or, for a run of a range of
/// partitions (`dagster/asset_partition_range_start` and `_end`, as a single-run backfill
/// tags it), every one of `names` from the first to the last, both included.
fn run_partitions<'a>(r: &'a super::runs::RunRecord, names: &'a [String]) -> Vec<&'a str> {
    if let Some(p) = r.partition() {
        return vec![p];
    }
    let tag = |t: &str| r.tags.get(t).map(String::as_str);
    let at = |p: Option<&str>| p.and_then(|p| names.iter().position(|n| n == p));
    match (
        at(tag("dagster/asset_partition_range_start")),
        at(tag("dagster/asset_partition_range_end")),
    ) {
        (Some(first), Some(last)) if first <= last => {
            names[first..=last].iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    }
}

pub fn progress(rows: &impl Rows, dep: DeploymentId, id: &str) -> Result<Progress> {
    let mut p = Progress::default();
    let names = get(rows, dep, id)?
        .map(|b| b.partition_names)
        .unwrap_or_default();
    let mut latest: BTreeMap<String, (i64, RunStatus)> = BTreeMap::new();
    for run in run_ids(rows, dep, id)? {
        if let Some(r) = super::runs::get(rows, dep, &run)? {
            *p.runs_by_status.entry(r.status.as_str()).or_default() += 1;
            for part in run_partitions(&r, &names) {
                let e = latest
                    .entry(part.to_string())
                    .or_insert((r.created_us, r.status));
                if r.created_us >= e.0 {
                    *e = (r.created_us, r.status);
                }
            }
        }
    }
    p.partitions = latest
        .into_iter()
        .map(|(k, (_, s))| (k, s.as_str()))
        .collect();
    Ok(p)
}
