//! The JSON tree that validation takes apart: `serde_json::Value`'s shape, but an object
//! is a `Vec` of fields sorted by key instead of a `BTreeMap`.
//!
//! Validation reads every field of every event once, so building and dismantling a B-tree
//! per object was a third of the ingest endpoint's CPU. Semantics match serde_json's map:
//! fields iterate in key order, and a key repeated in the text keeps its last value.
//! Numbers are serde_json's own [`Number`], and the text form ([`Value`]'s `Display`) is
//! byte for byte what serde_json writes for the same tree.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
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

/// A JSON object: fields sorted by key, each key once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Map(Vec<(String, Value)>);

impl Map {
    /// The object of `fields` in document order: sorted, and the last of a repeated key kept.
    fn from_fields(mut fields: Vec<(String, Value)>) -> Map {
        if !fields.windows(2).all(|w| w[0].0 < w[1].0) {
            // Stable: equal keys stay in document order, so the last one is the later one.
            fields.sort_by(|a, b| a.0.cmp(&b.0));
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
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &Value> {
        self.0.iter().map(|(_, v)| v)
    }
}

impl IntoIterator for Map {
    type Item = (String, Value);
    type IntoIter = std::vec::IntoIter<(String, Value)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
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
            serde_json::Value::Object(o) => {
                Value::Object(Map(o.into_iter().map(|(k, v)| (k, v.into())).collect()))
            }
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
        while let Some(entry) = map.next_entry::<String, Value>()? {
            fields.push(entry);
        }
        Ok(Value::Object(Map::from_fields(fields)))
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
                    out.serialize_entry(k, v)?;
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
