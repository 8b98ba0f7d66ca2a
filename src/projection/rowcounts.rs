//! Row counts over time: `dagster/row_count` (the whole table) and
//! `dagster/partition_row_count` (per partition) per asset, and every other numeric
//! metadata value as a series by label. Series read in time order, `(timestamp, seq)`,
//! however the events arrived.
//!
//! Whole-table row counts and the other numeric values are read from the assets' history
//! rows (one per event, see [`super::points`]). Partition row counts have their own rows here, keyed by
//! `(asset, partition, timestamp, seq)`.

use super::keys::{self, K};
use super::{points, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

/// Apply an asset event of the asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let (EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a)) = &ev.body else {
        return Ok(());
    };
    if let (Some(n), Some(p)) = (a.metadata.partition_row_count(), &a.partition) {
        txn.put(
            K::new(keys::ROW_COUNTS, dep)
                .u64(id)
                .str(p)
                .time(ts)
                .u64(seq)
                .build(),
            n.to_be_bytes().to_vec(),
        );
    }
    Ok(())
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub timestamp_us: i64,
    pub seq: Seq,
    pub value: f64,
}

fn at_time(prefix: &[u8], t: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn series(
    rows: &impl Rows,
    prefix: Vec<u8>,
    from_us: Option<i64>,
    to_us: Option<i64>,
    limit: usize,
    decode: fn([u8; 8]) -> f64,
) -> Result<Vec<Point>> {
    let lo = from_us.map_or_else(|| prefix.clone(), |t| at_time(&prefix, t));
    let hi = to_us.map_or_else(|| keys::end_of(&prefix), |t| at_time(&prefix, t));
    Ok(rows
        .scan(&lo, &hi, false, limit)?
        .into_iter()
        .map(|(k, v)| {
            let (t, s) = keys::tail_time_seq(&k);
            Point {
                timestamp_us: t,
                seq: s,
                value: decode(v.as_slice().try_into().unwrap_or_default()),
            }
        })
        .collect())
}

/// Row counts of an asset (`partition` `None` = the whole table), oldest first, in
/// `[from_us, to_us)`.
pub fn row_counts(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    partition: Option<&str>,
    from_us: Option<i64>,
    to_us: Option<i64>,
    limit: usize,
) -> Result<Vec<Point>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    match partition {
        Some(p) => {
            let prefix = K::new(keys::ROW_COUNTS, dep).u64(id).str(p).build();
            series(rows, prefix, from_us, to_us, limit, |b| {
                i64::from_be_bytes(b) as f64
            })
        }
        None => from_points(rows, dep, id, (from_us, to_us), limit, |m| {
            m.row_count.map(|n| n as f64)
        }),
    }
}

/// A numeric metadata series of an asset by label, oldest first.
pub fn numeric_series(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    label: &str,
    from_us: Option<i64>,
    to_us: Option<i64>,
    limit: usize,
) -> Result<Vec<Point>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    from_points(rows, dep, id, (from_us, to_us), limit, |m| {
        m.numeric.iter().find(|(l, _)| l == label).map(|(_, x)| *x)
    })
}

/// The points of one series of [`points`], at most `limit`.
fn from_points(
    rows: &impl Rows,
    dep: DeploymentId,
    asset: u64,
    range: (Option<i64>, Option<i64>),
    limit: usize,
    value: impl Fn(&points::Measurements) -> Option<f64>,
) -> Result<Vec<Point>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    points::walk(rows, dep, asset, range, false, |t, s, e| {
        if let Some(v) = value(&e.measured) {
            out.push(Point {
                timestamp_us: t,
                seq: s,
                value: v,
            });
        }
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// The labels that have numeric series on an asset.
pub fn labels(rows: &impl Rows, dep: DeploymentId, key: &AssetKey) -> Result<Vec<String>> {
    match super::asset_id(rows, dep, key)? {
        Some(id) => points::labels(rows, dep, id),
        None => Ok(Vec::new()),
    }
}
