//! Dagster's serialized events (serdes JSON) to and from assetlog.
//!
//! Every event the client sends is kept as a serdes `EventLogEntry` object (the form
//! `POST /store_events` carries; the GraphQL `EventLogEntryInput` form is converted into
//! it) in the event's `raw` bytes, and read responses are rebuilt from those bytes. The
//! typed body comes from translating the entry into assetlog's native JSON format and
//! validating that, so Dagster's events land in the same views as native ones. An entry
//! that does not translate (a class assetlog does not know, a shape it does not expect) is
//! stored as an event of unknown type with its bytes, and still read back unchanged.

use serde_json::{json, Map, Value};

use crate::event::validate::{validate_event, Limits};
use crate::event::{DeploymentId, Envelope, Event, EventBody, UnknownEvent};

fn str_of(v: &Value) -> Option<&str> {
    v.as_str().filter(|s| !s.is_empty())
}

/// `"a.b"` (a node handle's id) as a serdes `SolidHandle`.
fn solid_handle(id: &str) -> Value {
    id.split('.').fold(
        Value::Null,
        |parent, name| json!({"__class__": "SolidHandle", "name": name, "parent": parent}),
    )
}

fn error_info(e: &Value) -> Value {
    if e.is_null() {
        return Value::Null;
    }
    json!({
        "__class__": "SerializableErrorInfo",
        "message": e.get("message").cloned().unwrap_or(json!("")),
        "stack": e.get("stack").cloned().unwrap_or(json!([])),
        "cls_name": e.get("clsName").cloned().unwrap_or(Value::Null),
        "cause": e.get("cause").map(error_info).unwrap_or(Value::Null),
        "context": e.get("context").map(error_info).unwrap_or(Value::Null),
    })
}

/// A GraphQL `EventLogEntryInput` as the serdes `EventLogEntry` it stands for.
pub fn input_to_entry(input: &Value) -> Value {
    let g = |k: &str| input.get(k).cloned().unwrap_or(Value::Null);
    let dagster_event = match input.get("dagsterEvent") {
        Some(d) if d.is_object() => {
            let dg = |k: &str| d.get(k).cloned().unwrap_or(Value::Null);
            let step_handle = match (str_of(&dg("stepHandleKey")), str_of(&dg("solidHandleId"))) {
                (Some(key), Some(node)) => {
                    json!({"__class__": "StepHandle", "key": key, "solid_handle": solid_handle(node)})
                }
                _ => Value::Null,
            };
            let parse_json = |k: &str| {
                d.get(k)
                    .and_then(Value::as_str)
                    .and_then(|s| serde_json::from_str::<Value>(s).ok())
            };
            json!({
                "__class__": "DagsterEvent",
                "event_type_value": dg("eventTypeValue"),
                "pipeline_name": dg("pipelineName"),
                "step_handle": step_handle,
                "solid_handle": str_of(&dg("solidHandleId")).map(solid_handle).unwrap_or(Value::Null),
                "step_kind_value": dg("stepKindValue"),
                "logging_tags": parse_json("loggingTags").unwrap_or(json!({})),
                "event_specific_data": parse_json("eventSpecificData").unwrap_or(Value::Null),
                "message": dg("message"),
                "pid": dg("pid"),
                "step_key": dg("stepKey"),
            })
        }
        _ => Value::Null,
    };
    json!({
        "__class__": "EventLogEntry",
        "dagster_event": dagster_event,
        "error_info": error_info(&g("errorInfo")),
        "level": g("level"),
        "message": "",
        "pipeline_name": g("pipelineName"),
        "run_id": g("runId"),
        "step_key": g("stepKey"),
        "timestamp": g("timestamp"),
        "user_message": g("userMessage"),
    })
}

/// A JSON number that Python reads as a float (it must have a fraction or an exponent).
pub fn float(x: f64) -> Value {
    // serde_json writes whole f64 values with ".0".
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// The GraphQL `EventLogEntry` the client reads, from a stored serdes entry.
pub fn entry_output(entry: &Value) -> Value {
    let g = |k: &str| entry.get(k).cloned().unwrap_or(Value::Null);
    let as_string = |v: Value| match v {
        Value::Null => Value::Null,
        v => Value::String(v.to_string()),
    };
    json!({
        "errorInfo": as_string(g("error_info")),
        "level": g("level").as_i64().unwrap_or(20),
        "userMessage": g("user_message").as_str().unwrap_or(""),
        "runId": g("run_id").as_str().unwrap_or(""),
        "timestamp": float(g("timestamp").as_f64().unwrap_or(0.0)),
        "stepKey": g("step_key"),
        "pipelineName": g("pipeline_name"),
        "dagsterEvent": as_string(g("dagster_event")),
    })
}

/// One serdes metadata value (`IntMetadataEntryData`, ...) as a native metadata value.
fn metadata_value(v: &Value) -> Value {
    let class = v.get("__class__").and_then(Value::as_str).unwrap_or("");
    let f = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let kind = class
        .trim_end_matches("MetadataEntryData")
        .trim_end_matches("MetadataValue");
    match kind {
        "Int" => json!({"type": "int", "value": f("value")}),
        "Float" => json!({"type": "float", "value": f("value")}),
        "Bool" => json!({"type": "bool", "value": f("value")}),
        "Text" => json!({"type": "text", "value": f("text")}),
        "Url" => json!({"type": "url", "value": f("url")}),
        "Path" => json!({"type": "path", "value": f("path")}),
        "Notebook" => json!({"type": "notebook", "value": f("path")}),
        "Markdown" => json!({"type": "markdown", "value": f("md_str")}),
        "Json" => json!({"type": "json", "value": f("data")}),
        "Timestamp" => json!({"type": "timestamp", "value": f("value")}),
        "DagsterRun" => json!({"type": "run", "run_id": f("run_id")}),
        "DagsterAsset" => {
            json!({"type": "asset", "asset_key": f("asset_key").get("path").cloned().unwrap_or(Value::Null)})
        }
        "Null" => json!({"type": "null"}),
        "Pool" => json!({"type": "pool", "pool": f("pool")}),
        "PythonArtifact" => {
            json!({"type": "python_artifact", "module": f("module"), "name": f("name")})
        }
        "TableSchema" => table_schema(&f("schema")),
        "TableColumnLineage" => {
            let deps = f("column_lineage")
                .get("deps_by_column")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(col, deps)| {
                            let deps: Vec<Value> = deps
                                .as_array()
                                .into_iter()
                                .flatten()
                                .map(|d| {
                                    json!({
                                        "asset_key": d.get("asset_key").and_then(|k| k.get("path")).cloned().unwrap_or(Value::Null),
                                        "column_name": d.get("column_name").cloned().unwrap_or(Value::Null),
                                    })
                                })
                                .collect();
                            (col.clone(), Value::Array(deps))
                        })
                        .collect::<Map<String, Value>>()
                })
                .unwrap_or_default();
            json!({"type": "column_lineage", "deps_by_column": deps})
        }
        // Anything else keeps its serdes form as free JSON.
        _ => json!({"type": "json", "value": v}),
    }
}

fn table_schema(s: &Value) -> Value {
    let columns: Vec<Value> = s
        .get("columns")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let cons = c.get("constraints").cloned().unwrap_or(json!({}));
            json!({
                "name": c.get("name").cloned().unwrap_or(Value::Null),
                "type": c.get("type").cloned().unwrap_or(json!("string")),
                "description": c.get("description").cloned().unwrap_or(Value::Null),
                "constraints": {
                    "nullable": cons.get("nullable").cloned().unwrap_or(json!(true)),
                    "unique": cons.get("unique").cloned().unwrap_or(json!(false)),
                    "other": cons.get("other").cloned().unwrap_or(json!([])),
                },
            })
        })
        .collect();
    let constraints = s
        .get("constraints")
        .and_then(|c| c.get("other"))
        .cloned()
        .unwrap_or(json!([]));
    json!({"type": "table_schema", "columns": columns, "constraints": constraints})
}

/// Legacy `metadata_entries` lists and `metadata` dicts, as a native metadata object.
fn metadata(obj: &Value) -> Value {
    let mut out = Map::new();
    if let Some(entries) = obj.get("metadata_entries").and_then(Value::as_array) {
        for e in entries {
            if let (Some(label), Some(data)) =
                (e.get("label").and_then(Value::as_str), e.get("entry_data"))
            {
                out.insert(label.to_string(), metadata_value(data));
            }
        }
    }
    if let Some(m) = obj.get("metadata").and_then(Value::as_object) {
        for (label, v) in m {
            out.insert(label.clone(), metadata_value(v));
        }
    }
    Value::Object(out)
}

fn asset_key(v: &Value) -> Value {
    v.get("asset_key")
        .and_then(|k| k.get("path"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Partition keys of a serdes partitions subset: a `DefaultPartitionsSubset` lists them; a
/// `TimeWindowPartitionsSubset` of a UTC hourly, daily, weekly or monthly definition is
/// expanded from its time windows. Other subsets give no keys.
pub fn subset_keys(v: &Value) -> Vec<String> {
    if let Some(keys) = v
        .get("subset")
        .and_then(|s| s.get("__set__").or(s.get("__frozenset__")))
        .and_then(Value::as_array)
    {
        return keys
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
    }
    let Some(def) = v.get("partitions_def") else {
        return Vec::new();
    };
    let utc = def.get("timezone").and_then(Value::as_str) == Some("UTC");
    let fmt = def.get("fmt").and_then(Value::as_str).unwrap_or("%Y-%m-%d");
    let cron = def
        .get("cron_schedule")
        .and_then(Value::as_str)
        .unwrap_or("");
    let fields: Vec<&str> = cron.split_whitespace().collect();
    let step = match fields.as_slice() {
        [_, "*", "*", "*", "*"] => Step::Hours(1),
        [_, _, "*", "*", "*"] => Step::Hours(24),
        [_, _, "*", "*", _] => Step::Hours(24 * 7),
        [_, _, _, "*", "*"] => Step::Months(1),
        _ => return Vec::new(),
    };
    if !utc {
        return Vec::new();
    }
    let ts = |w: &Value, k: &str| w.get(k)?.get("timestamp")?.as_f64();
    let mut out = Vec::new();
    for w in v
        .get("included_time_windows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(start), Some(end)) = (ts(w, "start"), ts(w, "end")) else {
            continue;
        };
        let Some(mut t) = chrono::DateTime::from_timestamp(start as i64, 0) else {
            continue;
        };
        // A window holds at most a few thousand partitions; stop there regardless.
        while (t.timestamp() as f64) < end && out.len() < 100_000 {
            out.push(t.format(fmt).to_string());
            t = match step {
                Step::Hours(h) => t + chrono::Duration::hours(h),
                Step::Months(m) => match t.checked_add_months(chrono::Months::new(m)) {
                    Some(n) => n,
                    None => break,
                },
            };
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Step {
    Hours(i64),
    Months(u32),
}

fn enum_member(v: &Value) -> Option<&str> {
    v.get("__enum__")
        .and_then(Value::as_str)
        .and_then(|s| s.rsplit('.').next())
}

/// The serdes entry as a native-format event (for validation into the typed model).
fn to_native(entry: &Value, id: &str) -> Option<Value> {
    let de = entry.get("dagster_event").filter(|d| d.is_object());
    let ts = entry.get("timestamp").and_then(Value::as_f64)?;
    let mut ev = Map::new();
    ev.insert("id".into(), json!(id));
    ev.insert("timestamp".into(), json!(ts));
    for (native, serdes) in [
        ("run_id", "run_id"),
        ("step_key", "step_key"),
        ("job_name", "pipeline_name"),
        ("message", "user_message"),
    ] {
        if let Some(s) = entry.get(serdes).and_then(str_of) {
            ev.insert(native.into(), json!(s));
        }
    }
    let Some(de) = de else {
        ev.insert("type".into(), json!("LOG_MESSAGE"));
        ev.insert(
            "level".into(),
            entry.get("level").cloned().unwrap_or(json!(20)),
        );
        return Some(Value::Object(ev));
    };
    let t = de.get("event_type_value").and_then(Value::as_str)?;
    ev.insert("type".into(), json!(t));
    let data = de
        .get("event_specific_data")
        .cloned()
        .unwrap_or(Value::Null);
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            ev.insert(k.into(), v);
        }
    };
    match t {
        "ASSET_MATERIALIZATION" | "ASSET_OBSERVATION" => {
            let a = data
                .get("materialization")
                .or(data.get("asset_observation"))?;
            put("asset_key", asset_key(a));
            put(
                "partition",
                a.get("partition").cloned().unwrap_or(Value::Null),
            );
            put(
                "description",
                a.get("description").cloned().unwrap_or(Value::Null),
            );
            put("metadata", metadata(a));
            put("tags", a.get("tags").cloned().unwrap_or(Value::Null));
        }
        "ASSET_MATERIALIZATION_PLANNED" | "ASSET_CHECK_EVALUATION_PLANNED" => {
            put("asset_key", asset_key(&data));
            for k in ["partition", "check_name"] {
                put(k, data.get(k).cloned().unwrap_or(Value::Null));
            }
            let keys = data
                .get("partitions_subset")
                .map(subset_keys)
                .unwrap_or_default();
            if !keys.is_empty() {
                put("partitions", json!(keys));
            }
        }
        "ASSET_CHECK_EVALUATION" => {
            put("asset_key", asset_key(&data));
            put(
                "check_name",
                data.get("check_name").cloned().unwrap_or(Value::Null),
            );
            put(
                "passed",
                data.get("success").cloned().unwrap_or(json!(false)),
            );
            if let Some(s) = data.get("severity").and_then(enum_member) {
                put("severity", json!(s));
            }
            put(
                "partition",
                data.get("partition").cloned().unwrap_or(Value::Null),
            );
            put(
                "description",
                data.get("description").cloned().unwrap_or(Value::Null),
            );
            put(
                "blocking",
                data.get("blocking").cloned().unwrap_or(Value::Null),
            );
            put("metadata", metadata(&data));
            if let Some(tm) = data
                .get("target_materialization_data")
                .filter(|v| v.is_object())
            {
                put(
                    "target_materialization",
                    json!({"storage_id": tm.get("storage_id"), "run_id": tm.get("run_id"),
                           "timestamp": tm.get("timestamp")}),
                );
            }
        }
        "STEP_SUCCESS" => put(
            "duration_ms",
            data.get("duration_ms").cloned().unwrap_or(Value::Null),
        ),
        "PIPELINE_FAILURE" | "RUN_FAILURE" => {
            if let Some(r) = data.get("failure_reason").and_then(enum_member) {
                put("failure_reason", json!(r));
            }
        }
        _ => {}
    }
    Some(Value::Object(ev))
}

/// The typed event for a serdes entry, keeping the entry's bytes. Never fails: what does not
/// translate is stored as an event of unknown type.
///
/// `run_tags` are the tags of the event's run as `addRun` stored them; run lifecycle events
/// carry them into the runs view (partition, backfill, user tags).
pub fn to_event(
    entry: &Value,
    id: String,
    deployment: DeploymentId,
    limits: &Limits,
    run_tags: Option<&Value>,
) -> Event {
    let raw = serde_json::to_vec(entry).unwrap_or_default();
    let typed = to_native(entry, &id)
        .map(|mut native| {
            let is_run_event = native
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.starts_with("PIPELINE_") || t.starts_with("RUN_"));
            if let (true, Some(tags), Some(obj)) = (is_run_event, run_tags, native.as_object_mut())
            {
                let tags: Map<String, Value> = tags
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(_, v)| v.is_string())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                obj.insert("tags".into(), Value::Object(tags));
            }
            native
        })
        .and_then(|native| validate_event(native, "dagsterEvent", deployment, limits).ok());
    let mut ev = typed.unwrap_or_else(|| {
        let type_name = entry
            .get("dagster_event")
            .and_then(|d| d.get("event_type_value"))
            .and_then(Value::as_str)
            .unwrap_or("DAGSTER_LOG")
            .to_string();
        Event {
            envelope: Envelope {
                event_id: id,
                deployment,
                timestamp_us: entry
                    .get("timestamp")
                    .and_then(Value::as_f64)
                    .map_or(0, |t| (t * 1e6) as i64),
                run_id: entry.get("run_id").and_then(str_of).map(str::to_string),
                step_key: entry.get("step_key").and_then(str_of).map(str::to_string),
                job_name: entry
                    .get("pipeline_name")
                    .and_then(str_of)
                    .map(str::to_string),
                message: entry
                    .get("user_message")
                    .and_then(str_of)
                    .map(str::to_string),
                raw: None,
            },
            body: EventBody::Unknown(UnknownEvent {
                type_name,
                payload_json: String::new(),
            }),
        }
    });
    ev.envelope.raw = Some(raw);
    ev
}

/// The Dagster event type name of a stored event (`PIPELINE_*` for run events, as Dagster
/// spells them on the wire), from its serdes entry; `None` for plain log lines.
pub fn event_type_of(entry: &Value) -> Option<&str> {
    entry
        .get("dagster_event")
        .and_then(|d| d.get("event_type_value"))
        .and_then(Value::as_str)
}
