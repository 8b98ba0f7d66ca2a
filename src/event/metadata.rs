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
    TableSchema(SharedSchema),
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

/// A [`TableSchema`] shared between the events that carry the same one.
///
/// Most events of an asset repeat its schema: decoding one (from the log) borrows its
/// strings first and, when this thread decoded an equal schema lately, shares that one,
/// with its content hash already taken, instead of building another ten columns of strings.
/// Stored exactly as a [`TableSchema`].
#[derive(Debug, Clone, PartialEq)]
pub struct SharedSchema(std::sync::Arc<TableSchema>);

impl From<TableSchema> for SharedSchema {
    fn from(s: TableSchema) -> SharedSchema {
        SharedSchema(std::sync::Arc::new(s))
    }
}

impl std::ops::Deref for SharedSchema {
    type Target = TableSchema;
    fn deref(&self) -> &TableSchema {
        &self.0
    }
}

impl AsRef<TableSchema> for SharedSchema {
    fn as_ref(&self) -> &TableSchema {
        &self.0
    }
}

impl Serialize for SharedSchema {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SharedSchema {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SharedSchema, D::Error> {
        // Only a binary decode can be the `from_postcard` one (not, say, a JSON value
        // parsed inside it).
        let probe = match d.is_human_readable() {
            true => None,
            false => match shared::skip_known() {
                Ok(known) => return Ok(known),
                Err(probe) => probe,
            },
        };
        #[cfg(test)]
        shared::PARSED.with(|n| n.set(n.get() + 1));
        let schema = shared::SchemaRef::deserialize(d)?;
        let shared = shared::share(&schema);
        if let Some(probe) = probe {
            shared::learn(probe, &shared);
        }
        Ok(shared)
    }
}

/// Decode postcard `bytes` (a stored event) so that each table schema in them that this
/// thread decoded lately, byte for byte, is shared without being parsed again: its bytes
/// are compared and skipped.
pub fn from_postcard<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> postcard::Result<T> {
    shared::from_postcard(bytes)
}

/// The borrowed form of a [`TableSchema`] and the per-thread set of recent schemas.
mod shared {
    use std::borrow::Cow;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::ptr::NonNull;
    use std::sync::Arc;

    use serde::Deserialize;

    use super::{SharedSchema, TableColumn, TableSchema};

    /// Postcard input read through a cell, which [`skip_known`] can see and advance.
    struct Tracked<'a, 'de> {
        rest: &'a Cell<&'de [u8]>,
    }

    impl<'a: 'de, 'de> postcard::de_flavors::Flavor<'de> for Tracked<'a, 'de> {
        type Remainder = &'de [u8];
        type Source = &'de [u8];

        #[inline]
        fn pop(&mut self) -> postcard::Result<u8> {
            let (first, rest) = self
                .rest
                .get()
                .split_first()
                .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
            self.rest.set(rest);
            Ok(*first)
        }

        #[inline]
        fn size_hint(&self) -> Option<usize> {
            Some(self.rest.get().len())
        }

        #[inline]
        fn try_take_n(&mut self, ct: usize) -> postcard::Result<&'de [u8]> {
            let rest = self.rest.get();
            if rest.len() < ct {
                return Err(postcard::Error::DeserializeUnexpectedEnd);
            }
            let (taken, rest) = rest.split_at(ct);
            self.rest.set(rest);
            Ok(taken)
        }

        fn finalize(self) -> postcard::Result<&'de [u8]> {
            Ok(self.rest.get())
        }
    }

    /// A schema and its encoding.
    type Encoded = (Box<[u8]>, SharedSchema);

    thread_local! {
        /// The input of the [`from_postcard`] running on this thread, if one is.
        static INPUT: Cell<Option<NonNull<Cell<&'static [u8]>>>> = const { Cell::new(None) };
        /// Encoded schemas this thread decoded lately, by a hash of their first bytes.
        static KNOWN: RefCell<HashMap<u64, Vec<Encoded>>> = RefCell::new(HashMap::new());
    }

    #[cfg(test)]
    thread_local! {
        /// Schemas parsed on this thread (not skipped).
        pub(super) static PARSED: Cell<usize> = const { Cell::new(0) };
    }

    /// Bytes of a schema's encoding that [`KNOWN`] is keyed by.
    const PROBE: usize = 64;

    pub(super) fn from_postcard<T: serde::de::DeserializeOwned>(
        bytes: &[u8],
    ) -> postcard::Result<T> {
        let rest = Cell::new(bytes);
        /// Puts back the input of an enclosing decode (there is none today) when this one
        /// ends, however it ends.
        struct Restore(Option<NonNull<Cell<&'static [u8]>>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                INPUT.with(|i| i.set(self.0));
            }
        }
        let _restore = Restore(INPUT.with(|i| i.replace(Some(NonNull::from(&rest).cast()))));
        let mut de = postcard::Deserializer::from_flavor(Tracked { rest: &rest });
        T::deserialize(&mut de)
    }

    /// Call `f` with the input of the running [`from_postcard`], if any.
    fn with_input<R>(f: impl FnOnce(&Cell<&[u8]>) -> R) -> Option<R> {
        let input = INPUT.with(Cell::get)?;
        // SAFETY: `INPUT` is set only by `from_postcard`, on this thread, to a cell on its
        // stack, and reset (by `Restore`) before that cell goes away; it is read only while
        // that decode runs (this is called from inside it). The slice's real lifetime is
        // the decode's input, which outlives the decode; `f` gets it under a lifetime of its
        // own and cannot keep it (`R` does not borrow it).
        #[allow(unsafe_code)]
        let cell: &Cell<&[u8]> = unsafe { input.as_ref() };
        Some(f(cell))
    }

    /// At the start of a schema in a [`from_postcard`] input: if its bytes are those of a
    /// schema in [`KNOWN`], skip them and share that schema. A decode reads a value's bytes
    /// one after the other and nothing else, so equal bytes decode to an equal schema.
    ///
    /// Otherwise, the key to [`learn`] the schema under once parsed: a hash of the input's
    /// next [`PROBE`] bytes (which, for a shorter schema, include bytes after it: it is then
    /// found again only where those match too). `None` outside [`from_postcard`].
    pub(super) fn skip_known() -> Result<SharedSchema, Option<u64>> {
        with_input(|cell| {
            let rest = cell.get();
            let probe = xxhash_rust::xxh3::xxh3_64(&rest[..rest.len().min(PROBE)]);
            KNOWN.with(|known| {
                let known = known.borrow();
                let found = known
                    .get(&probe)
                    .and_then(|k| k.iter().find(|(bytes, _)| rest.starts_with(bytes)));
                match found {
                    Some((bytes, schema)) => {
                        cell.set(&rest[bytes.len()..]);
                        Ok(schema.clone())
                    }
                    None => Err(Some(probe)),
                }
            })
        })
        .unwrap_or(Err(None))
    }

    /// Remember a schema just parsed from a [`from_postcard`] input, by its encoding, under
    /// the key [`skip_known`] gave.
    pub(super) fn learn(probe: u64, schema: &SharedSchema) {
        // Its encoding, which is what the input held (an input with another, equivalent
        // encoding would simply never match it).
        let Ok(bytes) = postcard::to_allocvec(schema) else {
            return;
        };
        KNOWN.with(|known| {
            let mut known = known.borrow_mut();
            if known.len() >= RECENT {
                known.clear();
            }
            let slot = known.entry(probe).or_default();
            if !slot.iter().any(|(b, _)| **b == *bytes) {
                slot.push((bytes.into_boxed_slice(), schema.clone()));
            }
        });
    }

    /// A string borrowed from the input where the deserializer allows it.
    #[derive(Debug)]
    pub(super) struct Str<'a>(Cow<'a, str>);

    impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Str<'a>, D::Error> {
            struct V<'a>(std::marker::PhantomData<&'a ()>);
            impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
                type Value = Str<'a>;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Owned(v.to_owned())))
                }
                fn visit_string<E>(self, v: String) -> Result<Str<'a>, E> {
                    Ok(Str(Cow::Owned(v)))
                }
            }
            d.deserialize_str(V(std::marker::PhantomData))
        }
    }

    impl Str<'_> {
        fn is(&self, s: &str) -> bool {
            self.0 == s
        }
        fn owned(&self) -> String {
            self.0.clone().into_owned()
        }
    }

    /// [`TableColumn`], field for field (the stored layout is the same).
    #[derive(Debug, Deserialize)]
    pub(super) struct ColumnRef<'a> {
        #[serde(borrow)]
        name: Str<'a>,
        #[serde(borrow)]
        data_type: Str<'a>,
        #[serde(borrow)]
        description: Option<Str<'a>>,
        nullable: bool,
        unique: bool,
        #[serde(borrow)]
        other_constraints: Vec<Str<'a>>,
        #[serde(borrow)]
        tags: Vec<(Str<'a>, Str<'a>)>,
    }

    /// [`TableSchema`], field for field.
    #[derive(Debug, Deserialize)]
    pub(super) struct SchemaRef<'a> {
        #[serde(borrow)]
        columns: Vec<ColumnRef<'a>>,
        #[serde(borrow)]
        constraints: Vec<Str<'a>>,
    }

    fn strs_are(a: &[Str<'_>], b: &[String]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.is(y))
    }

    impl SchemaRef<'_> {
        fn is(&self, s: &TableSchema) -> bool {
            self.columns.len() == s.columns.len()
                && strs_are(&self.constraints, &s.constraints)
                && self.columns.iter().zip(&s.columns).all(|(a, b)| {
                    a.name.is(&b.name)
                        && a.data_type.is(&b.data_type)
                        && match (&a.description, &b.description) {
                            (Some(x), Some(y)) => x.is(y),
                            (None, None) => true,
                            _ => false,
                        }
                        && a.nullable == b.nullable
                        && a.unique == b.unique
                        && strs_are(&a.other_constraints, &b.other_constraints)
                        && a.tags.len() == b.tags.len()
                        && a.tags
                            .iter()
                            .zip(&b.tags)
                            .all(|((k, v), (x, y))| k.is(x) && v.is(y))
                })
        }

        fn owned(&self) -> TableSchema {
            let strs = |v: &[Str<'_>]| v.iter().map(Str::owned).collect();
            TableSchema::new(
                self.columns
                    .iter()
                    .map(|c| TableColumn {
                        name: c.name.owned(),
                        data_type: c.data_type.owned(),
                        description: c.description.as_ref().map(Str::owned),
                        nullable: c.nullable,
                        unique: c.unique,
                        other_constraints: strs(&c.other_constraints),
                        tags: c.tags.iter().map(|(k, v)| (k.owned(), v.owned())).collect(),
                    })
                    .collect(),
                strs(&self.constraints),
            )
        }

        /// A hash of the content, to find equal schemas by (equality is then checked).
        fn key(&self) -> u64 {
            use std::hash::{BuildHasher, Hasher};
            let mut h = foldhash::fast::FixedState::default().build_hasher();
            let mut str = |s: &Str<'_>| {
                h.write(s.0.as_bytes());
                h.write_u8(0xff);
            };
            for c in &self.columns {
                str(&c.name);
                str(&c.data_type);
                c.description.iter().for_each(&mut str);
                c.other_constraints.iter().for_each(&mut str);
                c.tags.iter().for_each(|(k, v)| {
                    str(k);
                    str(v);
                });
            }
            self.constraints.iter().for_each(&mut str);
            for c in &self.columns {
                h.write_u8(c.nullable as u8 | (c.unique as u8) << 1);
                h.write_usize(c.description.is_some() as usize);
                h.write_usize(c.other_constraints.len());
                h.write_usize(c.tags.len());
            }
            h.write_usize(self.columns.len());
            h.finish()
        }
    }

    /// Distinct schemas this thread decoded lately; past this many it starts over.
    const RECENT: usize = 4096;

    thread_local! {
        static RECENT_SCHEMAS: RefCell<HashMap<u64, Arc<TableSchema>>> = RefCell::new(HashMap::new());
    }

    /// The shared schema equal to `schema`: a recent one, or a new one (then remembered).
    pub(super) fn share(schema: &SchemaRef<'_>) -> SharedSchema {
        let key = schema.key();
        RECENT_SCHEMAS.with(|recent| {
            let mut recent = recent.borrow_mut();
            if let Some(s) = recent.get(&key).filter(|s| schema.is(s)) {
                return SharedSchema(s.clone());
            }
            let s = Arc::new(schema.owned());
            if recent.len() >= RECENT {
                recent.clear();
            }
            // On a (rare) collision of keys, the newer schema takes the slot.
            recent.insert(key, s.clone());
            SharedSchema(s)
        })
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
            Some(MetadataValue::TableSchema(s)) => Some(s.as_ref()),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn column(name: &str, data_type: &str) -> TableColumn {
        TableColumn {
            name: name.into(),
            data_type: data_type.into(),
            description: None,
            nullable: true,
            unique: false,
            other_constraints: vec![],
            tags: vec![],
        }
    }

    fn schema_strategy() -> impl Strategy<Value = TableSchema> {
        let s = || prop::sample::select(vec!["", "a", "b", "id", "é\"\\\n"]).prop_map(String::from);
        let col = (
            s(),
            s(),
            prop::option::of(s()),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(s(), 0..2),
            prop::collection::vec((s(), s()), 0..2),
        )
            .prop_map(
                |(name, data_type, description, nullable, unique, oc, tags)| TableColumn {
                    name,
                    data_type,
                    description,
                    nullable,
                    unique,
                    other_constraints: oc,
                    tags,
                },
            );
        (
            prop::collection::vec(col, 0..4),
            prop::collection::vec(s(), 0..2),
        )
            .prop_map(|(c, k)| TableSchema::new(c, k))
    }

    proptest! {
        /// Shared decoding gives back each schema exactly, whatever schemas this thread
        /// decoded before it, and stores it byte for byte as a plain `TableSchema`.
        #[test]
        fn a_shared_schema_decodes_to_exactly_the_schema_stored(
            schemas in prop::collection::vec(schema_strategy(), 1..12),
        ) {
            for s in &schemas {
                let bytes = postcard::to_allocvec(s).unwrap();
                let shared: SharedSchema = postcard::from_bytes(&bytes).unwrap();
                prop_assert_eq!(&*shared, s);
                prop_assert_eq!(postcard::to_allocvec(&shared).unwrap(), bytes);
                let json = serde_json::to_string(s).unwrap();
                let from_json: SharedSchema = serde_json::from_reader(json.as_bytes()).unwrap();
                prop_assert_eq!(&*from_json, s);
            }
        }
    }

    proptest! {
        /// Decoding a stored value through `from_postcard`, which skips the bytes of a
        /// schema it knows, gives back exactly what was stored: schemas whose encodings
        /// begin alike (a long first column name) and part later are told apart, and a
        /// value cut short anywhere is an error, not another value.
        #[test]
        fn a_stored_value_decodes_exactly_with_known_schemas_skipped(
            schemas in prop::collection::vec(schema_strategy(), 1..6),
            picks in prop::collection::vec((0usize..6, any::<u32>()), 1..12),
            long_name in any::<bool>(),
        ) {
            let schemas: Vec<TableSchema> = schemas
                .into_iter()
                .map(|mut s| {
                    if long_name {
                        s.columns.insert(0, column(&"x".repeat(80), "int"));
                    }
                    s
                })
                .collect();
            let value: Vec<(TableSchema, u32)> = picks
                .iter()
                .map(|(i, n)| (schemas[i % schemas.len()].clone(), *n))
                .collect();
            let bytes = postcard::to_allocvec(&value).unwrap();
            for _ in 0..2 {
                let back: Vec<(SharedSchema, u32)> = from_postcard(&bytes).unwrap();
                prop_assert_eq!(back.len(), value.len());
                for ((s, n), (t, m)) in back.iter().zip(&value) {
                    prop_assert_eq!(&**s, t);
                    prop_assert_eq!(n, m);
                }
            }
            for cut in 0..bytes.len() {
                prop_assert!(from_postcard::<Vec<(SharedSchema, u32)>>(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn a_schema_decoded_again_through_from_postcard_is_shared_without_parsing() {
        let s = TableSchema::new(vec![column("id", "int"), column("at", "ts")], vec![]);
        let bytes = postcard::to_allocvec(&(7u8, &s, 9u8)).unwrap();
        let parsed = || shared::PARSED.with(|n| n.get());
        let (_, a, _): (u8, SharedSchema, u8) = from_postcard(&bytes).unwrap();
        let before = parsed();
        let (x, b, y): (u8, SharedSchema, u8) = from_postcard(&bytes).unwrap();
        assert_eq!(parsed(), before, "parsed again");
        assert!(std::sync::Arc::ptr_eq(&a.0, &b.0));
        assert_eq!((x, &*b, y), (7, &s, 9));
    }

    #[test]
    fn equal_schemas_decoded_on_one_thread_share_one_value_and_its_hash() {
        let s = TableSchema::new(vec![column("id", "int"), column("name", "text")], vec![]);
        let bytes = postcard::to_allocvec(&s).unwrap();
        let a: SharedSchema = postcard::from_bytes(&bytes).unwrap();
        let b: SharedSchema = postcard::from_bytes(&bytes).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a.hash_with(|_| 7), 7);
        assert_eq!(b.hash_with(|_| unreachable!("taken once")), 7);
        // One field apart: another value.
        let other = TableSchema::new(vec![column("id", "int"), column("name", "varchar")], vec![]);
        let c: SharedSchema =
            postcard::from_bytes(&postcard::to_allocvec(&other).unwrap()).unwrap();
        assert!(!std::sync::Arc::ptr_eq(&a.0, &c.0));
        assert_eq!(*c, other);
    }
}
