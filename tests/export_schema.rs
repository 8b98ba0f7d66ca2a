//! `schemas/parquet/<table>.json` documents every exported table's Arrow schema; a table's
//! columns cannot change without its schema version changing.

use assetlog::export::docs::{self, TableDoc};
use assetlog::export::Table;

#[test]
fn export_schemas_are_documented() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/parquet");
    let mut problems = Vec::new();
    for t in Table::ALL {
        let committed: Option<TableDoc> = std::fs::read(docs::path(&dir, t))
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("a table doc is JSON"));
        if let Err(e) = docs::check(committed.as_ref(), t) {
            problems.push(e);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_changed_column_without_a_version_bump_is_caught() {
    // The committed doc of a table, with a fingerprint as if the columns had been others
    // under the same version: the check must refuse it.
    let t = Table::Runs;
    let mut doc = docs::doc(t);
    doc.versions.insert(t.version(), "0000000000000000".into());
    let err = docs::check(Some(&doc), t).unwrap_err();
    assert!(err.contains("bump"), "{err}");
    // A doc whose field list drifted from the code is caught too.
    let mut doc = docs::doc(t);
    doc.fields.pop();
    assert!(docs::check(Some(&doc), t).is_err());
    assert!(docs::check(Some(&docs::doc(t)), t).is_ok());
}
