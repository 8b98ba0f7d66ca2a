//! Semantics of every view with concrete event sequences, and properties: views after live
//! ingest equal views after rebuild, read results do not depend on arrival order, and read
//! functions agree with a small in-memory model.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::event::validate::{validate_batch, Limits};
use crate::event::AssetKey;

fn store() -> (tempfile::TempDir, Arc<Log>) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
    (dir, log)
}

fn events(values: Vec<Value>) -> Vec<Event> {
    validate_batch(values, 1, &Limits::default()).unwrap()
}

fn append(log: &Log, values: Vec<Value>) {
    log.append_blocking(events(values)).unwrap();
}

/// A rebuild gives back exactly the live views.
fn assert_rebuild_is_live(log: &Log) {
    let live = dump(log).unwrap();
    rebuild(log, |_, _| {}).unwrap();
    assert_eq!(
        dump(log).unwrap(),
        live,
        "rebuilt views differ from live views"
    );
}

fn key(s: &str) -> AssetKey {
    AssetKey(s.split('/').map(str::to_string).collect())
}

fn run_ev(id: &str, t: &str, run: &str, ts: i64) -> Value {
    json!({"id": id, "type": t, "timestamp": ts, "run_id": run})
}

fn mat(id: &str, asset: &str, ts: i64, run: Option<&str>, partition: Option<&str>) -> Value {
    let mut v =
        json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": asset});
    if let Some(r) = run {
        v["run_id"] = json!(r);
    }
    if let Some(p) = partition {
        v["partition"] = json!(p);
    }
    v
}

#[test]
fn run_status_never_leaves_a_terminal_state() {
    let (_d, log) = store();
    append(
        &log,
        vec![
            run_ev("1", "RUN_START", "r", 10),
            run_ev("2", "RUN_SUCCESS", "r", 20),
            run_ev("3", "RUN_START", "r", 30), // late START after SUCCESS
            run_ev("4", "RUN_ENQUEUED", "r", 5),
            run_ev("5", "RUN_STARTED_SOMEHOW", "q", 1),
        ],
    );
    let rd = Reader::new(&log, 1);
    let r = runs::get(&rd, 1, "r").unwrap().unwrap();
    assert_eq!(r.status, runs::RunStatus::Success);
    assert_eq!((r.start_us, r.end_us), (Some(10_000_000), Some(20_000_000)));
    assert_eq!(r.created_us, 5_000_000);

    append(
        &log,
        vec![
            run_ev("6", "RUN_STARTED_NOT", "s", 1),
            run_ev("7", "RUN_START", "s", 10),
            run_ev("8", "RUN_ENQUEUED", "s", 11),
        ],
    );
    let rd = Reader::new(&log, 1);
    assert_eq!(
        runs::get(&rd, 1, "s").unwrap().unwrap().status,
        runs::RunStatus::Started,
        "QUEUED does not undo STARTED"
    );

    // Two terminal events: the later by timestamp stands, whatever the arrival order.
    append(
        &log,
        vec![
            run_ev("9", "RUN_FAILURE", "t", 50),
            run_ev("10", "RUN_SUCCESS", "t", 40),
        ],
    );
    let rd = Reader::new(&log, 1);
    assert_eq!(
        runs::get(&rd, 1, "t").unwrap().unwrap().status,
        runs::RunStatus::Failure
    );
    let listed = runs::list(
        &rd,
        1,
        &runs::RunFilter {
            statuses: vec![runs::RunStatus::Success],
            ..Default::default()
        },
        None,
        10,
    )
    .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        vec!["r"]
    );
}

#[test]
fn latest_materialization_is_by_time_then_seq() {
    let (_d, log) = store();
    append(&log, vec![mat("a", "db/t", 200, Some("r2"), None)]);
    append(&log, vec![mat("b", "db/t", 100, Some("r1"), None)]); // arrives later, older
    let rd = Reader::new(&log, 1);
    let a = assets::by_key(&rd, 1, &key("db/t")).unwrap().unwrap();
    assert_eq!(a.latest_materialization.as_ref().unwrap().seq, 1);
    assert_eq!(a.materialization_count, 2);
    assert_eq!(a.last_run_id(), Some("r2"));
    let h = materializations::history(
        &rd,
        1,
        &key("db/t"),
        materializations::Kind::Materializations,
        &materializations::HistoryQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        h.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2],
        "history is newest first by time: its first entry is the latest"
    );
}

#[test]
fn wipe_hides_earlier_events_even_when_they_arrive_late() {
    let (_d, log) = store();
    append(
        &log,
        vec![
            mat("a", "x", 100, None, Some("p1")),
            json!({"id": "w", "type": "ASSET_WIPED", "timestamp": 150, "asset_key": "x"}),
        ],
    );
    let rd = Reader::new(&log, 1);
    let a = assets::by_key(&rd, 1, &key("x")).unwrap().unwrap();
    assert_eq!(
        (a.materialization_count, a.latest_materialization.is_none()),
        (0, true)
    );
    assert!(
        assets::list(&rd, 1, &assets::AssetFilter::default(), None, 10)
            .unwrap()
            .is_empty(),
        "wiped assets are hidden"
    );
    assert_eq!(
        partitions::counts(&rd, 1, &key("x")).unwrap().materialized,
        0
    );
    append(
        &log,
        vec![
            mat("late", "x", 120, None, Some("p1")),
            mat("new", "x", 200, None, Some("p2")),
        ],
    );
    let rd = Reader::new(&log, 1);
    let a = assets::by_key(&rd, 1, &key("x")).unwrap().unwrap();
    assert_eq!(a.materialization_count, 1);
    assert_eq!(
        a.latest_materialization.unwrap().partition.as_deref(),
        Some("p2")
    );
    let c = partitions::counts(&rd, 1, &key("x")).unwrap();
    assert_eq!(c.materialized, 1, "{c:?}");
    let h = materializations::history(
        &rd,
        1,
        &key("x"),
        materializations::Kind::Materializations,
        &materializations::HistoryQuery {
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(h.len(), 1);
}

#[test]
fn partition_status_follows_planned_runs_and_materializations() {
    let (_d, log) = store();
    let planned = |id: &str, run: &str, p: &str, ts: i64| json!({"id": id, "type": "ASSET_MATERIALIZATION_PLANNED", "timestamp": ts, "run_id": run, "asset_key": "s", "partition": p});
    append(
        &log,
        vec![
            run_ev("r1s", "RUN_START", "r1", 1),
            planned("p1", "r1", "2024-01-01", 2),
            planned("p2", "r1", "2024-01-02", 2),
            json!({"id": "p3", "type": "ASSET_MATERIALIZATION_PLANNED", "timestamp": 2, "run_id": "r2", "asset_key": "s", "partitions": ["2024-01-03"]}),
            mat("m1", "s", 3, Some("r1"), Some("2024-01-01")),
        ],
    );
    let rd = Reader::new(&log, 1);
    let c = partitions::counts(&rd, 1, &key("s")).unwrap();
    assert_eq!(
        (c.known, c.materialized, c.in_progress, c.failed),
        (3, 1, 2, 0)
    );
    append(
        &log,
        vec![
            run_ev("r1f", "RUN_FAILURE", "r1", 4),
            run_ev("r2s", "RUN_SUCCESS", "r2", 4),
        ],
    );
    let rd = Reader::new(&log, 1);
    let c = partitions::counts(&rd, 1, &key("s")).unwrap();
    assert_eq!(
        (c.materialized, c.in_progress, c.failed),
        (1, 0, 1),
        "r1 failed: 01-02 failed; r2 succeeded without materializing 01-03"
    );
    let failed = partitions::by_status(
        &rd,
        1,
        &key("s"),
        Some(partitions::PartitionStatus::Failed),
        None,
        10,
    )
    .unwrap();
    assert_eq!(
        failed.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        vec!["2024-01-02"]
    );
    // A later materialization clears the failure.
    append(
        &log,
        vec![mat("m2", "s", 5, Some("r3"), Some("2024-01-02"))],
    );
    let rd = Reader::new(&log, 1);
    let c = partitions::counts(&rd, 1, &key("s")).unwrap();
    assert_eq!((c.materialized, c.failed), (2, 0));
    // A failure event of the failed group marks the partition failed.
    append(
        &log,
        vec![
            json!({"id": "f", "type": "ASSET_FAILED_TO_MATERIALIZE", "timestamp": 6, "run_id": "r4", "asset_key": "s", "partition": "2024-01-02", "reason": "COMPUTE_FAILED"}),
        ],
    );
    let rd = Reader::new(&log, 1);
    assert_eq!(partitions::counts(&rd, 1, &key("s")).unwrap().failed, 1);
    let st = partitions::state(&rd, 1, &key("s"), "2024-01-02")
        .unwrap()
        .unwrap();
    assert_eq!(st.latest_materialization.unwrap().seq, 8);
}

#[test]
fn checks_resolve_against_their_runs() {
    let (_d, log) = store();
    let plan = |id: &str, run: &str, check: &str| json!({"id": id, "type": "ASSET_CHECK_EVALUATION_PLANNED", "timestamp": 1, "run_id": run, "asset_key": "a", "check_name": check});
    let eval = |id: &str, run: &str, check: &str, passed: bool, ts: i64| json!({"id": id, "type": "ASSET_CHECK_EVALUATION", "timestamp": ts, "run_id": run, "asset_key": "a", "check_name": check, "passed": passed});
    append(
        &log,
        vec![
            plan("1", "r1", "c1"),
            eval("2", "r1", "c1", true, 2),
            plan("3", "r2", "c2"),
            run_ev("4", "RUN_FAILURE", "r2", 3),
            plan("5", "r3", "c3"),
            run_ev("6", "RUN_SUCCESS", "r3", 3),
            plan("7", "r4", "c4"),
            run_ev("8", "RUN_START", "r4", 3),
            eval("9", "r5", "c5", false, 4),
            plan("10", "r5", "c5"),
        ],
    );
    let rd = Reader::new(&log, 1);
    let status = |c: &str| {
        let e = checks::latest(&rd, 1, &key("a"), c).unwrap().unwrap();
        checks::resolve(&rd, 1, &e).unwrap()
    };
    assert_eq!(status("c1"), checks::ResolvedStatus::Succeeded);
    assert_eq!(status("c2"), checks::ResolvedStatus::ExecutionFailed);
    assert_eq!(status("c3"), checks::ResolvedStatus::Skipped);
    assert_eq!(status("c4"), checks::ResolvedStatus::InProgress);
    assert_eq!(
        status("c5"),
        checks::ResolvedStatus::Failed,
        "an evaluation before its planned event stands"
    );
    assert_eq!(
        checks::history(&rd, 1, &key("a"), "c1", None, 10)
            .unwrap()
            .len(),
        1,
        "evaluation updates the planned execution"
    );
    assert_eq!(checks::of_asset(&rd, 1, &key("a")).unwrap().len(), 5);
}

/// A check's history is newest first by the time of each execution's latest event, the
/// order `latest` picks by, whatever order the events arrive in; the cursor pages through it.
#[test]
fn a_checks_history_is_ordered_by_time_whatever_the_arrival_order() {
    let plan = |id: &str, run: &str, ts: i64| json!({"id": id, "type": "ASSET_CHECK_EVALUATION_PLANNED", "timestamp": ts, "run_id": run, "asset_key": "a", "check_name": "c"});
    let eval = |id: &str, run: &str, ts: i64| json!({"id": id, "type": "ASSET_CHECK_EVALUATION", "timestamp": ts, "run_id": run, "asset_key": "a", "check_name": "c", "passed": true});
    let in_order = vec![
        plan("p1", "r1", 1),
        eval("e1", "r1", 2),
        plan("p2", "r2", 3),
        eval("e2", "r2", 4),
        plan("p3", "r3", 5),
    ];
    let late = vec![
        plan("p3", "r3", 5),
        plan("p2", "r2", 3),
        eval("e2", "r2", 4),
        eval("e1", "r1", 2),
        plan("p1", "r1", 1),
    ];
    for events in [in_order, late] {
        let (_d, log) = store();
        for ev in events {
            append(&log, vec![ev]);
        }
        let rd = Reader::new(&log, 1);
        let history = checks::history(&rd, 1, &key("a"), "c", None, 10).unwrap();
        let runs = |h: &[checks::CheckExecution]| {
            h.iter()
                .map(|e| e.run_id.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(runs(&history), ["r3", "r2", "r1"]);
        assert_eq!(
            history
                .iter()
                .map(|e| e.timestamp_us / 1_000_000)
                .collect::<Vec<_>>(),
            [5, 4, 2]
        );
        let latest = checks::latest(&rd, 1, &key("a"), "c").unwrap().unwrap();
        assert_eq!(latest, history[0]);
        // Two pages of one and two.
        let first = checks::history(&rd, 1, &key("a"), "c", None, 1).unwrap();
        let rest = checks::history(&rd, 1, &key("a"), "c", Some(first[0].id), 10).unwrap();
        assert_eq!(
            (runs(&first), runs(&rest)),
            (
                vec!["r3".to_string()],
                vec!["r2".to_string(), "r1".to_string()]
            )
        );
        assert_rebuild_is_live(&log);
    }
}

/// A check's definition is the one of the newest definitions event that defines it: an
/// older one arriving late changes nothing.
#[test]
fn a_late_older_definition_does_not_replace_a_checks_definition() {
    let defs = |id: &str, ts: i64, description: &str, blocking: bool| {
        json!({"id": id, "type": "DEFINITIONS", "timestamp": ts, "code_location": "loc",
               "assets": [{"asset_key": "a"}],
               "checks": [{"asset_key": "a", "name": "c", "description": description, "blocking": blocking}]})
    };
    for newest_first in [false, true] {
        let (_d, log) = store();
        let (old, new) = (defs("d1", 10, "v1", false), defs("d2", 20, "v2", true));
        let order = if newest_first { [new, old] } else { [old, new] };
        for ev in order {
            append(&log, vec![ev]);
        }
        let rd = Reader::new(&log, 1);
        let (name, summary) = checks::of_asset(&rd, 1, &key("a")).unwrap().remove(0);
        let d = summary.definition.unwrap();
        assert_eq!(
            (name.as_str(), d.description.as_deref(), d.blocking),
            ("c", Some("v2"), true),
            "newest first: {newest_first}"
        );
        assert_rebuild_is_live(&log);
    }
}

/// A check that its location's newer definitions event no longer defines loses its
/// definition (and is gone if it never ran), whatever order the two events arrive in.
#[test]
fn a_check_dropped_by_a_newer_definition_loses_its_definition() {
    let defs = |id: &str, ts: i64, checks: &[&str]| {
        json!({"id": id, "type": "DEFINITIONS", "timestamp": ts, "code_location": "loc",
               "assets": [{"asset_key": "a"}],
               "checks": checks.iter().map(|c| json!({"asset_key": "a", "name": c})).collect::<Vec<_>>()})
    };
    let eval = json!({"id": "e", "type": "ASSET_CHECK_EVALUATION", "timestamp": 5, "asset_key": "a", "check_name": "ran", "passed": true});
    for newest_first in [false, true] {
        let (_d, log) = store();
        let (old, new) = (
            defs("d1", 10, &["kept", "ran", "idle"]),
            defs("d2", 20, &["kept"]),
        );
        let order = if newest_first { [new, old] } else { [old, new] };
        append(&log, vec![eval.clone()]);
        for ev in order {
            append(&log, vec![ev]);
        }
        let rd = Reader::new(&log, 1);
        let checks: Vec<(String, bool)> = checks::of_asset(&rd, 1, &key("a"))
            .unwrap()
            .into_iter()
            .map(|(name, s)| (name, s.definition.is_some()))
            .collect();
        assert_eq!(
            checks,
            [("kept".to_string(), true), ("ran".to_string(), false)],
            "newest first: {newest_first}"
        );
        assert_rebuild_is_live(&log);
    }
}

/// An asset that moves to another code location keeps the newer location's definition when
/// the old location's older definitions event arrives late.
#[test]
fn an_asset_moved_between_locations_keeps_the_newer_definition() {
    let defs = |id: &str, ts: i64, location: &str| {
        json!({"id": id, "type": "DEFINITIONS", "timestamp": ts, "code_location": location,
               "assets": [{"asset_key": "x", "group_name": location}]})
    };
    for newest_first in [false, true] {
        let (_d, log) = store();
        let (old, new) = (defs("d1", 10, "l1"), defs("d2", 20, "l2"));
        let order = if newest_first { [new, old] } else { [old, new] };
        for ev in order {
            append(&log, vec![ev]);
        }
        let rd = Reader::new(&log, 1);
        let r = assets::by_key(&rd, 1, &key("x")).unwrap().unwrap();
        let (location, d) = r.definition.unwrap();
        assert_eq!(
            (location.as_str(), d.group_name.as_deref()),
            ("l2", Some("l2")),
            "newest first: {newest_first}"
        );
        assert_rebuild_is_live(&log);
    }
}

#[test]
fn lineage_from_definitions_and_columns() {
    let (_d, log) = store();
    let defs = |id: &str, ts: i64, assets: Value| json!({"id": id, "type": "DEFINITIONS", "timestamp": ts, "code_location": "loc", "assets": assets});
    append(
        &log,
        vec![defs(
            "d1",
            10,
            json!([
                {"asset_key": "a"}, {"asset_key": "b", "deps": ["a"]}, {"asset_key": "c", "deps": ["b"]}, {"asset_key": "d", "deps": ["c"], "group_name": "g"}
            ]),
        )],
    );
    let rd = Reader::new(&log, 1);
    let t = lineage::traverse(&rd, 1, &key("a"), lineage::Direction::Downstream, 2, 100).unwrap();
    assert_eq!(t.nodes, vec![(key("b"), 1), (key("c"), 2)]);
    let t = lineage::traverse(&rd, 1, &key("d"), lineage::Direction::Upstream, 10, 2).unwrap();
    assert!(t.truncated);
    assert_eq!(t.nodes.len(), 2);
    let g = assets::list(
        &rd,
        1,
        &assets::AssetFilter {
            group: Some("g".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .unwrap();
    assert_eq!(
        g.iter().map(|a| a.key.clone()).collect::<Vec<_>>(),
        vec![key("d")]
    );
    // A newer definition replaces the location's edges; an older one arriving late does not.
    append(
        &log,
        vec![
            defs(
                "d2",
                20,
                json!([{"asset_key": "a"}, {"asset_key": "c", "deps": ["a"]}]),
            ),
            defs("d0", 5, json!([{"asset_key": "z", "deps": ["a"]}])),
        ],
    );
    let rd = Reader::new(&log, 1);
    let t = lineage::traverse(&rd, 1, &key("a"), lineage::Direction::Downstream, 5, 100).unwrap();
    assert_eq!(t.nodes, vec![(key("c"), 1)]);
    assert!(assets::by_key(&rd, 1, &key("b"))
        .unwrap()
        .unwrap()
        .definition
        .is_none());
    // Column lineage: the latest by time.
    let cl = |id: &str, ts: i64, col: &str| {
        json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": "c",
        "metadata": {"dagster/column_lineage": {"type": "column_lineage", "deps_by_column": {col: [{"asset_key": "a", "column_name": "x"}]}}}})
    };
    append(&log, vec![cl("c2", 30, "new"), cl("c1", 25, "old")]);
    let rd = Reader::new(&log, 1);
    let l = lineage::column_lineage(&rd, 1, &key("c")).unwrap().unwrap();
    assert_eq!(l.lineage.deps_by_column[0].0, "new");
}

#[test]
fn schema_history_is_stored_once_per_distinct_schema_and_diffs() {
    let (_d, log) = store();
    let sch = |id: &str, ts: i64, cols: Value| {
        json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": "t",
        "metadata": {"dagster/column_schema": {"type": "table_schema", "columns": cols}}})
    };
    let v1 = json!([{"name": "id", "type": "int", "constraints": {"nullable": false}}, {"name": "name", "type": "text"}]);
    let v2 = json!([{"name": "id", "type": "bigint", "constraints": {"nullable": false}}, {"name": "email", "type": "text"}]);
    append(
        &log,
        vec![
            sch("1", 1, v1.clone()),
            sch("2", 2, v1.clone()),
            sch("3", 3, v2),
            sch("4", 4, v1),
        ],
    );
    let rd = Reader::new(&log, 1);
    let versions = schema::versions(&rd, 1, &key("t")).unwrap();
    assert_eq!(versions.len(), 3);
    assert_eq!(
        versions[0].hash, versions[2].hash,
        "the same schema has one hash"
    );
    let stored = rd
        .scan_prefix(&K::new(keys::SCHEMA, 1).build(), false, 100)
        .unwrap();
    assert_eq!(stored.len(), 2, "each distinct schema stored once");
    let a = schema::by_hash(&rd, 1, versions[0].hash).unwrap().unwrap();
    let b = schema::by_hash(&rd, 1, versions[1].hash).unwrap().unwrap();
    let d = schema::diff(&a, &b);
    assert_eq!(
        d.added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["email"]
    );
    assert_eq!(
        d.removed
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        vec!["name"]
    );
    assert_eq!(d.changed.len(), 1);
    assert_eq!(
        (
            d.changed[0].old_type.as_deref(),
            d.changed[0].new_type.as_deref()
        ),
        (Some("int"), Some("bigint"))
    );
    let (cur, _) = schema::current(&rd, 1, &key("t")).unwrap().unwrap();
    assert_eq!(cur.hash, versions[0].hash);
}

#[test]
fn row_counts_and_numeric_series_read_in_time_order() {
    let (_d, log) = store();
    let rc = |id: &str, ts: i64, n: i64| {
        json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": "t", "partition": "p",
        "metadata": {"dagster/row_count": n, "dagster/partition_row_count": n / 2, "lag": 1.5, "label": "x"}})
    };
    append(
        &log,
        vec![rc("3", 30, 300), rc("1", 10, 100), rc("2", 20, 200)],
    );
    let rd = Reader::new(&log, 1);
    let s = rowcounts::row_counts(&rd, 1, &key("t"), None, None, None, 100).unwrap();
    assert_eq!(
        s.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![100.0, 200.0, 300.0]
    );
    let s =
        rowcounts::row_counts(&rd, 1, &key("t"), Some("p"), Some(15_000_000), None, 100).unwrap();
    assert_eq!(
        s.iter().map(|p| p.value).collect::<Vec<_>>(),
        vec![100.0, 150.0]
    );
    assert_eq!(rowcounts::labels(&rd, 1, &key("t")).unwrap(), vec!["lag"]);
    assert_eq!(
        rowcounts::numeric_series(&rd, 1, &key("t"), "lag", None, None, 10)
            .unwrap()
            .len(),
        3
    );
}

/// Materializations, observations and a definitions event's schema are three families of
/// history rows; the series read them merged in time order, across page boundaries.
#[test]
fn series_merge_materializations_observations_and_definitions_in_time_order() {
    let (_d, log) = store();
    let schema = |c: &str| json!({"type": "table_schema", "columns": [{"name": c}]});
    let mut events: Vec<Value> = (0..600)
        .map(|i| {
            let kind = if i % 2 == 0 { "ASSET_MATERIALIZATION" } else { "ASSET_OBSERVATION" };
            let mut md = json!({"dagster/row_count": i});
            if i == 500 {
                md["dagster/column_schema"] = schema("late");
            }
            json!({"id": format!("e{i}"), "type": kind, "timestamp": 1000 + i, "asset_key": "t", "metadata": md})
        })
        .collect();
    events.push(
        json!({"id": "d", "type": "DEFINITIONS", "timestamp": 1300, "code_location": "loc",
        "assets": [{"asset_key": "t", "metadata": {"dagster/column_schema": schema("declared")}}]}),
    );
    // Newest first: every family's rows arrive out of time order.
    events.reverse();
    append(&log, events);
    let rd = Reader::new(&log, 1);
    let s = 1_000_000;
    let series = rowcounts::row_counts(&rd, 1, &key("t"), None, None, None, 1000).unwrap();
    assert_eq!(
        series.iter().map(|p| p.value as i64).collect::<Vec<_>>(),
        (0..600).collect::<Vec<_>>()
    );
    assert!(series
        .windows(2)
        .all(|w| w[0].timestamp_us < w[1].timestamp_us));
    let window =
        rowcounts::row_counts(&rd, 1, &key("t"), None, Some(1100 * s), Some(1400 * s), 250)
            .unwrap();
    assert_eq!(
        window.iter().map(|p| p.value as i64).collect::<Vec<_>>(),
        (100..350).collect::<Vec<_>>()
    );
    let versions = schema::versions(&rd, 1, &key("t")).unwrap();
    assert_eq!(
        versions.iter().map(|v| v.since_us / s).collect::<Vec<_>>(),
        vec![1300, 1500],
        "the declared schema, then the materialized one"
    );
    let (cur, current) = schema::current(&rd, 1, &key("t")).unwrap().unwrap();
    assert_eq!(
        (cur.since_us / s, current.columns[0].name.as_str()),
        (1500, "late")
    );
}

/// A partition materialized once keeps its history in its state; its second visible
/// materialization writes rows for both. The history reads the same either way.
#[test]
fn a_partition_gets_history_rows_from_its_second_materialization() {
    let (_d, log) = store();
    let partition_rows = |log: &Log| {
        dump(log)
            .unwrap()
            .iter()
            .filter(|(k, _)| k[0] == keys::PARTITION_MATERIALIZATIONS)
            .count()
    };
    let history = |log: &Log, p: &str| {
        let q = materializations::HistoryQuery {
            partition: Some(p.into()),
            limit: 10,
            ..Default::default()
        };
        let rd = Reader::new(log, 1);
        materializations::history(
            &rd,
            1,
            &key("t"),
            materializations::Kind::Materializations,
            &q,
        )
        .unwrap()
        .iter()
        .map(|e| (e.timestamp_us / 1_000_000, e.run_id.clone().unwrap()))
        .collect::<Vec<_>>()
    };
    // Partition "a": its count of visible materializations and the seq of the latest.
    let count_and_latest = |log: &Log| {
        let rd = Reader::new(log, 1);
        let st = partitions::state(&rd, 1, &key("t"), "a").unwrap().unwrap();
        let latest = st.latest_materialization.unwrap().seq;
        (st.materialization_count, latest)
    };
    append(
        &log,
        vec![
            mat("1", "t", 10, Some("r1"), Some("a")),
            mat("2", "t", 20, Some("r2"), Some("b")),
        ],
    );
    assert_eq!(partition_rows(&log), 0);
    assert_eq!(history(&log, "a"), vec![(10, "r1".to_string())]);
    // A wipe of "a" at 15, then one materialization before it (hidden) and one after.
    append(
        &log,
        vec![
            json!({"id": "w", "type": "ASSET_WIPED", "timestamp": 15, "asset_key": "t", "partition_keys": ["a"]}),
            mat("3", "t", 12, Some("r3"), Some("a")),
            mat("4", "t", 30, Some("r4"), Some("a")),
        ],
    );
    assert_eq!(partition_rows(&log), 0, "one visible materialization each");
    assert_eq!(history(&log, "a"), vec![(30, "r4".to_string())]);
    append(&log, vec![mat("5", "t", 25, Some("r5"), Some("a"))]);
    assert_eq!(partition_rows(&log), 2);
    assert_eq!(
        history(&log, "a"),
        vec![(30, "r4".to_string()), (25, "r5".to_string())]
    );
    assert_eq!(count_and_latest(&log), (2, 5));
    // A wipe of the asset at 28 leaves one of the two.
    append(
        &log,
        vec![json!({"id": "w2", "type": "ASSET_WIPED", "timestamp": 28, "asset_key": "t"})],
    );
    assert_eq!(history(&log, "a"), vec![(30, "r4".to_string())]);
    assert!(history(&log, "b").is_empty());
    assert_eq!(count_and_latest(&log), (1, 5));
    assert_rebuild_is_live(&log);
}

/// A wipe of some partitions hides their materializations and observations at or before it
/// from the asset too: its latest events, counts and history. Whichever order the events
/// arrive in, the asset reads the same, and so does a rebuild.
#[test]
fn a_partition_wipe_hides_its_events_from_the_asset() {
    let obs = |id: &str, ts: i64, p: &str| json!({"id": id, "type": "ASSET_OBSERVATION", "timestamp": ts, "asset_key": "t", "partition": p});
    let wipe = |id: &str, ts: i64, p: &str| json!({"id": id, "type": "ASSET_WIPED", "timestamp": ts, "asset_key": "t", "partition_keys": [p]});
    let evs = vec![
        mat("1", "t", 10, Some("r1"), Some("a")),
        mat("2", "t", 20, Some("r2"), Some("b")),
        mat("3", "t", 30, Some("r3"), Some("a")),
        mat("4", "t", 40, Some("r4"), None),
        obs("5", 15, "a"),
        obs("6", 25, "b"),
        // "a" wiped at 35: hides 1, 3 and 5. "b" wiped at 5: hides nothing.
        wipe("w1", 35, "a"),
        wipe("w2", 5, "b"),
        mat("7", "t", 33, Some("r7"), Some("a")), // older than the wipe of "a": hidden
        mat("8", "t", 50, Some("r8"), Some("a")),
    ];
    let read = |log: &Log| {
        let rd = Reader::new(log, 1);
        let a = assets::by_key(&rd, 1, &key("t")).unwrap().unwrap();
        let history = |kind| {
            let q = materializations::HistoryQuery {
                limit: 10,
                ..Default::default()
            };
            materializations::history(&rd, 1, &key("t"), kind, &q)
                .unwrap()
                .iter()
                .map(|e| {
                    e.run_id
                        .clone()
                        .unwrap_or_else(|| e.partition.clone().unwrap())
                })
                .collect::<Vec<_>>()
        };
        (
            a.latest_materialization.map(|e| e.run_id.unwrap()),
            a.materialization_count,
            a.latest_observation.map(|e| e.timestamp_us / 1_000_000),
            a.observation_count,
            history(materializations::Kind::Materializations),
            history(materializations::Kind::Observations),
        )
    };
    let want = (
        Some("r8".to_string()),
        3,
        Some(25),
        1,
        vec!["r8".to_string(), "r4".to_string(), "r2".to_string()],
        vec!["b".to_string()],
    );
    // In order, one event per request; then all of them reversed in one request.
    let (_d, log) = store();
    for ev in &evs {
        append(&log, vec![ev.clone()]);
    }
    assert_eq!(read(&log), want);
    let (_d2, reversed) = store();
    append(&reversed, evs.iter().rev().cloned().collect());
    assert_eq!(read(&reversed), want);
    for log in [&log, &reversed] {
        let live = dump(log).unwrap();
        rebuild(log, |_, _| {}).unwrap();
        assert_eq!(live, dump(log).unwrap());
        assert_eq!(read(log), want);
    }
}

/// An observation history of one partition lists that partition's observations only,
/// newest first, paged, and hides those its wipe covers.
#[test]
fn an_observation_history_keeps_to_its_partition() {
    let (_d, log) = store();
    let obs = |id: &str, ts: i64, p: &str| json!({"id": id, "type": "ASSET_OBSERVATION", "timestamp": ts, "asset_key": "t", "run_id": id, "partition": p});
    append(
        &log,
        vec![
            obs("1", 10, "a"),
            obs("2", 20, "b"),
            obs("3", 30, "a"),
            obs("4", 40, "b"),
            obs("5", 50, "a"),
        ],
    );
    let history = |log: &Log, p: Option<&str>, before: Option<(i64, Seq)>, limit: usize| {
        let q = materializations::HistoryQuery {
            partition: p.map(str::to_string),
            before,
            limit,
            ..Default::default()
        };
        let rd = Reader::new(log, 1);
        materializations::history(&rd, 1, &key("t"), materializations::Kind::Observations, &q)
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e.partition.as_deref(), p.or(e.partition.as_deref()));
                e.seq
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(history(&log, None, None, 10), vec![5, 4, 3, 2, 1]);
    assert_eq!(history(&log, Some("a"), None, 10), vec![5, 3, 1]);
    assert_eq!(history(&log, Some("b"), None, 10), vec![4, 2]);
    assert!(history(&log, Some("c"), None, 10).is_empty());
    // Paged: a page of two, then the rest from the last one's position.
    assert_eq!(history(&log, Some("a"), None, 2), vec![5, 3]);
    assert_eq!(history(&log, Some("a"), Some((30_000_000, 3)), 2), vec![1]);
    // A wipe of "a" at 35 hides its observations before it, not those of "b".
    append(
        &log,
        vec![
            json!({"id": "w", "type": "ASSET_WIPED", "timestamp": 35, "asset_key": "t", "partition_keys": ["a"]}),
        ],
    );
    assert_eq!(history(&log, Some("a"), None, 10), vec![5]);
    assert_eq!(history(&log, Some("b"), None, 10), vec![4, 2]);
}

#[test]
fn backfill_progress_from_tagged_runs() {
    let (_d, log) = store();
    let tagged = |id: &str, t: &str, run: &str, p: &str| json!({"id": id, "type": t, "timestamp": 2, "run_id": run, "tags": {"dagster/backfill": "bf", "dagster/partition": p}});
    append(
        &log,
        vec![
            json!({"id": "b", "type": "BACKFILL_CREATED", "timestamp": 1, "backfill_id": "bf", "partition_names": ["p1", "p2"]}),
            tagged("1", "RUN_START", "r1", "p1"),
            run_ev("2", "RUN_SUCCESS", "r1", 3),
            tagged("3", "RUN_START", "r2", "p2"),
            run_ev("4", "RUN_FAILURE", "r2", 3),
            json!({"id": "u", "type": "BACKFILL_UPDATED", "timestamp": 5, "backfill_id": "bf", "status": "COMPLETED_FAILED"}),
            json!({"id": "u0", "type": "BACKFILL_UPDATED", "timestamp": 4, "backfill_id": "bf", "status": "CANCELING"}),
        ],
    );
    let rd = Reader::new(&log, 1);
    let b = backfills::get(&rd, 1, "bf").unwrap().unwrap();
    assert_eq!(b.status, "COMPLETED_FAILED");
    let p = backfills::progress(&rd, 1, "bf").unwrap();
    assert_eq!(p.runs_by_status.get("SUCCESS"), Some(&1));
    assert_eq!(p.runs_by_status.get("FAILURE"), Some(&1));
    assert_eq!(p.partitions.get("p2"), Some(&"FAILURE"));
    let r = runs::list(
        &rd,
        1,
        &runs::RunFilter {
            backfill_id: Some("bf".into()),
            ..Default::default()
        },
        None,
        10,
    )
    .unwrap();
    assert_eq!(r.len(), 2);
}

/// A run counts in the backfill of its current `dagster/backfill` tag only.
#[test]
fn a_run_whose_backfill_tag_changes_leaves_the_old_backfill() {
    let (_d, log) = store();
    let tagged = |id: &str, t: &str, ts: i64, bf: &str| json!({"id": id, "type": t, "timestamp": ts, "run_id": "r", "tags": {"dagster/backfill": bf}});
    append(&log, vec![tagged("1", "RUN_ENQUEUED", 1, "b1")]);
    append(&log, vec![tagged("2", "RUN_START", 2, "b2")]);
    let rd = Reader::new(&log, 1);
    assert_eq!(
        backfills::run_ids(&rd, 1, "b1").unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        backfills::run_ids(&rd, 1, "b2").unwrap(),
        vec!["r".to_string()]
    );
    assert_rebuild_is_live(&log);
}

/// A single-run backfill's run covers a range of partitions: it counts for each of them
/// (and only them), by their order in the backfill's partition names.
#[test]
fn a_run_of_a_partition_range_counts_for_each_partition_of_it() {
    let (_d, log) = store();
    let range = |id: &str, run: &str, first: &str, last: &str| {
        json!({"id": id, "type": "RUN_START", "timestamp": 2, "run_id": run,
        "tags": {"dagster/backfill": "bf", "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}})
    };
    append(
        &log,
        vec![
            json!({"id": "b", "type": "BACKFILL_CREATED", "timestamp": 1, "backfill_id": "bf", "partition_names": ["p1", "p2", "p3", "p4"]}),
            range("1", "r1", "p2", "p3"),
            run_ev("2", "RUN_SUCCESS", "r1", 3),
            range("3", "r2", "p4", "p1"),
        ],
    );
    let rd = Reader::new(&log, 1);
    let p = backfills::progress(&rd, 1, "bf").unwrap();
    assert_eq!(
        p.partitions.into_iter().collect::<Vec<_>>(),
        vec![("p2".to_string(), "SUCCESS"), ("p3".to_string(), "SUCCESS")],
        "p1 and p4 are not covered (a range whose end comes before its start covers none)"
    );
    assert_eq!(p.runs_by_status.get("STARTED"), Some(&1));
}

#[test]
fn views_of_another_version_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
        append(&log, vec![mat("a", "t", 1, None, None)]);
        let views = log.db().cf_handle(cf::VIEWS).unwrap();
        log.db()
            .put_cf(views, K::global(keys::VERSION).build(), 0u64.to_be_bytes())
            .unwrap();
        log.db().delete_cf(views, assets::key_of(1, 1)).unwrap();
    }
    let log = open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
    let rd = Reader::new(&log, 1);
    assert_eq!(
        assets::by_key(&rd, 1, &key("t"))
            .unwrap()
            .unwrap()
            .materialization_count,
        1
    );
}

#[test]
fn partition_counts_are_one_row_however_many_partitions() {
    // The counts row is one key; reading it does not depend on how many partitions exist.
    let (_d, log) = store();
    let batch: Vec<Value> = (0..2000)
        .map(|i| mat(&format!("m{i}"), "big", i, None, Some(&format!("p{i:07}"))))
        .collect();
    append(&log, batch);
    let rd = Reader::new(&log, 1);
    let id = asset_id(&rd, 1, &key("big")).unwrap().unwrap();
    let counts: partitions::PartitionCounts = rd
        .get_as(&K::new(keys::PARTITION_COUNTS, 1).u64(id).build())
        .unwrap()
        .unwrap();
    assert_eq!((counts.known, counts.materialized), (2000, 2000));
    // Listing walks past the 512-row scan pages without gaps or repeats, from any cursor.
    let all = partitions::by_status(&rd, 1, &key("big"), None, None, 5000).unwrap();
    let names: Vec<String> = all.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(
        names,
        (0..2000).map(|i| format!("p{i:07}")).collect::<Vec<_>>()
    );
    let after = partitions::by_status(
        &rd,
        1,
        &key("big"),
        Some(partitions::PartitionStatus::Materialized),
        Some("p0000511"),
        600,
    )
    .unwrap();
    assert_eq!(after.len(), 600);
    assert_eq!(
        (after[0].0.as_str(), after[599].0.as_str()),
        ("p0000512", "p0001111")
    );
}

// ---- properties ----------------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Run {
        run: u8,
        kind: &'static str,
    },
    Mat {
        asset: u8,
        partition: Option<u8>,
        run: Option<u8>,
        rows: u16,
    },
    Planned {
        asset: u8,
        partition: u8,
        run: u8,
    },
    /// A wipe of the whole asset (no partition) or of one partition.
    Wipe {
        asset: u8,
        partition: Option<u8>,
    },
    CheckPlanned {
        asset: u8,
        run: u8,
    },
    CheckEval {
        asset: u8,
        run: u8,
        passed: bool,
    },
    Backfill {
        id: u8,
        status: &'static str,
    },
    Defs {
        version: u8,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u8..4,
            prop::sample::select(vec![
                "RUN_ENQUEUED",
                "RUN_STARTING",
                "RUN_START",
                "RUN_SUCCESS",
                "RUN_FAILURE",
                "RUN_CANCELING",
                "RUN_CANCELED"
            ])
        )
            .prop_map(|(run, kind)| Op::Run { run, kind }),
        (
            0u8..3,
            prop::option::of(0u8..3),
            prop::option::of(0u8..4),
            any::<u16>()
        )
            .prop_map(|(asset, partition, run, rows)| Op::Mat {
                asset,
                partition,
                run,
                rows
            }),
        (0u8..3, 0u8..3, 0u8..4).prop_map(|(asset, partition, run)| Op::Planned {
            asset,
            partition,
            run
        }),
        (0u8..3, prop::option::of(0u8..3))
            .prop_map(|(asset, partition)| Op::Wipe { asset, partition }),
        (0u8..3, 0u8..4).prop_map(|(asset, run)| Op::CheckPlanned { asset, run }),
        (0u8..3, 0u8..4, any::<bool>()).prop_map(|(asset, run, passed)| Op::CheckEval {
            asset,
            run,
            passed
        }),
        (
            0u8..2,
            prop::sample::select(vec!["REQUESTED", "COMPLETED_SUCCESS", "FAILED"])
        )
            .prop_map(|(id, status)| Op::Backfill { id, status }),
        (0u8..3).prop_map(|version| Op::Defs { version }),
    ]
}

/// Ops to events with distinct timestamps (so no tie-break by seq is ever needed).
pub(crate) fn to_events(ops: &[Op]) -> Vec<Value> {
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let ts = 1_000 + i as i64 * 7;
            let id = format!("e{i}");
            let asset = |a: &u8| format!("a{a}");
            match op {
                Op::Run { run, kind } => {
                    let mut v = json!({"id": id, "type": kind, "timestamp": ts, "run_id": format!("r{run}"),
                        "tags": {"dagster/backfill": format!("b{}", run % 2)}});
                    if *kind == "RUN_FAILURE" { v["failure_reason"] = json!("STEP_FAILURE"); }
                    v
                }
                Op::Mat { asset: a, partition, run, rows } => {
                    let mut v = json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": asset(a),
                        "metadata": {"dagster/row_count": rows, "dagster/column_schema": {"type": "table_schema", "columns": [{"name": format!("c{}", rows % 3)}]}}});
                    if let Some(p) = partition { v["partition"] = json!(format!("p{p}")); }
                    if let Some(r) = run { v["run_id"] = json!(format!("r{r}")); }
                    v
                }
                Op::Planned { asset: a, partition, run } => json!({"id": id, "type": "ASSET_MATERIALIZATION_PLANNED", "timestamp": ts,
                    "asset_key": asset(a), "partition": format!("p{partition}"), "run_id": format!("r{run}")}),
                Op::Wipe { asset: a, partition: None } => json!({"id": id, "type": "ASSET_WIPED", "timestamp": ts, "asset_key": asset(a)}),
                Op::Wipe { asset: a, partition: Some(p) } => json!({"id": id, "type": "ASSET_WIPED", "timestamp": ts, "asset_key": asset(a),
                    "partition_keys": [format!("p{p}")]}),
                Op::CheckPlanned { asset: a, run } => json!({"id": id, "type": "ASSET_CHECK_EVALUATION_PLANNED", "timestamp": ts,
                    "asset_key": asset(a), "check_name": "c", "run_id": format!("r{run}")}),
                Op::CheckEval { asset: a, run, passed } => json!({"id": id, "type": "ASSET_CHECK_EVALUATION", "timestamp": ts,
                    "asset_key": asset(a), "check_name": "c", "run_id": format!("r{run}"), "passed": passed}),
                Op::Backfill { id: b, status } => json!({"id": id, "type": "BACKFILL_CREATED", "timestamp": ts, "backfill_id": format!("b{b}"), "status": status}),
                Op::Defs { version } => json!({"id": id, "type": "DEFINITIONS", "timestamp": ts, "code_location": "loc",
                    "assets": (0..3).map(|a| json!({"asset_key": format!("a{a}"), "deps": if a > 0 && (a + version) % 2 == 0 { vec![format!("a{}", a - 1)] } else { vec![] }})).collect::<Vec<_>>()}),
            }
        })
        .collect()
}

/// What the read functions answer, with seqs replaced by event ids (seqs depend on order).
fn observe(log: &Log) -> BTreeMap<String, String> {
    let rd = Reader::new(log, 1);
    let id_of = |seq: u64| log.get(seq).unwrap().unwrap().envelope.event_id;
    let mut out = BTreeMap::new();
    for r in 0..4 {
        if let Some(run) = runs::get(&rd, 1, &format!("r{r}")).unwrap() {
            out.insert(
                format!("run r{r}"),
                format!(
                    "{:?} start {:?} end {:?} reason {:?}",
                    run.status, run.start_us, run.end_us, run.failure_reason
                ),
            );
        }
    }
    for a in 0..3 {
        let k = key(&format!("a{a}"));
        if let Some(rec) = assets::by_key(&rd, 1, &k).unwrap() {
            out.insert(
                format!("asset a{a}"),
                format!(
                    "latest {:?} count {} wiped {:?} obs {}",
                    rec.latest_materialization.map(|m| id_of(m.seq)),
                    rec.materialization_count,
                    rec.wiped_at.map(|w| w.0),
                    rec.observation_count
                ),
            );
        }
        out.insert(
            format!("counts a{a}"),
            format!("{:?}", partitions::counts(&rd, 1, &k).unwrap()),
        );
        // Histories, newest first, read in pages of 2 to cross page boundaries.
        let history = |partition: Option<String>| {
            let mut ids = Vec::new();
            let mut before = None;
            loop {
                let q = materializations::HistoryQuery {
                    partition: partition.clone(),
                    before,
                    limit: 2,
                    ..Default::default()
                };
                let page = materializations::history(
                    &rd,
                    1,
                    &k,
                    materializations::Kind::Materializations,
                    &q,
                )
                .unwrap();
                for e in &page {
                    assert_eq!(
                        e.partition,
                        log.get(e.seq)
                            .unwrap()
                            .map(|ev| match ev.body {
                                crate::event::EventBody::AssetMaterialization(a) => a.partition,
                                _ => panic!("history points at another kind of event"),
                            })
                            .unwrap()
                    );
                    ids.push(id_of(e.seq));
                }
                match page.last() {
                    Some(e) if page.len() == 2 => before = Some((e.timestamp_us, e.seq)),
                    _ => break ids,
                }
            }
        };
        out.insert(format!("history a{a}"), format!("{:?}", history(None)));
        for p in 0..3 {
            if let Some(s) = partitions::state(&rd, 1, &k, &format!("p{p}")).unwrap() {
                out.insert(format!("partition a{a}/p{p}"), format!("{:?}", s.status));
                out.insert(
                    format!("history a{a}/p{p}"),
                    format!("{:?}", history(Some(format!("p{p}")))),
                );
            }
        }
        if let Some(e) = checks::latest(&rd, 1, &k, "c").unwrap() {
            out.insert(
                format!("check a{a}"),
                format!("{:?}", checks::resolve(&rd, 1, &e).unwrap()),
            );
        }
        let rows: Vec<f64> = rowcounts::row_counts(&rd, 1, &k, None, None, None, 1000)
            .unwrap()
            .iter()
            .map(|p| p.value)
            .collect();
        out.insert(format!("rows a{a}"), format!("{rows:?}"));
        out.insert(
            format!("schema a{a}"),
            format!("{:?}", schema::current(&rd, 1, &k).unwrap().map(|(_, s)| s)),
        );
        let t = lineage::traverse(&rd, 1, &k, lineage::Direction::Upstream, 5, 100).unwrap();
        out.insert(format!("upstream a{a}"), format!("{:?}", t.nodes));
    }
    for b in 0..2 {
        if let Some(bf) = backfills::get(&rd, 1, &format!("b{b}")).unwrap() {
            out.insert(
                format!("backfill b{b}"),
                format!(
                    "{} {:?}",
                    bf.status,
                    backfills::progress(&rd, 1, &format!("b{b}")).unwrap()
                ),
            );
        }
    }
    out
}

/// The model: the same semantics computed directly from the events.
fn model(values: &[Value]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let ts = |v: &Value| v["timestamp"].as_i64().unwrap();
    // Runs.
    let mut by_run: HashMap<String, Vec<&Value>> = HashMap::new();
    for v in values
        .iter()
        .filter(|v| v["type"].as_str().unwrap().starts_with("RUN_"))
    {
        by_run
            .entry(v["run_id"].as_str().unwrap().to_string())
            .or_default()
            .push(v);
    }
    let rank = |t: &str| match t {
        "RUN_ENQUEUED" => 1,
        "RUN_STARTING" => 2,
        "RUN_START" => 3,
        "RUN_CANCELING" => 4,
        _ => 0,
    };
    let mut status_of: HashMap<String, &'static str> = HashMap::new();
    for (run, evs) in &by_run {
        let terminal = evs
            .iter()
            .filter(|v| {
                matches!(
                    v["type"].as_str().unwrap(),
                    "RUN_SUCCESS" | "RUN_FAILURE" | "RUN_CANCELED"
                )
            })
            .max_by_key(|v| ts(v));
        let status = match terminal {
            Some(t) => match t["type"].as_str().unwrap() {
                "RUN_SUCCESS" => "Success",
                "RUN_FAILURE" => "Failure",
                _ => "Canceled",
            },
            None => match evs
                .iter()
                .map(|v| rank(v["type"].as_str().unwrap()))
                .max()
                .unwrap_or(0)
            {
                1 => "Queued",
                2 => "Starting",
                3 => "Started",
                4 => "Canceling",
                _ => "NotStarted",
            },
        };
        status_of.insert(run.clone(), status);
    }
    // Assets: latest materialization after the latest wipe.
    for a in 0..3 {
        let name = format!("a{a}");
        let of_asset: Vec<&Value> = values
            .iter()
            .filter(|v| v["asset_key"] == json!(name))
            .collect();
        let wipe = of_asset
            .iter()
            .filter(|v| v["type"] == "ASSET_WIPED" && v.get("partition_keys").is_none())
            .map(|v| ts(v))
            .max();
        // A partition's wipes hide its materializations from the asset too.
        let partition_wipe = |p: &Value| {
            of_asset
                .iter()
                .filter(|v| v["type"] == "ASSET_WIPED" && v["partition_keys"] == json!([p]))
                .map(|v| ts(v))
                .max()
        };
        let mats: Vec<&&Value> = of_asset
            .iter()
            .filter(|v| {
                v["type"] == "ASSET_MATERIALIZATION"
                    && wipe.is_none_or(|w| ts(v) > w)
                    && (v["partition"].is_null()
                        || partition_wipe(&v["partition"]).is_none_or(|w| ts(v) > w))
            })
            .collect();
        let latest = mats
            .iter()
            .max_by_key(|v| ts(v))
            .map(|v| v["id"].as_str().unwrap().to_string());
        let newest_first = |mut mats: Vec<&&Value>| {
            mats.sort_by_key(|v| std::cmp::Reverse(ts(v)));
            let ids: Vec<&str> = mats.iter().map(|v| v["id"].as_str().unwrap()).collect();
            format!("{ids:?}")
        };
        out.insert(format!("history {name}"), newest_first(mats.clone()));
        let defined = values.iter().any(|v| v["type"] == "DEFINITIONS");
        let has_record = defined
            || of_asset.iter().any(|v| {
                v["type"] != "ASSET_CHECK_EVALUATION_PLANNED"
                    && v["type"] != "ASSET_CHECK_EVALUATION"
            });
        if has_record {
            out.insert(
                format!("asset {name}"),
                format!("latest {latest:?} count {}", mats.len()),
            );
        }
        // Partitions.
        let mut counts = (0, 0, 0, 0); // known, materialized, failed, in progress
        for p in 0..3 {
            let pn = format!("p{p}");
            // A partition's wipe records it too (a tombstone for late events).
            let evs: Vec<&&Value> = of_asset
                .iter()
                .filter(|v| v["partition"] == json!(pn) || v["partition_keys"] == json!([pn]))
                .collect();
            if evs.is_empty() {
                continue;
            }
            // A partition's wipes and the asset's hide it.
            let wipe = of_asset
                .iter()
                .filter(|v| v["type"] == "ASSET_WIPED" && v["partition_keys"] == json!([pn]))
                .map(|v| ts(v))
                .max()
                .max(wipe);
            let vis = |v: &&&Value| wipe.is_none_or(|w| ts(v) > w);
            let m = evs
                .iter()
                .filter(|v| v["type"] == "ASSET_MATERIALIZATION" && vis(v))
                .map(|v| ts(v))
                .max();
            let att = evs
                .iter()
                .filter(|v| v["type"] == "ASSET_MATERIALIZATION_PLANNED" && vis(v))
                .max_by_key(|v| ts(v));
            let mut status = if m.is_some() {
                "Materialized"
            } else {
                "Missing"
            };
            if let Some(att) = att {
                if m.is_none_or(|m| ts(att) > m) {
                    match status_of
                        .get(att["run_id"].as_str().unwrap())
                        .copied()
                        .unwrap_or("NotStarted")
                    {
                        "Failure" => status = "Failed",
                        "Success" | "Canceled" => {}
                        _ => status = "InProgress",
                    }
                }
            }
            counts.0 += 1;
            match status {
                "Materialized" => counts.1 += 1,
                "Failed" => counts.2 += 1,
                "InProgress" => counts.3 += 1,
                _ => {}
            }
            out.insert(format!("partition {name}/{pn}"), status.to_string());
            let partition_mats = mats
                .iter()
                .filter(|v| v["partition"] == json!(pn) && vis(v))
                .copied()
                .collect();
            out.insert(format!("history {name}/{pn}"), newest_first(partition_mats));
        }
        out.insert(format!("counts {name}"), format!("{counts:?}"));
    }
    for (run, s) in status_of {
        // Only a failure that stands keeps its reason.
        let reason = match s {
            "Failure" => "Some(\"STEP_FAILURE\")",
            _ => "None",
        };
        out.insert(format!("run {run}"), format!("{s} reason {reason}"));
    }
    out
}

/// The parts of [`observe`] that [`model`] also computes, in the model's words.
fn comparable(observed: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    observed
        .iter()
        .filter_map(|(k, v)| {
            if k.starts_with("run ") {
                let status = v.split(' ').next().unwrap();
                let reason = v.split(" reason ").nth(1).unwrap();
                Some((k.clone(), format!("{status} reason {reason}")))
            } else if k.starts_with("asset ") {
                let parts: Vec<&str> = v.split(' ').collect();
                let latest = v
                    .split(" count")
                    .next()
                    .unwrap()
                    .trim_start_matches("latest ")
                    .to_string();
                Some((
                    k.clone(),
                    format!(
                        "latest {latest} count {}",
                        parts[parts.iter().position(|p| *p == "count").unwrap() + 1]
                    ),
                ))
            } else if k.starts_with("partition ") || k.starts_with("history ") {
                Some((k.clone(), v.clone()))
            } else if k.starts_with("counts ") {
                let c: Vec<u64> = v
                    .split(|ch: char| !ch.is_ascii_digit())
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect();
                Some((
                    k.clone(),
                    format!("({}, {}, {}, {})", c[0], c[1], c[2], c[3]),
                ))
            } else {
                None
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// Live views equal rebuilt views byte for byte; shuffled, duplicated, re-batched
    /// delivery gives the same read results; the reads agree with the model.
    #[test]
    fn views_are_a_function_of_the_events(
        ops in prop::collection::vec(op(), 1..60),
        shuffle_seed: u64,
        batch_sizes in prop::collection::vec(1usize..9, 1..20),
    ) {
        let values = to_events(&ops);

        // Delivery 1: in order, one batch.
        let (_d1, log1) = store();
        append(&log1, values.clone());
        let live1 = observe(&log1);

        // Delivery 2: shuffled, in random batches, every batch re-sent once.
        let mut shuffled = values.clone();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(shuffle_seed);
        rand::seq::SliceRandom::shuffle(shuffled.as_mut_slice(), &mut rng);
        let (_d2, log2) = store();
        let mut i = 0;
        let mut b = 0;
        while i < shuffled.len() {
            let n = batch_sizes[b % batch_sizes.len()].min(shuffled.len() - i);
            let batch = shuffled[i..i + n].to_vec();
            log2.append_blocking(events(batch.clone())).unwrap();
            let again = log2.append_blocking(events(batch)).unwrap();
            prop_assert!(again.iter().all(|a| a.duplicate));
            i += n;
            b += 1;
        }
        let live2 = observe(&log2);
        prop_assert_eq!(&live1, &live2, "arrival order changed the answers");

        // Rebuild equals live, byte for byte.
        let before = dump(&log2).unwrap();
        rebuild(&log2, |_, _| {}).unwrap();
        let after = dump(&log2).unwrap();
        prop_assert!(before == after, "rebuilt views differ from live views");

        // The model agrees.
        let m = model(&values);
        let c = comparable(&live1);
        for (k, v) in &m {
            prop_assert_eq!(Some(v), c.get(k), "{} disagrees with the model", k);
        }
    }
}

#[test]
fn clearing_the_views_makes_the_writer_forget_what_it_remembers() {
    let (_d, log) = store();
    append(&log, vec![mat("a", "db/t", 100, Some("r1"), None)]);
    append(&log, vec![mat("b", "db/t", 200, Some("r1"), None)]);
    // The writer now remembers the asset and run records. Views cleared (as a rebuild
    // starts) are folded from nothing again by the next append, not from the memory.
    log.clear_views().unwrap();
    append(&log, vec![mat("c", "db/t", 300, Some("r1"), None)]);
    let rd = Reader::new(&log, 1);
    let a = assets::by_key(&rd, 1, &key("db/t")).unwrap().unwrap();
    assert_eq!(a.materialization_count, 1);
    assert_eq!(runs::get(&rd, 1, "r1").unwrap().unwrap().events, 1);
    // A rebuild then gives every view as a replay of the whole log.
    rebuild(&log, |_, _| {}).unwrap();
    let rd = Reader::new(&log, 1);
    let a = assets::by_key(&rd, 1, &key("db/t")).unwrap().unwrap();
    assert_eq!(a.materialization_count, 3);
    append(&log, vec![mat("d", "db/t", 400, Some("r1"), None)]);
    assert_rebuild_is_live(&log);
}

/// A rebuild leaves no row of the views before it, wherever that row was: in files below
/// level 0 (dropped whole), in level 0 or in the memtable (hidden by the range tombstone).
#[test]
fn a_rebuild_leaves_no_stale_row_in_any_level() {
    let (_d, log) = store();
    let db = log.db().clone();
    let views = db.cf_handle(crate::log::cf::VIEWS).unwrap();
    // A kind no view uses, so that only a failed clear can leave these rows.
    let stale = |n: u8| vec![0x7e, 0, 0, 0, 1, n];
    append(&log, vec![mat("a", "db/t", 100, Some("r1"), None)]);
    db.put_cf(views, stale(1), b"below level 0").unwrap();
    db.flush_cf(views).unwrap();
    db.compact_range_cf(views, None::<&[u8]>, None::<&[u8]>);
    append(&log, vec![mat("b", "db/u", 200, Some("r1"), None)]);
    db.put_cf(views, stale(2), b"level 0").unwrap();
    db.flush_cf(views).unwrap();
    append(&log, vec![mat("c", "db/t", 300, Some("r2"), None)]);
    db.put_cf(views, stale(3), b"memtable").unwrap();
    let files = |level: i32| {
        db.live_files()
            .unwrap()
            .iter()
            .filter(|f| f.column_family_name == crate::log::cf::VIEWS && f.level == level)
            .count()
    };
    assert!(files(0) > 0 && (1..7).map(files).sum::<usize>() > 0);
    let live: Vec<_> = dump(&log)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k[0] != 0x7e)
        .collect();
    assert_eq!(dump(&log).unwrap().len(), live.len() + 3);
    rebuild(&log, |_, _| {}).unwrap();
    assert_eq!(dump(&log).unwrap(), live);
    for n in 1..=3 {
        assert_eq!(db.get_cf(views, stale(n)).unwrap(), None);
    }
    // Rebuilt twice over its own tombstones, the views are the same again.
    rebuild(&log, |_, _| {}).unwrap();
    assert_eq!(dump(&log).unwrap(), live);
}

/// Concurrent appenders whose groups pipeline (one staged while the one before it is being
/// written), some sending the same batches: each event is stored once, every reply agrees on
/// its seq, and the live views equal a rebuild.
#[test]
fn pipelined_groups_dedupe_and_project_on_top_of_each_other() {
    let (_d, log) = store();
    // Events below 10,000 are sent by every even thread; the odd ones send their own, on
    // assets and partitions that are new in each batch (so consecutive groups assign asset
    // ids and partition states on top of each other).
    let value = |n: usize| {
        let run = format!("r{}", n % 11);
        let id = format!("e{n}");
        match n % 5 {
            0 => run_ev(&id, "RUN_START", &run, n as i64),
            _ if n < 10_000 => mat(&id, &format!("db/t{}", n % 37), n as i64, Some(&run), None),
            _ => {
                let part = format!("p{}", n % 3);
                mat(
                    &id,
                    &format!("db/new{}", n / 8),
                    n as i64,
                    Some(&run),
                    Some(&part),
                )
            }
        }
    };
    let batches = 20;
    let per_batch = 200;
    let barrier = std::sync::Barrier::new(6);
    let seqs: Vec<Vec<(usize, Seq)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let log = log.clone();
                let barrier = &barrier;
                s.spawn(move || {
                    let mut got = Vec::new();
                    for b in 0..batches {
                        let first = match t % 2 {
                            0 => b * per_batch,
                            _ => 10_000 + (t * batches + b) * per_batch,
                        };
                        let ns: Vec<usize> = (first..first + per_batch).collect();
                        let evs = events(ns.iter().map(|&n| value(n)).collect());
                        barrier.wait();
                        let appended = log.append_blocking(evs).unwrap();
                        got.extend(ns.iter().copied().zip(appended.iter().map(|a| a.seq)));
                    }
                    got
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seq_of: HashMap<usize, Seq> = HashMap::new();
    for (n, seq) in seqs.into_iter().flatten() {
        assert_eq!(
            *seq_of.entry(n).or_insert(seq),
            seq,
            "event e{n} got two seqs"
        );
    }
    assert_eq!(seq_of.len(), 4 * batches * per_batch);
    assert_eq!(
        log.last_seq(),
        seq_of.len() as Seq,
        "each event stored once"
    );
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
    assert_rebuild_is_live(&log);
}

/// A materialization's row count, schema and numeric values share its history row; each
/// label is listed once per asset, however many events carry it.
#[test]
fn measurements_take_one_row_per_event() {
    let (_d, log) = store();
    let with_measurements = |id: &str, ts: i64| {
        json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": ts, "asset_key": "db/t",
               "metadata": {"dagster/row_count": ts, "duration_s": 1.5, "lag": 3,
                            "dagster/column_schema": {"type": "table_schema", "columns": [{"name": "a"}]}}})
    };
    append(
        &log,
        (0..10)
            .map(|i| with_measurements(&format!("m{i}"), 100 + i))
            .collect(),
    );
    let rows = dump(&log).unwrap();
    let count = |kind: u8| rows.iter().filter(|(k, _)| k[0] == kind).count();
    assert_eq!(count(keys::MATERIALIZATIONS), 10);
    assert_eq!(count(keys::POINTS), 0, "points of definitions only");
    assert_eq!(count(keys::NUMERIC_LABELS), 2);
    assert_eq!(count(keys::SCHEMA), 1);
    assert_eq!(count(keys::ROW_COUNTS), 0, "no partition row counts here");
    let rd = Reader::new(&log, 1);
    assert_eq!(
        rowcounts::labels(&rd, 1, &key("db/t")).unwrap(),
        vec!["duration_s", "lag"]
    );
    let s = 1_000_000; // timestamps are sent in seconds
    let lag =
        rowcounts::numeric_series(&rd, 1, &key("db/t"), "lag", Some(103 * s), Some(106 * s), 2)
            .unwrap();
    assert_eq!(
        lag.iter()
            .map(|p| (p.timestamp_us, p.value))
            .collect::<Vec<_>>(),
        vec![(103 * s, 3.0), (104 * s, 3.0)],
        "time range and limit apply to the series, not to the rows"
    );
    assert_eq!(schema::versions(&rd, 1, &key("db/t")).unwrap().len(), 1);
}

/// A run's failure reason is that of the terminal event that stands: a failure that a later
/// cancellation overrides leaves no reason behind, whichever of the two arrives first.
#[test]
fn a_failure_reason_goes_with_the_terminal_status_that_stands() {
    let failed = |id: &str, run: &str, ts: i64| {
        let mut v = run_ev(id, "RUN_FAILURE", run, ts);
        v["failure_reason"] = json!("STEP_FAILURE");
        v
    };
    let (_d, log) = store();
    append(&log, vec![failed("f1", "a", 40)]);
    append(&log, vec![run_ev("c1", "RUN_CANCELED", "a", 50)]);
    append(&log, vec![run_ev("c2", "RUN_CANCELED", "b", 50)]);
    append(&log, vec![failed("f2", "b", 40)]);
    append(&log, vec![run_ev("c3", "RUN_CANCELED", "c", 30)]);
    append(&log, vec![failed("f3", "c", 40)]);
    let rd = Reader::new(&log, 1);
    for run in ["a", "b"] {
        let r = runs::get(&rd, 1, run).unwrap().unwrap();
        assert_eq!(
            (r.status, r.failure_reason.as_deref()),
            (runs::RunStatus::Canceled, None),
            "run {run}"
        );
    }
    let c = runs::get(&rd, 1, "c").unwrap().unwrap();
    assert_eq!(
        (c.status, c.failure_reason.as_deref()),
        (runs::RunStatus::Failure, Some("STEP_FAILURE"))
    );
    assert_rebuild_is_live(&log);
}

/// Steps are rows of their own: a run with many steps keeps a small record.
#[test]
fn step_stats_are_kept_per_step() {
    let (_d, log) = store();
    let step = |id: String, t: &str, step: String, ts: i64| json!({"id": id, "type": t, "timestamp": ts, "run_id": "r", "step_key": step});
    append(&log, vec![run_ev("s", "RUN_START", "r", 1)]);
    let record_len = |log: &Log| {
        let k = keys::K::new(keys::RUN, 1).str("r").build();
        Reader::new(log, 1).get(&k).unwrap().unwrap().len()
    };
    let before = record_len(&log);
    let mut evs = Vec::new();
    for i in 0..200 {
        evs.push(step(
            format!("a{i}"),
            "STEP_START",
            format!("s{i:03}"),
            10 + i,
        ));
        evs.push(step(
            format!("b{i}"),
            if i % 2 == 0 {
                "STEP_SUCCESS"
            } else {
                "STEP_FAILURE"
            },
            format!("s{i:03}"),
            20 + i,
        ));
    }
    let mut m = mat("m", "db/t", 30, Some("r"), None);
    m["step_key"] = json!("s004");
    evs.push(m);
    append(&log, evs);
    assert!(
        record_len(&log) <= before + 16,
        "the run record does not grow with its steps"
    );
    let rd = Reader::new(&log, 1);
    let steps = runs::steps(&rd, 1, "r").unwrap();
    assert_eq!(steps.len(), 200);
    let (k, s4) = &steps[4];
    assert_eq!(k, "s004");
    assert_eq!(
        (s4.status.as_str(), s4.attempts, s4.materializations),
        ("SUCCESS", 1, 1)
    );
    assert_eq!(steps[5].1.status, "FAILURE");
    let r = runs::get(&rd, 1, "r").unwrap().unwrap();
    assert_eq!(
        (r.steps_succeeded, r.steps_failed, r.materializations),
        (100, 100, 1)
    );
}

/// A large request that re-sends stored events (alone, mixed with new ones, or with a
/// changed body) leaves the views as if only its new events had been applied.
#[test]
fn a_large_request_with_stored_ids_projects_only_its_new_events() {
    let (_d, log) = store();
    let batch = |from: usize, to: usize| -> Vec<Value> {
        (from..to)
            .map(|i| {
                mat(
                    &format!("m{i}"),
                    &format!("db/t{}", i % 7),
                    i as i64,
                    Some("r"),
                    None,
                )
            })
            .collect()
    };
    let first = log.append_blocking(events(batch(0, 300))).unwrap();
    assert!(first.iter().all(|a| !a.duplicate));
    // All stored: every seq comes back, nothing is counted twice.
    let again = log.append_blocking(events(batch(0, 300))).unwrap();
    assert_eq!(
        again.iter().map(|a| a.seq).collect::<Vec<_>>(),
        first.iter().map(|a| a.seq).collect::<Vec<_>>()
    );
    assert!(again.iter().all(|a| a.duplicate));
    // Half stored, half new.
    let mixed = log.append_blocking(events(batch(150, 450))).unwrap();
    assert_eq!(mixed.iter().filter(|a| a.duplicate).count(), 150);
    // A stored id with another body: a conflict, and nothing of the request is stored.
    let mut conflicting = batch(450, 750);
    conflicting[299] = mat("m0", "db/other", 1, Some("r"), None);
    assert!(matches!(
        log.append_blocking(events(conflicting)),
        Err(crate::log::Error::Conflict { index: 299, .. })
    ));
    let rd = Reader::new(&log, 1);
    let counted: u64 = (0..7)
        .map(|t| {
            assets::by_key(&rd, 1, &key(&format!("db/t{t}")))
                .unwrap()
                .unwrap()
                .materialization_count
        })
        .sum();
    assert_eq!(counted, 450);
    assert_eq!(runs::get(&rd, 1, "r").unwrap().unwrap().events, 450);
    assert!(assets::by_key(&rd, 1, &key("db/other")).unwrap().is_none());
    assert_rebuild_is_live(&log);
}

/// A rebuild replays in chunks of 8,192 events and reads what earlier chunks wrote back from
/// RocksDB (asset ids, partition states, labels): with views just cleared, it skips RocksDB
/// only for keys it has never written. Assets and partitions here recur across chunks.
#[test]
fn a_rebuild_across_many_chunks_equals_the_live_views() {
    use crate::event::{sample, RunEventKind};
    let (_d, log) = store();
    let mut id = 0;
    for batch in 0..25 {
        let evs: Vec<Event> = (0..1000)
            .map(|i| {
                id += 1;
                let run = format!("run-{}", id / 300);
                let ts = 1_700_000_000_000_000 + id as i64;
                if i % 100 == 0 {
                    let kind = match batch % 3 {
                        0 => RunEventKind::Start,
                        1 => RunEventKind::Success,
                        _ => RunEventKind::Failure,
                    };
                    sample::run_event(1, format!("e{id}"), &run, kind, ts)
                } else {
                    let partition = (i % 3 == 0).then(|| format!("p{}", id % 5_000));
                    sample::materialization(1, format!("e{id}"), &run, id % 40, partition, ts)
                }
            })
            .collect();
        log.append_blocking(evs).unwrap();
        if batch == 20 {
            // A whole-asset wipe scans the asset's partition states, some of which a
            // rebuild holds back in its memo by then.
            append(
                &log,
                vec![json!({"id": "wipe", "type": "ASSET_WIPED",
                    "timestamp": 1_700_000_000.021_1, "asset_key": "warehouse/table_3"})],
            );
        }
    }
    let live = dump(&log).unwrap();
    rebuild(&log, |_, _| {}).unwrap();
    assert_eq!(live, dump(&log).unwrap());
    // A second rebuild starts from views cleared again.
    rebuild(&log, |_, _| {}).unwrap();
    assert_eq!(live, dump(&log).unwrap());
}
