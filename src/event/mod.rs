//! The event model: what agents tell assetlog, as typed Rust values.
//!
//! An [`Event`] is an [`Envelope`] (who, when, which run) plus a typed [`EventBody`]. The
//! vocabulary is Dagster's (event type names, metadata kinds, reserved metadata keys), so
//! events produced by real Dagster code translate without loss.
//!
//! These types are what the log stores (postcard, behind the codec byte in
//! [`crate::log::codec`]). **Shipped variants and fields are frozen**: postcard encodes enum
//! variants by index and struct fields by position, so a new kind of event is a new variant
//! appended at the end of its enum, never an edit of an existing one. The golden-bytes tests
//! in `log::codec` fail when a shipped encoding changes.
//!
//! The wire formats (native JSON in [`validate`], Dagster serdes later) are separate types
//! that convert into these.

pub mod json;
pub mod metadata;
pub mod sample;
pub mod types;
pub mod validate;

use serde::{Deserialize, Serialize};

pub use metadata::{
    CodeReference, ColumnDep, ColumnLineage, Metadata, MetadataEntry, MetadataValue, SharedSchema,
    TableColumn, TableSchema,
};
pub use types::EventType;

/// Position of an event in the log: dense, starting at 1, assigned by the writer.
pub type Seq = u64;

/// Internal compact id of a deployment (tenant). Names map to ids in the meta column family.
pub type DeploymentId = u32;

/// An asset key: a non-empty path of non-empty components, e.g. `["warehouse", "orders"]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AssetKey(pub Vec<String>);

impl AssetKey {
    /// The user-facing form, `a/b/c`.
    pub fn to_user_string(&self) -> String {
        self.0.join("/")
    }
}

impl std::fmt::Display for AssetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_user_string())
    }
}

/// Who, when and where: the part every event has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Client-chosen id, unique per deployment; the key of idempotent re-sends.
    pub event_id: String,
    /// The tenant; set from the caller's token, never from the payload.
    pub deployment: DeploymentId,
    /// Event time from the client, microseconds since the Unix epoch (UTC).
    pub timestamp_us: i64,
    /// The run this event belongs to; `None` for run-less events.
    pub run_id: Option<String>,
    /// The step (op) that emitted it, if any.
    pub step_key: Option<String>,
    /// The job of the run, if the client said.
    pub job_name: Option<String>,
    /// Human-readable message (Dagster's `user_message` / `message`).
    pub message: Option<String>,
    /// The bytes the event arrived as, kept when an adapter must hand them back verbatim.
    pub raw: Option<Vec<u8>>,
}

/// One event: envelope plus typed body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub envelope: Envelope,
    pub body: EventBody,
}

impl Event {
    /// The event type, as its canonical Dagster name.
    pub fn event_type(&self) -> EventType {
        self.body.event_type()
    }

    /// About how many ordinary events' worth of view rows it makes: one, but a definitions
    /// event counts each asset and check it defines.
    pub fn weight(&self) -> usize {
        match &self.body {
            EventBody::Definitions(d) => 1 + d.assets.len() + d.checks.len(),
            _ => 1,
        }
    }
}

/// A Python-side error as Dagster reports it (`SerializableErrorInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    pub message: String,
    pub cls_name: Option<String>,
    pub stack: Vec<String>,
    pub cause: Option<Box<ErrorInfo>>,
}

/// The typed part of an event. Frozen: append new variants at the end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// A run lifecycle event (`RUN_*`, legacy `PIPELINE_*`).
    Run(RunEvent),
    /// A step lifecycle event (`STEP_*`).
    Step(StepEvent),
    /// `ASSET_MATERIALIZATION`.
    AssetMaterialization(AssetEvent),
    /// `ASSET_OBSERVATION`.
    AssetObservation(AssetEvent),
    /// `ASSET_MATERIALIZATION_PLANNED`.
    AssetMaterializationPlanned(AssetPlanned),
    /// `ASSET_FAILED_TO_MATERIALIZE`.
    AssetFailedToMaterialize(AssetFailed),
    /// `ASSET_WIPED`: a tombstone for the asset (or some of its partitions).
    AssetWiped(AssetWiped),
    /// `ASSET_CHECK_EVALUATION_PLANNED`.
    AssetCheckPlanned(AssetCheckPlanned),
    /// `ASSET_CHECK_EVALUATION`.
    AssetCheckEvaluation(AssetCheckEvaluation),
    /// `BACKFILL_CREATED`.
    BackfillCreated(Backfill),
    /// `BACKFILL_UPDATED`.
    BackfillUpdated(BackfillUpdate),
    /// `DEFINITIONS`: the asset and check definitions of one code location.
    Definitions(Definitions),
    /// `LOG_MESSAGE`: a plain log line (`context.log.info`).
    LogMessage(LogMessage),
    /// Engine, resource, hook, IO and other informational events: stored and returned.
    Engine(EngineEvent),
    /// A type assetlog does not know yet: stored as given, never rejected for being new.
    Unknown(UnknownEvent),
}

impl EventBody {
    pub fn event_type(&self) -> EventType {
        match self {
            EventBody::Run(r) => r.kind.event_type(),
            EventBody::Step(s) => s.kind.event_type(),
            EventBody::AssetMaterialization(_) => EventType::AssetMaterialization,
            EventBody::AssetObservation(_) => EventType::AssetObservation,
            EventBody::AssetMaterializationPlanned(_) => EventType::AssetMaterializationPlanned,
            EventBody::AssetFailedToMaterialize(_) => EventType::AssetFailedToMaterialize,
            EventBody::AssetWiped(_) => EventType::AssetWiped,
            EventBody::AssetCheckPlanned(_) => EventType::AssetCheckEvaluationPlanned,
            EventBody::AssetCheckEvaluation(_) => EventType::AssetCheckEvaluation,
            EventBody::BackfillCreated(_) => EventType::BackfillCreated,
            EventBody::BackfillUpdated(_) => EventType::BackfillUpdated,
            EventBody::Definitions(_) => EventType::Definitions,
            EventBody::LogMessage(_) => EventType::LogMessage,
            EventBody::Engine(e) => e.kind,
            EventBody::Unknown(_) => EventType::Unknown,
        }
    }

    /// The asset this event is about, for the asset event kinds.
    pub fn asset_key(&self) -> Option<&AssetKey> {
        match self {
            EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => {
                Some(&a.asset_key)
            }
            EventBody::AssetMaterializationPlanned(p) => Some(&p.asset_key),
            EventBody::AssetFailedToMaterialize(f) => Some(&f.asset_key),
            EventBody::AssetWiped(w) => Some(&w.asset_key),
            EventBody::AssetCheckPlanned(c) => Some(&c.asset_key),
            EventBody::AssetCheckEvaluation(c) => Some(&c.asset_key),
            _ => None,
        }
    }
}

/// Which run lifecycle transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunEventKind {
    Enqueued,
    Dequeued,
    Starting,
    Start,
    Success,
    Failure,
    Canceling,
    Canceled,
}

impl RunEventKind {
    pub fn event_type(self) -> EventType {
        match self {
            RunEventKind::Enqueued => EventType::RunEnqueued,
            RunEventKind::Dequeued => EventType::RunDequeued,
            RunEventKind::Starting => EventType::RunStarting,
            RunEventKind::Start => EventType::RunStart,
            RunEventKind::Success => EventType::RunSuccess,
            RunEventKind::Failure => EventType::RunFailure,
            RunEventKind::Canceling => EventType::RunCanceling,
            RunEventKind::Canceled => EventType::RunCanceled,
        }
    }
}

/// A run lifecycle event. The run id is in the envelope (required for these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub kind: RunEventKind,
    /// Run tags known at this point (`dagster/partition`, `dagster/backfill`, ...).
    pub tags: Vec<(String, String)>,
    /// `RunFailureReason` for failures (`STEP_FAILURE`, `RUN_EXCEPTION`, ...).
    pub failure_reason: Option<String>,
    pub error: Option<ErrorInfo>,
    pub code_location: Option<String>,
}

/// Which step lifecycle transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepEventKind {
    Start,
    Success,
    Failure,
    Skipped,
    UpForRetry,
    Restarted,
}

impl StepEventKind {
    pub fn event_type(self) -> EventType {
        match self {
            StepEventKind::Start => EventType::StepStart,
            StepEventKind::Success => EventType::StepSuccess,
            StepEventKind::Failure => EventType::StepFailure,
            StepEventKind::Skipped => EventType::StepSkipped,
            StepEventKind::UpForRetry => EventType::StepUpForRetry,
            StepEventKind::Restarted => EventType::StepRestarted,
        }
    }
}

/// A step lifecycle event. The step key is in the envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub kind: StepEventKind,
    /// `StepSuccessData.duration_ms`.
    pub duration_ms: Option<f64>,
    /// `StepFailureData.error_source` (`USER_CODE_ERROR`, ...).
    pub error_source: Option<String>,
    pub error: Option<ErrorInfo>,
    /// `StepRetryData.seconds_to_wait`.
    pub seconds_to_wait: Option<f64>,
}

/// A materialization or an observation of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetEvent {
    pub asset_key: AssetKey,
    /// Partition key; multi-dimensional keys are `a|b` in dimension-name order.
    pub partition: Option<String>,
    pub description: Option<String>,
    pub metadata: Metadata,
    /// System tags (`dagster/data_version`, `dagster/code_version`, `dagster/partition/<dim>`).
    pub tags: Vec<(String, String)>,
}

/// A planned materialization: one partition, a set of partitions, or the whole asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetPlanned {
    pub asset_key: AssetKey,
    pub partition: Option<String>,
    /// The serialized-subset form of Dagster's planned events, as explicit keys.
    pub partitions: Vec<String>,
}

/// A failed (or skipped) materialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetFailed {
    pub asset_key: AssetKey,
    pub partition: Option<String>,
    /// `AssetMaterializationFailureReason` (`COMPUTE_FAILED`, `UPSTREAM_SKIPPED`, ...).
    pub reason: String,
    pub description: Option<String>,
    pub metadata: Metadata,
    pub error: Option<ErrorInfo>,
}

/// A wipe: every earlier event of the asset (or of the listed partitions) stops counting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetWiped {
    pub asset_key: AssetKey,
    /// Empty means the whole asset.
    pub partition_keys: Vec<String>,
}

/// A planned asset check evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetCheckPlanned {
    pub asset_key: AssetKey,
    pub check_name: String,
    pub partitions: Vec<String>,
}

/// Severity of a failed check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckSeverity {
    Warn,
    Error,
}

/// Which materialization a check evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetMaterialization {
    pub storage_id: u64,
    pub run_id: String,
    pub timestamp_us: i64,
}

/// The result of an asset check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetCheckEvaluation {
    pub asset_key: AssetKey,
    pub check_name: String,
    pub passed: bool,
    pub severity: CheckSeverity,
    pub partition: Option<String>,
    pub description: Option<String>,
    pub blocking: bool,
    pub metadata: Metadata,
    pub target_materialization: Option<TargetMaterialization>,
}

/// A backfill, as created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub backfill_id: String,
    /// `BulkActionStatus` (`REQUESTED`, `COMPLETED_SUCCESS`, ...).
    pub status: String,
    pub asset_selection: Vec<AssetKey>,
    pub partition_names: Vec<String>,
    pub from_failure: bool,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<(String, String)>,
    pub job_name: Option<String>,
}

/// A change to a backfill's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillUpdate {
    pub backfill_id: String,
    pub status: String,
    pub error: Option<ErrorInfo>,
}

/// The definitions of one code location: its assets and checks, the source of asset lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    pub code_location: String,
    pub version: Option<String>,
    pub assets: Vec<AssetDefinition>,
    pub checks: Vec<CheckDefinition>,
}

/// How an asset is partitioned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PartitionsDefinition {
    Static {
        keys: Vec<String>,
    },
    TimeWindow {
        start: String,
        end: Option<String>,
        fmt: String,
        timezone: String,
        cron_schedule: Option<String>,
    },
    Dynamic {
        name: String,
    },
    Multi {
        dimensions: Vec<(String, PartitionsDefinition)>,
    },
}

/// One asset as a code location defines it (`AssetSpec` / `AssetNodeSnap`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetDefinition {
    pub asset_key: AssetKey,
    pub deps: Vec<AssetKey>,
    pub description: Option<String>,
    pub group_name: Option<String>,
    pub owners: Vec<String>,
    pub tags: Vec<(String, String)>,
    pub kinds: Vec<String>,
    pub code_version: Option<String>,
    pub partitions: Option<PartitionsDefinition>,
    pub automation_condition: Option<String>,
    pub metadata: Metadata,
    pub job_names: Vec<String>,
    pub is_source: bool,
}

/// One asset check as a code location defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckDefinition {
    pub asset_key: AssetKey,
    pub name: String,
    pub description: Option<String>,
    pub blocking: bool,
    pub additional_deps: Vec<AssetKey>,
}

/// Python log levels as Dagster sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    /// Python logging level number (10 debug, 20 info, 30 warning, 40 error, 50 critical).
    pub level: u8,
}

/// An informational event: stored and returned, not projected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineEvent {
    pub kind: EventType,
    pub metadata: Metadata,
    pub error: Option<ErrorInfo>,
}

/// An event of a type assetlog does not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnknownEvent {
    /// The type name as the client sent it.
    pub type_name: String,
    /// The rest of the event, as JSON text.
    pub payload_json: String,
}
