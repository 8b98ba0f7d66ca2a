//! Every example under `schemas/examples/` is valid against `schemas/events.schema.json`
//! (checked by a real JSON Schema validator), parses into the model, and renders back to
//! JSON that is valid against the schema and parses to the same events. Together the
//! examples cover every event type.

use std::collections::BTreeSet;
use std::path::Path;

use assetlog::event::json::{metadata, to_json, write_metadata};
use assetlog::event::validate::{parse_body, validate_batch, Limits};
use assetlog::event::{EventBody, EventType};
use assetlog::log::codec::encode_event;
use serde_json::Value;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events.schema.json"),
    )
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::new(&schema).expect("the schema itself is valid")
}

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(out.len() >= 8, "examples are missing");
    out
}

fn metadata_of(body: &EventBody) -> Option<&assetlog::event::Metadata> {
    match body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => Some(&a.metadata),
        EventBody::AssetFailedToMaterialize(f) => Some(&f.metadata),
        EventBody::AssetCheckEvaluation(c) => Some(&c.metadata),
        EventBody::Engine(e) => Some(&e.metadata),
        EventBody::Definitions(d) => d.assets.first().map(|a| &a.metadata),
        _ => None,
    }
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn examples_are_valid_parse_and_round_trip() {
    let validator = schema();
    let mut covered = BTreeSet::new();
    let mut unknown = 0;
    for (name, body) in examples() {
        let values = parse_body(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let batch = serde_json::to_value(&values).unwrap();
        let errs = errors(&validator, &batch);
        assert!(errs.is_empty(), "{name} violates the schema: {errs:#?}");
        let events =
            validate_batch(values, 1, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        for ev in &events {
            covered.insert(ev.event_type());
            if matches!(ev.body, EventBody::Unknown(_)) {
                unknown += 1;
            }
            if let Some(md) = metadata_of(&ev.body) {
                let mut fast = Vec::new();
                write_metadata(md, &mut fast);
                let fast: Value = serde_json::from_slice(&fast).unwrap();
                assert_eq!(
                    fast,
                    metadata(md),
                    "{name}: write_metadata differs from metadata"
                );
            }
            let rendered = to_json(ev);
            let errs = errors(&validator, &Value::Array(vec![rendered.clone()]));
            assert!(
                errs.is_empty(),
                "{name}: rendered {rendered} violates: {errs:#?}"
            );
            let again = validate_batch(vec![rendered], 1, &Limits::default()).unwrap();
            // Compare stored bytes: NaN metadata makes `==` on events useless.
            assert_eq!(
                encode_event(&again[0]),
                encode_event(ev),
                "{name}: round trip changed {ev:?}"
            );
        }
    }
    let missing: Vec<_> = EventType::ALL
        .iter()
        .filter(|t| **t != EventType::Unknown && !covered.contains(t))
        .collect();
    assert!(missing.is_empty(), "no example covers {missing:?}");
    assert!(
        unknown >= 1,
        "an example of a new (unknown) type is stored as raw"
    );
}

/// The schema is not a rubber stamp: it rejects what validation rejects.
#[test]
fn schema_rejects_bad_events_that_validation_rejects() {
    let validator = schema();
    let bad = [
        r#"[{"id":"x","type":"ASSET_MATERIALIZATION","timestamp":"2026-01-01T00:00:00Z","asset_key":["a"],"metadata":{"dagster/row_count":-1}}]"#,
        r#"[{"id":"x","type":"ASSET_MATERIALIZATION","timestamp":"2026-01-01T00:00:00Z","asset_key":["a"],"partiton":"p"}]"#,
        r#"[{"id":"x","type":"ASSET_MATERIALIZATION","timestamp":"2026-01-01T00:00:00Z"}]"#,
        r#"[{"id":"x","type":"RUN_START","timestamp":"2026-01-01T00:00:00Z"}]"#,
        r#"[{"id":"x","type":"ASSET_CHECK_EVALUATION","timestamp":"2026-01-01T00:00:00Z","asset_key":["a"],"check_name":"c","passed":"yes"}]"#,
        r#"[{"type":"LOG_MESSAGE","timestamp":"2026-01-01T00:00:00Z","message":"m"}]"#,
        r#"[{"id":"x","type":"ASSET_OBSERVATION","timestamp":"2026-01-01T00:00:00Z","asset_key":["a"],"metadata":{"dagster/column_schema":"id int"}}]"#,
    ];
    for body in bad {
        let values = parse_body(body.as_bytes()).unwrap();
        assert!(
            !errors(&validator, &serde_json::to_value(&values).unwrap()).is_empty(),
            "schema accepted {body}"
        );
        assert!(
            validate_batch(values, 1, &Limits::default()).is_err(),
            "validation accepted {body}"
        );
    }
}
