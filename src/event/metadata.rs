//! Metadata values: Dagster's metadata kinds and the reserved `dagster/*` keys.

use serde::{Deserialize, Serialize};

use super::AssetKey;

/// Reserved keys whose values assetlog parses into typed values and projects.
pub mod keys {
    pub const ROW_COUNT: &str = "dagster/row_count";
    pub const PARTITION_ROW_COUNT: &str = "dagster/partition_row_count";
    pub const COLUMN_SCHEMA: &str = "dagster/column_schema";
    pub const COLUMN_LINEAGE: &str = "dagster/column_lineage";
    pub const TABLE_NAME: &str = "dagster/table_name";
    pub const URI: &str = "dagster/uri";
    pub const CODE_REFERENCES: &str = "dagster/code_references";
}

/// An ordered list of labelled values (labels unique; order as the client sent it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata(pub Vec<MetadataEntry>);

/// One labelled value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataEntry {
    pub label: String,
    pub value: MetadataValue,
}

/// Every metadata kind Dagster has. Frozen: append new variants at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MetadataValue {
    Text(String),
    Url(String),
    Path(String),
    Notebook(String),
    /// Free JSON, kept as its text (postcard cannot hold a self-describing value).
    Json(String),
    Markdown(String),
    PythonArtifact {
        module: String,
        name: String,
    },
    /// May be null, NaN or infinite, as in Dagster.
    Float(Option<f64>),
    Int(Option<i64>),
    Bool(Option<bool>),
    /// Unix seconds.
    Timestamp(f64),
    DagsterRun {
        run_id: String,
    },
    DagsterJob {
        job_name: String,
        location_name: Option<String>,
        repository_name: Option<String>,
    },
    Asset(AssetKey),
    Table {
        schema: Option<TableSchema>,
        /// Each record as JSON object text.
        records: Vec<String>,
    },
    TableSchema(TableSchema),
    ColumnLineage(ColumnLineage),
    Null,
    CodeReferences(Vec<CodeReference>),
    Pool(String),
    CodeLocationReconstruction(String),
    /// An integer beyond 64 bits, kept as its decimal text (Dagster's ints are unbounded).
    BigInt(String),
}

impl MetadataValue {
    /// The kind's name in the native JSON format (`{"type": "<kind>", ...}`).
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataValue::Text(_) => "text",
            MetadataValue::Url(_) => "url",
            MetadataValue::Path(_) => "path",
            MetadataValue::Notebook(_) => "notebook",
            MetadataValue::Json(_) => "json",
            MetadataValue::Markdown(_) => "markdown",
            MetadataValue::PythonArtifact { .. } => "python_artifact",
            MetadataValue::Float(_) => "float",
            MetadataValue::Int(_) | MetadataValue::BigInt(_) => "int",
            MetadataValue::Bool(_) => "bool",
            MetadataValue::Timestamp(_) => "timestamp",
            MetadataValue::DagsterRun { .. } => "run",
            MetadataValue::DagsterJob { .. } => "job",
            MetadataValue::Asset(_) => "asset",
            MetadataValue::Table { .. } => "table",
            MetadataValue::TableSchema(_) => "table_schema",
            MetadataValue::ColumnLineage(_) => "column_lineage",
            MetadataValue::Null => "null",
            MetadataValue::CodeReferences(_) => "code_references",
            MetadataValue::Pool(_) => "pool",
            MetadataValue::CodeLocationReconstruction(_) => "code_location_reconstruction",
        }
    }

    /// The value as a number, for numeric series (ints, floats, timestamps).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetadataValue::Int(Some(i)) => Some(*i as f64),
            MetadataValue::Float(Some(f)) if f.is_finite() => Some(*f),
            _ => None,
        }
    }
}

/// `TableSchema{columns, constraints}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableSchema {
    pub columns: Vec<TableColumn>,
    /// Table-level constraints (`TableConstraints.other`).
    pub constraints: Vec<String>,
    /// The schema's content hash once the views have taken it ([`TableSchema::hash_with`]).
    #[serde(skip)]
    hash: HashSlot,
}

impl TableSchema {
    pub fn new(columns: Vec<TableColumn>, constraints: Vec<String>) -> TableSchema {
        TableSchema {
            columns,
            constraints,
            hash: HashSlot::default(),
        }
    }

    /// `hash(self)`, computed by the first caller (on any thread) and kept: the views hash
    /// every schema they store, and the writer's helper thread hashes a request's schemas
    /// while the writer projects it. A schema must not be changed once hashed (events are
    /// not changed once built); a clone starts without the hash.
    pub fn hash_with(&self, hash: impl FnOnce(&TableSchema) -> u64) -> u64 {
        *self.hash.0.get_or_init(|| hash(self))
    }
}

/// A hash kept beside the value it was taken of. Not part of the value: not stored, not
/// compared, not cloned.
#[derive(Default)]
struct HashSlot(std::sync::OnceLock<u64>);

impl Clone for HashSlot {
    fn clone(&self) -> HashSlot {
        HashSlot::default()
    }
}

impl PartialEq for HashSlot {
    fn eq(&self, _: &HashSlot) -> bool {
        true
    }
}

impl Eq for HashSlot {}

impl std::hash::Hash for HashSlot {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl std::fmt::Debug for HashSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("_")
    }
}

/// `TableColumn` with its constraints flattened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableColumn {
    pub name: String,
    /// Free-form type name; Dagster's default is `string`.
    pub data_type: String,
    pub description: Option<String>,
    pub nullable: bool,
    pub unique: bool,
    pub other_constraints: Vec<String>,
    pub tags: Vec<(String, String)>,
}

/// `TableColumnLineage`: for each column, the upstream columns it derives from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnLineage {
    /// Sorted by column name; deps sorted by (asset key, column) and unique.
    pub deps_by_column: Vec<(String, Vec<ColumnDep>)>,
}

/// `TableColumnDep{asset_key, column_name}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ColumnDep {
    pub asset_key: AssetKey,
    pub column_name: String,
}

/// Where an asset's code lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CodeReference {
    LocalFile {
        file_path: String,
        line_number: Option<u32>,
        label: Option<String>,
    },
    Url {
        url: String,
        label: Option<String>,
    },
}

impl Metadata {
    pub fn get(&self, label: &str) -> Option<&MetadataValue> {
        self.0.iter().find(|e| e.label == label).map(|e| &e.value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `dagster/row_count` (validated non-negative at ingest).
    pub fn row_count(&self) -> Option<i64> {
        match self.get(keys::ROW_COUNT) {
            Some(MetadataValue::Int(Some(n))) => Some(*n),
            _ => None,
        }
    }

    /// `dagster/partition_row_count`.
    pub fn partition_row_count(&self) -> Option<i64> {
        match self.get(keys::PARTITION_ROW_COUNT) {
            Some(MetadataValue::Int(Some(n))) => Some(*n),
            _ => None,
        }
    }

    /// `dagster/column_schema`.
    pub fn column_schema(&self) -> Option<&TableSchema> {
        match self.get(keys::COLUMN_SCHEMA) {
            Some(MetadataValue::TableSchema(s)) => Some(s),
            _ => None,
        }
    }

    /// `dagster/column_lineage`.
    pub fn column_lineage(&self) -> Option<&ColumnLineage> {
        match self.get(keys::COLUMN_LINEAGE) {
            Some(MetadataValue::ColumnLineage(l)) => Some(l),
            _ => None,
        }
    }

    /// `dagster/table_name` (or the legacy `dagster/relation_identifier`).
    pub fn table_name(&self) -> Option<&str> {
        match self
            .get(keys::TABLE_NAME)
            .or_else(|| self.get("dagster/relation_identifier"))
        {
            Some(MetadataValue::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// `dagster/uri`.
    pub fn uri(&self) -> Option<&str> {
        match self.get(keys::URI) {
            Some(MetadataValue::Text(s) | MetadataValue::Url(s) | MetadataValue::Path(s)) => {
                Some(s)
            }
            _ => None,
        }
    }

    /// `dagster/code_references`.
    pub fn code_references(&self) -> Option<&[CodeReference]> {
        match self.get(keys::CODE_REFERENCES) {
            Some(MetadataValue::CodeReferences(r)) => Some(r),
            _ => None,
        }
    }
}
