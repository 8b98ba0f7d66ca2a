//! The JSON tree that validation takes apart: `serde_json::Value`'s shape, but an object
//! is a `Vec` of fields sorted by key instead of a `BTreeMap`.
//!
//! Validation reads every field of every event once: building a B-tree per object, then
//! removing its fields one by one, was much of the ~40% of the ingest server's CPU that
//! parsing and validating took (see `BENCHMARKS.md`, session 7). Semantics match serde_json's map:
//! fields iterate in key order, and a key repeated in the text keeps its last value.
//! Numbers are serde_json's own [`Number`], and the text form ([`Value`]'s `Display`) is
//! byte for byte what serde_json writes for the same tree. Keys that are field names of the
//! format are not allocated (see [`Key`]).

use std::fmt;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
pub use serde_json::Number;

/// A JSON value.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Value>),
    Object(Map),
}

/// An object key. The field names of the ingest format come back as static strings, so a
/// parsed event allocates nothing for them; any other key (a metadata label, a tag) is owned.
#[derive(Debug, Clone)]
pub enum Key {
    Known(&'static str),
    Other(String),
}

impl Key {
    fn new(s: &str) -> Key {
        match known(s) {
            Some(k) => Key::Known(k),
            None => Key::Other(s.to_owned()),
        }
    }

    fn from_string(s: String) -> Key {
        match known(&s) {
            Some(k) => Key::Known(k),
            None => Key::Other(s),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Key::Known(k) => k,
            Key::Other(k) => k,
        }
    }
}

impl From<Key> for String {
    fn from(k: Key) -> String {
        match k {
            Key::Known(k) => k.to_owned(),
            Key::Other(k) => k,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_str() == other.as_str()
    }
}

/// `known(s)`: `s` as a static string if it is one of the given names (a `match`, which
/// beat a binary search over a sorted list by ~10% of the server's CPU under loadgen).
macro_rules! known_names {
    ($($name:literal),* $(,)?) => {
        fn known(s: &str) -> Option<&'static str> {
            Some(match s {
                $($name => $name,)*
                _ => return None,
            })
        }
    };
}

// The field names validation reads (a name missing here is merely allocated).
known_names!(
    "additional_deps",
    "asset_key",
    "asset_selection",
    "assets",
    "automation_condition",
    "backfill_id",
    "backfill_job_name",
    "blocking",
    "cause",
    "check_name",
    "checks",
    "cls_name",
    "code_location",
    "code_references",
    "code_version",
    "column_name",
    "columns",
    "constraints",
    "cron_schedule",
    "data",
    "deps",
    "deps_by_column",
    "description",
    "dimensions",
    "duration_ms",
    "end",
    "error",
    "error_source",
    "failure_reason",
    "file_path",
    "fmt",
    "from_failure",
    "group_name",
    "id",
    "is_source",
    "job_name",
    "job_names",
    "keys",
    "kinds",
    "label",
    "level",
    "line_number",
    "location_name",
    "message",
    "metadata",
    "module",
    "name",
    "nullable",
    "other",
    "owners",
    "partition",
    "partition_keys",
    "partition_names",
    "partitions",
    "passed",
    "pool",
    "reason",
    "records",
    "repository_name",
    "run_id",
    "schema",
    "seconds_to_wait",
    "severity",
    "stack",
    "start",
    "status",
    "step_key",
    "storage_id",
    "tags",
    "target_materialization",
    "timestamp",
    "timezone",
    "title",
    "type",
    "unique",
    "url",
    "value",
    "version",
);

/// A JSON object: fields sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<(Key, Value)>);

impl Map {
    /// The object of `fields` in document order: sorted, and the last of a repeated key kept.
    fn from_fields(mut fields: Vec<(Key, Value)>) -> Map {
        if !fields.windows(2).all(|w| w[0].0.as_str() < w[1].0.as_str()) {
            // Stable: equal keys stay in document order, so the last one is the later one.
            fields.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
            fields.dedup_by(|later, earlier| {
                if later.0 == earlier.0 {
                    std::mem::swap(&mut later.1, &mut earlier.1);
                    true
                } else {
                    false
                }
            });
        }
        Map(fields)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Set `key`, returning the value it replaced.
    pub fn insert(&mut self, key: String, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (Key::from_string(key), value));
                None
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(k, _)| k.as_str())
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter =
        std::iter::Map<std::vec::IntoIter<(Key, Value)>, fn((Key, Value)) -> (String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(k, v)| (k.into(), v))
    }
}

impl From<serde_json::Value> for Value {
    fn from(v: serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(a) => Value::Array(a.into_iter().map(Value::from).collect()),
            // serde_json's map is already sorted and unique.
            serde_json::Value::Object(o) => Value::Object(Map(o
                .into_iter()
                .map(|(k, v)| (Key::from_string(k), v.into()))
                .collect())),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Number::from_f64(x).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8).min(4096));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            fields.push((key, map.next_value()?));
        }
        Ok(Value::Object(Map::from_fields(fields)))
    }
}

/// Reads an object key without allocating it when it is a known field name.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, s: &str) -> Result<Key, E> {
        Ok(Key::new(s))
    }

    fn visit_string<E>(self, s: String) -> Result<Key, E> {
        Ok(Key::from_string(s))
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Number(n) => n.serialize(s),
            Value::String(x) => s.serialize_str(x),
            Value::Array(a) => a.serialize(s),
            Value::Object(m) => {
                let mut out = s.serialize_map(Some(m.len()))?;
                for (k, v) in &m.0 {
                    out.serialize_entry(k.as_str(), v)?;
                }
                out.end()
            }
        }
    }
}

/// Compact JSON text, as serde_json writes it.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `text` both ways: the tree and its text must agree with serde_json's.
    fn same_as_serde_json(text: &str) {
        let ours: Value = serde_json::from_str(text).unwrap();
        let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        assert_eq!(ours, Value::from(theirs), "{text}");
    }

    #[test]
    fn matches_serde_json() {
        for text in [
            r#"null"#,
            r#"[1, -2, 3.5, 1e300, 18446744073709551615, "x\"\u00e9\n", true, false, null]"#,
            r#"{"b": 1, "a": {"d": [], "c": {}}, "": 0}"#,
            r#"{"k": 1, "j": 2, "k": 3}"#,
            r#"{"z": 1, "z": {"a": 1}, "y": 0, "z": [2]}"#,
            r#"[{"type": "table_schema", "columns": [{"name": "a", "type": "int"}]}]"#,
        ] {
            same_as_serde_json(text);
        }
    }

    #[test]
    fn field_names_are_not_allocated() {
        for name in ["id", "type", "metadata", "columns", "nullable"] {
            assert!(
                matches!(Key::new(name), Key::Known(k) if k == name),
                "{name}"
            );
        }
        assert!(matches!(Key::new("dagster/row_count"), Key::Other(k) if k == "dagster/row_count"));
    }

    #[test]
    fn map_operations_keep_key_order() {
        let Value::Object(mut m) = serde_json::from_str(r#"{"c": 3, "a": 1, "b": 2}"#).unwrap()
        else {
            panic!("not an object")
        };
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.remove("b"), Some(Value::Number(2.into())));
        assert_eq!(m.remove("b"), None);
        assert_eq!(m.insert("bb".into(), Value::Null), None);
        assert_eq!(
            m.insert("a".into(), Value::Bool(true)),
            Some(Value::Number(1.into()))
        );
        assert_eq!(m.get("a"), Some(&Value::Bool(true)));
        assert_eq!(
            Value::Object(m).to_string(),
            r#"{"a":true,"bb":null,"c":3}"#
        );
    }
}
