//! The native ingest format: JSON in, typed [`Event`]s or a [`ValidationError`] out.
//!
//! Pure functions, no I/O. Every error names the event index and the field path, e.g.
//! `events[3].metadata["dagster/row_count"]: expected a non-negative integer`. A batch is
//! validated as a whole: the first bad event rejects it.
//!
//! Field rules (documented in `schemas/events.schema.json`): unknown fields are rejected
//! (a typo such as `partiton` would otherwise lose data silently) except inside `tags`,
//! `metadata` and events of a type assetlog does not know yet, which are stored as raw.

mod value;

pub use value::{Map, Value};

use super::metadata::{keys, CodeReference, ColumnDep, ColumnLineage, TableColumn, TableSchema};
use super::types::TypeName;
use super::*;

/// Size limits applied while validating; the HTTP layer applies body-level limits before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest string value anywhere in an event, in bytes.
    pub max_string_bytes: usize,
    /// Most metadata entries on one event (or one asset definition).
    pub max_metadata_entries: usize,
    /// Longest event id, in bytes.
    pub max_id_bytes: usize,
    /// Deepest JSON nesting inside one event.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string_bytes: 1 << 20,
            max_metadata_entries: 1000,
            max_id_bytes: 256,
            max_depth: 64,
        }
    }
}

/// What was wrong, without the where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("is required")]
    Missing,
    #[error("expected {0}")]
    Expected(&'static str),
    #[error("unknown field (allowed here: {allowed})")]
    UnknownField { allowed: String },
    #[error("unknown event type {given:?}; did you mean {suggestion:?}?")]
    MisspelledType { given: String, suggestion: String },
    #[error("is {actual} bytes long, over the limit of {limit}")]
    TooLong { actual: usize, limit: usize },
    #[error("has {actual} entries, over the limit of {limit}")]
    TooManyEntries { actual: usize, limit: usize },
    #[error("nests deeper than the limit of {limit}")]
    TooDeep { limit: usize },
    #[error("{0}")]
    Invalid(String),
}

/// A validation failure: where (`events[3].metadata["dagster/row_count"]`) and what.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct ValidationError {
    pub path: String,
    pub problem: Problem,
}

type Result<T> = std::result::Result<T, ValidationError>;

fn err<T>(path: impl Into<String>, problem: Problem) -> Result<T> {
    Err(ValidationError {
        path: path.into(),
        problem,
    })
}

/// Validate a batch of parsed JSON events into typed events for `deployment`.
///
/// Event ids must be unique within the batch (a batch that repeats an id is a client bug,
/// unlike a re-sent batch, which the log deduplicates).
pub fn validate_batch<V: Into<Value>>(
    values: Vec<V>,
    deployment: DeploymentId,
    limits: &Limits,
) -> Result<Vec<Event>> {
    let mut seen = std::collections::HashMap::with_capacity(values.len());
    let mut out = Vec::with_capacity(values.len());
    for (i, v) in values.into_iter().enumerate() {
        let path = format!("events[{i}]");
        let ev = validate_event(v, &path, deployment, limits)?;
        if let Some(first) = seen.insert(ev.envelope.event_id.clone(), i) {
            return err(
                format!("{path}.id"),
                Problem::Invalid(format!(
                    "duplicate id {:?} within one batch (also events[{first}])",
                    ev.envelope.event_id
                )),
            );
        }
        out.push(ev);
    }
    Ok(out)
}

/// Validate one event object found at `path`.
pub fn validate_event(
    value: impl Into<Value>,
    path: &str,
    deployment: DeploymentId,
    limits: &Limits,
) -> Result<Event> {
    let value = value.into();
    check_depth(&value, path, limits.max_depth)?;
    let Value::Object(map) = value else {
        return err(path, Problem::Expected("a JSON object"));
    };
    let mut f = Fields::new(path.to_string(), map, limits);
    let event_id = f.req_str("id")?;
    if event_id.is_empty() {
        return err(f.at("id"), Problem::Invalid("must not be empty".into()));
    }
    if event_id.len() > limits.max_id_bytes {
        return err(
            f.at("id"),
            Problem::TooLong {
                actual: event_id.len(),
                limit: limits.max_id_bytes,
            },
        );
    }
    let type_name = f.req_str("type")?;
    let timestamp_us = f.req_timestamp("timestamp")?;
    let run_id = f.opt_ident("run_id")?;
    let step_key = f.opt_str("step_key")?;
    let job_name = f.opt_str("job_name")?;
    let message = f.opt_str("message")?;

    let event_type = match EventType::parse(&type_name) {
        TypeName::Known(t) => t,
        TypeName::Misspelled { given, suggestion } => {
            return err(
                f.at("type"),
                Problem::MisspelledType {
                    given,
                    suggestion: suggestion.as_str().to_string(),
                },
            )
        }
        TypeName::New(name) => {
            // The payload is every field but the envelope's (the type stays in it). The map
            // is ordered by key, so putting the type back restores the original object.
            let mut payload = std::mem::take(&mut f.map);
            payload.insert("type".into(), Value::String(type_name));
            let body = EventBody::Unknown(UnknownEvent {
                type_name: name,
                payload_json: Value::Object(payload).to_string(),
            });
            return Ok(Event {
                envelope: Envelope {
                    event_id,
                    deployment,
                    timestamp_us,
                    run_id,
                    step_key,
                    job_name,
                    message,
                    raw: None,
                },
                body,
            });
        }
    };

    let needs_run = |f: &Fields| -> Result<()> {
        if run_id.is_none() {
            return err(
                f.at("run_id"),
                Problem::Invalid(format!("is required for {event_type} events")),
            );
        }
        Ok(())
    };

    let body = match event_type {
        t if run_kind(t).is_some() => {
            needs_run(&f)?;
            EventBody::Run(RunEvent {
                kind: run_kind(t).expect("checked by the guard"),
                tags: f.tags("tags")?,
                failure_reason: f.opt_str("failure_reason")?,
                error: f.error_info("error")?,
                code_location: f.opt_str("code_location")?,
            })
        }
        t if step_kind(t).is_some() => {
            needs_run(&f)?;
            if step_key.is_none() {
                return err(
                    f.at("step_key"),
                    Problem::Invalid(format!("is required for {event_type} events")),
                );
            }
            EventBody::Step(StepEvent {
                kind: step_kind(t).expect("checked by the guard"),
                duration_ms: f.opt_f64("duration_ms")?,
                error_source: f.opt_str("error_source")?,
                error: f.error_info("error")?,
                seconds_to_wait: f.opt_f64("seconds_to_wait")?,
            })
        }
        EventType::AssetMaterialization | EventType::AssetObservation => {
            let a = AssetEvent {
                asset_key: f.req_asset_key("asset_key")?,
                partition: f.opt_ident("partition")?,
                description: f.opt_str("description")?,
                metadata: f.metadata("metadata")?,
                tags: f.tags("tags")?,
            };
            if event_type == EventType::AssetMaterialization {
                EventBody::AssetMaterialization(a)
            } else {
                EventBody::AssetObservation(a)
            }
        }
        EventType::AssetMaterializationPlanned => {
            EventBody::AssetMaterializationPlanned(AssetPlanned {
                asset_key: f.req_asset_key("asset_key")?,
                partition: f.opt_ident("partition")?,
                partitions: f.str_list("partitions")?,
            })
        }
        EventType::AssetFailedToMaterialize => EventBody::AssetFailedToMaterialize(AssetFailed {
            asset_key: f.req_asset_key("asset_key")?,
            partition: f.opt_ident("partition")?,
            reason: f.opt_str("reason")?.unwrap_or_else(|| "UNKNOWN".into()),
            description: f.opt_str("description")?,
            metadata: f.metadata("metadata")?,
            error: f.error_info("error")?,
        }),
        EventType::AssetWiped => EventBody::AssetWiped(AssetWiped {
            asset_key: f.req_asset_key("asset_key")?,
            partition_keys: f.str_list("partition_keys")?,
        }),
        EventType::AssetCheckEvaluationPlanned => EventBody::AssetCheckPlanned(AssetCheckPlanned {
            asset_key: f.req_asset_key("asset_key")?,
            check_name: f.req_str("check_name")?,
            partitions: f.str_list("partitions")?,
        }),
        EventType::AssetCheckEvaluation => {
            let severity = match f.opt_str("severity")?.as_deref() {
                None | Some("ERROR") => CheckSeverity::Error,
                Some("WARN") => CheckSeverity::Warn,
                Some(_) => {
                    return err(f.at("severity"), Problem::Expected("\"WARN\" or \"ERROR\""))
                }
            };
            let target = match f.opt_obj("target_materialization")? {
                None => None,
                Some(mut t) => {
                    let tm = TargetMaterialization {
                        storage_id: t.req_u64("storage_id")?,
                        run_id: t.req_str("run_id")?,
                        timestamp_us: t.req_timestamp("timestamp")?,
                    };
                    t.finish()?;
                    Some(tm)
                }
            };
            EventBody::AssetCheckEvaluation(AssetCheckEvaluation {
                asset_key: f.req_asset_key("asset_key")?,
                check_name: f.req_str("check_name")?,
                passed: f.req_bool("passed")?,
                severity,
                partition: f.opt_ident("partition")?,
                description: f.opt_str("description")?,
                blocking: f.opt_bool("blocking")?.unwrap_or(false),
                metadata: f.metadata("metadata")?,
                target_materialization: target,
            })
        }
        EventType::BackfillCreated => EventBody::BackfillCreated(Backfill {
            backfill_id: f.req_str("backfill_id")?,
            status: f
                .opt_status("status")?
                .unwrap_or_else(|| "REQUESTED".into()),
            asset_selection: f.asset_key_list("asset_selection")?,
            partition_names: f.str_list("partition_names")?,
            from_failure: f.opt_bool("from_failure")?.unwrap_or(false),
            title: f.opt_str("title")?,
            description: f.opt_str("description")?,
            tags: f.tags("tags")?,
            job_name: f.opt_str("backfill_job_name")?,
        }),
        EventType::BackfillUpdated => EventBody::BackfillUpdated(BackfillUpdate {
            backfill_id: f.req_str("backfill_id")?,
            status: match f.opt_status("status")? {
                Some(s) => s,
                None => return err(f.at("status"), Problem::Missing),
            },
            error: f.error_info("error")?,
        }),
        EventType::Definitions => {
            let code_location = f.req_str("code_location")?;
            let version = f.opt_str("version")?;
            let mut assets = Vec::new();
            for mut a in f.obj_list("assets")? {
                assets.push(AssetDefinition {
                    asset_key: a.req_asset_key("asset_key")?,
                    deps: a.asset_key_list("deps")?,
                    description: a.opt_str("description")?,
                    group_name: a.opt_str("group_name")?,
                    owners: a.str_list("owners")?,
                    tags: a.tags("tags")?,
                    kinds: a.str_list("kinds")?,
                    code_version: a.opt_str("code_version")?,
                    partitions: a.partitions_def("partitions")?,
                    automation_condition: a.opt_str("automation_condition")?,
                    metadata: a.metadata("metadata")?,
                    job_names: a.str_list("job_names")?,
                    is_source: a.opt_bool("is_source")?.unwrap_or(false),
                });
                a.finish()?;
            }
            let mut checks = Vec::new();
            for mut c in f.obj_list("checks")? {
                checks.push(CheckDefinition {
                    asset_key: c.req_asset_key("asset_key")?,
                    name: c.req_str("name")?,
                    description: c.opt_str("description")?,
                    blocking: c.opt_bool("blocking")?.unwrap_or(false),
                    additional_deps: c.asset_key_list("additional_deps")?,
                });
                c.finish()?;
            }
            EventBody::Definitions(Definitions {
                code_location,
                version,
                assets,
                checks,
            })
        }
        EventType::LogMessage => {
            if message.is_none() {
                return err(
                    f.at("message"),
                    Problem::Invalid("is required for LOG_MESSAGE events".into()),
                );
            }
            EventBody::LogMessage(LogMessage {
                level: f.log_level("level")?,
            })
        }
        t if t.is_engine() => EventBody::Engine(EngineEvent {
            kind: t,
            metadata: f.metadata("metadata")?,
            error: f.error_info("error")?,
        }),
        other => {
            return err(
                f.at("type"),
                Problem::Invalid(format!("{other} cannot be sent by clients")),
            )
        }
    };
    f.finish()?;
    Ok(Event {
        envelope: Envelope {
            event_id,
            deployment,
            timestamp_us,
            run_id,
            step_key,
            job_name,
            message,
            raw: None,
        },
        body,
    })
}

fn run_kind(t: EventType) -> Option<RunEventKind> {
    Some(match t {
        EventType::RunEnqueued => RunEventKind::Enqueued,
        EventType::RunDequeued => RunEventKind::Dequeued,
        EventType::RunStarting => RunEventKind::Starting,
        EventType::RunStart => RunEventKind::Start,
        EventType::RunSuccess => RunEventKind::Success,
        EventType::RunFailure => RunEventKind::Failure,
        EventType::RunCanceling => RunEventKind::Canceling,
        EventType::RunCanceled => RunEventKind::Canceled,
        _ => return None,
    })
}

fn step_kind(t: EventType) -> Option<StepEventKind> {
    Some(match t {
        EventType::StepStart => StepEventKind::Start,
        EventType::StepSuccess => StepEventKind::Success,
        EventType::StepFailure => StepEventKind::Failure,
        EventType::StepSkipped => StepEventKind::Skipped,
        EventType::StepUpForRetry => StepEventKind::UpForRetry,
        EventType::StepRestarted => StepEventKind::Restarted,
        _ => return None,
    })
}

/// Reject values nested deeper than `limit` (iteratively, so a hostile value cannot
/// overflow the stack here).
fn check_depth(value: &Value, path: &str, limit: usize) -> Result<()> {
    let mut stack = vec![(value, 1usize)];
    while let Some((v, d)) = stack.pop() {
        if d > limit {
            return err(path, Problem::TooDeep { limit });
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, d + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, d + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// Parse an RFC 3339 string or Unix seconds into microseconds since the epoch.
pub fn parse_timestamp(v: &Value) -> std::result::Result<i64, &'static str> {
    const EXPECTED: &str = "an RFC 3339 timestamp string or Unix seconds";
    match v {
        Value::Number(n) => {
            let secs = n.as_f64().ok_or(EXPECTED)?;
            if !(0.0..=253_402_300_799.0).contains(&secs) {
                return Err("Unix seconds between 1970 and 9999");
            }
            Ok((secs * 1_000_000.0).round() as i64)
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|_| EXPECTED),
        _ => Err(EXPECTED),
    }
}

/// A cursor over one JSON object's fields; each `take` removes a field, `finish` rejects
/// whatever is left.
struct Fields<'l> {
    path: String,
    map: Map,
    taken: Vec<&'static str>,
    limits: &'l Limits,
}

impl<'l> Fields<'l> {
    fn new(path: String, map: Map, limits: &'l Limits) -> Self {
        Fields {
            path,
            map,
            taken: Vec::new(),
            limits,
        }
    }

    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.taken.push(key);
        match self.map.remove(key) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn finish(self) -> Result<()> {
        if let Some(k) = self.map.keys().next() {
            let mut allowed = self.taken.clone();
            allowed.sort_unstable();
            allowed.dedup();
            return err(
                format!("{}.{k}", self.path),
                Problem::UnknownField {
                    allowed: allowed.join(", "),
                },
            );
        }
        Ok(())
    }

    /// Is `s` within the string limit? The path is built only for the error.
    fn check_len(&self, path: impl FnOnce() -> String, s: &str) -> Result<()> {
        if s.len() > self.limits.max_string_bytes {
            return err(
                path(),
                Problem::TooLong {
                    actual: s.len(),
                    limit: self.limits.max_string_bytes,
                },
            );
        }
        Ok(())
    }

    fn opt_str(&mut self, key: &'static str) -> Result<Option<String>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                self.check_len(|| self.at(key), &s)?;
                Ok(Some(s))
            }
            Some(_) => err(self.at(key), Problem::Expected("a string")),
        }
    }

    fn req_str(&mut self, key: &'static str) -> Result<String> {
        match self.opt_str(key)? {
            Some(s) => Ok(s),
            None => err(self.at(key), Problem::Missing),
        }
    }

    /// An identifier-like string (run id, partition key): non-empty, no NUL (keys are
    /// NUL-terminated in the store).
    fn opt_ident(&mut self, key: &'static str) -> Result<Option<String>> {
        let s = self.opt_str(key)?;
        if let Some(s) = &s {
            if s.is_empty() || s.contains('\0') {
                return err(
                    self.at(key),
                    Problem::Invalid("must be non-empty and contain no NUL character".into()),
                );
            }
            if s.len() > self.limits.max_id_bytes {
                return err(
                    self.at(key),
                    Problem::TooLong {
                        actual: s.len(),
                        limit: self.limits.max_id_bytes,
                    },
                );
            }
        }
        Ok(s)
    }

    fn opt_status(&mut self, key: &'static str) -> Result<Option<String>> {
        const STATUSES: [&str; 7] = [
            "REQUESTED",
            "COMPLETED",
            "FAILED",
            "CANCELING",
            "CANCELED",
            "COMPLETED_SUCCESS",
            "COMPLETED_FAILED",
        ];
        let s = self.opt_str(key)?;
        if let Some(s) = &s {
            if !STATUSES.contains(&s.as_str()) {
                return err(
                    self.at(key),
                    Problem::Invalid(format!(
                        "unknown backfill status {s:?} (one of {})",
                        STATUSES.join(", ")
                    )),
                );
            }
        }
        Ok(s)
    }

    fn opt_bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(_) => err(self.at(key), Problem::Expected("true or false")),
        }
    }

    fn req_bool(&mut self, key: &'static str) -> Result<bool> {
        match self.opt_bool(key)? {
            Some(b) => Ok(b),
            None => err(self.at(key), Problem::Missing),
        }
    }

    fn opt_f64(&mut self, key: &'static str) -> Result<Option<f64>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(_) => err(self.at(key), Problem::Expected("a number")),
        }
    }

    fn req_u64(&mut self, key: &'static str) -> Result<u64> {
        match self.take(key) {
            None => err(self.at(key), Problem::Missing),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64().unwrap_or_default()),
            Some(_) => err(self.at(key), Problem::Expected("a non-negative integer")),
        }
    }

    fn req_timestamp(&mut self, key: &'static str) -> Result<i64> {
        match self.take(key) {
            None => err(self.at(key), Problem::Missing),
            Some(v) => parse_timestamp(&v).or_else(|e| err(self.at(key), Problem::Expected(e))),
        }
    }

    fn log_level(&mut self, key: &'static str) -> Result<u8> {
        match self.take(key) {
            None => Ok(20),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(l) if l <= 50 => Ok(l as u8),
                _ => err(self.at(key), Problem::Expected("a log level from 0 to 50")),
            },
            Some(Value::String(s)) => match s.to_ascii_uppercase().as_str() {
                "DEBUG" => Ok(10),
                "INFO" => Ok(20),
                "WARNING" | "WARN" => Ok(30),
                "ERROR" => Ok(40),
                "CRITICAL" => Ok(50),
                _ => err(
                    self.at(key),
                    Problem::Expected("DEBUG, INFO, WARNING, ERROR or CRITICAL"),
                ),
            },
            Some(_) => err(
                self.at(key),
                Problem::Expected("a log level name or number"),
            ),
        }
    }

    fn str_list(&mut self, key: &'static str) -> Result<Vec<String>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => {
                        self.check_len(|| format!("{}[{i}]", self.at(key)), &s)?;
                        Ok(s)
                    }
                    _ => err(
                        format!("{}[{i}]", self.at(key)),
                        Problem::Expected("a string"),
                    ),
                })
                .collect(),
            Some(_) => err(self.at(key), Problem::Expected("an array of strings")),
        }
    }

    fn tags(&mut self, key: &'static str) -> Result<Vec<(String, String)>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Object(o)) => {
                if o.len() > self.limits.max_metadata_entries {
                    return err(
                        self.at(key),
                        Problem::TooManyEntries {
                            actual: o.len(),
                            limit: self.limits.max_metadata_entries,
                        },
                    );
                }
                o.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(s) => {
                            self.check_len(|| format!("{}[{k:?}]", self.at(key)), &s)?;
                            Ok((k, s))
                        }
                        _ => err(
                            format!("{}[{k:?}]", self.at(key)),
                            Problem::Expected("a string"),
                        ),
                    })
                    .collect()
            }
            Some(_) => err(
                self.at(key),
                Problem::Expected("an object of string values"),
            ),
        }
    }

    fn req_asset_key(&mut self, key: &'static str) -> Result<AssetKey> {
        match self.take(key) {
            None => err(self.at(key), Problem::Missing),
            Some(v) => parse_asset_key(v, || self.at(key), self.limits),
        }
    }

    fn asset_key_list(&mut self, key: &'static str) -> Result<Vec<AssetKey>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .into_iter()
                .enumerate()
                .map(|(i, v)| parse_asset_key(v, || format!("{}[{i}]", self.at(key)), self.limits))
                .collect(),
            Some(_) => err(self.at(key), Problem::Expected("an array of asset keys")),
        }
    }

    fn opt_obj(&mut self, key: &'static str) -> Result<Option<Fields<'l>>> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(Fields::new(self.at(key), o, self.limits))),
            Some(_) => err(self.at(key), Problem::Expected("an object")),
        }
    }

    fn obj_list(&mut self, key: &'static str) -> Result<Vec<Fields<'l>>> {
        match self.take(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => {
                let path = self.at(key);
                a.into_iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::Object(o) => Ok(Fields::new(format!("{path}[{i}]"), o, self.limits)),
                        _ => err(format!("{path}[{i}]"), Problem::Expected("an object")),
                    })
                    .collect()
            }
            Some(_) => err(self.at(key), Problem::Expected("an array of objects")),
        }
    }

    fn error_info(&mut self, key: &'static str) -> Result<Option<ErrorInfo>> {
        match self.opt_obj(key)? {
            None => Ok(None),
            Some(mut e) => {
                let info = ErrorInfo {
                    message: e.req_str("message")?,
                    cls_name: e.opt_str("cls_name")?,
                    stack: e.str_list("stack")?,
                    cause: e.error_info("cause")?.map(Box::new),
                };
                e.finish()?;
                Ok(Some(info))
            }
        }
    }

    fn partitions_def(&mut self, key: &'static str) -> Result<Option<PartitionsDefinition>> {
        match self.opt_obj(key)? {
            None => Ok(None),
            Some(p) => Ok(Some(parse_partitions_def(p)?)),
        }
    }

    fn metadata(&mut self, key: &'static str) -> Result<Metadata> {
        match self.take(key) {
            None => Ok(Metadata::default()),
            Some(Value::Object(o)) => {
                let path = self.at(key);
                if o.len() > self.limits.max_metadata_entries {
                    return err(
                        path,
                        Problem::TooManyEntries {
                            actual: o.len(),
                            limit: self.limits.max_metadata_entries,
                        },
                    );
                }
                let mut entries = Vec::with_capacity(o.len());
                for (label, v) in o {
                    let p = || format!("{path}[{label:?}]");
                    self.check_len(p, &label)?;
                    let value = parse_metadata_value(v, p, self.limits)?;
                    check_reserved(&label, &value, p)?;
                    entries.push(MetadataEntry { label, value });
                }
                Ok(Metadata(entries))
            }
            Some(_) => err(
                self.at(key),
                Problem::Expected("an object of metadata values"),
            ),
        }
    }
}

/// An asset key at the path `path()` (built only for an error).
fn parse_asset_key(v: Value, path: impl Fn() -> String, limits: &Limits) -> Result<AssetKey> {
    let parts: Vec<String> = match v {
        Value::String(s) => s.split('/').map(str::to_string).collect(),
        Value::Array(a) => {
            let mut parts = Vec::with_capacity(a.len());
            for (i, p) in a.into_iter().enumerate() {
                match p {
                    Value::String(s) => parts.push(s),
                    _ => return err(format!("{}[{i}]", path()), Problem::Expected("a string")),
                }
            }
            parts
        }
        _ => {
            return err(
                path(),
                Problem::Expected("an asset key: an array of strings or \"a/b/c\""),
            )
        }
    };
    if parts.is_empty() || parts.iter().any(|p| p.is_empty() || p.contains('\0')) {
        return err(
            path(),
            Problem::Invalid(
                "an asset key needs at least one component, each non-empty and without NUL".into(),
            ),
        );
    }
    let total: usize = parts.iter().map(|p| p.len() + 1).sum();
    if total > limits.max_id_bytes * 4 {
        return err(
            path(),
            Problem::TooLong {
                actual: total,
                limit: limits.max_id_bytes * 4,
            },
        );
    }
    Ok(AssetKey(parts))
}

fn parse_partitions_def(mut p: Fields<'_>) -> Result<PartitionsDefinition> {
    let kind = p.req_str("type")?;
    let def = match kind.as_str() {
        "static" => PartitionsDefinition::Static {
            keys: p.str_list("keys")?,
        },
        "time_window" => PartitionsDefinition::TimeWindow {
            start: p.req_str("start")?,
            end: p.opt_str("end")?,
            fmt: p.opt_str("fmt")?.unwrap_or_else(|| "%Y-%m-%d".into()),
            timezone: p.opt_str("timezone")?.unwrap_or_else(|| "UTC".into()),
            cron_schedule: p.opt_str("cron_schedule")?,
        },
        "dynamic" => PartitionsDefinition::Dynamic {
            name: p.req_str("name")?,
        },
        "multi" => {
            let path = p.at("dimensions");
            let dims = match p.take("dimensions") {
                Some(Value::Object(o)) => o,
                _ => {
                    return err(
                        path,
                        Problem::Expected("an object of dimension definitions"),
                    )
                }
            };
            let mut dimensions = Vec::with_capacity(dims.len());
            for (name, d) in dims {
                let dp = format!("{path}[{name:?}]");
                let Value::Object(o) = d else {
                    return err(dp, Problem::Expected("a partitions definition object"));
                };
                dimensions.push((name, parse_partitions_def(Fields::new(dp, o, p.limits))?));
            }
            PartitionsDefinition::Multi { dimensions }
        }
        _ => {
            return err(
                p.at("type"),
                Problem::Expected("one of static, time_window, dynamic, multi"),
            )
        }
    };
    p.finish()?;
    Ok(def)
}

/// The reserved `dagster/*` keys must hold the kind they are defined with.
fn check_reserved(label: &str, value: &MetadataValue, path: impl FnOnce() -> String) -> Result<()> {
    let ok = match label {
        keys::ROW_COUNT | keys::PARTITION_ROW_COUNT => {
            return match value {
                MetadataValue::Int(Some(n)) if *n >= 0 => Ok(()),
                _ => err(path(), Problem::Expected("a non-negative integer")),
            }
        }
        keys::COLUMN_SCHEMA => matches!(value, MetadataValue::TableSchema(_)),
        keys::COLUMN_LINEAGE => matches!(value, MetadataValue::ColumnLineage(_)),
        keys::TABLE_NAME | keys::URI => matches!(
            value,
            MetadataValue::Text(_) | MetadataValue::Url(_) | MetadataValue::Path(_)
        ),
        keys::CODE_REFERENCES => matches!(value, MetadataValue::CodeReferences(_)),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        let expected = match label {
            keys::COLUMN_SCHEMA => "a table_schema value",
            keys::COLUMN_LINEAGE => "a column_lineage value",
            keys::CODE_REFERENCES => "a code_references value",
            _ => "a string",
        };
        err(path(), Problem::Expected(expected))
    }
}

/// Parse one metadata value. Shorthands: a JSON string is text, an integer is int, another
/// number is float, a boolean is bool, null is null, an array is json. An object must name
/// its kind: `{"type": "table_schema", ...}`.
///
/// `path()` is where the value sits, built only when needed (an error, or a nested object).
pub fn parse_metadata_value(
    v: Value,
    path: impl Fn() -> String,
    limits: &Limits,
) -> Result<MetadataValue> {
    let len_ok = |s: &str| -> Result<()> {
        if s.len() > limits.max_string_bytes {
            return err(
                path(),
                Problem::TooLong {
                    actual: s.len(),
                    limit: limits.max_string_bytes,
                },
            );
        }
        Ok(())
    };
    match v {
        Value::Null => Ok(MetadataValue::Null),
        Value::Bool(b) => Ok(MetadataValue::Bool(Some(b))),
        Value::Number(n) => Ok(number_value(&n)),
        Value::String(s) => {
            len_ok(&s)?;
            Ok(MetadataValue::Text(s))
        }
        Value::Array(_) => {
            let text = v.to_string();
            len_ok(&text)?;
            Ok(MetadataValue::Json(text))
        }
        Value::Object(o) => {
            let mut f = Fields::new(path(), o, limits);
            let kind = f.req_str("type")?;
            let value = match kind.as_str() {
                "text" => MetadataValue::Text(f.req_str("value")?),
                "url" => MetadataValue::Url(f.req_str("value")?),
                "path" => MetadataValue::Path(f.req_str("value")?),
                "notebook" => MetadataValue::Notebook(f.req_str("value")?),
                "markdown" => MetadataValue::Markdown(f.req_str("value")?),
                "json" => {
                    let text = f.take("value").unwrap_or(Value::Null).to_string();
                    len_ok(&text)?;
                    MetadataValue::Json(text)
                }
                "python_artifact" => MetadataValue::PythonArtifact {
                    module: f.req_str("module")?,
                    name: f.req_str("name")?,
                },
                "float" => MetadataValue::Float(match f.take("value") {
                    None => None,
                    Some(Value::Number(n)) => n.as_f64(),
                    Some(Value::String(s)) => match s.as_str() {
                        "NaN" | "nan" => Some(f64::NAN),
                        "inf" | "Infinity" => Some(f64::INFINITY),
                        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
                        _ => {
                            return err(
                                f.at("value"),
                                Problem::Expected("a number, \"NaN\", \"inf\" or \"-inf\""),
                            )
                        }
                    },
                    Some(_) => return err(f.at("value"), Problem::Expected("a number")),
                }),
                "int" => match f.take("value") {
                    None => MetadataValue::Int(None),
                    Some(Value::Number(n)) if n.is_i64() => MetadataValue::Int(n.as_i64()),
                    Some(Value::Number(n)) if n.is_u64() => MetadataValue::BigInt(n.to_string()),
                    Some(Value::String(s))
                        if !s.is_empty()
                            && s.trim_start_matches('-')
                                .bytes()
                                .all(|b| b.is_ascii_digit()) =>
                    {
                        match s.parse::<i64>() {
                            Ok(i) => MetadataValue::Int(Some(i)),
                            Err(_) => MetadataValue::BigInt(s),
                        }
                    }
                    Some(_) => return err(f.at("value"), Problem::Expected("an integer")),
                },
                "bool" => MetadataValue::Bool(f.opt_bool("value")?),
                "timestamp" => match f.take("value") {
                    Some(v) => MetadataValue::Timestamp(
                        parse_timestamp(&v).or_else(|e| err(f.at("value"), Problem::Expected(e)))?
                            as f64
                            / 1e6,
                    ),
                    None => return err(f.at("value"), Problem::Missing),
                },
                "run" => MetadataValue::DagsterRun {
                    run_id: f.req_str("run_id")?,
                },
                "job" => MetadataValue::DagsterJob {
                    job_name: f.req_str("job_name")?,
                    location_name: f.opt_str("location_name")?,
                    repository_name: f.opt_str("repository_name")?,
                },
                "asset" => MetadataValue::Asset(f.req_asset_key("asset_key")?),
                "table" => {
                    let schema = match f.opt_obj("schema")? {
                        Some(s) => Some(parse_table_schema(s)?),
                        None => None,
                    };
                    let rpath = f.at("records");
                    let records = match f.take("records") {
                        None => Vec::new(),
                        Some(Value::Array(a)) => a
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| match r {
                                Value::Object(_) => Ok(r.to_string()),
                                _ => err(format!("{rpath}[{i}]"), Problem::Expected("an object")),
                            })
                            .collect::<Result<_>>()?,
                        Some(_) => return err(rpath, Problem::Expected("an array of objects")),
                    };
                    MetadataValue::Table { schema, records }
                }
                "table_schema" => {
                    f.taken.push("type");
                    let schema = parse_table_schema(f)?;
                    return Ok(MetadataValue::TableSchema(schema.into()));
                }
                "column_lineage" => MetadataValue::ColumnLineage(parse_lineage(&mut f)?),
                "null" => MetadataValue::Null,
                "code_references" => MetadataValue::CodeReferences(parse_code_refs(&mut f)?),
                "pool" => MetadataValue::Pool(f.req_str("pool")?),
                "code_location_reconstruction" => {
                    MetadataValue::CodeLocationReconstruction(f.req_str("data")?)
                }
                other => {
                    return err(
                        format!("{}.type", path()),
                        Problem::Invalid(format!(
                            "unknown metadata kind {other:?} (one of text, url, path, notebook, \
                             json, markdown, python_artifact, float, int, bool, timestamp, run, \
                             job, asset, table, table_schema, column_lineage, null, \
                             code_references, pool, code_location_reconstruction)"
                        )),
                    )
                }
            };
            f.finish()?;
            Ok(value)
        }
    }
}

fn number_value(n: &value::Number) -> MetadataValue {
    if let Some(i) = n.as_i64() {
        MetadataValue::Int(Some(i))
    } else if n.is_u64() {
        MetadataValue::BigInt(n.to_string())
    } else {
        MetadataValue::Float(n.as_f64())
    }
}

/// `{"columns": [...], "constraints": ["..."]}` (the `type` key already taken when nested
/// as a metadata value).
fn parse_table_schema(mut f: Fields<'_>) -> Result<TableSchema> {
    let mut columns = Vec::new();
    for mut c in f.obj_list("columns")? {
        let mut col = TableColumn {
            name: c.req_str("name")?,
            data_type: c.opt_str("type")?.unwrap_or_else(|| "string".into()),
            description: c.opt_str("description")?,
            nullable: true,
            unique: false,
            other_constraints: Vec::new(),
            tags: c.tags("tags")?,
        };
        if let Some(mut k) = c.opt_obj("constraints")? {
            col.nullable = k.opt_bool("nullable")?.unwrap_or(true);
            col.unique = k.opt_bool("unique")?.unwrap_or(false);
            col.other_constraints = k.str_list("other")?;
            k.finish()?;
        }
        c.finish()?;
        columns.push(col);
    }
    let constraints = f.str_list("constraints")?;
    f.finish()?;
    Ok(TableSchema::new(columns, constraints))
}

fn parse_lineage(f: &mut Fields<'_>) -> Result<ColumnLineage> {
    let path = f.at("deps_by_column");
    let Some(Value::Object(cols)) = f.take("deps_by_column") else {
        return err(
            path,
            Problem::Expected("an object of column name to dependency list"),
        );
    };
    let mut deps_by_column = Vec::with_capacity(cols.len());
    for (col, deps) in cols {
        let cp = format!("{path}[{col:?}]");
        let Value::Array(deps) = deps else {
            return err(
                cp,
                Problem::Expected("an array of {asset_key, column_name}"),
            );
        };
        let mut list = Vec::with_capacity(deps.len());
        for (i, d) in deps.into_iter().enumerate() {
            let dp = format!("{cp}[{i}]");
            let Value::Object(o) = d else {
                return err(dp, Problem::Expected("an object {asset_key, column_name}"));
            };
            let mut df = Fields::new(dp, o, f.limits);
            list.push(ColumnDep {
                asset_key: df.req_asset_key("asset_key")?,
                column_name: df.req_str("column_name")?,
            });
            df.finish()?;
        }
        list.sort();
        list.dedup();
        deps_by_column.push((col, list));
    }
    deps_by_column.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ColumnLineage { deps_by_column })
}

fn parse_code_refs(f: &mut Fields<'_>) -> Result<Vec<CodeReference>> {
    let mut out = Vec::new();
    for mut r in f.obj_list("code_references")? {
        let reference = if r.map.get("url").is_some() {
            CodeReference::Url {
                url: r.req_str("url")?,
                label: r.opt_str("label")?,
            }
        } else {
            let line_number = match r.take("line_number") {
                None => None,
                Some(Value::Number(n)) if n.as_u64().is_some_and(|l| l <= u32::MAX as u64) => {
                    n.as_u64().map(|l| l as u32)
                }
                Some(_) => return err(r.at("line_number"), Problem::Expected("a line number")),
            };
            CodeReference::LocalFile {
                file_path: r.req_str("file_path")?,
                line_number,
                label: r.opt_str("label")?,
            }
        };
        r.finish()?;
        out.push(reference);
    }
    Ok(out)
}

/// Split a request body into event values: a JSON array of events, or NDJSON (one event
/// object per line; blank lines ignored). Errors name the line for NDJSON.
pub fn parse_body(body: &[u8]) -> Result<Vec<Value>> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => err(
            "body",
            Problem::Invalid("is empty; send a JSON array or NDJSON".into()),
        ),
        Some(b'[') => match serde_json::from_slice::<Vec<Value>>(body) {
            Ok(v) => Ok(v),
            Err(e) => err("body", Problem::Invalid(format!("invalid JSON: {e}"))),
        },
        Some(b'{') => {
            let mut out = Vec::new();
            for (i, line) in body.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                match serde_json::from_slice::<Value>(line) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        return err(
                            format!("body line {}", i + 1),
                            Problem::Invalid(format!("invalid JSON: {e}")),
                        )
                    }
                }
            }
            Ok(out)
        }
        Some(_) => err(
            "body",
            Problem::Invalid(
                "must be a JSON array of events or NDJSON (one object per line)".into(),
            ),
        ),
    }
}

#[cfg(test)]
mod tests;
