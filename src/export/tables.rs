//! The exported tables: their columns (the Arrow schema, documented in `schemas/parquet/`),
//! their kind, and the rows each one gets from an event or a view record.
//!
//! Two kinds of table:
//!
//! - **append** tables (events, materializations, observations, row_counts,
//!   lineage_edges) get rows from the events in the exported sequence range, so the files of
//!   successive incremental exports simply add up;
//! - **snapshot** tables (runs, asset_checks, column_schemas, backfills) hold the current
//!   state of an entity as of the export's position (`as_of_seq`); an incremental export
//!   writes the entities that events in its range touched, and the rows of an entity in
//!   the file with the highest `as_of_seq` are its current rows.

use std::collections::BTreeMap;

use super::columns::{opt, req, Column, Kind, Rows};
use crate::event::metadata::keys as md;
use crate::event::{json, AssetKey, Event, EventBody, Metadata, Seq, TableSchema};
use crate::projection::backfills::{BackfillRecord, Progress};
use crate::projection::checks::{CheckExecution, ResolvedStatus};
use crate::projection::runs::RunRecord;
use crate::projection::schema::SchemaVersion;

/// One exported table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Events,
    Runs,
    Materializations,
    Observations,
    RowCounts,
    AssetChecks,
    LineageEdges,
    ColumnSchemas,
    Backfills,
}

/// How the files of successive exports of a table combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    /// Rows derived from events: the union of the files is the table.
    Append,
    /// Current state per entity: of the rows of one entity (these columns), those with the
    /// highest `as_of_seq` are current.
    Snapshot { entity: &'static [&'static str] },
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Events,
        Table::Runs,
        Table::Materializations,
        Table::Observations,
        Table::RowCounts,
        Table::AssetChecks,
        Table::LineageEdges,
        Table::ColumnSchemas,
        Table::Backfills,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Runs => "runs",
            Table::Materializations => "materializations",
            Table::Observations => "observations",
            Table::RowCounts => "row_counts",
            Table::AssetChecks => "asset_checks",
            Table::LineageEdges => "lineage_edges",
            Table::ColumnSchemas => "column_schemas",
            Table::Backfills => "backfills",
        }
    }

    pub fn parse(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The schema version of the table: bump it whenever its columns change (the test
    /// `export_schemas_are_documented` fails until you do and re-run `tools/update-schema`).
    pub fn version(self) -> u32 {
        1
    }

    pub fn kind(self) -> TableKind {
        match self {
            Table::Runs => TableKind::Snapshot {
                entity: &["deployment", "run_id"],
            },
            Table::AssetChecks => TableKind::Snapshot {
                entity: &[
                    "deployment",
                    "asset_key_str",
                    "check_name",
                    "execution_id",
                    "partition",
                ],
            },
            Table::ColumnSchemas => TableKind::Snapshot {
                entity: &["deployment", "asset_key_str"],
            },
            Table::Backfills => TableKind::Snapshot {
                entity: &["deployment", "backfill_id"],
            },
            _ => TableKind::Append,
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Table::Events => "Every event, one row each, in log order.",
            Table::Runs => "One row per run: its current state.",
            Table::Materializations => "One row per asset materialization event.",
            Table::Observations => "One row per asset observation event.",
            Table::RowCounts => {
                "The row-count series: one row per dagster/row_count or \
                 dagster/partition_row_count value on a materialization or observation."
            }
            Table::AssetChecks => {
                "One row per asset check execution, with its status resolved against its run."
            }
            Table::LineageEdges => {
                "Asset-level edges from definitions events and column-level edges from \
                 dagster/column_lineage on materializations, each with the event it came from."
            }
            Table::ColumnSchemas => {
                "One row per column per table-schema version of an asset, with the time \
                 range the version applied."
            }
            Table::Backfills => "One row per backfill: its current state and progress.",
        }
    }

    pub fn columns(self) -> &'static [Column] {
        match self {
            Table::Events => EVENTS,
            Table::Runs => RUNS,
            Table::Materializations | Table::Observations => ASSET_EVENTS,
            Table::RowCounts => ROW_COUNTS,
            Table::AssetChecks => ASSET_CHECKS,
            Table::LineageEdges => LINEAGE_EDGES,
            Table::ColumnSchemas => COLUMN_SCHEMAS,
            Table::Backfills => BACKFILLS,
        }
    }
}

const SEQ: Column = req(
    "seq",
    Kind::I64,
    "Log sequence number of the event (unique, dense).",
);
const DEPLOYMENT: Column = req("deployment", Kind::Str, "Deployment name.").dict();
const ASSET_KEY: Column = req("asset_key", Kind::StrList, "Asset key, as its path parts.");
const ASSET_KEY_STR: Column = req("asset_key_str", Kind::Str, "Asset key as `a/b/c`.").dict();
const AS_OF_SEQ: Column = req(
    "as_of_seq",
    Kind::I64,
    "Log position the row is current at (the export's `until`).",
);

const EVENTS: &[Column] = &[
    SEQ,
    req(
        "event_id",
        Kind::Str,
        "Client event id (unique per deployment).",
    ),
    DEPLOYMENT,
    req(
        "event_type",
        Kind::Str,
        "Dagster event type name (`ASSET_MATERIALIZATION`, ...); unknown types as sent.",
    )
    .dict(),
    req("timestamp", Kind::Ts, "Event time, UTC."),
    opt("run_id", Kind::Str, "Run of the event.").dict(),
    opt("step_key", Kind::Str, "Step (op) of the event.").dict(),
    opt("job_name", Kind::Str, "Job of the run.").dict(),
    opt(
        "asset_key",
        Kind::StrList,
        "Asset of asset and check events.",
    ),
    opt("asset_key_str", Kind::Str, "Asset key as `a/b/c`.").dict(),
    opt(
        "partition",
        Kind::Str,
        "Partition key of the event, if any.",
    )
    .dict(),
    opt("check_name", Kind::Str, "Asset check of check events.").dict(),
    opt("message", Kind::Str, "Human-readable message."),
    opt(
        "metadata_json",
        Kind::Str,
        "Metadata as a JSON object in the native format (`{label: {type, value}}`).",
    ),
];

const ASSET_EVENTS: &[Column] = &[
    SEQ,
    req("event_id", Kind::Str, "Client event id."),
    DEPLOYMENT,
    ASSET_KEY,
    ASSET_KEY_STR,
    opt("partition", Kind::Str, "Partition key.").dict(),
    opt("run_id", Kind::Str, "Run that produced it.").dict(),
    opt("step_key", Kind::Str, "Step that produced it.").dict(),
    req("timestamp", Kind::Ts, "Event time, UTC."),
    opt("row_count", Kind::I64, "`dagster/row_count`."),
    opt("data_version", Kind::Str, "`dagster/data_version` tag."),
    opt("code_version", Kind::Str, "`dagster/code_version` tag.").dict(),
    opt("description", Kind::Str, "Description."),
    opt(
        "metadata_json",
        Kind::Str,
        "Metadata as a JSON object in the native format.",
    ),
];

const ROW_COUNTS: &[Column] = &[
    SEQ,
    DEPLOYMENT,
    ASSET_KEY,
    ASSET_KEY_STR,
    opt("partition", Kind::Str, "Partition key of the event.").dict(),
    req("timestamp", Kind::Ts, "Event time, UTC."),
    opt("run_id", Kind::Str, "Run of the event.").dict(),
    req("source", Kind::Str, "`ASSET_MATERIALIZATION` or `ASSET_OBSERVATION`.").dict(),
    req("label", Kind::Str, "`dagster/row_count` (the whole table) or `dagster/partition_row_count` (the event's partition).").dict(),
    req("row_count", Kind::I64, "The value."),
];

const LINEAGE_EDGES: &[Column] = &[
    req("seq", Kind::I64, "Seq of the event the edge came from."),
    DEPLOYMENT,
    req("timestamp", Kind::Ts, "Time of that event, UTC."),
    req("level", Kind::Str, "`asset` or `column`.").dict(),
    req("upstream_asset", Kind::StrList, "Upstream asset key parts."),
    req(
        "upstream_asset_str",
        Kind::Str,
        "Upstream asset key as `a/b/c`.",
    )
    .dict(),
    opt(
        "upstream_column",
        Kind::Str,
        "Upstream column (column level).",
    )
    .dict(),
    req(
        "downstream_asset",
        Kind::StrList,
        "Downstream asset key parts.",
    ),
    req(
        "downstream_asset_str",
        Kind::Str,
        "Downstream asset key as `a/b/c`.",
    )
    .dict(),
    opt(
        "downstream_column",
        Kind::Str,
        "Downstream column (column level).",
    )
    .dict(),
    req(
        "source_event_type",
        Kind::Str,
        "`DEFINITIONS` (asset level) or `ASSET_MATERIALIZATION` (column level).",
    )
    .dict(),
    opt(
        "code_location",
        Kind::Str,
        "Code location of the definitions (asset level).",
    )
    .dict(),
    opt(
        "code_location_version",
        Kind::Str,
        "Version the definitions event gave, if any.",
    )
    .dict(),
];

const RUNS: &[Column] = &[
    DEPLOYMENT,
    req("run_id", Kind::Str, "Run id."),
    opt("job_name", Kind::Str, "Job.").dict(),
    req(
        "status",
        Kind::Str,
        "`DagsterRunStatus` (`QUEUED`, `STARTED`, `SUCCESS`, `FAILURE`, ...).",
    )
    .dict(),
    req(
        "created_at",
        Kind::Ts,
        "Earliest event time of the run, UTC.",
    ),
    opt("start_time", Kind::Ts, "RUN_START time."),
    opt("end_time", Kind::Ts, "Time of the terminal event."),
    req("updated_at", Kind::Ts, "Latest event time of the run."),
    opt(
        "duration_seconds",
        Kind::F64,
        "end_time - start_time, in seconds.",
    ),
    opt("partition", Kind::Str, "`dagster/partition` tag.").dict(),
    opt("backfill_id", Kind::Str, "`dagster/backfill` tag.").dict(),
    req("tags_json", Kind::Str, "Run tags as a JSON object."),
    opt(
        "failure_reason",
        Kind::Str,
        "`RunFailureReason` of a failed run.",
    )
    .dict(),
    req("steps_succeeded", Kind::I64, "Steps that succeeded."),
    req("steps_failed", Kind::I64, "Steps that failed."),
    req(
        "materializations",
        Kind::I64,
        "Materializations in the run.",
    ),
    req("events", Kind::I64, "Events of the run."),
    req(
        "first_seq",
        Kind::I64,
        "Seq of the run's first stored event.",
    ),
    AS_OF_SEQ,
];

const ASSET_CHECKS: &[Column] = &[
    DEPLOYMENT,
    ASSET_KEY,
    ASSET_KEY_STR,
    req("check_name", Kind::Str, "Check name.").dict(),
    req(
        "execution_id",
        Kind::I64,
        "Seq of the event that created the execution.",
    ),
    opt("partition", Kind::Str, "Partition checked.").dict(),
    opt("run_id", Kind::Str, "Run of the execution.").dict(),
    req(
        "status",
        Kind::Str,
        "`IN_PROGRESS`, `SUCCEEDED`, `FAILED`, `EXECUTION_FAILED` or `SKIPPED`.",
    )
    .dict(),
    opt("severity", Kind::Str, "`WARN` or `ERROR` (once evaluated).").dict(),
    opt("description", Kind::Str, "Description of the evaluation."),
    opt("evaluation_seq", Kind::I64, "Seq of the evaluation event."),
    opt("evaluated_at", Kind::Ts, "Time of the evaluation event."),
    req("timestamp", Kind::Ts, "Latest event time of the execution."),
    AS_OF_SEQ,
];

const COLUMN_SCHEMAS: &[Column] = &[
    DEPLOYMENT,
    ASSET_KEY,
    ASSET_KEY_STR,
    req(
        "schema_hash",
        Kind::Str,
        "Content hash of the schema version (16 hex digits).",
    )
    .dict(),
    req(
        "version",
        Kind::I64,
        "1 for the asset's first schema, then 2, 3, ...",
    ),
    req(
        "valid_from",
        Kind::Ts,
        "Time of the event that brought this version.",
    ),
    req("valid_from_seq", Kind::I64, "Seq of that event."),
    opt(
        "valid_to",
        Kind::Ts,
        "When the next version took over (null: current).",
    ),
    req(
        "is_current",
        Kind::Bool,
        "Whether this is the asset's current schema.",
    ),
    req("column_index", Kind::I64, "Position of the column, from 0."),
    req("column_name", Kind::Str, "Column name.").dict(),
    req("column_type", Kind::Str, "Column type as given.").dict(),
    opt("column_description", Kind::Str, "Column description."),
    req("nullable", Kind::Bool, "Column constraint `nullable`."),
    req("unique", Kind::Bool, "Column constraint `unique`."),
    req(
        "other_constraints",
        Kind::StrList,
        "Other column constraints.",
    ),
    req(
        "table_constraints",
        Kind::StrList,
        "Table-level constraints of the version.",
    ),
    AS_OF_SEQ,
];

const BACKFILLS: &[Column] = &[
    DEPLOYMENT,
    req("backfill_id", Kind::Str, "Backfill id."),
    req("status", Kind::Str, "`BulkActionStatus`.").dict(),
    opt("created_at", Kind::Ts, "BACKFILL_CREATED time."),
    opt(
        "status_at",
        Kind::Ts,
        "Time of the event that set the status.",
    ),
    opt("title", Kind::Str, "Title."),
    opt("description", Kind::Str, "Description."),
    opt("job_name", Kind::Str, "Job.").dict(),
    req(
        "from_failure",
        Kind::Bool,
        "Re-execution of failed partitions.",
    ),
    req(
        "asset_selection",
        Kind::StrList,
        "Targeted assets as `a/b/c`.",
    ),
    req("partition_names", Kind::StrList, "Targeted partitions."),
    req(
        "num_partitions",
        Kind::I64,
        "Number of targeted partitions.",
    ),
    req("runs_total", Kind::I64, "Runs tagged with the backfill."),
    req("runs_succeeded", Kind::I64, "Of those, SUCCESS."),
    req("runs_failed", Kind::I64, "Of those, FAILURE."),
    req("runs_in_progress", Kind::I64, "Of those, not finished."),
    opt("error", Kind::Str, "Error message of the latest update."),
    req("tags_json", Kind::Str, "Tags as a JSON object."),
    AS_OF_SEQ,
];

/// What rows need beyond the event or record itself.
pub struct Ctx<'a> {
    pub deployment: &'a str,
    pub as_of: Seq,
}

/// Metadata as JSON text into `out`; false (null) when there is none.
fn metadata_json(m: Option<&Metadata>, out: &mut Vec<u8>) -> bool {
    match m {
        Some(m) if !m.0.is_empty() => {
            json::write_metadata(m, out);
            true
        }
        _ => false,
    }
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn tags_json<'a>(tags: impl Iterator<Item = (&'a String, &'a String)>) -> String {
    serde_json::Value::Object(
        tags.map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
    .to_string()
}

/// Partition, metadata and check name of an event, where its kind has them.
fn event_parts(body: &EventBody) -> (Option<&str>, Option<&Metadata>, Option<&str>) {
    match body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => {
            (a.partition.as_deref(), Some(&a.metadata), None)
        }
        EventBody::AssetMaterializationPlanned(p) => (p.partition.as_deref(), None, None),
        EventBody::AssetFailedToMaterialize(f) => (f.partition.as_deref(), Some(&f.metadata), None),
        EventBody::AssetCheckPlanned(c) => (None, None, Some(c.check_name.as_str())),
        EventBody::AssetCheckEvaluation(c) => (
            c.partition.as_deref(),
            Some(&c.metadata),
            Some(c.check_name.as_str()),
        ),
        EventBody::Engine(e) => (None, Some(&e.metadata), None),
        _ => (None, None, None),
    }
}

pub fn events(r: &mut Rows, cx: &Ctx, seq: Seq, ev: &Event) {
    let env = &ev.envelope;
    let (partition, metadata, check) = event_parts(&ev.body);
    let key = ev.body.asset_key();
    let type_name = match &ev.body {
        EventBody::Unknown(u) => u.type_name.as_str(),
        b => b.event_type().as_str(),
    };
    r.i64(Some(seq as i64))
        .str(Some(&env.event_id))
        .str(Some(cx.deployment))
        .str(Some(type_name))
        .ts(Some(env.timestamp_us))
        .str(env.run_id.as_deref())
        .str(env.step_key.as_deref())
        .str(env.job_name.as_deref())
        .list(key.map(|k| k.0.as_slice()))
        .str(key.map(AssetKey::to_user_string).as_deref())
        .str(partition)
        .str(check)
        .str(env.message.as_deref())
        .str_with(|out| metadata_json(metadata, out));
    r.end_row();
}

/// Materializations (`observations` false) or observations.
pub fn asset_events(r: &mut Rows, cx: &Ctx, seq: Seq, ev: &Event, observations: bool) {
    let a = match (&ev.body, observations) {
        (EventBody::AssetMaterialization(a), false) | (EventBody::AssetObservation(a), true) => a,
        _ => return,
    };
    let env = &ev.envelope;
    r.i64(Some(seq as i64))
        .str(Some(&env.event_id))
        .str(Some(cx.deployment))
        .list(Some(&a.asset_key.0))
        .str(Some(&a.asset_key.to_user_string()))
        .str(a.partition.as_deref())
        .str(env.run_id.as_deref())
        .str(env.step_key.as_deref())
        .ts(Some(env.timestamp_us))
        .i64(a.metadata.row_count())
        .str(tag(&a.tags, "dagster/data_version"))
        .str(tag(&a.tags, "dagster/code_version"))
        .str(a.description.as_deref())
        .str_with(|out| metadata_json(Some(&a.metadata), out));
    r.end_row();
}

pub fn row_counts(r: &mut Rows, cx: &Ctx, seq: Seq, ev: &Event) {
    let (EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a)) = &ev.body else {
        return;
    };
    let values = [
        (md::ROW_COUNT, a.metadata.row_count()),
        (
            md::PARTITION_ROW_COUNT,
            a.partition.as_ref().and(a.metadata.partition_row_count()),
        ),
    ];
    for (label, value) in values {
        let Some(n) = value else { continue };
        r.i64(Some(seq as i64))
            .str(Some(cx.deployment))
            .list(Some(&a.asset_key.0))
            .str(Some(&a.asset_key.to_user_string()))
            .str(a.partition.as_deref())
            .ts(Some(ev.envelope.timestamp_us))
            .str(ev.envelope.run_id.as_deref())
            .str(Some(ev.event_type().as_str()))
            .str(Some(label))
            .i64(Some(n));
        r.end_row();
    }
}

pub fn lineage_edges(r: &mut Rows, cx: &Ctx, seq: Seq, ev: &Event) {
    let ts = ev.envelope.timestamp_us;
    let mut edge = |up: &AssetKey,
                    up_col: Option<&str>,
                    down: &AssetKey,
                    down_col: Option<&str>,
                    location: Option<(&str, Option<&str>)>| {
        r.i64(Some(seq as i64))
            .str(Some(cx.deployment))
            .ts(Some(ts))
            .str(Some(if up_col.is_some() { "column" } else { "asset" }))
            .list(Some(&up.0))
            .str(Some(&up.to_user_string()))
            .str(up_col)
            .list(Some(&down.0))
            .str(Some(&down.to_user_string()))
            .str(down_col)
            .str(Some(ev.event_type().as_str()))
            .str(location.map(|l| l.0))
            .str(location.and_then(|l| l.1));
        r.end_row();
    };
    match &ev.body {
        EventBody::Definitions(d) => {
            for def in &d.assets {
                for up in &def.deps {
                    edge(
                        up,
                        None,
                        &def.asset_key,
                        None,
                        Some((&d.code_location, d.version.as_deref())),
                    );
                }
            }
        }
        EventBody::AssetMaterialization(a) => {
            let Some(l) = a.metadata.column_lineage() else {
                return;
            };
            for (column, deps) in &l.deps_by_column {
                for dep in deps {
                    edge(
                        &dep.asset_key,
                        Some(&dep.column_name),
                        &a.asset_key,
                        Some(column),
                        None,
                    );
                }
            }
        }
        _ => {}
    }
}

pub fn run(r: &mut Rows, cx: &Ctx, run: &RunRecord) {
    let duration = match (run.start_us, run.end_us) {
        (Some(s), Some(e)) => Some((e - s) as f64 / 1e6),
        _ => None,
    };
    r.str(Some(cx.deployment))
        .str(Some(&run.run_id))
        .str(run.job_name.as_deref())
        .str(Some(run.status.as_str()))
        .ts(Some(run.created_us))
        .ts(run.start_us)
        .ts(run.end_us)
        .ts(Some(run.update_us))
        .f64(duration)
        .str(run.partition())
        .str(run.backfill_id())
        .str(Some(&tags_json(run.tags.iter())))
        .str(run.failure_reason.as_deref())
        .i64(Some(run.steps_succeeded as i64))
        .i64(Some(run.steps_failed as i64))
        .i64(Some(run.materializations as i64))
        .i64(Some(run.events as i64))
        .i64(Some(run.first_seq as i64))
        .i64(Some(cx.as_of as i64));
    r.end_row();
}

pub fn check_execution(
    r: &mut Rows,
    cx: &Ctx,
    key: &AssetKey,
    check: &str,
    e: &CheckExecution,
    status: ResolvedStatus,
) {
    let severity = e.severity.map(|s| match s {
        crate::event::CheckSeverity::Warn => "WARN",
        crate::event::CheckSeverity::Error => "ERROR",
    });
    r.str(Some(cx.deployment))
        .list(Some(&key.0))
        .str(Some(&key.to_user_string()))
        .str(Some(check))
        .i64(Some(e.id as i64))
        .str(e.partition.as_deref())
        .str(e.run_id.as_deref())
        .str(Some(status.as_str()))
        .str(severity)
        .str(e.description.as_deref())
        .i64(e.evaluation_seq.map(|s| s as i64))
        .ts(e.evaluated_us)
        .ts(Some(e.timestamp_us))
        .i64(Some(cx.as_of as i64));
    r.end_row();
}

/// The rows of one schema version of an asset.
pub fn schema_version(
    r: &mut Rows,
    cx: &Ctx,
    key: &AssetKey,
    (number, v, valid_to, current): (usize, &SchemaVersion, Option<i64>, bool),
    schema: &TableSchema,
) {
    let hash = format!("{:016x}", v.hash);
    for (i, c) in schema.columns.iter().enumerate() {
        r.str(Some(cx.deployment))
            .list(Some(&key.0))
            .str(Some(&key.to_user_string()))
            .str(Some(&hash))
            .i64(Some(number as i64))
            .ts(Some(v.since_us))
            .i64(Some(v.since_seq as i64))
            .ts(valid_to)
            .bool(Some(current))
            .i64(Some(i as i64))
            .str(Some(&c.name))
            .str(Some(&c.data_type))
            .str(c.description.as_deref())
            .bool(Some(c.nullable))
            .bool(Some(c.unique))
            .list(Some(&c.other_constraints))
            .list(Some(&schema.constraints))
            .i64(Some(cx.as_of as i64));
        r.end_row();
    }
}

pub fn backfill(r: &mut Rows, cx: &Ctx, b: &BackfillRecord, p: &Progress) {
    let count = |s: &str| p.runs_by_status.get(s).copied().unwrap_or(0) as i64;
    let total: i64 = p.runs_by_status.values().map(|n| *n as i64).sum();
    let finished = count("SUCCESS") + count("FAILURE") + count("CANCELED");
    let selection: Vec<String> = b
        .asset_selection
        .iter()
        .map(AssetKey::to_user_string)
        .collect();
    let tags: BTreeMap<&String, &String> = b.tags.iter().map(|(k, v)| (k, v)).collect();
    r.str(Some(cx.deployment))
        .str(Some(&b.backfill_id))
        .str(Some(&b.status))
        .ts(b.created_us)
        .ts((b.status_at.0 != i64::MIN).then_some(b.status_at.0))
        .str(b.title.as_deref())
        .str(b.description.as_deref())
        .str(b.job_name.as_deref())
        .bool(Some(b.from_failure))
        .list(Some(&selection))
        .list(Some(&b.partition_names))
        .i64(Some(b.partition_names.len() as i64))
        .i64(Some(total))
        .i64(Some(count("SUCCESS")))
        .i64(Some(count("FAILURE")))
        .i64(Some(total - finished))
        .str(b.error.as_deref())
        .str(Some(&tags_json(tags.into_iter())))
        .i64(Some(cx.as_of as i64));
    r.end_row();
}
