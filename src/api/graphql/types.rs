//! GraphQL output types, mapped from the views' records. Metadata, table schemas and
//! lineage come back typed (a union member per metadata kind), not as strings.

use async_graphql::{ComplexObject, Context, Enum, Object, Result, SimpleObject, Union};

use super::{ctx, page_limit, Ctx};
use crate::event::{self, AssetKey, MetadataValue};
use crate::projection::{
    self, checks, lineage, materializations, partitions, rowcounts, runs, schema, EventRef,
};

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// A tag.
#[derive(SimpleObject, Clone)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

fn tags(t: &[(String, String)]) -> Vec<Tag> {
    t.iter()
        .map(|(k, v)| Tag {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

// ---- metadata -------------------------------------------------------------------------

#[derive(SimpleObject, Clone)]
pub struct TableColumnConstraints {
    pub nullable: bool,
    pub unique: bool,
    pub other: Vec<String>,
}

#[derive(SimpleObject, Clone)]
pub struct TableColumn {
    pub name: String,
    #[graphql(name = "type")]
    pub data_type: String,
    pub description: Option<String>,
    pub constraints: TableColumnConstraints,
    pub tags: Vec<Tag>,
}

#[derive(SimpleObject, Clone)]
pub struct TableSchema {
    pub columns: Vec<TableColumn>,
    pub constraints: Vec<String>,
}

impl From<&event::TableSchema> for TableSchema {
    fn from(s: &event::TableSchema) -> Self {
        TableSchema {
            columns: s.columns.iter().map(column).collect(),
            constraints: s.constraints.clone(),
        }
    }
}

fn column(c: &event::TableColumn) -> TableColumn {
    TableColumn {
        name: c.name.clone(),
        data_type: c.data_type.clone(),
        description: c.description.clone(),
        constraints: TableColumnConstraints {
            nullable: c.nullable,
            unique: c.unique,
            other: c.other_constraints.clone(),
        },
        tags: tags(&c.tags),
    }
}

#[derive(SimpleObject, Clone)]
pub struct ColumnDep {
    pub asset_key: Vec<String>,
    pub column_name: String,
}

#[derive(SimpleObject, Clone)]
pub struct ColumnLineageEntry {
    pub column_name: String,
    pub column_deps: Vec<ColumnDep>,
}

fn lineage_entries(l: &event::ColumnLineage) -> Vec<ColumnLineageEntry> {
    l.deps_by_column
        .iter()
        .map(|(c, deps)| ColumnLineageEntry {
            column_name: c.clone(),
            column_deps: deps
                .iter()
                .map(|d| ColumnDep {
                    asset_key: d.asset_key.0.clone(),
                    column_name: d.column_name.clone(),
                })
                .collect(),
        })
        .collect()
}

macro_rules! entries {
    ($($name:ident { $($f:ident : $t:ty),* }),* $(,)?) => {
        $(
            #[derive(SimpleObject, Clone)]
            pub struct $name {
                pub label: String,
                $(pub $f: $t,)*
            }
        )*
    };
}

entries! {
    TextMetadataEntry { text: String },
    UrlMetadataEntry { url: String },
    PathMetadataEntry { path: String },
    NotebookMetadataEntry { path: String },
    JsonMetadataEntry { json_string: String },
    MarkdownMetadataEntry { md_str: String },
    PythonArtifactMetadataEntry { module: String, name: String },
    FloatMetadataEntry { float_value: Option<f64>, float_repr: String },
    IntMetadataEntry { int_value: Option<i64>, int_repr: String },
    BoolMetadataEntry { bool_value: Option<bool> },
    TimestampMetadataEntry { timestamp: f64 },
    RunMetadataEntry { run_id: String },
    JobMetadataEntry { job_name: String, location_name: Option<String>, repository_name: Option<String> },
    AssetMetadataEntry { asset_key: Vec<String> },
    TableMetadataEntry { schema: Option<TableSchema>, records: Vec<String> },
    TableSchemaMetadataEntry { schema: TableSchema },
    TableColumnLineageMetadataEntry { lineage: Vec<ColumnLineageEntry> },
    NullMetadataEntry { },
    CodeReferencesMetadataEntry { code_references: Vec<CodeReference> },
    PoolMetadataEntry { pool: String },
    CodeLocationReconstructionMetadataEntry { data: String },
}

#[derive(SimpleObject, Clone)]
pub struct CodeReference {
    pub file_path: Option<String>,
    pub line_number: Option<u32>,
    pub url: Option<String>,
    pub label: Option<String>,
}

/// A metadata entry: one member per metadata kind.
#[derive(Union, Clone)]
pub enum MetadataEntry {
    Text(TextMetadataEntry),
    Url(UrlMetadataEntry),
    Path(PathMetadataEntry),
    Notebook(NotebookMetadataEntry),
    Json(JsonMetadataEntry),
    Markdown(MarkdownMetadataEntry),
    PythonArtifact(PythonArtifactMetadataEntry),
    Float(FloatMetadataEntry),
    Int(IntMetadataEntry),
    Bool(BoolMetadataEntry),
    Timestamp(TimestampMetadataEntry),
    Run(RunMetadataEntry),
    Job(JobMetadataEntry),
    Asset(AssetMetadataEntry),
    Table(TableMetadataEntry),
    TableSchema(TableSchemaMetadataEntry),
    ColumnLineage(TableColumnLineageMetadataEntry),
    Null(NullMetadataEntry),
    CodeReferences(CodeReferencesMetadataEntry),
    Pool(PoolMetadataEntry),
    CodeLocationReconstruction(CodeLocationReconstructionMetadataEntry),
}

pub fn metadata(md: &event::Metadata) -> Vec<MetadataEntry> {
    md.0.iter().map(|e| entry(&e.label, &e.value)).collect()
}

fn entry(label: &str, v: &MetadataValue) -> MetadataEntry {
    let label = label.to_string();
    match v {
        MetadataValue::Text(s) => MetadataEntry::Text(TextMetadataEntry {
            label,
            text: s.clone(),
        }),
        MetadataValue::Url(s) => MetadataEntry::Url(UrlMetadataEntry {
            label,
            url: s.clone(),
        }),
        MetadataValue::Path(s) => MetadataEntry::Path(PathMetadataEntry {
            label,
            path: s.clone(),
        }),
        MetadataValue::Notebook(s) => MetadataEntry::Notebook(NotebookMetadataEntry {
            label,
            path: s.clone(),
        }),
        MetadataValue::Json(s) => MetadataEntry::Json(JsonMetadataEntry {
            label,
            json_string: s.clone(),
        }),
        MetadataValue::Markdown(s) => MetadataEntry::Markdown(MarkdownMetadataEntry {
            label,
            md_str: s.clone(),
        }),
        MetadataValue::PythonArtifact { module, name } => {
            MetadataEntry::PythonArtifact(PythonArtifactMetadataEntry {
                label,
                module: module.clone(),
                name: name.clone(),
            })
        }
        MetadataValue::Float(f) => MetadataEntry::Float(FloatMetadataEntry {
            label,
            float_value: f.filter(|x| x.is_finite()),
            float_repr: f
                .map(|x| {
                    if x.is_nan() {
                        "NaN".into()
                    } else {
                        x.to_string()
                    }
                })
                .unwrap_or_else(|| "null".into()),
        }),
        MetadataValue::Int(i) => MetadataEntry::Int(IntMetadataEntry {
            label,
            int_value: *i,
            int_repr: i.map(|x| x.to_string()).unwrap_or_else(|| "null".into()),
        }),
        MetadataValue::BigInt(s) => MetadataEntry::Int(IntMetadataEntry {
            label,
            int_value: None,
            int_repr: s.clone(),
        }),
        MetadataValue::Bool(b) => MetadataEntry::Bool(BoolMetadataEntry {
            label,
            bool_value: *b,
        }),
        MetadataValue::Timestamp(t) => MetadataEntry::Timestamp(TimestampMetadataEntry {
            label,
            timestamp: *t,
        }),
        MetadataValue::DagsterRun { run_id } => MetadataEntry::Run(RunMetadataEntry {
            label,
            run_id: run_id.clone(),
        }),
        MetadataValue::DagsterJob {
            job_name,
            location_name,
            repository_name,
        } => MetadataEntry::Job(JobMetadataEntry {
            label,
            job_name: job_name.clone(),
            location_name: location_name.clone(),
            repository_name: repository_name.clone(),
        }),
        MetadataValue::Asset(k) => MetadataEntry::Asset(AssetMetadataEntry {
            label,
            asset_key: k.0.clone(),
        }),
        MetadataValue::Table { schema, records } => MetadataEntry::Table(TableMetadataEntry {
            label,
            schema: schema.as_ref().map(Into::into),
            records: records.clone(),
        }),
        MetadataValue::TableSchema(s) => MetadataEntry::TableSchema(TableSchemaMetadataEntry {
            label,
            schema: s.as_ref().into(),
        }),
        MetadataValue::ColumnLineage(l) => {
            MetadataEntry::ColumnLineage(TableColumnLineageMetadataEntry {
                label,
                lineage: lineage_entries(l),
            })
        }
        MetadataValue::Null => MetadataEntry::Null(NullMetadataEntry { label }),
        MetadataValue::CodeReferences(r) => {
            MetadataEntry::CodeReferences(CodeReferencesMetadataEntry {
                label,
                code_references: r
                    .iter()
                    .map(|c| match c {
                        event::CodeReference::LocalFile {
                            file_path,
                            line_number,
                            label,
                        } => CodeReference {
                            file_path: Some(file_path.clone()),
                            line_number: *line_number,
                            url: None,
                            label: label.clone(),
                        },
                        event::CodeReference::Url { url, label } => CodeReference {
                            file_path: None,
                            line_number: None,
                            url: Some(url.clone()),
                            label: label.clone(),
                        },
                    })
                    .collect(),
            })
        }
        MetadataValue::Pool(p) => MetadataEntry::Pool(PoolMetadataEntry {
            label,
            pool: p.clone(),
        }),
        MetadataValue::CodeLocationReconstruction(d) => {
            MetadataEntry::CodeLocationReconstruction(CodeLocationReconstructionMetadataEntry {
                label,
                data: d.clone(),
            })
        }
    }
}

// ---- events ---------------------------------------------------------------------------

/// A materialization or observation of an asset.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct AssetEvent {
    pub storage_id: u64,
    pub run_id: Option<String>,
    /// Unix seconds.
    pub timestamp: f64,
    pub partition: Option<String>,
    #[graphql(skip)]
    pub seq: u64,
}

impl From<&EventRef> for AssetEvent {
    fn from(r: &EventRef) -> Self {
        AssetEvent {
            storage_id: r.seq,
            run_id: r.run_id.clone(),
            timestamp: secs(r.timestamp_us),
            partition: r.partition.clone(),
            seq: r.seq,
        }
    }
}

#[ComplexObject]
impl AssetEvent {
    /// Metadata entries, typed (loaded from the log in batches).
    async fn metadata(&self, c: &Context<'_>) -> Result<Vec<MetadataEntry>> {
        let ev = ctx(c).event(self.seq).await?;
        Ok(match &ev.body {
            event::EventBody::AssetMaterialization(a) | event::EventBody::AssetObservation(a) => {
                metadata(&a.metadata)
            }
            _ => Vec::new(),
        })
    }

    async fn tags(&self, c: &Context<'_>) -> Result<Vec<Tag>> {
        let ev = ctx(c).event(self.seq).await?;
        Ok(match &ev.body {
            event::EventBody::AssetMaterialization(a) | event::EventBody::AssetObservation(a) => {
                tags(&a.tags)
            }
            _ => Vec::new(),
        })
    }

    async fn description(&self, c: &Context<'_>) -> Result<Option<String>> {
        let ev = ctx(c).event(self.seq).await?;
        Ok(match &ev.body {
            event::EventBody::AssetMaterialization(a) | event::EventBody::AssetObservation(a) => {
                a.description.clone()
            }
            _ => None,
        })
    }

    async fn step_key(&self, c: &Context<'_>) -> Result<Option<String>> {
        Ok(ctx(c).event(self.seq).await?.envelope.step_key.clone())
    }
}

/// Any event of a run.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct RunEvent {
    pub storage_id: u64,
    #[graphql(name = "type")]
    pub event_type: String,
    pub timestamp: f64,
    pub run_id: Option<String>,
    pub step_key: Option<String>,
    pub message: Option<String>,
    pub asset_key: Option<Vec<String>>,
    #[graphql(skip)]
    pub event: std::sync::Arc<event::Event>,
}

impl RunEvent {
    pub fn new(seq: u64, ev: event::Event) -> RunEvent {
        RunEvent {
            storage_id: seq,
            event_type: match &ev.body {
                event::EventBody::Unknown(u) => u.type_name.clone(),
                b => b.event_type().as_str().to_string(),
            },
            timestamp: secs(ev.envelope.timestamp_us),
            run_id: ev.envelope.run_id.clone(),
            step_key: ev.envelope.step_key.clone(),
            message: ev.envelope.message.clone(),
            asset_key: ev.body.asset_key().map(|k| k.0.clone()),
            event: std::sync::Arc::new(ev),
        }
    }
}

#[ComplexObject]
impl RunEvent {
    /// The event in the native ingest format, as JSON text.
    async fn json(&self) -> String {
        event::json::to_json(&self.event).to_string()
    }

    /// Metadata of events that carry it.
    async fn metadata(&self) -> Vec<MetadataEntry> {
        match &self.event.body {
            event::EventBody::AssetMaterialization(a) | event::EventBody::AssetObservation(a) => {
                metadata(&a.metadata)
            }
            event::EventBody::AssetCheckEvaluation(c) => metadata(&c.metadata),
            event::EventBody::AssetFailedToMaterialize(f) => metadata(&f.metadata),
            event::EventBody::Engine(e) => metadata(&e.metadata),
            _ => Vec::new(),
        }
    }

    async fn partition(&self) -> Option<String> {
        match &self.event.body {
            event::EventBody::AssetMaterialization(a) | event::EventBody::AssetObservation(a) => {
                a.partition.clone()
            }
            event::EventBody::AssetMaterializationPlanned(p) => p.partition.clone(),
            event::EventBody::AssetCheckEvaluation(c) => c.partition.clone(),
            _ => None,
        }
    }
}

#[derive(SimpleObject)]
pub struct EventPage {
    pub events: Vec<AssetEvent>,
    /// Pass as `beforeStorageId` for the next page.
    pub cursor: Option<u64>,
    pub has_more: bool,
}

#[derive(SimpleObject)]
pub struct RunEventPage {
    pub events: Vec<RunEvent>,
    /// Pass as `afterCursor` for the next page.
    pub cursor: Option<u64>,
    pub has_more: bool,
}

// ---- assets ---------------------------------------------------------------------------

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum PartitionStatus {
    Missing,
    Materialized,
    Failed,
    Materializing,
}

impl From<partitions::PartitionStatus> for PartitionStatus {
    fn from(s: partitions::PartitionStatus) -> Self {
        match s {
            partitions::PartitionStatus::Missing => PartitionStatus::Missing,
            partitions::PartitionStatus::Materialized => PartitionStatus::Materialized,
            partitions::PartitionStatus::Failed => PartitionStatus::Failed,
            partitions::PartitionStatus::InProgress => PartitionStatus::Materializing,
        }
    }
}

impl From<PartitionStatus> for partitions::PartitionStatus {
    fn from(s: PartitionStatus) -> Self {
        match s {
            PartitionStatus::Missing => partitions::PartitionStatus::Missing,
            PartitionStatus::Materialized => partitions::PartitionStatus::Materialized,
            PartitionStatus::Failed => partitions::PartitionStatus::Failed,
            PartitionStatus::Materializing => partitions::PartitionStatus::InProgress,
        }
    }
}

#[derive(SimpleObject)]
pub struct PartitionStats {
    /// Partitions with any event.
    pub num_known: u64,
    pub num_materialized: u64,
    pub num_failed: u64,
    pub num_materializing: u64,
    /// Partitions the definition has, where that is knowable (static definitions).
    pub num_partitions: Option<u64>,
    /// `num_partitions` minus materialized, failed and materializing.
    pub num_missing: Option<u64>,
}

#[derive(SimpleObject)]
pub struct Partition {
    pub partition: String,
    pub status: PartitionStatus,
    pub latest_materialization: Option<AssetEvent>,
    pub materialization_count: u64,
}

#[derive(SimpleObject)]
pub struct PartitionPage {
    pub partitions: Vec<Partition>,
    /// Pass as `cursor` for the next page.
    pub cursor: Option<String>,
    pub has_more: bool,
}

#[derive(SimpleObject)]
pub struct SeriesPoint {
    pub timestamp: f64,
    pub storage_id: u64,
    pub value: f64,
}

fn points(p: Vec<rowcounts::Point>) -> Vec<SeriesPoint> {
    p.into_iter()
        .map(|p| SeriesPoint {
            timestamp: secs(p.timestamp_us),
            storage_id: p.seq,
            value: p.value,
        })
        .collect()
}

#[derive(SimpleObject)]
pub struct SchemaVersion {
    /// Content hash (hex) of the schema.
    pub hash: String,
    /// When this version was first seen (Unix seconds).
    pub since: f64,
    pub since_storage_id: u64,
    pub schema: Option<TableSchema>,
}

#[derive(SimpleObject)]
pub struct ColumnChange {
    pub name: String,
    pub old_type: Option<String>,
    pub new_type: Option<String>,
    pub nullable_changed: bool,
    pub nullable: Option<bool>,
    pub unique_changed: bool,
    pub unique: Option<bool>,
    pub other_constraints: Option<Vec<String>>,
    pub description_changed: bool,
}

#[derive(SimpleObject)]
pub struct SchemaDiff {
    pub added: Vec<TableColumn>,
    pub removed: Vec<TableColumn>,
    pub changed: Vec<ColumnChange>,
    pub table_constraints_changed: bool,
}

#[derive(SimpleObject)]
pub struct LineageNode {
    pub asset_key: Vec<String>,
    pub depth: u32,
}

#[derive(SimpleObject)]
pub struct LineageEdge {
    pub from: Vec<String>,
    pub to: Vec<String>,
}

#[derive(SimpleObject)]
pub struct Lineage {
    pub nodes: Vec<LineageNode>,
    pub edges: Vec<LineageEdge>,
    /// The node budget stopped the walk before the depth limit.
    pub truncated: bool,
}

#[derive(SimpleObject)]
pub struct AssetDefinition {
    pub code_location: String,
    pub description: Option<String>,
    pub group_name: Option<String>,
    pub owners: Vec<String>,
    pub tags: Vec<Tag>,
    pub kinds: Vec<String>,
    pub code_version: Option<String>,
    pub automation_condition: Option<String>,
    pub dependency_keys: Vec<Vec<String>>,
    pub job_names: Vec<String>,
    pub is_source: bool,
    /// `STATIC`, `TIME_WINDOW`, `DYNAMIC` or `MULTI`, when partitioned.
    pub partitions_type: Option<String>,
    pub metadata: Vec<MetadataEntry>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum CheckStatus {
    InProgress,
    Succeeded,
    Failed,
    ExecutionFailed,
    Skipped,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Severity {
    Warn,
    Error,
}

#[derive(SimpleObject)]
pub struct CheckExecution {
    pub id: u64,
    pub run_id: Option<String>,
    pub status: CheckStatus,
    pub severity: Option<Severity>,
    pub partition: Option<String>,
    pub timestamp: f64,
    pub description: Option<String>,
    pub evaluation_storage_id: Option<u64>,
}

pub fn check_execution(c: &Ctx, e: &checks::CheckExecution) -> Result<CheckExecution> {
    let status = match checks::resolve(c.reader(), c.deployment(), e)? {
        checks::ResolvedStatus::InProgress => CheckStatus::InProgress,
        checks::ResolvedStatus::Succeeded => CheckStatus::Succeeded,
        checks::ResolvedStatus::Failed => CheckStatus::Failed,
        checks::ResolvedStatus::ExecutionFailed => CheckStatus::ExecutionFailed,
        checks::ResolvedStatus::Skipped => CheckStatus::Skipped,
    };
    Ok(CheckExecution {
        id: e.id,
        run_id: e.run_id.clone(),
        status,
        severity: e.severity.map(|s| match s {
            event::CheckSeverity::Warn => Severity::Warn,
            event::CheckSeverity::Error => Severity::Error,
        }),
        partition: e.partition.clone(),
        timestamp: secs(e.evaluated_us.unwrap_or(e.timestamp_us)),
        description: e.description.clone(),
        evaluation_storage_id: e.evaluation_seq,
    })
}

pub struct AssetCheck {
    pub asset_key: AssetKey,
    pub name: String,
    pub summary: checks::CheckSummary,
}

#[Object]
impl AssetCheck {
    async fn name(&self) -> &str {
        &self.name
    }
    async fn asset_key(&self) -> &[String] {
        &self.asset_key.0
    }
    async fn description(&self) -> Option<&str> {
        self.summary
            .definition
            .as_ref()
            .and_then(|d| d.description.as_deref())
    }
    async fn blocking(&self) -> bool {
        self.summary.definition.as_ref().is_some_and(|d| d.blocking)
    }
    async fn latest_execution(&self, c: &Context<'_>) -> Result<Option<CheckExecution>> {
        let c = ctx(c);
        match checks::latest(c.reader(), c.deployment(), &self.asset_key, &self.name)? {
            Some(e) => Ok(Some(check_execution(c, &e)?)),
            None => Ok(None),
        }
    }
    /// Executions, newest first; `cursor` is the `id` of the last one of the previous page.
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn executions(
        &self,
        c: &Context<'_>,
        cursor: Option<u64>,
        #[graphql(default = 25)] limit: usize,
    ) -> Result<Vec<CheckExecution>> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        checks::history(
            c.reader(),
            c.deployment(),
            &self.asset_key,
            &self.name,
            cursor,
            limit,
        )?
        .iter()
        .map(|e| check_execution(c, e))
        .collect()
    }
}

pub struct Asset(pub projection::assets::AssetRecord);

#[Object]
impl Asset {
    /// The key as `a/b/c`.
    async fn id(&self) -> String {
        self.0.key.to_user_string()
    }
    async fn key(&self) -> &[String] {
        &self.0.key.0
    }
    async fn definition(&self) -> Option<AssetDefinition> {
        self.0.definition.as_ref().map(|(loc, d)| AssetDefinition {
            code_location: loc.clone(),
            description: d.description.clone(),
            group_name: d.group_name.clone(),
            owners: d.owners.clone(),
            tags: tags(&d.tags),
            kinds: d.kinds.clone(),
            code_version: d.code_version.clone(),
            automation_condition: d.automation_condition.clone(),
            dependency_keys: d.deps.iter().map(|k| k.0.clone()).collect(),
            job_names: d.job_names.clone(),
            is_source: d.is_source,
            partitions_type: d.partitions.as_ref().map(|p| match p {
                event::PartitionsDefinition::Static { .. } => "STATIC".into(),
                event::PartitionsDefinition::TimeWindow { .. } => "TIME_WINDOW".into(),
                event::PartitionsDefinition::Dynamic { .. } => "DYNAMIC".into(),
                event::PartitionsDefinition::Multi { .. } => "MULTI".into(),
            }),
            metadata: metadata(&d.metadata),
        })
    }
    async fn latest_materialization(&self) -> Option<AssetEvent> {
        self.0.latest_materialization.as_ref().map(Into::into)
    }
    async fn latest_observation(&self) -> Option<AssetEvent> {
        self.0.latest_observation.as_ref().map(Into::into)
    }
    async fn last_run_id(&self) -> Option<&str> {
        self.0.last_run_id()
    }
    async fn materialization_count(&self) -> u64 {
        self.0.materialization_count
    }
    async fn observation_count(&self) -> u64 {
        self.0.observation_count
    }
    /// Unix seconds of the latest wipe.
    async fn wiped_at(&self) -> Option<f64> {
        self.0.wiped_at.map(|(t, _)| secs(t))
    }
    /// Materializations, newest first: by timestamp, then storage id (the first is the
    /// latest materialization however events arrived). `beforeStorageId` resumes after
    /// that event.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn materializations(
        &self,
        c: &Context<'_>,
        partition: Option<String>,
        before_storage_id: Option<u64>,
        after_timestamp: Option<f64>,
        before_timestamp: Option<f64>,
        #[graphql(default = 25)] limit: usize,
    ) -> Result<EventPage> {
        history(
            c,
            &self.0.key,
            materializations::Kind::Materializations,
            partition,
            before_storage_id,
            after_timestamp,
            before_timestamp,
            limit,
        )
    }
    /// Observations, newest first: by timestamp, then storage id (of one partition, if
    /// given). `beforeStorageId` resumes after that event.
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn observations(
        &self,
        c: &Context<'_>,
        partition: Option<String>,
        before_storage_id: Option<u64>,
        after_timestamp: Option<f64>,
        before_timestamp: Option<f64>,
        #[graphql(default = 25)] limit: usize,
    ) -> Result<EventPage> {
        history(
            c,
            &self.0.key,
            materializations::Kind::Observations,
            partition,
            before_storage_id,
            after_timestamp,
            before_timestamp,
            limit,
        )
    }
    async fn partition_stats(&self, c: &Context<'_>) -> Result<PartitionStats> {
        let c = ctx(c);
        let p = partitions::counts(c.reader(), c.deployment(), &self.0.key)?;
        let defined = self
            .0
            .definition
            .as_ref()
            .and_then(|(_, d)| d.partitions.as_ref())
            .and_then(partitions::defined_count);
        Ok(PartitionStats {
            num_known: p.known,
            num_materialized: p.materialized,
            num_failed: p.failed,
            num_materializing: p.in_progress,
            num_partitions: defined,
            num_missing: defined
                .map(|d| d.saturating_sub(p.materialized + p.failed + p.in_progress)),
        })
    }
    /// Partitions in key order, optionally only those with `status`.
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn partitions(
        &self,
        c: &Context<'_>,
        status: Option<PartitionStatus>,
        cursor: Option<String>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<PartitionPage> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        let mut rows = partitions::by_status(
            c.reader(),
            c.deployment(),
            &self.0.key,
            status.map(Into::into),
            cursor.as_deref(),
            limit + 1,
        )?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Ok(PartitionPage {
            cursor: rows.last().map(|(p, _)| p.clone()),
            has_more,
            partitions: rows
                .into_iter()
                .map(|(p, s)| Partition {
                    partition: p,
                    status: s.status.into(),
                    latest_materialization: s.latest_materialization.as_ref().map(Into::into),
                    materialization_count: s.materialization_count,
                })
                .collect(),
        })
    }
    /// `dagster/row_count` over time (or `dagster/partition_row_count` of one partition).
    async fn row_counts(
        &self,
        c: &Context<'_>,
        partition: Option<String>,
        after_timestamp: Option<f64>,
        before_timestamp: Option<f64>,
        #[graphql(default = 1000)] limit: usize,
    ) -> Result<Vec<SeriesPoint>> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        Ok(points(rowcounts::row_counts(
            c.reader(),
            c.deployment(),
            &self.0.key,
            partition.as_deref(),
            us(after_timestamp),
            us(before_timestamp),
            limit,
        )?))
    }
    /// Any other numeric metadata value over time, by label.
    async fn metadata_series(
        &self,
        c: &Context<'_>,
        label: String,
        after_timestamp: Option<f64>,
        before_timestamp: Option<f64>,
        #[graphql(default = 1000)] limit: usize,
    ) -> Result<Vec<SeriesPoint>> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        Ok(points(rowcounts::numeric_series(
            c.reader(),
            c.deployment(),
            &self.0.key,
            &label,
            us(after_timestamp),
            us(before_timestamp),
            limit,
        )?))
    }
    /// Labels that have a numeric series.
    async fn numeric_metadata_labels(&self, c: &Context<'_>) -> Result<Vec<String>> {
        let c = ctx(c);
        Ok(rowcounts::labels(c.reader(), c.deployment(), &self.0.key)?)
    }
    /// The current column schema.
    async fn table_schema(&self, c: &Context<'_>) -> Result<Option<SchemaVersion>> {
        let c = ctx(c);
        Ok(
            schema::current(c.reader(), c.deployment(), &self.0.key)?.map(|(v, s)| SchemaVersion {
                hash: format!("{:016x}", v.hash),
                since: secs(v.since_us),
                since_storage_id: v.since_seq,
                schema: Some((&s).into()),
            }),
        )
    }
    /// Distinct schema versions, oldest first.
    async fn schema_history(&self, c: &Context<'_>) -> Result<Vec<SchemaVersion>> {
        let c = ctx(c);
        schema::versions(c.reader(), c.deployment(), &self.0.key)?
            .into_iter()
            .map(|v| {
                Ok(SchemaVersion {
                    hash: format!("{:016x}", v.hash),
                    since: secs(v.since_us),
                    since_storage_id: v.since_seq,
                    schema: schema::by_hash(c.reader(), c.deployment(), v.hash)?
                        .as_ref()
                        .map(Into::into),
                })
            })
            .collect()
    }
    /// The structural diff between two schema versions (by hash).
    async fn schema_diff(&self, c: &Context<'_>, from: String, to: String) -> Result<SchemaDiff> {
        let c = ctx(c);
        let load = |h: &str| -> Result<event::TableSchema> {
            let n = u64::from_str_radix(h, 16)
                .map_err(|_| async_graphql::Error::new(format!("{h:?} is not a schema hash")))?;
            schema::by_hash(c.reader(), c.deployment(), n)?
                .ok_or_else(|| async_graphql::Error::new(format!("no schema with hash {h}")))
        };
        let d = schema::diff(&load(&from)?, &load(&to)?);
        Ok(SchemaDiff {
            added: d.added.iter().map(column).collect(),
            removed: d.removed.iter().map(column).collect(),
            changed: d
                .changed
                .into_iter()
                .map(|ch| ColumnChange {
                    name: ch.name,
                    old_type: ch.old_type,
                    new_type: ch.new_type,
                    nullable_changed: ch.nullable.is_some(),
                    nullable: ch.nullable.map(|(_, n)| n),
                    unique_changed: ch.unique.is_some(),
                    unique: ch.unique.map(|(_, u)| u),
                    other_constraints: ch.other_constraints.map(|(_, o)| o),
                    description_changed: ch.description_changed,
                })
                .collect(),
            table_constraints_changed: d.table_constraints.is_some(),
        })
    }
    /// Column-level lineage from the latest `dagster/column_lineage`.
    async fn column_lineage(&self, c: &Context<'_>) -> Result<Vec<ColumnLineageEntry>> {
        let c = ctx(c);
        Ok(
            lineage::column_lineage(c.reader(), c.deployment(), &self.0.key)?
                .map(|l| lineage_entries(&l.lineage))
                .unwrap_or_default(),
        )
    }
    async fn upstream(
        &self,
        c: &Context<'_>,
        #[graphql(default = 1)] depth: u32,
        #[graphql(default = 1000)] max_nodes: usize,
    ) -> Result<Lineage> {
        walk(
            c,
            &self.0.key,
            lineage::Direction::Upstream,
            depth,
            max_nodes,
        )
    }
    async fn downstream(
        &self,
        c: &Context<'_>,
        #[graphql(default = 1)] depth: u32,
        #[graphql(default = 1000)] max_nodes: usize,
    ) -> Result<Lineage> {
        walk(
            c,
            &self.0.key,
            lineage::Direction::Downstream,
            depth,
            max_nodes,
        )
    }
    async fn checks(&self, c: &Context<'_>) -> Result<Vec<AssetCheck>> {
        let c = ctx(c);
        Ok(checks::of_asset(c.reader(), c.deployment(), &self.0.key)?
            .into_iter()
            .map(|(name, summary)| AssetCheck {
                asset_key: self.0.key.clone(),
                name,
                summary,
            })
            .collect())
    }
}

fn us(t: Option<f64>) -> Option<i64> {
    t.map(|s| (s * 1e6).round() as i64)
}

#[allow(clippy::too_many_arguments)]
fn history(
    c: &Context<'_>,
    key: &AssetKey,
    kind: materializations::Kind,
    partition: Option<String>,
    before_storage_id: Option<u64>,
    after_timestamp: Option<f64>,
    before_timestamp: Option<f64>,
    limit: usize,
) -> Result<EventPage> {
    let c = ctx(c);
    let limit = page_limit(limit)?;
    let before = match before_storage_id {
        Some(seq) => Some(position_of(c, seq)?),
        None => None,
    };
    let q = materializations::HistoryQuery {
        partition,
        before,
        after_us: us(after_timestamp),
        before_us: us(before_timestamp),
        limit: limit + 1,
    };
    let mut rows = materializations::history(c.reader(), c.deployment(), key, kind, &q)?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    Ok(EventPage {
        cursor: rows.last().map(|r| r.seq),
        has_more,
        events: rows.iter().map(Into::into).collect(),
    })
}

/// Where a history page resumes: the `(timestamp, seq)` of a storage id of this deployment.
fn position_of(c: &super::Ctx, seq: u64) -> Result<(i64, u64)> {
    let unknown = || {
        async_graphql::Error::new(format!(
            "beforeStorageId {seq} is not an event of this deployment"
        ))
    };
    if seq == 0 || seq > c.reader().position()? {
        return Err(unknown());
    }
    c.reader()
        .events(&[seq])?
        .first()
        .filter(|e| e.envelope.deployment == c.deployment())
        .map(|e| (e.envelope.timestamp_us, seq))
        .ok_or_else(unknown)
}

fn walk(
    c: &Context<'_>,
    key: &AssetKey,
    dir: lineage::Direction,
    depth: u32,
    max_nodes: usize,
) -> Result<Lineage> {
    let c = ctx(c);
    if depth > 50 || max_nodes > 100_000 {
        return Err(async_graphql::Error::new(
            "depth is at most 50 and maxNodes at most 100000",
        ));
    }
    let t = lineage::traverse(c.reader(), c.deployment(), key, dir, depth, max_nodes)?;
    Ok(Lineage {
        nodes: t
            .nodes
            .into_iter()
            .map(|(k, d)| LineageNode {
                asset_key: k.0,
                depth: d,
            })
            .collect(),
        edges: t
            .edges
            .into_iter()
            .map(|(a, b)| LineageEdge { from: a.0, to: b.0 })
            .collect(),
        truncated: t.truncated,
    })
}

// ---- runs and backfills ---------------------------------------------------------------

/// `DagsterRunStatus`, the same enum the runs view keeps.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "runs::RunStatus")]
pub enum RunStatus {
    NotStarted,
    Queued,
    Starting,
    Started,
    Canceling,
    Success,
    Failure,
    Canceled,
}

#[derive(SimpleObject)]
pub struct RunStats {
    pub steps_succeeded: u64,
    pub steps_failed: u64,
    pub materializations: u64,
    pub expectations: u64,
    pub events: u64,
}

#[derive(SimpleObject)]
pub struct StepStats {
    pub step_key: String,
    pub status: String,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    pub attempts: u32,
    pub materializations: u64,
}

pub struct Run(pub runs::RunRecord);

#[Object]
impl Run {
    async fn run_id(&self) -> &str {
        &self.0.run_id
    }
    async fn status(&self) -> RunStatus {
        self.0.status.into()
    }
    async fn job_name(&self) -> Option<&str> {
        self.0.job_name.as_deref()
    }
    async fn tags(&self) -> Vec<Tag> {
        self.0
            .tags
            .iter()
            .map(|(k, v)| Tag {
                key: k.clone(),
                value: v.clone(),
            })
            .collect()
    }
    async fn partition(&self) -> Option<&str> {
        self.0.partition()
    }
    async fn backfill_id(&self) -> Option<&str> {
        self.0.backfill_id()
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn creation_time(&self) -> f64 {
        secs(self.0.created_us)
    }
    async fn start_time(&self) -> Option<f64> {
        self.0.start_us.map(secs)
    }
    async fn end_time(&self) -> Option<f64> {
        self.0.end_us.map(secs)
    }
    async fn update_time(&self) -> f64 {
        secs(self.0.update_us)
    }
    async fn stats(&self) -> RunStats {
        RunStats {
            steps_succeeded: self.0.steps_succeeded,
            steps_failed: self.0.steps_failed,
            materializations: self.0.materializations,
            expectations: self.0.expectations,
            events: self.0.events,
        }
    }
    async fn step_stats(&self, c: &Context<'_>) -> Result<Vec<StepStats>> {
        let c = ctx(c);
        Ok(runs::steps(c.reader(), c.deployment(), &self.0.run_id)?
            .into_iter()
            .map(|(k, s)| StepStats {
                step_key: k,
                status: s.status,
                start_time: s.start_us.map(secs),
                end_time: s.end_us.map(secs),
                attempts: s.attempts,
                materializations: s.materializations,
            })
            .collect())
    }
    /// The run's events in order; `afterCursor` is the `cursor` of the previous page.
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn events(
        &self,
        c: &Context<'_>,
        types: Option<Vec<String>>,
        after_cursor: Option<u64>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<RunEventPage> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        let mut from = after_cursor.map(|s| s + 1).unwrap_or(1);
        let mut out = Vec::new();
        let mut has_more = false;
        loop {
            let chunk = c
                .log()
                .read_run(c.deployment(), &self.0.run_id, from, 512)?;
            let done = chunk.len() < 512;
            for (seq, ev) in chunk {
                from = seq + 1;
                if c.at_seq() < seq {
                    break;
                }
                let re = RunEvent::new(seq, ev);
                if types.as_ref().is_none_or(|t| t.contains(&re.event_type)) {
                    if out.len() == limit {
                        has_more = true;
                        break;
                    }
                    out.push(re);
                }
            }
            if done || has_more || from > c.at_seq() {
                break;
            }
        }
        Ok(RunEventPage {
            cursor: out.last().map(|e| e.storage_id),
            has_more,
            events: out,
        })
    }
}

#[derive(SimpleObject)]
pub struct StatusCount {
    pub status: String,
    pub count: u64,
}

#[derive(SimpleObject)]
pub struct PartitionRunStatus {
    pub partition: String,
    pub run_status: String,
}

pub struct Backfill(pub projection::backfills::BackfillRecord);

#[Object]
impl Backfill {
    async fn id(&self) -> &str {
        &self.0.backfill_id
    }
    async fn status(&self) -> &str {
        &self.0.status
    }
    async fn title(&self) -> Option<&str> {
        self.0.title.as_deref()
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn timestamp(&self) -> Option<f64> {
        self.0.created_us.map(secs)
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn asset_selection(&self) -> Vec<Vec<String>> {
        self.0.asset_selection.iter().map(|k| k.0.clone()).collect()
    }
    async fn partition_names(&self) -> &[String] {
        &self.0.partition_names
    }
    async fn num_partitions(&self) -> usize {
        self.0.partition_names.len()
    }
    async fn tags(&self) -> Vec<Tag> {
        tags(&self.0.tags)
    }
    #[graphql(complexity = "limit * child_complexity + 1")]
    async fn runs(
        &self,
        c: &Context<'_>,
        #[graphql(default = 100)] limit: usize,
    ) -> Result<Vec<Run>> {
        let c = ctx(c);
        let limit = page_limit(limit)?;
        let filter = runs::RunFilter {
            backfill_id: Some(self.0.backfill_id.clone()),
            ..Default::default()
        };
        Ok(
            runs::list(c.reader(), c.deployment(), &filter, None, limit)?
                .into_iter()
                .map(Run)
                .collect(),
        )
    }
    /// Runs of the backfill by status.
    async fn run_status_counts(&self, c: &Context<'_>) -> Result<Vec<StatusCount>> {
        let c = ctx(c);
        let p = projection::backfills::progress(c.reader(), c.deployment(), &self.0.backfill_id)?;
        Ok(p.runs_by_status
            .into_iter()
            .map(|(s, n)| StatusCount {
                status: s.into(),
                count: n,
            })
            .collect())
    }
    /// Each targeted partition with the status of its latest run (`MISSING` when none).
    async fn partition_statuses(&self, c: &Context<'_>) -> Result<Vec<PartitionRunStatus>> {
        let c = ctx(c);
        let p = projection::backfills::progress(c.reader(), c.deployment(), &self.0.backfill_id)?;
        let mut names = self.0.partition_names.clone();
        for k in p.partitions.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
        Ok(names
            .into_iter()
            .map(|n| PartitionRunStatus {
                run_status: p.partitions.get(&n).copied().unwrap_or("MISSING").into(),
                partition: n,
            })
            .collect())
    }
}
