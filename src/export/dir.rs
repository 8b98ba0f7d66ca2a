//! An export directory: one sub-directory of Parquet files per table and a manifest.
//!
//! ```text
//! OUT/manifest.json
//! OUT/events/events-00000000000000000001-00000000000000052000.parquet
//! OUT/events/events-00000000000000052001-00000000000000060000.parquet   (incremental)
//! OUT/runs/runs-...
//! ```
//!
//! File names carry the range `(since, until]` as `since+1` and `until`, zero-padded so
//! they sort. Files are written under a temporary name and renamed when every table is
//! complete; the manifest is replaced last, so an interrupted export leaves the directory
//! as it was (stray files of one are removed by the next). `--incremental` continues from
//! the manifest's `until`: reading `OUT/<table>/*.parquet` gives the union of all exports,
//! which for append tables equals a full export, and for snapshot tables holds every
//! entity's rows as of each export that touched it (keep the highest `as_of_seq` per
//! entity).

use std::collections::BTreeMap;
use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{export, Error, Plan, Result, Table, TableKind};
use crate::event::Seq;
use crate::log::Log;
use crate::projection::Reader;

pub const MANIFEST: &str = "manifest.json";
/// Version of the manifest's own layout.
pub const MANIFEST_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The one deployment exported, or `null` for all of them.
    pub deployment: Option<String>,
    pub tables: BTreeMap<String, TableInfo>,
    /// The log position the directory is complete up to.
    pub until: Seq,
    pub exports: Vec<ExportInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    /// `append` or `snapshot`.
    pub kind: String,
    /// Columns that identify an entity of a snapshot table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entity: Vec<String>,
    pub schema_version: u32,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportInfo {
    pub since: Seq,
    pub until: Seq,
    pub exported_at: String,
    pub files: Vec<FileInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileInfo {
    pub table: String,
    /// Relative to the directory.
    pub path: String,
    pub rows: u64,
}

fn table_info(t: Table) -> TableInfo {
    let (kind, entity) = match t.kind() {
        TableKind::Append => ("append", Vec::new()),
        TableKind::Snapshot { entity } => {
            ("snapshot", entity.iter().map(|s| s.to_string()).collect())
        }
    };
    TableInfo {
        kind: kind.into(),
        entity,
        schema_version: t.version(),
        description: t.description().into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Invalid(format!(
                "{} is not an assetlog export manifest: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// What `assetlog export` asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub out: PathBuf,
    /// `None`: all tables (or, incrementally, the manifest's).
    pub tables: Option<Vec<Table>>,
    pub since: Option<Seq>,
    pub incremental: bool,
    pub deployment: Option<String>,
}

/// What an export did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Exported(ExportInfo),
    /// Nothing new since the manifest's position.
    UpToDate(Seq),
}

/// Export into a directory, continuing its manifest when `incremental`.
pub fn export_dir(log: &Log, req: &Request, progress: &mut dyn FnMut(Seq, Seq)) -> Result<Outcome> {
    let manifest = read_manifest(&req.out)?;
    let deployment = match &req.deployment {
        Some(name) => Some(
            log.deployment_id(name)?
                .ok_or_else(|| Error::Invalid(format!("no deployment named {name:?}")))?,
        ),
        None => None,
    };
    if let Some(m) = &manifest {
        if m.deployment != req.deployment {
            return Err(Error::Invalid(format!(
                "{} holds an export of deployment {:?}, not {:?}",
                req.out.display(),
                m.deployment,
                req.deployment
            )));
        }
    }
    let since = match (req.incremental, req.since, &manifest) {
        (true, Some(_), _) => {
            return Err(Error::Invalid(
                "--incremental continues from the manifest; do not also give --since".into(),
            ))
        }
        (true, None, Some(m)) => m.until,
        (true, None, None) | (false, None, None) => 0,
        (false, Some(s), _) => s,
        (false, None, Some(m)) => {
            return Err(Error::Invalid(format!(
                "{} already holds an export (up to seq {}): pass --incremental to continue \
                 it, or export into an empty directory",
                req.out.display(),
                m.until
            )))
        }
    };
    let mut tables: Vec<Table> = match (&req.tables, &manifest) {
        (Some(t), _) => t.clone(),
        (None, Some(m)) => m.tables.keys().filter_map(|n| Table::parse(n)).collect(),
        (None, None) => Table::ALL.to_vec(),
    };
    // A table named twice is exported once.
    tables.sort();
    tables.dedup();
    if let Some(m) = &manifest {
        for t in &tables {
            match m.tables.get(t.name()) {
                Some(info) if info.schema_version != t.version() => {
                    return Err(Error::Invalid(format!(
                        "{} holds {} at schema version {}; this assetlog writes version {}: \
                         export into a new directory",
                        req.out.display(),
                        t.name(),
                        info.schema_version,
                        t.version()
                    )))
                }
                Some(_) => {}
                None if m.until > 0 && since > 0 => {
                    return Err(Error::Invalid(format!(
                        "{} has no {} table: an incremental export cannot start it; export \
                         it into a new directory",
                        req.out.display(),
                        t.name()
                    )))
                }
                None => {}
            }
        }
    }

    let reader = Reader::new(log, 0);
    let position = reader.position()?;
    let plan = Plan::new(tables, since, None, deployment, position)?;
    if manifest.is_some() && plan.since == plan.until {
        return Ok(Outcome::UpToDate(plan.until));
    }
    fs::create_dir_all(&req.out).map_err(io(&req.out))?;
    remove_strays(&req.out, manifest.as_ref(), &plan.tables)?;

    let mut files = Vec::new();
    let mut outputs = Vec::new();
    for t in &plan.tables {
        let dir = req.out.join(t.name());
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let rel = format!(
            "{0}/{0}-{1:020}-{2:020}.parquet",
            t.name(),
            plan.since + 1,
            plan.until
        );
        let tmp = req.out.join(format!("{rel}.tmp"));
        let f = fs::File::create(&tmp).map_err(io(&tmp))?;
        outputs.push(BufWriter::with_capacity(1 << 20, f));
        files.push((rel, tmp));
    }
    let names = log
        .deployments()?
        .into_iter()
        .map(|(n, id)| (id, n))
        .collect();
    let until = plan.until;
    let written = export(&reader, &names, &plan, outputs, &mut |s| progress(s, until))?;
    let mut infos = Vec::new();
    for (w, (rel, tmp)) in written.into_iter().zip(files) {
        let f = w.inner.into_inner().map_err(|e| io(&tmp)(e.into_error()))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, req.out.join(&rel)).map_err(io(&tmp))?;
        infos.push(FileInfo {
            table: w.table.name().into(),
            path: rel,
            rows: w.rows,
        });
    }
    let info = ExportInfo {
        since: plan.since,
        until: plan.until,
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        files: infos,
    };
    let mut m = manifest.unwrap_or(Manifest {
        format: MANIFEST_FORMAT,
        deployment: req.deployment.clone(),
        tables: BTreeMap::new(),
        until: 0,
        exports: Vec::new(),
    });
    for t in &plan.tables {
        m.tables.insert(t.name().into(), table_info(*t));
    }
    m.until = plan.until;
    m.exports.push(info.clone());
    let path = req.out.join(MANIFEST);
    let tmp = req.out.join(format!("{MANIFEST}.tmp"));
    let text = serde_json::to_string_pretty(&m).expect("manifest serializes");
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(Outcome::Exported(info))
}

/// Remove files in the tables' directories that the manifest does not list: leftovers of
/// an export that was interrupted before its manifest was written.
fn remove_strays(out: &Path, manifest: Option<&Manifest>, tables: &[Table]) -> Result<()> {
    let listed: std::collections::HashSet<&str> = manifest
        .iter()
        .flat_map(|m| m.exports.iter())
        .flat_map(|e| e.files.iter())
        .map(|f| f.path.as_str())
        .collect();
    for t in tables {
        let dir = out.join(t.name());
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = format!("{}/{name}", t.name());
            let ours = name.ends_with(".parquet") || name.ends_with(".parquet.tmp");
            if ours && !listed.contains(rel.as_str()) {
                tracing::warn!(file = %entry.path().display(), "removing a file of an interrupted export");
                fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
            }
        }
    }
    Ok(())
}
