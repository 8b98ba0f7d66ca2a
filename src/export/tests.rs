//! Export properties: an export split at any point adds up to the whole (append tables
//! concatenate; snapshot tables, taking each entity's rows from the latest export that has
//! it, equal the full export), and plan validation.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use proptest::prelude::*;

use super::*;
use crate::event::validate::{validate_batch, Limits};
use crate::log::{Log, LogOptions};
use crate::projection::tests::{op, to_events};

fn store(values: Vec<serde_json::Value>) -> (tempfile::TempDir, Arc<Log>) {
    let dir = tempfile::tempdir().unwrap();
    let log = crate::projection::open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
    log.ensure_deployment("default").unwrap();
    if !values.is_empty() {
        log.append_blocking(validate_batch(values, 1, &Limits::default()).unwrap())
            .unwrap();
    }
    (dir, log)
}

/// Export every table of `(since, until]` and read the files back.
fn export_all(log: &Log, since: Seq, until: Option<Seq>) -> BTreeMap<Table, Vec<RecordBatch>> {
    let reader = Reader::new(log, 1);
    let position = reader.position().unwrap();
    let names = log
        .deployments()
        .unwrap()
        .into_iter()
        .map(|(n, id)| (id, n))
        .collect();
    let mut out = BTreeMap::new();
    for t in Table::ALL {
        let u = if t.kind() == TableKind::Append {
            until
        } else {
            None
        };
        let plan = Plan::new(vec![t], since, u, None, position).unwrap();
        let written = export(&reader, &names, &plan, vec![Vec::new()], &mut |_| {}).unwrap();
        let bytes = axum::body::Bytes::from(written.into_iter().next().unwrap().inner);
        let batches = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .collect::<std::result::Result<Vec<_>, _>>()
            .unwrap();
        out.insert(t, batches);
    }
    out
}

/// Rows as column name -> value text.
fn rows(batches: &[RecordBatch]) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push(
                b.schema()
                    .fields()
                    .iter()
                    .zip(b.columns())
                    .map(|(f, c)| (f.name().clone(), format!("{:?}", c.slice(i, 1))))
                    .collect(),
            );
        }
    }
    out
}

fn entity(t: Table, row: &BTreeMap<String, String>) -> Vec<String> {
    match t.kind() {
        TableKind::Snapshot { entity } => entity.iter().map(|c| row[*c].clone()).collect(),
        TableKind::Append => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn exports_split_anywhere_add_up_to_the_whole(
        ops in prop::collection::vec(op(), 1..50),
        cut in 0.0f64..1.0,
    ) {
        let values = to_events(&ops);
        let n = values.len();
        let k = ((n as f64) * cut) as usize;
        // The first part, exported; then the rest, exported incrementally; then the whole.
        let (_d, log) = store(values[..k].to_vec());
        let first = export_all(&log, 0, None);
        log.append_blocking(validate_batch(values[k..].to_vec(), 1, &Limits::default()).unwrap())
            .unwrap();
        let second = export_all(&log, k as Seq, None);
        let whole = export_all(&log, 0, None);
        for t in Table::ALL {
            let (a, b, w) = (rows(&first[&t]), rows(&second[&t]), rows(&whole[&t]));
            match t.kind() {
                TableKind::Append => {
                    let union: Vec<_> = a.into_iter().chain(b).collect();
                    prop_assert_eq!(union, w, "table {}", t.name());
                }
                TableKind::Snapshot { .. } => {
                    let strip = |mut r: BTreeMap<String, String>| {
                        r.remove("as_of_seq");
                        r
                    };
                    let newer: std::collections::HashSet<Vec<String>> =
                        b.iter().map(|r| entity(t, r)).collect();
                    let mut union: Vec<_> = a
                        .into_iter()
                        .filter(|r| !newer.contains(&entity(t, r)))
                        .chain(b)
                        .map(strip)
                        .collect();
                    let mut w: Vec<_> = w.into_iter().map(strip).collect();
                    union.sort();
                    w.sort();
                    prop_assert_eq!(union, w, "table {}", t.name());
                }
            }
        }
        // The events table has one row per event, in log order.
        prop_assert_eq!(rows(&whole[&Table::Events]).len(), n);
    }
}

#[test]
fn plans_name_what_is_wrong() {
    let msg = |r: Result<Plan>| match r {
        Err(Error::Invalid(m)) => m,
        other => panic!("expected an invalid plan, got {other:?}"),
    };
    assert!(msg(Plan::new(vec![Table::Events], 11, None, None, 10)).contains("beyond the end"));
    assert!(msg(Plan::new(vec![Table::Events], 0, Some(11), None, 10)).contains("until=11"));
    assert!(msg(Plan::new(vec![Table::Events], 5, Some(4), None, 10)).contains("before since"));
    assert!(msg(Plan::new(vec![Table::Runs], 0, Some(5), None, 10)).contains("snapshot table"));
    let p = Plan::new(vec![Table::Events], 3, Some(5), None, 10).unwrap();
    assert_eq!((p.since, p.until), (3, 5));
    let p = Plan::new(vec![Table::Runs], 3, None, None, 10).unwrap();
    assert_eq!(p.until, 10);
}

#[test]
fn timestamps_are_utc_microseconds_and_keys_are_lists() {
    let (_d, log) = store(vec![serde_json::json!({
        "id": "m", "type": "ASSET_MATERIALIZATION", "timestamp": "2026-11-01T10:00:00.123456Z",
        "asset_key": ["a", "b"], "partition": "p", "metadata": {"dagster/row_count": 7}
    })]);
    let out = export_all(&log, 0, None);
    let m = &out[&Table::Materializations][0];
    let ts = m.column_by_name("timestamp").unwrap();
    assert_eq!(
        ts.data_type(),
        &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
    );
    let ts = ts
        .as_any()
        .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(ts.value(0), 1_793_527_200_123_456);
    let key = rows(&out[&Table::Materializations])[0]["asset_key"].clone();
    assert!(key.contains("\"a\"") && key.contains("\"b\""), "{key}");
    let rc = m
        .column_by_name("row_count")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow_array::Int64Array>()
        .unwrap();
    assert_eq!(rc.value(0), 7);
}
