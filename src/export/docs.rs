//! The documented Arrow schema of every table, `schemas/parquet/<table>.json`, and the
//! rule that keeps it honest: each file records the fingerprint of every schema version
//! the table has had, so changing a table's columns without bumping [`Table::version`]
//! fails (the test `export_schemas_are_documented`, and `assetlog schema --parquet`
//! refuses to rewrite a shipped version's fingerprint).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{columns, Table, TableKind};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDoc {
    pub table: String,
    pub description: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<String>,
    pub schema_version: u32,
    pub fields: Vec<FieldDoc>,
    /// Fingerprint of the Arrow schema of each version the table has had.
    pub versions: BTreeMap<u32, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDoc {
    pub name: String,
    /// The Arrow type, as Arrow prints it.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    pub doc: String,
}

/// A stable digest of a table's Arrow schema (names, types, nullability, order).
pub fn fingerprint(t: Table) -> String {
    let text = columns::schema(t.columns())
        .fields()
        .iter()
        .map(|f| format!("{}:{}:{}", f.name(), f.data_type(), f.is_nullable()))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

/// The doc of a table as the code defines it, with `versions` holding only the current one.
pub fn doc(t: Table) -> TableDoc {
    let (kind, entity) = match t.kind() {
        TableKind::Append => ("append", Vec::new()),
        TableKind::Snapshot { entity } => {
            ("snapshot", entity.iter().map(|s| s.to_string()).collect())
        }
    };
    TableDoc {
        table: t.name().into(),
        description: t.description().into(),
        kind: kind.into(),
        entity,
        schema_version: t.version(),
        fields: t
            .columns()
            .iter()
            .map(|c| FieldDoc {
                name: c.name.into(),
                data_type: c.kind.data_type().to_string(),
                nullable: c.nullable,
                doc: c.doc.into(),
            })
            .collect(),
        versions: [(t.version(), fingerprint(t))].into_iter().collect(),
    }
}

pub fn path(dir: &Path, t: Table) -> std::path::PathBuf {
    dir.join(format!("{}.json", t.name()))
}

/// Compare the committed doc of `t` with the code. `Err` says what is wrong and what to do.
pub fn check(committed: Option<&TableDoc>, t: Table) -> Result<(), String> {
    let built = doc(t);
    let fp = fingerprint(t);
    let Some(c) = committed else {
        return Err(format!(
            "schemas/parquet/{}.json is missing; run tools/update-schema",
            t.name()
        ));
    };
    match c.versions.get(&t.version()) {
        Some(v) if *v != fp => Err(format!(
            "the columns of table {} changed but its schema version is still {}: bump \
             Table::version for it, then run tools/update-schema",
            t.name(),
            t.version()
        )),
        None => Err(format!(
            "schemas/parquet/{}.json does not document schema version {}; run tools/update-schema",
            t.name(),
            t.version()
        )),
        Some(_) => {
            let mut expected = built;
            expected.versions = c.versions.clone();
            if *c == expected {
                Ok(())
            } else {
                Err(format!(
                    "schemas/parquet/{}.json differs from the code's description of the \
                     table; run tools/update-schema",
                    t.name()
                ))
            }
        }
    }
}

/// Rewrite the docs in `dir`, keeping the fingerprints of earlier versions; refuses to
/// change the fingerprint of a version that is already documented.
pub fn write_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for t in Table::ALL {
        let p = path(dir, t);
        let old: Option<TableDoc> = match std::fs::read(&p) {
            Ok(b) => Some(serde_json::from_slice(&b)?),
            Err(_) => None,
        };
        let mut new = doc(t);
        if let Some(old) = old {
            if let Some(v) = old.versions.get(&t.version()) {
                if *v != fingerprint(t) {
                    anyhow::bail!(
                        "the columns of table {} changed but its schema version is still {}: \
                         bump Table::version for it first",
                        t.name(),
                        t.version()
                    );
                }
            }
            for (v, f) in old.versions {
                new.versions.entry(v).or_insert(f);
            }
        }
        std::fs::write(&p, serde_json::to_string_pretty(&new)? + "\n")?;
    }
    Ok(())
}
