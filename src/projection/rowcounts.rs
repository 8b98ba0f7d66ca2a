//! Row counts over time: `dagster/row_count` (the whole table, series `""`) and
//! `dagster/partition_row_count` (per partition) per asset, and every other numeric
//! metadata value as a series by label. Points are keyed by `(timestamp, seq)`, so a series
//! reads in time order however the events arrived.

use super::keys::{self, K};
use super::{intern, Result, Rows};
use crate::event::metadata::keys as md;
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let (EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a)) = &ev.body else {
        return Ok(());
    };
    let id = intern(txn, dep, &a.asset_key)?;
    if let Some(n) = a.metadata.row_count() {
        txn.put(
            K::new(keys::ROW_COUNTS, dep)
                .u64(id)
                .str("")
                .time(ts)
                .u64(seq)
                .build(),
            n.to_be_bytes().to_vec(),
        );
    }
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
    for e in &a.metadata.0 {
        if e.label == md::ROW_COUNT || e.label == md::PARTITION_ROW_COUNT {
            continue;
        }
        if let Some(x) = e.value.as_f64() {
            txn.put(
                K::new(keys::NUMERIC_SERIES, dep)
                    .u64(id)
                    .str(&e.label)
                    .time(ts)
                    .u64(seq)
                    .build(),
                x.to_be_bytes().to_vec(),
            );
        }
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
    let prefix = K::new(keys::ROW_COUNTS, dep)
        .u64(id)
        .str(partition.unwrap_or(""))
        .build();
    series(rows, prefix, from_us, to_us, limit, |b| {
        i64::from_be_bytes(b) as f64
    })
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
    let prefix = K::new(keys::NUMERIC_SERIES, dep).u64(id).str(label).build();
    series(rows, prefix, from_us, to_us, limit, f64::from_be_bytes)
}

/// The labels that have numeric series on an asset.
pub fn labels(rows: &impl Rows, dep: DeploymentId, key: &AssetKey) -> Result<Vec<String>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    let prefix = K::new(keys::NUMERIC_SERIES, dep).u64(id).build();
    let mut out: Vec<String> = Vec::new();
    let mut lo = prefix.clone();
    let hi = keys::end_of(&prefix);
    loop {
        let page = rows.scan(&lo, &hi, false, 1)?;
        let Some((k, _)) = page.first() else {
            return Ok(out);
        };
        let Some(label) = keys::str_at(k, prefix.len()) else {
            return Ok(out);
        };
        out.push(label.to_string());
        // Skip to the next label.
        lo = K::new(keys::NUMERIC_SERIES, dep).u64(id).str(label).build();
        lo = keys::end_of(&lo);
    }
}
