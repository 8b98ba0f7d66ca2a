use super::*;
use crate::event::*;

/// A materialization with the reserved keys, as shipped in format 1.
fn golden_materialization() -> Event {
    Event {
        envelope: Envelope {
            event_id: "e1".into(),
            deployment: 1,
            timestamp_us: 1_700_000_000_000_000,
            run_id: Some("r1".into()),
            step_key: Some("s".into()),
            job_name: None,
            message: None,
            raw: None,
        },
        body: EventBody::AssetMaterialization(AssetEvent {
            asset_key: AssetKey(vec!["db".into(), "orders".into()]),
            partition: Some("2024-01-01".into()),
            description: None,
            metadata: Metadata(vec![
                MetadataEntry {
                    label: "dagster/row_count".into(),
                    value: MetadataValue::Int(Some(42)),
                },
                MetadataEntry {
                    label: "dagster/column_schema".into(),
                    value: MetadataValue::TableSchema(
                        TableSchema::new(
                            vec![TableColumn {
                                name: "id".into(),
                                data_type: "int".into(),
                                description: None,
                                nullable: false,
                                unique: true,
                                other_constraints: vec![],
                                tags: vec![],
                            }],
                            vec![],
                        )
                        .into(),
                    ),
                },
            ]),
            tags: vec![("dagster/data_version".into(), "v1".into())],
        }),
    }
}

fn golden_run_success() -> Event {
    Event {
        envelope: Envelope {
            event_id: "e2".into(),
            deployment: 1,
            timestamp_us: 1_700_000_000_500_000,
            run_id: Some("r1".into()),
            step_key: None,
            job_name: Some("job".into()),
            message: Some("done".into()),
            raw: Some(b"{}".to_vec()),
        },
        body: EventBody::Run(RunEvent {
            kind: RunEventKind::Success,
            tags: vec![],
            failure_reason: None,
            error: None,
            code_location: None,
        }),
    }
}

fn golden_check() -> Event {
    Event {
        envelope: Envelope {
            event_id: "e3".into(),
            deployment: 2,
            timestamp_us: 1,
            run_id: None,
            step_key: None,
            job_name: None,
            message: None,
            raw: None,
        },
        body: EventBody::AssetCheckEvaluation(AssetCheckEvaluation {
            asset_key: AssetKey(vec!["a".into()]),
            check_name: "c".into(),
            passed: false,
            severity: CheckSeverity::Warn,
            partition: None,
            description: None,
            blocking: true,
            metadata: Metadata::default(),
            target_materialization: None,
        }),
    }
}

/// These bytes are what format 1 stores. If this test fails, a shipped encoding changed:
/// add a new variant or codec byte instead of editing the old one.
#[test]
fn golden_event_bytes() {
    let cases = [
        (golden_materialization(), GOLDEN_MATERIALIZATION),
        (golden_run_success(), GOLDEN_RUN_SUCCESS),
        (golden_check(), GOLDEN_CHECK),
    ];
    for (event, hex_bytes) in cases {
        let bytes = encode_event(&event);
        assert_eq!(hex::encode(&bytes), hex_bytes, "encoding of {event:?}");
        let back = decode_event(&hex::decode(hex_bytes).unwrap(), || "golden".into()).unwrap();
        assert_eq!(back, event);
    }
}

const GOLDEN_MATERIALIZATION: &str =
    "01026531018080f28183898506010272310101730000000202026462066f7264657273010a323032342d30312d3031000211646167737465722f726f775f636f756e7408015415646167737465722f636f6c756d6e5f736368656d610f0102696403696e740000010000000114646167737465722f646174615f76657273696f6e027631";
const GOLDEN_RUN_SUCCESS: &str =
    "0102653201c084af8283898506010272310001036a6f620104646f6e6501027b7d000400000000";
const GOLDEN_CHECK: &str = "010265330202000000000008010161016300000000010000";

#[test]
fn the_envelope_decodes_alone() {
    for event in [
        golden_materialization(),
        golden_run_success(),
        golden_check(),
    ] {
        let bytes = encode_event(&event);
        assert_eq!(
            decode_envelope(&bytes, || "x".into()).unwrap(),
            event.envelope
        );
    }
    assert!(decode_envelope(&[0x7f], || "x".into()).is_err());
    assert!(decode_envelope(&[EVENT_V1, 0xff], || "x".into()).is_err());
}

#[test]
fn golden_dedupe_bytes() {
    let d = DedupeEntry {
        seq: 0x0102,
        hash: 0xaabb,
    };
    assert_eq!(
        hex::encode(d.encode()),
        "0100000000000001020000000000000000000000000000aabb"
    );
    assert_eq!(DedupeEntry::decode(&d.encode()).unwrap(), d);
}

#[test]
fn unknown_codec_byte_and_garbage_are_corrupt_not_panics() {
    let e = decode_event(&[0x7f, 1, 2], || "x".into()).unwrap_err();
    assert!(
        e.to_string().contains("unknown event codec byte 0x7f"),
        "{e}"
    );
    assert!(decode_event(&[], || "x".into()).is_err());
    assert!(decode_event(&[EVENT_V1, 0xff, 0xff, 0xff], || "x".into()).is_err());
}
