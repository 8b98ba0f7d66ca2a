//! Realistic sample events, for benches, the load generator and tests.

use super::*;

/// A 10-column table schema like a warehouse table's.
pub fn table_schema(columns: usize) -> TableSchema {
    let types = ["bigint", "varchar", "timestamp", "decimal(12,2)", "boolean"];
    TableSchema::new(
        (0..columns)
            .map(|i| TableColumn {
                name: format!("column_{i}"),
                data_type: types[i % types.len()].to_string(),
                description: (i % 3 == 0).then(|| format!("column number {i}")),
                nullable: i % 2 == 0,
                unique: i == 0,
                other_constraints: Vec::new(),
                tags: Vec::new(),
            })
            .collect(),
        Vec::new(),
    )
}

/// A materialization with about six metadata entries, including a 10-column schema and a
/// row count: the shape a dbt or warehouse asset reports.
pub fn materialization(
    deployment: DeploymentId,
    event_id: String,
    run_id: &str,
    asset: usize,
    partition: Option<String>,
    timestamp_us: i64,
) -> Event {
    Event {
        envelope: Envelope {
            event_id,
            deployment,
            timestamp_us,
            run_id: Some(run_id.to_string()),
            step_key: Some(format!("asset_{asset}")),
            job_name: Some("daily_job".into()),
            message: None,
            raw: None,
        },
        body: EventBody::AssetMaterialization(AssetEvent {
            asset_key: AssetKey(vec!["warehouse".into(), format!("table_{asset}")]),
            partition,
            description: None,
            metadata: Metadata(vec![
                MetadataEntry {
                    label: metadata::keys::ROW_COUNT.into(),
                    value: MetadataValue::Int(Some(1000 + (timestamp_us % 997))),
                },
                MetadataEntry {
                    label: metadata::keys::COLUMN_SCHEMA.into(),
                    value: MetadataValue::TableSchema(table_schema(10).into()),
                },
                MetadataEntry {
                    label: metadata::keys::TABLE_NAME.into(),
                    value: MetadataValue::Text(format!("analytics.warehouse.table_{asset}")),
                },
                MetadataEntry {
                    label: "duration_s".into(),
                    value: MetadataValue::Float(Some(12.5)),
                },
                MetadataEntry {
                    label: metadata::keys::URI.into(),
                    value: MetadataValue::Text(format!("s3://lake/warehouse/table_{asset}")),
                },
                MetadataEntry {
                    label: "dbt_model".into(),
                    value: MetadataValue::Text(format!("model.analytics.table_{asset}")),
                },
            ]),
            tags: vec![("dagster/code_version".into(), "v1".into())],
        }),
    }
}

/// A run lifecycle event.
pub fn run_event(
    deployment: DeploymentId,
    event_id: String,
    run_id: &str,
    kind: RunEventKind,
    timestamp_us: i64,
) -> Event {
    Event {
        envelope: Envelope {
            event_id,
            deployment,
            timestamp_us,
            run_id: Some(run_id.to_string()),
            step_key: None,
            job_name: Some("daily_job".into()),
            message: None,
            raw: None,
        },
        body: EventBody::Run(RunEvent {
            kind,
            tags: Vec::new(),
            failure_reason: None,
            error: None,
            code_location: None,
        }),
    }
}
