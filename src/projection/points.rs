//! Measurements of an asset, one row per event: the whole-table row count
//! (`dagster/row_count`), every other numeric metadata value, and the content hash of the
//! table schema (`dagster/column_schema`, from materializations, observations and
//! definitions). Rows are keyed by `(asset, timestamp, seq)`, so every series reads in time
//! order however the events arrived.
//!
//! [`super::rowcounts`] and [`super::schema`] read their series and histories from here.
//! One row per event instead of one per series keeps ingest cheap: a materialization with a
//! row count, a schema and a duration writes one row, not three. The labels that have
//! values are kept apart (one row per asset and label, written once), so listing them reads
//! no history.

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{enc, intern, schema, Result, Rows};
use crate::event::metadata::keys as md;
use crate::event::{Definitions, DeploymentId, Event, EventBody, Metadata, Seq};
use crate::log::Txn;

/// What one event measured of one asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurements {
    pub row_count: Option<i64>,
    /// Content hash of the table schema (see [`schema::hash`]).
    pub schema: Option<u64>,
    /// Other numeric metadata values, by label, in the event's order.
    pub numeric: Vec<(String, f64)>,
}

impl Measurements {
    fn is_empty(&self) -> bool {
        self.row_count.is_none() && self.schema.is_none() && self.numeric.is_empty()
    }
}

fn prefix(dep: DeploymentId, asset: u64) -> K {
    K::new(keys::POINTS, dep).u64(asset)
}

fn label_key(dep: DeploymentId, asset: u64, label: &str) -> Vec<u8> {
    K::new(keys::NUMERIC_LABELS, dep)
        .u64(asset)
        .str(label)
        .build()
}

fn record(
    txn: &mut Txn<'_>,
    (dep, id): (DeploymentId, u64),
    (ts, seq): (i64, Seq),
    metadata: &Metadata,
    numeric: bool,
) -> Result<()> {
    let mut m = Measurements {
        row_count: if numeric { metadata.row_count() } else { None },
        schema: match metadata.column_schema() {
            Some(s) => Some(schema::store(txn, dep, s)?),
            None => None,
        },
        numeric: Vec::new(),
    };
    if numeric {
        for e in &metadata.0 {
            if e.label == md::ROW_COUNT || e.label == md::PARTITION_ROW_COUNT {
                continue;
            }
            if let Some(x) = e.value.as_f64() {
                let lk = label_key(dep, id, &e.label);
                // A label row never changes once written.
                if !txn.contains_immutable(&lk)? {
                    txn.put(lk, Vec::new());
                }
                m.numeric.push((e.label.clone(), x));
            }
        }
    }
    if !m.is_empty() {
        txn.put(prefix(dep, id).time(ts).u64(seq).build(), enc(&m));
    }
    Ok(())
}

/// Apply an asset event of the asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    match &ev.body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => record(
            txn,
            (ev.envelope.deployment, id),
            (ev.envelope.timestamp_us, seq),
            &a.metadata,
            true,
        ),
        _ => Ok(()),
    }
}

/// Apply a definitions event: the schemas its assets declare.
pub fn apply_definitions(txn: &mut Txn<'_>, seq: Seq, ev: &Event, d: &Definitions) -> Result<()> {
    let dep = ev.envelope.deployment;
    for def in &d.assets {
        if def.metadata.column_schema().is_some() {
            let id = intern(txn, dep, &def.asset_key)?;
            let at = (ev.envelope.timestamp_us, seq);
            record(txn, (dep, id), at, &def.metadata, false)?;
        }
    }
    Ok(())
}

/// Visit an asset's measurements with `from_us <= timestamp < to_us`, in time order (or
/// reversed), until `visit` returns false.
pub fn walk(
    rows: &impl Rows,
    dep: DeploymentId,
    asset: u64,
    (from_us, to_us): (Option<i64>, Option<i64>),
    reverse: bool,
    mut visit: impl FnMut(i64, Seq, Measurements) -> Result<bool>,
) -> Result<()> {
    let at = |t: Option<i64>| match t {
        Some(t) => prefix(dep, asset).time(t).build(),
        None => prefix(dep, asset).build(),
    };
    let lo = at(from_us);
    let hi = match to_us {
        Some(_) => at(to_us),
        None => keys::end_of(&at(None)),
    };
    rows.walk(&lo, &hi, reverse, |k, v| {
        let (t, s) = keys::tail_time_seq(k);
        visit(t, s, super::dec(v)?)
    })
}

/// The labels with numeric values on an asset, in byte order.
pub fn labels(rows: &impl Rows, dep: DeploymentId, asset: u64) -> Result<Vec<String>> {
    rows.names_under(&K::new(keys::NUMERIC_LABELS, dep).u64(asset).build())
}
