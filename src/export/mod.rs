//! Parquet export: the log and the views as tables for DuckDB, pandas, polars and Spark.
//!
//! An export covers the log range `(since, until]` and is consistent at one RocksDB
//! snapshot: append tables ([`TableKind::Append`]) get the rows of the events in the range;
//! snapshot tables ([`TableKind::Snapshot`]) the current state, as of `until`, of every
//! entity (a full export, `since = 0`) or of the entities that the range's events touched
//! (an incremental one). [`dir`] writes a directory of files with a manifest and continues
//! it incrementally; the HTTP API streams one table.
//!
//! Memory stays bounded: rows go to the Parquet writer in batches of [`BATCH_ROWS`] and
//! leave it a row group ([`ROW_GROUP_ROWS`]) at a time.

pub mod columns;
pub mod dir;
pub mod docs;
mod scan;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::event::{AssetKey, DeploymentId, EventBody, Seq};
use crate::log;
use crate::projection::keys::{self as vk, K};
use crate::projection::{self, backfills, checks, runs, schema, Reader, Rows as _};
use columns::{Kind, Rows};
pub use tables::{Table, TableKind};

/// Rows gathered before they go to the Parquet writer as one record batch.
pub const BATCH_ROWS: usize = 8192;
/// Rows per Parquet row group: large enough to scan well, small enough to buffer.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be served as asked (a 400 over HTTP, a usage error in the CLI).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] log::Error),
    #[error("writing parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// What to export: validated against the snapshot's position by [`Plan::new`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub tables: Vec<Table>,
    /// Exclusive lower bound of the range.
    pub since: Seq,
    /// Inclusive upper bound: the snapshot's position unless an append-only export asked
    /// for less.
    pub until: Seq,
    /// Only this deployment (the HTTP API always sets it).
    pub deployment: Option<DeploymentId>,
}

impl Plan {
    pub fn new(
        tables: Vec<Table>,
        since: Seq,
        until: Option<Seq>,
        deployment: Option<DeploymentId>,
        position: Seq,
    ) -> Result<Plan> {
        if since > position {
            return Err(Error::Invalid(format!(
                "since={since} is beyond the end of the log (seq {position})"
            )));
        }
        let until = match until {
            None => position,
            Some(u) if u > position => {
                return Err(Error::Invalid(format!(
                    "until={u} is beyond the end of the log (seq {position})"
                )))
            }
            Some(u) if u < since => {
                return Err(Error::Invalid(format!("until={u} is before since={since}")))
            }
            Some(u) => u,
        };
        if until < position {
            if let Some(t) = tables.iter().find(|t| t.kind() != TableKind::Append) {
                return Err(Error::Invalid(format!(
                    "until applies to append tables only: {} is a snapshot table, exported \
                     as of the current position (seq {position})",
                    t.name()
                )));
            }
        }
        Ok(Plan {
            tables,
            since,
            until,
            deployment,
        })
    }

    fn wants_deployment(&self, dep: DeploymentId) -> bool {
        self.deployment.is_none_or(|d| d == dep)
    }
}

/// One table's finished output.
pub struct Written<W> {
    pub table: Table,
    pub inner: W,
    pub rows: u64,
}

/// A table being written: Arrow rows in, Parquet out.
struct Sink<W: Write + Send> {
    table: Table,
    rows: Rows,
    writer: ArrowWriter<W>,
    written: u64,
}

impl<W: Write + Send> Sink<W> {
    fn new(table: Table, out: W, plan: &Plan) -> Result<Sink<W>> {
        let rows = Rows::new(table.columns());
        let meta = [
            ("assetlog.table", table.name().to_string()),
            ("assetlog.schema_version", table.version().to_string()),
            ("assetlog.since", plan.since.to_string()),
            ("assetlog.until", plan.until.to_string()),
        ];
        let mut props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_created_by(format!("assetlog {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                meta.into_iter()
                    .map(|(k, v)| KeyValue::new(k.to_string(), v))
                    .collect(),
            ));
        for c in table.columns() {
            if !c.dictionary && c.kind != Kind::StrList {
                props = props.set_column_dictionary_enabled(ColumnPath::from(c.name), false);
            }
        }
        let schema = columns::schema(table.columns());
        let writer = ArrowWriter::try_new(out, schema, Some(props.build()))?;
        Ok(Sink {
            table,
            rows,
            writer,
            written: 0,
        })
    }

    /// Hand full batches to the writer.
    fn maybe_flush(&mut self) -> Result<()> {
        if self.rows.len() >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Write a batch built elsewhere (the log pass's workers).
    fn write_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.written += batch.num_rows() as u64;
        self.writer.write(batch)?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.rows.is_empty() {
            self.written += self.rows.len() as u64;
            let batch = self.rows.finish()?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Written<W>> {
        self.flush()?;
        let inner = self.writer.into_inner()?;
        Ok(Written {
            table: self.table,
            inner,
            rows: self.written,
        })
    }
}

/// Entities that events of an incremental range touched.
struct Touched {
    since: Seq,
    runs: BTreeSet<(DeploymentId, String)>,
    backfills: BTreeSet<(DeploymentId, String)>,
    schema_assets: BTreeSet<(DeploymentId, AssetKey)>,
}

impl Touched {
    fn new(since: Seq) -> Touched {
        Touched {
            since,
            runs: BTreeSet::new(),
            backfills: BTreeSet::new(),
            schema_assets: BTreeSet::new(),
        }
    }

    fn merge(&mut self, other: Touched) {
        self.runs.extend(other.runs);
        self.backfills.extend(other.backfills);
        self.schema_assets.extend(other.schema_assets);
    }

    fn note(&mut self, dep: DeploymentId, body: &EventBody, run: Option<&str>) {
        if let Some(r) = run {
            self.runs.insert((dep, r.to_string()));
        }
        match body {
            EventBody::BackfillCreated(b) => {
                self.backfills.insert((dep, b.backfill_id.clone()));
            }
            EventBody::BackfillUpdated(b) => {
                self.backfills.insert((dep, b.backfill_id.clone()));
            }
            EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a)
                if a.metadata.column_schema().is_some() =>
            {
                self.schema_assets.insert((dep, a.asset_key.clone()));
            }
            EventBody::Definitions(d) => {
                for def in &d.assets {
                    if def.metadata.column_schema().is_some() {
                        self.schema_assets.insert((dep, def.asset_key.clone()));
                    }
                }
            }
            _ => {}
        }
    }
}

/// Export `plan` from `reader`'s snapshot into one writer per table (`outputs`, in the
/// plan's table order). `names` maps deployment ids to names; `progress` gets the seq
/// reached now and then.
pub fn export<W: Write + Send>(
    reader: &Reader<'_>,
    names: &BTreeMap<DeploymentId, String>,
    plan: &Plan,
    outputs: Vec<W>,
    progress: &mut dyn FnMut(Seq),
) -> Result<Vec<Written<W>>> {
    let mut sinks: Vec<Sink<W>> = plan
        .tables
        .iter()
        .zip(outputs)
        .map(|(t, w)| Sink::new(*t, w, plan))
        .collect::<Result<_>>()?;
    let incremental = plan.since > 0;
    let any_append = plan.tables.iter().any(|t| t.kind() == TableKind::Append);
    let any_snapshot = plan.tables.iter().any(|t| t.kind() != TableKind::Append);
    let mut touched = Touched::new(plan.since);
    if any_append || (incremental && any_snapshot) {
        let track = (incremental && any_snapshot).then_some(&mut touched);
        scan::run(reader, names, plan, &mut sinks, track, progress)?;
    }
    progress(plan.until);

    let touched = incremental.then_some(&touched);
    for s in sinks.iter_mut() {
        for (&dep, name) in names.iter().filter(|(d, _)| plan.wants_deployment(**d)) {
            let cx = tables::Ctx {
                deployment: name,
                as_of: plan.until,
            };
            match s.table {
                Table::Runs => export_runs(reader, &cx, dep, touched, s)?,
                Table::AssetChecks => export_checks(reader, &cx, dep, touched, s)?,
                Table::ColumnSchemas => export_schemas(reader, &cx, dep, touched, s)?,
                Table::Backfills => export_backfills(reader, &cx, dep, touched, s)?,
                _ => break,
            }
        }
    }
    sinks.into_iter().map(Sink::finish).collect()
}

fn export_runs<W: Write + Send>(
    reader: &Reader<'_>,
    cx: &tables::Ctx,
    dep: DeploymentId,
    touched: Option<&Touched>,
    s: &mut Sink<W>,
) -> Result<()> {
    match touched {
        None => {
            let prefix = K::new(vk::RUN, dep).build();
            let mut err = None;
            reader.walk(&prefix, &vk::end_of(&prefix), false, |_, v| {
                let r: runs::RunRecord = projection::dec(v)?;
                tables::run(&mut s.rows, cx, &r);
                if let Err(e) = s.maybe_flush() {
                    err = Some(e);
                    return Ok(false);
                }
                Ok(true)
            })?;
            err.map_or(Ok(()), Err)
        }
        Some(t) => {
            for (_, id) in t
                .runs
                .range((dep, String::new())..)
                .take_while(|(d, _)| *d == dep)
            {
                if let Some(r) = runs::get(reader, dep, id)? {
                    tables::run(&mut s.rows, cx, &r);
                    s.maybe_flush()?;
                }
            }
            Ok(())
        }
    }
}

fn export_checks<W: Write + Send>(
    reader: &Reader<'_>,
    cx: &tables::Ctx,
    dep: DeploymentId,
    touched: Option<&Touched>,
    s: &mut Sink<W>,
) -> Result<()> {
    let prefix = K::new(vk::CHECK_EXECUTION, dep).build();
    let mut keys: HashMap<u64, AssetKey> = HashMap::new();
    let mut err = None;
    reader.walk(&prefix, &vk::end_of(&prefix), false, |k, v| {
        let e: checks::CheckExecution = projection::dec(v)?;
        // An execution changes with its own events (which have its seq or carry its run)
        // and with its run's outcome (a planned execution resolves against it).
        if let Some(t) = touched {
            let changed = e.id > t.since
                || e.evaluation_seq.is_some_and(|s| s > t.since)
                || e.run_id
                    .as_ref()
                    .is_some_and(|r| t.runs.contains(&(dep, r.clone())));
            if !changed {
                return Ok(true);
            }
        }
        let asset = u64::from_be_bytes(k[5..13].try_into().unwrap_or_default());
        let key = match keys.get(&asset) {
            Some(k) => k.clone(),
            None => {
                let Some(key) = projection::asset_key(reader, dep, asset)? else {
                    return Ok(true);
                };
                keys.insert(asset, key.clone());
                key
            }
        };
        let check = vk::str_at(k, 13).unwrap_or_default();
        let status = checks::resolve(reader, dep, &e)?;
        tables::check_execution(&mut s.rows, cx, &key, check, &e, status);
        if let Err(e) = s.maybe_flush() {
            err = Some(e);
            return Ok(false);
        }
        Ok(true)
    })?;
    err.map_or(Ok(()), Err)
}

fn schema_rows<W: Write + Send>(
    reader: &Reader<'_>,
    cx: &tables::Ctx,
    dep: DeploymentId,
    key: &AssetKey,
    history: &[(i64, Seq, u64)],
    s: &mut Sink<W>,
) -> Result<()> {
    let versions = schema::collapse(history);
    for (i, v) in versions.iter().enumerate() {
        let Some(table) = schema::by_hash(reader, dep, v.hash)? else {
            continue;
        };
        let next = versions.get(i + 1).map(|n| n.since_us);
        tables::schema_version(
            &mut s.rows,
            cx,
            key,
            (i + 1, v, next, next.is_none()),
            &table,
        );
        s.maybe_flush()?;
    }
    Ok(())
}

fn export_schemas<W: Write + Send>(
    reader: &Reader<'_>,
    cx: &tables::Ctx,
    dep: DeploymentId,
    touched: Option<&Touched>,
    s: &mut Sink<W>,
) -> Result<()> {
    let mut assets: Vec<u64> = Vec::new();
    match touched {
        Some(t) => {
            for (d, key) in &t.schema_assets {
                if *d == dep {
                    assets.extend(projection::asset_id(reader, dep, key)?);
                }
            }
        }
        None => {
            // Every asset with history rows: one seek per asset and family, not a walk of
            // every entry.
            let mut with_rows = BTreeSet::new();
            for kind in [vk::MATERIALIZATIONS, vk::OBSERVATIONS, vk::POINTS] {
                let prefix = K::new(kind, dep).build();
                let mut lo = prefix.clone();
                let hi = vk::end_of(&prefix);
                while let Some((k, _)) = reader.scan(&lo, &hi, false, 1)?.pop() {
                    let asset = u64::from_be_bytes(k[5..13].try_into().unwrap_or_default());
                    with_rows.insert(asset);
                    lo = K::new(kind, dep).u64(asset.saturating_add(1)).build();
                    if asset == u64::MAX {
                        break;
                    }
                }
            }
            assets.extend(with_rows);
        }
    }
    for asset in assets {
        let Some(key) = projection::asset_key(reader, dep, asset)? else {
            continue;
        };
        let history = schema::history(reader, dep, asset)?;
        schema_rows(reader, cx, dep, &key, &history, s)?;
    }
    Ok(())
}

fn export_backfills<W: Write + Send>(
    reader: &Reader<'_>,
    cx: &tables::Ctx,
    dep: DeploymentId,
    touched: Option<&Touched>,
    s: &mut Sink<W>,
) -> Result<()> {
    let ids: Vec<String> = match touched {
        Some(t) => {
            let mut ids: BTreeSet<String> = t
                .backfills
                .iter()
                .filter(|(d, _)| *d == dep)
                .map(|(_, id)| id.clone())
                .collect();
            // A run of a backfill changes the backfill's progress.
            for (d, run) in &t.runs {
                if *d == dep {
                    if let Some(b) = runs::get(reader, dep, run)?
                        .and_then(|r| r.backfill_id().map(str::to_string))
                    {
                        ids.insert(b);
                    }
                }
            }
            ids.into_iter().collect()
        }
        None => {
            let prefix = K::new(vk::BACKFILL, dep).build();
            let mut ids = Vec::new();
            reader.walk(&prefix, &vk::end_of(&prefix), false, |_, v| {
                let b: backfills::BackfillRecord = projection::dec(v)?;
                ids.push(b.backfill_id);
                Ok(true)
            })?;
            ids
        }
    };
    for id in ids {
        if let Some(b) = backfills::get(reader, dep, &id)? {
            let p = backfills::progress(reader, dep, &id)?;
            tables::backfill(&mut s.rows, cx, &b, &p);
            s.maybe_flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
