//! Materialization (and observation) history per asset and per partition, newest first:
//! by `(timestamp, seq)`, the order "latest" means everywhere in the views, so a history's
//! first entry is the asset's (or partition's) latest event however the events arrived.
//! Pages resume from a position in that order, which the API names by its storage id.
//!
//! An asset's rows carry what each event measured ([`points::Entry`]), so one row per event
//! serves both the history and the measurement series. A partition's rows hold only the
//! run id, and exist only once it has two visible materializations (see
//! [`super::partitions`]); the events themselves are read from the log by seq.

use super::keys::{self, K};
use super::{enc, points, EventRef, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

pub fn partition_key(dep: DeploymentId, asset: u64, partition: &str, ts: i64, seq: Seq) -> Vec<u8> {
    K::new(keys::PARTITION_MATERIALIZATIONS, dep)
        .u64(asset)
        .str(partition)
        .time(ts)
        .u64(seq)
        .build()
}

/// Apply an asset event of the asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let (kind, a) = match &ev.body {
        EventBody::AssetMaterialization(a) => (keys::MATERIALIZATIONS, a),
        EventBody::AssetObservation(a) => (keys::OBSERVATIONS, a),
        _ => return Ok(()),
    };
    let entry = points::EntryRef {
        run_id: ev.envelope.run_id.as_deref(),
        partition: a.partition.as_deref(),
        measured: points::measure(txn, dep, id, &a.metadata, true)?,
    };
    txn.put(points::key(kind, dep, id, ts, seq), enc(&entry));
    Ok(())
}

/// The first key under `prefix` (a history family's, keyed `..., timestamp, seq`) later
/// than `t` (the whole family for `None`); `None` when nothing can be later.
fn after(prefix: &K, t: Option<i64>) -> Option<Vec<u8>> {
    match t.map(|t| t.checked_add(1)) {
        Some(Some(t)) => Some(prefix.clone().time(t).build()),
        Some(None) => None,
        None => Some(prefix.clone().build()),
    }
}

/// The rows under `prefix` (as for [`after`]) later than a wipe at `wiped_us`, oldest first:
/// the visible ones, the last of them the latest.
pub fn visible(txn: &Txn<'_>, prefix: K, wiped_us: Option<i64>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    match after(&prefix, wiped_us) {
        Some(lo) => txn.scan(&lo, &keys::end_of(&prefix.build())),
        None => Ok(Vec::new()),
    }
}

/// Which history to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Materializations,
    Observations,
}

/// A history page query.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub partition: Option<String>,
    /// Only events before this `(timestamp, seq)`: the last one of the previous page.
    pub before: Option<(i64, Seq)>,
    pub after_us: Option<i64>,
    pub before_us: Option<i64>,
    pub limit: usize,
}

/// Newest first. Events hidden by a wipe are left out. With a partition, only that
/// partition's events (hidden by its wipes too): a materialization history reads the
/// partition's own rows; an observation history, the asset's, keeping that partition's.
pub fn history(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    kind: Kind,
    q: &HistoryQuery,
) -> Result<Vec<EventRef>> {
    let Some(asset) = super::assets::by_key(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    if q.limit == 0 {
        return Ok(Vec::new());
    }
    // A partition's wipe time covers the asset's too.
    let mut wiped_at = asset.wiped_at.map(|(t, _)| t);
    if let (Kind::Materializations, Some(p)) = (kind, &q.partition) {
        let Some(s) = super::partitions::state_of(rows, dep, asset.id, p)? else {
            return Ok(Vec::new());
        };
        if !s.indexed {
            // At most one, held in the state.
            let bounds = |e: &EventRef| {
                q.after_us.is_none_or(|t| e.timestamp_us > t)
                    && q.before_us.is_none_or(|t| e.timestamp_us < t)
                    && q.before.is_none_or(|b| e.order() < b)
            };
            return Ok(s
                .latest_materialization
                .filter(bounds)
                .into_iter()
                .collect());
        }
        wiped_at = wiped_at.max(s.wiped_at_us);
    }
    if let (Kind::Observations, Some(p)) = (kind, &q.partition) {
        // A partition that was wiped has a state (see `partitions::apply`).
        wiped_at = wiped_at.max(super::partitions::wiped_at(rows, dep, asset.id, p)?);
    }
    let prefix = match (kind, &q.partition) {
        (Kind::Materializations, Some(p)) => K::new(keys::PARTITION_MATERIALIZATIONS, dep)
            .u64(asset.id)
            .str(p),
        (Kind::Materializations, None) => K::new(keys::MATERIALIZATIONS, dep).u64(asset.id),
        (Kind::Observations, _) => K::new(keys::OBSERVATIONS, dep).u64(asset.id),
    };
    // Visible after the wipe: later than it (and than `after_us`).
    let Some(lo) = after(&prefix, wiped_at.max(q.after_us)) else {
        return Ok(Vec::new());
    };
    let mut hi = keys::end_of(&prefix.clone().build());
    if let Some(t) = q.before_us {
        hi = hi.min(prefix.clone().time(t).build());
    }
    if let Some((t, s)) = q.before {
        hi = hi.min(prefix.clone().time(t).u64(s).build());
    }
    if lo >= hi {
        return Ok(Vec::new());
    }
    let row = |k: &[u8], v: &[u8]| -> Result<EventRef> {
        let (timestamp_us, seq) = keys::tail_time_seq(k);
        let (run_id, partition) = match &q.partition {
            Some(p) if kind == Kind::Materializations => (super::dec(v)?, Some(p.clone())),
            _ => {
                let e: points::Entry = super::dec(v)?;
                (e.run_id, e.partition)
            }
        };
        Ok(EventRef {
            seq,
            timestamp_us,
            run_id,
            partition,
        })
    };
    match (kind, &q.partition) {
        // The asset's observations of every partition: those of this one are kept.
        (Kind::Observations, Some(p)) => {
            let mut out = Vec::new();
            rows.walk(&lo, &hi, true, |k, v| {
                let e = row(k, v)?;
                if e.partition.as_ref() == Some(p) {
                    out.push(e);
                }
                Ok(out.len() < q.limit)
            })?;
            Ok(out)
        }
        // The asset's events of every partition, some of which a wipe of their partition
        // may hide.
        (_, None) if asset.partitions_wiped_at.is_some() => {
            let mut wipes = super::partitions::PartitionWipes::new(dep, &asset, None);
            let mut out = Vec::new();
            rows.walk(&lo, &hi, true, |k, v| {
                let e = row(k, v)?;
                if !wipes.hides(rows, &e)? {
                    out.push(e);
                }
                Ok(out.len() < q.limit)
            })?;
            Ok(out)
        }
        // Every row in range is visible: one scan of the page.
        _ => rows
            .scan(&lo, &hi, true, q.limit)?
            .into_iter()
            .map(|(k, v)| row(&k, &v))
            .collect(),
    }
}
