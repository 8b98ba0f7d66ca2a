//! Measurements of an asset, one per event: the whole-table row count
//! (`dagster/row_count`), every other numeric metadata value, and the content hash of the
//! table schema (`dagster/column_schema`, from materializations, observations and
//! definitions).
//!
//! They live in the asset's history rows: a materialization's or an observation's row (see
//! [`super::materializations`]) carries what it measured, and a definitions event that
//! declares a schema has a row of its own here. All three families are keyed by
//! `(asset, timestamp, seq)`, and [`walk`] merges them, so every series reads in time order
//! however the events arrived. [`super::rowcounts`] and [`super::schema`] read their series
//! and histories through it. One row per event, not one per series, keeps ingest cheap: a
//! materialization with a row count, a schema and a duration writes one row, not four. The
//! labels that have values are kept apart (one row per asset and label, written once), so
//! listing them reads no history.

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{enc, intern, schema, Pages, Result, Rows};
use crate::event::metadata::keys as md;
use crate::event::{Definitions, DeploymentId, Event, Metadata, Seq};
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

/// A history row: the value of every key `(asset, timestamp, seq)` that [`walk`] merges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub run_id: Option<String>,
    pub partition: Option<String>,
    pub measured: Measurements,
}

/// What one event measured, borrowing the event's labels: encodes to the bytes of the
/// [`Measurements`] it reads back as.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct Measured<'a> {
    pub row_count: Option<i64>,
    pub schema: Option<u64>,
    pub numeric: Vec<(&'a str, f64)>,
}

impl Measured<'_> {
    fn is_empty(&self) -> bool {
        self.row_count.is_none() && self.schema.is_none() && self.numeric.is_empty()
    }
}

/// An [`Entry`] to store, borrowing the event's strings (no copies of them to encode).
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct EntryRef<'a> {
    pub run_id: Option<&'a str>,
    pub partition: Option<&'a str>,
    pub measured: Measured<'a>,
}

/// The families of an asset's history rows: materializations, observations, and the
/// schemas definitions declare.
const FAMILIES: [u8; 3] = [keys::MATERIALIZATIONS, keys::OBSERVATIONS, keys::POINTS];

/// The key of a history row of `kind` (one of [`FAMILIES`]).
pub fn key(kind: u8, dep: DeploymentId, asset: u64, ts: i64, seq: Seq) -> Vec<u8> {
    K::new(kind, dep).u64(asset).time(ts).u64(seq).build()
}

fn label_key(dep: DeploymentId, asset: u64, label: &str) -> Vec<u8> {
    K::new(keys::NUMERIC_LABELS, dep)
        .u64(asset)
        .str(label)
        .build()
}

/// What `metadata` measures of the asset `id`, storing its schema (once) and the labels of
/// its numeric values (once each). `numeric`: row counts and numeric values count too (not
/// for definitions, whose metadata describes the asset rather than measures it).
pub fn measure<'a>(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    id: u64,
    metadata: &'a Metadata,
    numeric: bool,
) -> Result<Measured<'a>> {
    let mut m = Measured {
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
                m.numeric.push((&e.label, x));
            }
        }
    }
    Ok(m)
}

/// Apply a definitions event: the schemas its assets declare.
pub fn apply_definitions(txn: &mut Txn<'_>, seq: Seq, ev: &Event, d: &Definitions) -> Result<()> {
    let dep = ev.envelope.deployment;
    for def in &d.assets {
        if def.metadata.column_schema().is_some() {
            let id = intern(txn, dep, &def.asset_key)?;
            let measured = measure(txn, dep, id, &def.metadata, false)?;
            if !measured.is_empty() {
                let entry = EntryRef {
                    measured,
                    ..EntryRef::default()
                };
                let k = key(keys::POINTS, dep, id, ev.envelope.timestamp_us, seq);
                txn.put(k, enc(&entry));
            }
        }
    }
    Ok(())
}

/// Visit an asset's history rows (all of [`FAMILIES`], merged) with
/// `from_us <= timestamp < to_us`, in time order (or reversed), until `visit` returns false.
pub fn walk(
    rows: &impl Rows,
    dep: DeploymentId,
    asset: u64,
    (from_us, to_us): (Option<i64>, Option<i64>),
    reverse: bool,
    mut visit: impl FnMut(i64, Seq, Entry) -> Result<bool>,
) -> Result<()> {
    let mut runs = FAMILIES.map(|kind| {
        let at = |t: Option<i64>| match t {
            Some(t) => K::new(kind, dep).u64(asset).time(t).build(),
            None => K::new(kind, dep).u64(asset).build(),
        };
        let hi = match to_us {
            Some(_) => at(to_us),
            None => keys::end_of(&at(None)),
        };
        Pages::new(at(from_us), hi, reverse, 256)
    });
    loop {
        // The next row of the three: they never tie, a seq is one event.
        let mut next: Option<(usize, (i64, Seq))> = None;
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(at) = run.peek(rows)?.map(keys::tail_time_seq) {
                if next.is_none_or(|(_, n)| (at > n) == reverse) {
                    next = Some((i, at));
                }
            }
        }
        let Some((i, (t, s))) = next else {
            return Ok(());
        };
        let (_, v) = runs[i].next(rows)?.expect("peeked");
        if !visit(t, s, super::dec(&v)?)? {
            return Ok(());
        }
    }
}

/// The labels with numeric values on an asset, in byte order.
pub fn labels(rows: &impl Rows, dep: DeploymentId, asset: u64) -> Result<Vec<String>> {
    rows.names_under(&K::new(keys::NUMERIC_LABELS, dep).u64(asset).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::projection::{dec, enc};

    /// The borrowed entry a view writes is read back as the owned one: same bytes.
    #[test]
    fn a_borrowed_entry_encodes_as_the_owned_one() {
        let owned = Entry {
            run_id: Some("run-1".into()),
            partition: Some("2024-01-01|eu".into()),
            measured: Measurements {
                row_count: Some(-3),
                schema: Some(u64::MAX - 7),
                numeric: vec![("duration_s".into(), 12.5), ("cost".into(), f64::MIN)],
            },
        };
        let borrowed = EntryRef {
            run_id: Some("run-1"),
            partition: Some("2024-01-01|eu"),
            measured: Measured {
                row_count: Some(-3),
                schema: Some(u64::MAX - 7),
                numeric: vec![("duration_s", 12.5), ("cost", f64::MIN)],
            },
        };
        let bytes = enc(&borrowed);
        assert_eq!(bytes, enc(&owned));
        assert_eq!(dec::<Entry>(&bytes).unwrap(), owned);
        assert_eq!(enc(&EntryRef::default()), enc(&Entry::default()));
    }
}
