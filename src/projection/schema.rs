//! Table schemas: each distinct schema is stored once, by content hash; per asset a history
//! of `(timestamp, seq) -> hash` from `dagster/column_schema` on materializations,
//! observations and definitions. The current schema is the latest entry; versions are the
//! history with consecutive repeats collapsed; [`diff`] compares two versions structurally.

use super::keys::{self, K};
use super::{enc, intern, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq, TableColumn, TableSchema};
use crate::log::Txn;

/// The content hash of a schema (xxh3 of its stored bytes).
pub fn hash(schema: &TableSchema) -> u64 {
    super::with_encoded(schema, xxhash_rust::xxh3::xxh3_64)
}

fn record(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    key: &AssetKey,
    ts: i64,
    seq: Seq,
    schema: &TableSchema,
) -> Result<()> {
    let id = intern(txn, dep, key)?;
    let h = hash(schema);
    let skey = K::new(keys::SCHEMA, dep).u64(h).build();
    // Content-addressed: a schema row never changes once written.
    if !txn.contains_immutable(&skey)? {
        txn.put(skey, enc(schema));
    }
    txn.put(
        K::new(keys::SCHEMA_HISTORY, dep)
            .u64(id)
            .time(ts)
            .u64(seq)
            .build(),
        h.to_be_bytes().to_vec(),
    );
    Ok(())
}

pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    match &ev.body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => {
            if let Some(s) = a.metadata.column_schema() {
                record(txn, dep, &a.asset_key, ts, seq, s)?;
            }
        }
        EventBody::Definitions(d) => {
            for def in &d.assets {
                if let Some(s) = def.metadata.column_schema() {
                    record(txn, dep, &def.asset_key, ts, seq, s)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
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
    let mut out: Vec<SchemaVersion> = Vec::new();
    for (k, v) in rows.scan_prefix(
        &K::new(keys::SCHEMA_HISTORY, dep).u64(id).build(),
        false,
        usize::MAX,
    )? {
        let h = keys::tail_u64(&v);
        if out.last().is_none_or(|l| l.hash != h) {
            let (t, s) = keys::tail_time_seq(&k);
            out.push(SchemaVersion {
                hash: h,
                since_us: t,
                since_seq: s,
            });
        }
    }
    Ok(out)
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
    let last = rows.scan_prefix(&K::new(keys::SCHEMA_HISTORY, dep).u64(id).build(), true, 1)?;
    let Some((k, v)) = last.first() else {
        return Ok(None);
    };
    let h = keys::tail_u64(v);
    let (t, s) = keys::tail_time_seq(k);
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
