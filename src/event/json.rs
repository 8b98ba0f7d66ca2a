//! Typed events back to the native JSON format: the inverse of [`super::validate`].
//!
//! `validate_event(to_json(e)) == e` for every event (a property test checks it), so what
//! `assetlog log` prints can be appended again.

use serde_json::{json, Map, Value};

use super::*;

/// Render microseconds since the epoch as RFC 3339 UTC with microseconds.
pub fn format_timestamp(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .unwrap_or_else(|| us.to_string())
}

fn key(k: &AssetKey) -> Value {
    json!(k.0)
}

fn tags(t: &[(String, String)]) -> Value {
    Value::Object(t.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn error(e: &ErrorInfo) -> Value {
    let mut m = Map::new();
    m.insert("message".into(), json!(e.message));
    if let Some(c) = &e.cls_name {
        m.insert("cls_name".into(), json!(c));
    }
    if !e.stack.is_empty() {
        m.insert("stack".into(), json!(e.stack));
    }
    if let Some(c) = &e.cause {
        m.insert("cause".into(), error(c));
    }
    Value::Object(m)
}

/// Metadata as the native JSON object (always the explicit `{"type": ...}` form).
pub fn metadata(md: &Metadata) -> Value {
    Value::Object(
        md.0.iter()
            .map(|e| (e.label.clone(), metadata_value(&e.value)))
            .collect(),
    )
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        json!("NaN")
    } else if f == f64::INFINITY {
        json!("inf")
    } else if f == f64::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(f)
    }
}

/// One metadata value in the explicit form.
pub fn metadata_value(v: &MetadataValue) -> Value {
    let kind = v.kind();
    let mut m = Map::new();
    m.insert("type".into(), json!(kind));
    let mut put = |k: &str, v: Value| {
        m.insert(k.into(), v);
    };
    match v {
        MetadataValue::Text(s)
        | MetadataValue::Url(s)
        | MetadataValue::Path(s)
        | MetadataValue::Notebook(s)
        | MetadataValue::Markdown(s) => put("value", json!(s)),
        MetadataValue::Json(s) => put(
            "value",
            serde_json::from_str(s).unwrap_or_else(|_| json!(s)),
        ),
        MetadataValue::PythonArtifact { module, name } => {
            put("module", json!(module));
            put("name", json!(name));
        }
        MetadataValue::Float(f) => put("value", f.map(float).unwrap_or(Value::Null)),
        MetadataValue::Int(i) => put("value", json!(i)),
        MetadataValue::BigInt(s) => put("value", json!(s)),
        MetadataValue::Bool(b) => put("value", json!(b)),
        MetadataValue::Timestamp(t) => put("value", json!(t)),
        MetadataValue::DagsterRun { run_id } => put("run_id", json!(run_id)),
        MetadataValue::DagsterJob {
            job_name,
            location_name,
            repository_name,
        } => {
            put("job_name", json!(job_name));
            if let Some(l) = location_name {
                put("location_name", json!(l));
            }
            if let Some(r) = repository_name {
                put("repository_name", json!(r));
            }
        }
        MetadataValue::Asset(k) => put("asset_key", key(k)),
        MetadataValue::Table { schema, records } => {
            if let Some(s) = schema {
                put("schema", table_schema(s));
            }
            put(
                "records",
                Value::Array(
                    records
                        .iter()
                        .map(|r| serde_json::from_str(r).unwrap_or(Value::Null))
                        .collect(),
                ),
            );
        }
        MetadataValue::TableSchema(s) => {
            if let Value::Object(o) = table_schema(s) {
                for (k, v) in o {
                    put(&k, v);
                }
            }
        }
        MetadataValue::ColumnLineage(l) => put(
            "deps_by_column",
            Value::Object(
                l.deps_by_column
                    .iter()
                    .map(|(c, deps)| {
                        (
                            c.clone(),
                            Value::Array(
                                deps.iter()
                                    .map(|d| json!({"asset_key": d.asset_key.0, "column_name": d.column_name}))
                                    .collect(),
                            ),
                        )
                    })
                    .collect(),
            ),
        ),
        MetadataValue::Null => {}
        MetadataValue::CodeReferences(refs) => put(
            "code_references",
            Value::Array(
                refs.iter()
                    .map(|r| match r {
                        CodeReference::LocalFile {
                            file_path,
                            line_number,
                            label,
                        } => {
                            let mut o = json!({"file_path": file_path});
                            if let Some(l) = line_number {
                                o["line_number"] = json!(l);
                            }
                            if let Some(l) = label {
                                o["label"] = json!(l);
                            }
                            o
                        }
                        CodeReference::Url { url, label } => {
                            let mut o = json!({"url": url});
                            if let Some(l) = label {
                                o["label"] = json!(l);
                            }
                            o
                        }
                    })
                    .collect(),
            ),
        ),
        MetadataValue::Pool(p) => put("pool", json!(p)),
        MetadataValue::CodeLocationReconstruction(d) => put("data", json!(d)),
    }
    Value::Object(m)
}

fn table_schema(s: &TableSchema) -> Value {
    let columns: Vec<Value> = s
        .columns
        .iter()
        .map(|c| {
            let mut o = json!({
                "name": c.name,
                "type": c.data_type,
                "constraints": {"nullable": c.nullable, "unique": c.unique, "other": c.other_constraints},
            });
            if let Some(d) = &c.description {
                o["description"] = json!(d);
            }
            if !c.tags.is_empty() {
                o["tags"] = tags(&c.tags);
            }
            o
        })
        .collect();
    json!({"columns": columns, "constraints": s.constraints})
}

fn partitions_def(p: &PartitionsDefinition) -> Value {
    match p {
        PartitionsDefinition::Static { keys } => json!({"type": "static", "keys": keys}),
        PartitionsDefinition::TimeWindow {
            start,
            end,
            fmt,
            timezone,
            cron_schedule,
        } => json!({"type": "time_window", "start": start, "end": end, "fmt": fmt,
                    "timezone": timezone, "cron_schedule": cron_schedule}),
        PartitionsDefinition::Dynamic { name } => json!({"type": "dynamic", "name": name}),
        PartitionsDefinition::Multi { dimensions } => json!({
            "type": "multi",
            "dimensions": Value::Object(dimensions.iter().map(|(n, d)| (n.clone(), partitions_def(d))).collect()),
        }),
    }
}

/// The event in the native ingest format.
pub fn to_json(e: &Event) -> Value {
    let env = &e.envelope;
    let mut m = Map::new();
    m.insert("id".into(), json!(env.event_id));
    let type_name = match &e.body {
        EventBody::Unknown(u) => u.type_name.clone(),
        b => b.event_type().as_str().to_string(),
    };
    m.insert("type".into(), json!(type_name));
    m.insert(
        "timestamp".into(),
        json!(format_timestamp(env.timestamp_us)),
    );
    for (k, v) in [
        ("run_id", &env.run_id),
        ("step_key", &env.step_key),
        ("job_name", &env.job_name),
        ("message", &env.message),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    }
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    };
    let opt = |s: &Option<String>| s.as_ref().map(|s| json!(s)).unwrap_or(Value::Null);
    let list = |l: &[String]| if l.is_empty() { Value::Null } else { json!(l) };
    let keys = |l: &[AssetKey]| {
        if l.is_empty() {
            Value::Null
        } else {
            Value::Array(l.iter().map(key).collect())
        }
    };
    let tagmap = |t: &[(String, String)]| if t.is_empty() { Value::Null } else { tags(t) };
    let md = |x: &Metadata| {
        if x.is_empty() {
            Value::Null
        } else {
            metadata(x)
        }
    };
    let err = |x: &Option<ErrorInfo>| x.as_ref().map(error).unwrap_or(Value::Null);
    match &e.body {
        EventBody::Run(r) => {
            put("tags", tagmap(&r.tags));
            put("failure_reason", opt(&r.failure_reason));
            put("error", err(&r.error));
            put("code_location", opt(&r.code_location));
        }
        EventBody::Step(s) => {
            put("duration_ms", json!(s.duration_ms));
            put("error_source", opt(&s.error_source));
            put("error", err(&s.error));
            put("seconds_to_wait", json!(s.seconds_to_wait));
        }
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => {
            put("asset_key", key(&a.asset_key));
            put("partition", opt(&a.partition));
            put("description", opt(&a.description));
            put("metadata", md(&a.metadata));
            put("tags", tagmap(&a.tags));
        }
        EventBody::AssetMaterializationPlanned(p) => {
            put("asset_key", key(&p.asset_key));
            put("partition", opt(&p.partition));
            put("partitions", list(&p.partitions));
        }
        EventBody::AssetFailedToMaterialize(f) => {
            put("asset_key", key(&f.asset_key));
            put("partition", opt(&f.partition));
            put("reason", json!(f.reason));
            put("description", opt(&f.description));
            put("metadata", md(&f.metadata));
            put("error", err(&f.error));
        }
        EventBody::AssetWiped(w) => {
            put("asset_key", key(&w.asset_key));
            put("partition_keys", list(&w.partition_keys));
        }
        EventBody::AssetCheckPlanned(c) => {
            put("asset_key", key(&c.asset_key));
            put("check_name", json!(c.check_name));
            put("partitions", list(&c.partitions));
        }
        EventBody::AssetCheckEvaluation(c) => {
            put("asset_key", key(&c.asset_key));
            put("check_name", json!(c.check_name));
            put("passed", json!(c.passed));
            put(
                "severity",
                json!(match c.severity {
                    CheckSeverity::Warn => "WARN",
                    CheckSeverity::Error => "ERROR",
                }),
            );
            put("partition", opt(&c.partition));
            put("description", opt(&c.description));
            put("blocking", json!(c.blocking));
            put("metadata", md(&c.metadata));
            if let Some(t) = &c.target_materialization {
                put(
                    "target_materialization",
                    json!({"storage_id": t.storage_id, "run_id": t.run_id,
                           "timestamp": format_timestamp(t.timestamp_us)}),
                );
            }
        }
        EventBody::BackfillCreated(b) => {
            put("backfill_id", json!(b.backfill_id));
            put("status", json!(b.status));
            put("asset_selection", keys(&b.asset_selection));
            put("partition_names", list(&b.partition_names));
            put("from_failure", json!(b.from_failure));
            put("title", opt(&b.title));
            put("description", opt(&b.description));
            put("tags", tagmap(&b.tags));
            put("backfill_job_name", opt(&b.job_name));
        }
        EventBody::BackfillUpdated(b) => {
            put("backfill_id", json!(b.backfill_id));
            put("status", json!(b.status));
            put("error", err(&b.error));
        }
        EventBody::Definitions(d) => {
            put("code_location", json!(d.code_location));
            put("version", opt(&d.version));
            put(
                "assets",
                Value::Array(
                    d.assets
                        .iter()
                        .map(|a| {
                            let mut o = Map::new();
                            let mut p = |k: &str, v: Value| {
                                if !v.is_null() {
                                    o.insert(k.into(), v);
                                }
                            };
                            p("asset_key", key(&a.asset_key));
                            p("deps", keys(&a.deps));
                            p("description", opt(&a.description));
                            p("group_name", opt(&a.group_name));
                            p("owners", list(&a.owners));
                            p("tags", tagmap(&a.tags));
                            p("kinds", list(&a.kinds));
                            p("code_version", opt(&a.code_version));
                            p(
                                "partitions",
                                a.partitions
                                    .as_ref()
                                    .map(partitions_def)
                                    .unwrap_or(Value::Null),
                            );
                            p("automation_condition", opt(&a.automation_condition));
                            p("metadata", md(&a.metadata));
                            p("job_names", list(&a.job_names));
                            p("is_source", json!(a.is_source));
                            Value::Object(o)
                        })
                        .collect(),
                ),
            );
            put(
                "checks",
                Value::Array(
                    d.checks
                        .iter()
                        .map(|c| {
                            let mut o = json!({"asset_key": c.asset_key.0, "name": c.name,
                                               "blocking": c.blocking});
                            if let Some(d) = &c.description {
                                o["description"] = json!(d);
                            }
                            if !c.additional_deps.is_empty() {
                                o["additional_deps"] = keys(&c.additional_deps);
                            }
                            o
                        })
                        .collect(),
                ),
            );
        }
        EventBody::LogMessage(l) => put("level", json!(l.level)),
        EventBody::Engine(x) => {
            put("metadata", md(&x.metadata));
            put("error", err(&x.error));
        }
        EventBody::Unknown(u) => {
            if let Ok(Value::Object(rest)) = serde_json::from_str::<Value>(&u.payload_json) {
                for (k, v) in rest {
                    if k != "type" {
                        m.insert(k, v);
                    }
                }
            }
        }
    }
    Value::Object(m)
}

/// Metadata as native JSON text, written straight from the typed values (no intermediate
/// [`Value`] tree): the same JSON as [`metadata`], for hot paths such as the export.
pub fn write_metadata(md: &Metadata, out: &mut Vec<u8>) {
    let mut ser = serde_json::Serializer::new(out);
    // Serializing plain strings, numbers and maps into a Vec cannot fail.
    serde::Serialize::serialize(&MetadataJson(md), &mut ser).expect("metadata JSON into a Vec");
}

struct MetadataJson<'a>(&'a Metadata);
struct ValueJson<'a>(&'a MetadataValue);
struct ColumnJson<'a>(&'a TableColumn);
struct TagsJson<'a>(&'a [(String, String)]);
struct LineageJson<'a>(&'a ColumnLineage);
struct RefJson<'a>(&'a CodeReference);

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

impl Serialize for MetadataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0 .0.len()))?;
        for e in &self.0 .0 {
            m.serialize_entry(&e.label, &ValueJson(&e.value))?;
        }
        m.end()
    }
}

impl Serialize for TagsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl Serialize for ColumnJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", &c.name)?;
        m.serialize_entry("type", &c.data_type)?;
        m.serialize_entry(
            "constraints",
            &json_constraints(c.nullable, c.unique, &c.other_constraints),
        )?;
        if let Some(d) = &c.description {
            m.serialize_entry("description", d)?;
        }
        if !c.tags.is_empty() {
            m.serialize_entry("tags", &TagsJson(&c.tags))?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct Constraints<'a> {
    nullable: bool,
    unique: bool,
    other: &'a [String],
}

fn json_constraints(nullable: bool, unique: bool, other: &[String]) -> Constraints<'_> {
    Constraints {
        nullable,
        unique,
        other,
    }
}

struct Columns<'a>(&'a [TableColumn]);

impl Serialize for Columns<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0.len()))?;
        for c in self.0 {
            q.serialize_element(&ColumnJson(c))?;
        }
        q.end()
    }
}

impl Serialize for LineageJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Dep<'a> {
            asset_key: &'a [String],
            column_name: &'a str,
        }
        let mut m = s.serialize_map(Some(self.0.deps_by_column.len()))?;
        for (c, deps) in &self.0.deps_by_column {
            let deps: Vec<Dep> = deps
                .iter()
                .map(|d| Dep {
                    asset_key: &d.asset_key.0,
                    column_name: &d.column_name,
                })
                .collect();
            m.serialize_entry(c, &deps)?;
        }
        m.end()
    }
}

impl Serialize for RefJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self.0 {
            CodeReference::LocalFile {
                file_path,
                line_number,
                label,
            } => {
                m.serialize_entry("file_path", file_path)?;
                if let Some(l) = line_number {
                    m.serialize_entry("line_number", l)?;
                }
                if let Some(l) = label {
                    m.serialize_entry("label", l)?;
                }
            }
            CodeReference::Url { url, label } => {
                m.serialize_entry("url", url)?;
                if let Some(l) = label {
                    m.serialize_entry("label", l)?;
                }
            }
        }
        m.end()
    }
}

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", v.kind())?;
        match v {
            MetadataValue::Text(x)
            | MetadataValue::Url(x)
            | MetadataValue::Path(x)
            | MetadataValue::Notebook(x)
            | MetadataValue::Markdown(x)
            | MetadataValue::BigInt(x) => m.serialize_entry("value", x)?,
            MetadataValue::Int(i) => m.serialize_entry("value", i)?,
            MetadataValue::Float(Some(f)) if f.is_finite() => m.serialize_entry("value", f)?,
            MetadataValue::Float(None) => m.serialize_entry("value", &())?,
            MetadataValue::Bool(b) => m.serialize_entry("value", b)?,
            MetadataValue::Timestamp(t) => m.serialize_entry("value", t)?,
            MetadataValue::DagsterRun { run_id } => m.serialize_entry("run_id", run_id)?,
            MetadataValue::Asset(k) => m.serialize_entry("asset_key", &k.0)?,
            MetadataValue::TableSchema(x) => {
                m.serialize_entry("columns", &Columns(&x.columns))?;
                m.serialize_entry("constraints", &x.constraints)?;
            }
            MetadataValue::ColumnLineage(l) => {
                m.serialize_entry("deps_by_column", &LineageJson(l))?
            }
            MetadataValue::CodeReferences(refs) => {
                let refs: Vec<RefJson> = refs.iter().map(RefJson).collect();
                m.serialize_entry("code_references", &refs)?;
            }
            MetadataValue::Pool(p) => m.serialize_entry("pool", p)?,
            MetadataValue::CodeLocationReconstruction(d) => m.serialize_entry("data", d)?,
            MetadataValue::Null => {}
            MetadataValue::PythonArtifact { module, name } => {
                m.serialize_entry("module", module)?;
                m.serialize_entry("name", name)?;
            }
            MetadataValue::DagsterJob {
                job_name,
                location_name,
                repository_name,
            } => {
                m.serialize_entry("job_name", job_name)?;
                if let Some(l) = location_name {
                    m.serialize_entry("location_name", l)?;
                }
                if let Some(r) = repository_name {
                    m.serialize_entry("repository_name", r)?;
                }
            }
            // Rare kinds (free JSON, table records, NaN and infinities): through the tree.
            MetadataValue::Json(_) | MetadataValue::Float(_) | MetadataValue::Table { .. } => {
                if let Value::Object(o) = metadata_value(v) {
                    for (k, x) in o.iter().filter(|(k, _)| k.as_str() != "type") {
                        m.serialize_entry(k, x)?;
                    }
                }
            }
        }
        m.end()
    }
}
