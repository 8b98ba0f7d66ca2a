use super::*;
use serde_json::{json, Value};

fn one(v: Value) -> std::result::Result<Event, String> {
    validate_batch(vec![v], 1, &Limits::default())
        .map(|mut e| e.remove(0))
        .map_err(|e| e.to_string())
}

fn mat(extra: Value) -> Value {
    let mut base = json!({
        "id": "e", "type": "ASSET_MATERIALIZATION", "timestamp": "2026-01-01T00:00:00Z",
        "asset_key": ["a", "b"]
    });
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

#[test]
fn error_names_event_index_and_metadata_key() {
    let ok = mat(json!({}));
    let bad = mat(json!({"id": "e3", "metadata": {"dagster/row_count": -5}}));
    let values = vec![ok.clone(), json!(ok.clone()), json!(ok), bad];
    let mut values = values;
    values[1]["id"] = json!("e1");
    values[2]["id"] = json!("e2");
    let e = validate_batch(values, 1, &Limits::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"events[3].metadata["dagster/row_count"]: expected a non-negative integer"#
    );
}

#[test]
fn messages_name_the_field_and_the_problem() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"type": "RUN_START", "timestamp": 1}), "events[0].id: is required"),
        (mat(json!({"timestamp": "yesterday"})), "events[0].timestamp: expected an RFC 3339 timestamp string or Unix seconds"),
        (mat(json!({"asset_key": []})), "events[0].asset_key: an asset key needs at least one component"),
        (mat(json!({"asset_key": 5})), "events[0].asset_key: expected an asset key"),
        (mat(json!({"partiton": "p"})), "events[0].partiton: unknown field (allowed here:"),
        (mat(json!({"type": "ASSET_MATERIALISATION"})), "events[0].type: unknown event type \"ASSET_MATERIALISATION\"; did you mean \"ASSET_MATERIALIZATION\"?"),
        (json!({"id": "r", "type": "RUN_SUCCESS", "timestamp": 1}), "events[0].run_id: is required for RUN_SUCCESS events"),
        (json!({"id": "r", "type": "STEP_START", "timestamp": 1, "run_id": "r"}), "events[0].step_key: is required for STEP_START events"),
        (mat(json!({"metadata": {"dagster/column_schema": "id int"}})), r#"events[0].metadata["dagster/column_schema"]: expected a table_schema value"#),
        (mat(json!({"metadata": {"x": {"type": "tabel"}}})), r#"events[0].metadata["x"].type: unknown metadata kind "tabel""#),
        (mat(json!({"metadata": {"x": {"type": "table_schema", "columns": [{"type": "int"}]}}})), r#"events[0].metadata["x"].columns[0].name: is required"#),
        (mat(json!({"metadata": {"x": {"type": "int", "value": 1.5}}})), r#"events[0].metadata["x"].value: expected an integer"#),
        (mat(json!({"tags": {"k": 1}})), r#"events[0].tags["k"]: expected a string"#),
        (mat(json!({"partition": ""})), "events[0].partition: must be non-empty"),
        (json!({"id": "c", "type": "ASSET_CHECK_EVALUATION", "timestamp": 1, "asset_key": "a", "check_name": "c"}), "events[0].passed: is required"),
        (json!({"id": "c", "type": "ASSET_CHECK_EVALUATION", "timestamp": 1, "asset_key": "a", "check_name": "c", "passed": true, "severity": "FATAL"}), "events[0].severity: expected \"WARN\" or \"ERROR\""),
        (json!({"id": "b", "type": "BACKFILL_UPDATED", "timestamp": 1, "backfill_id": "b", "status": "DONE"}), "events[0].status: unknown backfill status \"DONE\""),
        (json!({"id": "l", "type": "LOG_MESSAGE", "timestamp": 1}), "events[0].message: is required for LOG_MESSAGE events"),
        (json!({"id": "d", "type": "DEFINITIONS", "timestamp": 1, "code_location": "x", "assets": [{"asset_key": "a", "partitions": {"type": "weekly"}}]}), "events[0].assets[0].partitions.type: expected one of static, time_window, dynamic, multi"),
        (json!([1]), "events[0]: expected a JSON object"),
    ];
    for (value, expected) in cases {
        let got = match one(value.clone()) {
            Ok(e) => panic!("{value} was accepted as {e:?}"),
            Err(e) => e,
        };
        assert!(
            got.starts_with(expected),
            "for {value}\n  got: {got}\n want: {expected}"
        );
    }
}

#[test]
fn duplicate_ids_within_a_batch_are_rejected() {
    let e = validate_batch(vec![mat(json!({})), mat(json!({}))], 1, &Limits::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "events[1].id: duplicate id \"e\" within one batch (also events[0])"
    );
}

#[test]
fn limits_are_enforced_with_the_limit_in_the_message() {
    let limits = Limits {
        max_string_bytes: 30,
        max_metadata_entries: 2,
        max_id_bytes: 8,
        max_depth: 5,
    };
    let check = |v: Value, want: &str| {
        let e = validate_batch(vec![v], 1, &limits).unwrap_err().to_string();
        assert_eq!(e, want);
    };
    check(
        mat(json!({"description": "x".repeat(31)})),
        "events[0].description: is 31 bytes long, over the limit of 30",
    );
    check(
        mat(json!({"metadata": {"a": 1, "b": 2, "c": 3}})),
        "events[0].metadata: has 3 entries, over the limit of 2",
    );
    check(
        mat(json!({"id": "123456789"})),
        "events[0].id: is 9 bytes long, over the limit of 8",
    );
    check(
        mat(json!({"metadata": {"a": [[[[[1]]]]]}})),
        "events[0]: nests deeper than the limit of 5",
    );
}

#[test]
fn reserved_keys_are_typed_and_readable() {
    let ev = one(mat(json!({"metadata": {
        "dagster/row_count": 10,
        "dagster/partition_row_count": {"type": "int", "value": 4},
        "dagster/column_schema": {"type": "table_schema", "columns": [{"name": "id", "type": "int", "constraints": {"nullable": false}}]},
        "dagster/column_lineage": {"type": "column_lineage", "deps_by_column": {"id": [{"asset_key": "up/x", "column_name": "x_id"}]}},
        "dagster/table_name": "db.a",
        "dagster/uri": {"type": "url", "value": "s3://b/a"},
        "dagster/code_references": {"type": "code_references", "code_references": [{"file_path": "a.py", "line_number": 3}]}
    }})))
    .unwrap();
    let EventBody::AssetMaterialization(a) = ev.body else {
        panic!("not a materialization")
    };
    let md = &a.metadata;
    assert_eq!(md.row_count(), Some(10));
    assert_eq!(md.partition_row_count(), Some(4));
    let schema = md.column_schema().unwrap();
    assert_eq!(schema.columns[0].name, "id");
    assert!(!schema.columns[0].nullable);
    let lineage = md.column_lineage().unwrap();
    assert_eq!(lineage.deps_by_column[0].1[0].asset_key.0, vec!["up", "x"]);
    assert_eq!(md.table_name(), Some("db.a"));
    assert_eq!(md.uri(), Some("s3://b/a"));
    assert_eq!(md.code_references().unwrap().len(), 1);
}

#[test]
fn legacy_pipeline_names_and_numeric_timestamps_are_accepted() {
    let ev = one(
        json!({"id": "p", "type": "PIPELINE_SUCCESS", "timestamp": 1700000000.5, "run_id": "r"}),
    )
    .unwrap();
    assert_eq!(ev.event_type(), EventType::RunSuccess);
    assert_eq!(ev.envelope.timestamp_us, 1_700_000_000_500_000);
}

#[test]
fn new_types_are_kept_raw() {
    let ev = one(
        json!({"id": "n", "type": "SOMETHING_NEW", "timestamp": 1, "run_id": "r",
                        "message": null, "x": {"y": 1}, "a": [true]}),
    )
    .unwrap();
    let EventBody::Unknown(u) = &ev.body else {
        panic!("not raw")
    };
    assert_eq!(u.type_name, "SOMETHING_NEW");
    assert_eq!(ev.envelope.run_id.as_deref(), Some("r"));
    // Everything but the envelope's fields, the type included, as the stored text.
    assert_eq!(
        u.payload_json,
        r#"{"a":[true],"type":"SOMETHING_NEW","x":{"y":1}}"#
    );
}

#[test]
fn body_forms() {
    assert_eq!(parse_body(b"[]").unwrap().len(), 0);
    assert_eq!(parse_body(b"{\"a\":1}\n\n{\"b\":2}\n").unwrap().len(), 2);
    let e = parse_body(b"{\"a\":1}\n{oops}\n").unwrap_err().to_string();
    assert!(e.starts_with("body line 2: invalid JSON"), "{e}");
    let e = parse_body(b"  ").unwrap_err().to_string();
    assert!(e.contains("is empty"), "{e}");
    let e = parse_body(b"\"str\"").unwrap_err().to_string();
    assert!(e.contains("must be a JSON array"), "{e}");
    let deep = format!("[{}{}]", "[".repeat(10_000), "]".repeat(10_000));
    let e = parse_body(deep.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("recursion limit"), "{e}");
    let e = parse_body(b"[{\"a\":\"\xff\"}]").unwrap_err().to_string();
    assert!(e.contains("invalid JSON"), "{e}");
}
