//! Table schemas: each distinct schema is stored once, by content hash; per asset the
//! history of `(timestamp, seq) -> hash` from `dagster/column_schema` on materializations,
//! observations and definitions is part of the asset's [`super::points`]. The current schema
//! is the latest entry; versions are the history with consecutive repeats collapsed;
//! [`diff`] compares two versions structurally.

use super::keys::{self, K};
use super::{points, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Seq, TableColumn, TableSchema};
use crate::log::Txn;

/// The content hash of a schema (xxh3 of its stored bytes), taken once per schema value
/// (see [`TableSchema::hash_with`]).
pub fn hash(schema: &TableSchema) -> u64 {
    schema.hash_with(|s| super::with_encoded(s, xxhash_rust::xxh3::xxh3_64))
}

/// Store `schema` under its hash (once) and return the hash.
pub fn store(txn: &mut Txn<'_>, dep: DeploymentId, schema: &TableSchema) -> Result<u64> {
    let h = hash(schema);
    let skey = K::new(keys::SCHEMA, dep).u64(h).build();
    // Content-addressed: a schema row never changes once written.
    if !txn.contains_immutable(&skey)? {
        txn.put(skey, super::enc(schema));
    }
    Ok(h)
}

/// The schema history of an asset: `(timestamp, seq, hash)`, oldest first.
pub fn history(rows: &impl Rows, dep: DeploymentId, asset: u64) -> Result<Vec<(i64, Seq, u64)>> {
    let mut out = Vec::new();
    points::walk(rows, dep, asset, (None, None), false, |t, s, e| {
        if let Some(h) = e.measured.schema {
            out.push((t, s, h));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// One version of an asset's schema: when it was first seen (in a run of equal entries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    pub hash: u64,
    pub since_us: i64,
    pub since_seq: Seq,
}

/// Distinct consecutive schemas, oldest first.
pub fn versions(rows: &impl Rows, dep: DeploymentId, key: &AssetKey) -> Result<Vec<SchemaVersion>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    Ok(collapse(&history(rows, dep, id)?))
}

/// A history with consecutive repeats collapsed into versions.
pub fn collapse(history: &[(i64, Seq, u64)]) -> Vec<SchemaVersion> {
    let mut out: Vec<SchemaVersion> = Vec::new();
    for &(t, s, h) in history {
        if out.last().is_none_or(|l| l.hash != h) {
            out.push(SchemaVersion {
                hash: h,
                since_us: t,
                since_seq: s,
            });
        }
    }
    out
}

/// The schema with this hash.
pub fn by_hash(rows: &impl Rows, dep: DeploymentId, h: u64) -> Result<Option<TableSchema>> {
    rows.get_as(&K::new(keys::SCHEMA, dep).u64(h).build())
}

/// The current schema: the latest history entry.
pub fn current(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
) -> Result<Option<(SchemaVersion, TableSchema)>> {
    let Some(id) = super::asset_id(rows, dep, key)? else {
        return Ok(None);
    };
    let mut latest = None;
    points::walk(rows, dep, id, (None, None), true, |t, s, e| {
        latest = e.measured.schema.map(|h| (t, s, h));
        Ok(latest.is_none())
    })?;
    let Some((t, s, h)) = latest else {
        return Ok(None);
    };
    Ok(by_hash(rows, dep, h)?.map(|schema| {
        (
            SchemaVersion {
                hash: h,
                since_us: t,
                since_seq: s,
            },
            schema,
        )
    }))
}

/// What changed in one column between two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnChange {
    pub name: String,
    pub old_type: Option<String>,
    pub new_type: Option<String>,
    pub nullable: Option<(bool, bool)>,
    pub unique: Option<(bool, bool)>,
    pub other_constraints: Option<(Vec<String>, Vec<String>)>,
    pub description_changed: bool,
}

/// A structural diff.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaDiff {
    pub added: Vec<TableColumn>,
    pub removed: Vec<TableColumn>,
    pub changed: Vec<ColumnChange>,
    pub table_constraints: Option<(Vec<String>, Vec<String>)>,
}

/// Columns added, removed, and changed (type, nullability, uniqueness, other constraints).
pub fn diff(old: &TableSchema, new: &TableSchema) -> SchemaDiff {
    let find = |s: &TableSchema, n: &str| s.columns.iter().find(|c| c.name == n).cloned();
    let mut d = SchemaDiff::default();
    for c in &new.columns {
        match find(old, &c.name) {
            None => d.added.push(c.clone()),
            Some(o) => {
                let ch = ColumnChange {
                    name: c.name.clone(),
                    old_type: (o.data_type != c.data_type).then(|| o.data_type.clone()),
                    new_type: (o.data_type != c.data_type).then(|| c.data_type.clone()),
                    nullable: (o.nullable != c.nullable).then_some((o.nullable, c.nullable)),
                    unique: (o.unique != c.unique).then_some((o.unique, c.unique)),
                    other_constraints: (o.other_constraints != c.other_constraints)
                        .then(|| (o.other_constraints.clone(), c.other_constraints.clone())),
                    description_changed: o.description != c.description,
                };
                if ch.old_type.is_some()
                    || ch.nullable.is_some()
                    || ch.unique.is_some()
                    || ch.other_constraints.is_some()
                    || ch.description_changed
                {
                    d.changed.push(ch);
                }
            }
        }
    }
    for c in &old.columns {
        if find(new, &c.name).is_none() {
            d.removed.push(c.clone());
        }
    }
    if old.constraints != new.constraints {
        d.table_constraints = Some((old.constraints.clone(), new.constraints.clone()));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::sample::table_schema;

    #[test]
    fn a_kept_hash_is_the_hash_of_the_schema_and_a_changed_clone_gets_its_own() {
        let a = table_schema(10);
        let uncached = |s: &TableSchema| super::super::with_encoded(s, xxhash_rust::xxh3::xxh3_64);
        // Hashed first on another thread, as the writer's helper does.
        let from_helper = std::thread::scope(|t| t.spawn(|| hash(&a)).join().unwrap());
        assert_eq!(from_helper, uncached(&a));
        assert_eq!(hash(&a), uncached(&a));
        let mut b = a.clone();
        b.columns[3].nullable = !b.columns[3].nullable;
        let mut c = b.clone();
        c.constraints.push("pk(column_0)".into());
        for s in [&b, &c] {
            assert_eq!(hash(s), uncached(s));
        }
        assert_ne!(hash(&a), hash(&b));
        assert_ne!(hash(&b), hash(&c));
        // Equal schemas hash alike, whether or not one of them has its hash kept.
        assert_eq!(hash(&table_schema(10)), hash(&a));
        assert_eq!(table_schema(10), a);
    }
}
