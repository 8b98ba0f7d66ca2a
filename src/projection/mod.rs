//! Projections: read-optimised views of the log, written in the same `WriteBatch` as the
//! events they derive from, and always equal to a replay of the log.
//!
//! Each view is a module that owns its key family (see [`keys`]), its `apply`, and its typed
//! read functions:
//!
//! - [`assets`]: the catalog (definition, latest materialization / observation, last run,
//!   counts, wipe), filters by key prefix, group, owner, tag, kind;
//! - [`materializations`]: history per asset and per partition, newest first by
//!   `(timestamp, seq)`, paged;
//! - [`partitions`]: per-partition state and per-asset status counts (no history scans);
//! - [`lineage`]: asset edges from definitions, column lineage, bounded traversal;
//! - [`points`]: what each event measured of an asset (row count, numeric values, schema
//!   hash), held in its history row, which the next two read;
//! - [`schema`]: current table schema, history (each distinct schema stored once), diffs;
//! - [`rowcounts`]: row-count series and every other numeric metadata value by label;
//! - [`runs`]: run records by status and by time;
//! - [`checks`]: check executions with resolution of planned ones;
//! - [`backfills`]: backfills and their progress from tagged runs.
//!
//! ## Order of arrival
//!
//! Agents retry and race, so "latest" never means "arrived last": it means the highest
//! `(event timestamp, seq)`. A run status that reached a terminal state never goes back;
//! among non-terminal states the furthest one wins; among terminal ones the latest by
//! `(timestamp, seq)`. A wipe hides events whose timestamp is at or before the wipe's (a
//! wipe of some partitions, their events).
//! These rules give the same answer for any arrival order of the same events (up to the
//! seq tie-break between events with equal timestamps).
//!
//! ## Rebuild
//!
//! Views carry [`VIEWS_VERSION`]; a store whose views have another version (or whose
//! views lag the log) is rebuilt or caught up at open. `assetlog rebuild` drops every view
//! row and replays the log.

pub mod assets;
pub mod backfills;
pub mod checks;
pub mod keys;
pub mod lineage;
pub mod materializations;
pub mod partitions;
pub mod points;
pub mod rowcounts;
pub mod runs;
pub mod schema;

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, Direction, IteratorMode, ReadOptions, Snapshot, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::event::{DeploymentId, Event, EventBody, Seq};
use crate::log::{self, cf, Log, LogOptions, Projector, Txn, Value};
use keys::K;

/// Bump when a view's rows change meaning or layout: stores with other versions rebuild.
pub const VIEWS_VERSION: u32 = 9;

/// Codec byte of every view value.
pub const VIEW_V1: u8 = 0x01;

pub type Result<T> = std::result::Result<T, log::Error>;

pub fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    with_encoded(v, <[u8]>::to_vec)
}

/// Call `f` with the stored bytes of `v`, encoded into a reused buffer (one exact-size
/// allocation in [`enc`] instead of a growing one; none at all for a hash).
pub fn with_encoded<T: Serialize, R>(v: &T, f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        buf.push(VIEW_V1);
        postcard::to_io(v, &mut *buf).expect("postcard encoding into a Vec");
        f(&buf)
    })
}

pub fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    match bytes.split_first() {
        Some((&VIEW_V1, body)) => postcard::from_bytes(body).map_err(|e| log::Error::Corrupt {
            location: "view row".into(),
            reason: e.to_string(),
        }),
        _ => Err(log::Error::Corrupt {
            location: "view row".into(),
            reason: "unknown view codec byte".into(),
        }),
    }
}

// Every view value can be held decoded in the writer's overlay, with the views' codec.
impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Value for T {
    fn encode(&self) -> Vec<u8> {
        enc(self)
    }

    fn decode(bytes: &[u8]) -> Result<T> {
        dec(bytes)
    }
}

/// A reference to one event, kept in views so reads need not touch the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub seq: Seq,
    pub timestamp_us: i64,
    pub run_id: Option<String>,
    pub partition: Option<String>,
}

impl EventRef {
    pub fn of(seq: Seq, ev: &Event, partition: Option<String>) -> EventRef {
        EventRef {
            seq,
            timestamp_us: ev.envelope.timestamp_us,
            run_id: ev.envelope.run_id.clone(),
            partition,
        }
    }

    /// The order "latest" uses.
    pub fn order(&self) -> (i64, Seq) {
        (self.timestamp_us, self.seq)
    }
}

/// Keep the later of two refs by `(timestamp, seq)`.
pub fn later(a: Option<EventRef>, b: EventRef) -> Option<EventRef> {
    match a {
        Some(a) if a.order() >= b.order() => Some(a),
        _ => Some(b),
    }
}

/// Row access shared by the writer side ([`Txn`]) and the read side ([`Reader`]).
pub trait Rows {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Rows with `lo <= key < hi`, ascending (or descending), at most `limit`.
    fn scan(
        &self,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    fn get_as<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        match self.get(key)? {
            Some(v) => Ok(Some(dec(&v)?)),
            None => Ok(None),
        }
    }

    /// A record that the writer reads and rewrites often (one per asset or per run): the
    /// writer keeps it decoded between events and remembers it between groups.
    fn get_hot_as<T: Value>(&self, key: &[u8]) -> Result<Option<T>> {
        self.read_hot(key, |v: Option<&T>| v.cloned())
    }

    /// [`Rows::get_hot_as`] for `read`, without a copy where the record is held decoded.
    fn read_hot<T: Value, R>(&self, key: &[u8], read: impl FnOnce(Option<&T>) -> R) -> Result<R> {
        match self.get(key)? {
            Some(v) => Ok(read(Some(&T::decode(&v)?))),
            None => Ok(read(None)),
        }
    }

    /// Visit every row with `lo <= key < hi` in order (fetched in pages), until `visit`
    /// returns `false`.
    fn walk(
        &self,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut pages = Pages::new(lo.to_vec(), hi.to_vec(), reverse, 512);
        while let Some((k, v)) = pages.next(self)? {
            if !visit(&k, &v)? {
                return Ok(());
            }
        }
        Ok(())
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scan(prefix, &keys::end_of(prefix), reverse, limit)
    }

    /// The string that follows `prefix` in each key under it, in key order (for key
    /// families whose last component is a name: labels, run ids, partition keys).
    fn names_under(&self, prefix: &[u8]) -> Result<Vec<String>> {
        Ok(self
            .scan_prefix(prefix, false, usize::MAX)?
            .iter()
            .filter_map(|(k, _)| keys::str_at(k, prefix.len()).map(str::to_string))
            .collect())
    }
}

/// The rows with `lo <= key < hi` in order (or reversed), read a page at a time as they
/// are taken.
pub struct Pages {
    lo: Vec<u8>,
    hi: Vec<u8>,
    reverse: bool,
    size: usize,
    page: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Pages {
    pub fn new(lo: Vec<u8>, hi: Vec<u8>, reverse: bool, size: usize) -> Pages {
        Pages {
            lo,
            hi,
            reverse,
            size,
            page: Default::default(),
            done: false,
        }
    }

    /// The key of the next row, reading a page if need be.
    pub fn peek<R: Rows + ?Sized>(&mut self, rows: &R) -> Result<Option<&[u8]>> {
        if self.page.is_empty() && !self.done {
            let page = rows.scan(&self.lo, &self.hi, self.reverse, self.size)?;
            self.done = page.len() < self.size;
            if let Some((last, _)) = page.last() {
                if self.reverse {
                    self.hi = last.clone();
                } else {
                    // The smallest key after `last`.
                    self.lo = last.clone();
                    self.lo.push(0);
                }
            }
            self.page = page.into();
        }
        Ok(self.page.front().map(|(k, _)| k.as_slice()))
    }

    pub fn next<R: Rows + ?Sized>(&mut self, rows: &R) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.peek(rows)?;
        Ok(self.page.pop_front())
    }
}

impl Rows for Txn<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Txn::get(self, key)
    }

    // The typed reads decode the row where it lies (overlay, memo or RocksDB's block), with
    // no copy of its bytes first.
    fn get_as<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        Txn::with(self, key, |v| v.map(dec).transpose())?
    }

    fn read_hot<T: Value, R>(&self, key: &[u8], read: impl FnOnce(Option<&T>) -> R) -> Result<R> {
        Txn::read(self, key, read)
    }

    fn scan(
        &self,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows = Txn::scan(self, lo, hi)?;
        if reverse {
            rows.reverse();
        }
        rows.truncate(limit);
        Ok(rows)
    }
}

/// Reads of one request, all at one RocksDB snapshot, scoped to one deployment.
pub struct Reader<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    snapshot: Snapshot<'a>,
    pub deployment: DeploymentId,
    /// The log position the snapshot is consistent at.
    pub at_seq: Seq,
}

impl<'a> Reader<'a> {
    pub fn new(log: &'a Log, deployment: DeploymentId) -> Reader<'a> {
        let db: &DB = log.db();
        // Read the position first: the snapshot then holds at least everything up to it.
        let at_seq = log.last_seq();
        Reader {
            db,
            cf: db.cf_handle(cf::VIEWS).expect("created at open"),
            snapshot: db.snapshot(),
            deployment,
            at_seq,
        }
    }

    fn read_opts(&self) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&self.snapshot);
        ro
    }

    /// The exact log position of the snapshot: its last stored seq (0 when empty).
    /// `at_seq` may lag it by the commits that landed between reading it and the snapshot.
    pub fn position(&self) -> Result<Seq> {
        let log_cf = self.db.cf_handle(cf::LOG).expect("created at open");
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(vec![log::keys::LOG + 1]);
        let mut it = self.db.raw_iterator_cf_opt(log_cf, ro);
        it.seek_to_last();
        let seq = it.key().and_then(log::keys::log_seq).unwrap_or(0);
        it.status()?;
        Ok(seq)
    }

    /// Visit stored events with `from <= seq <= to` at this snapshot, undecoded, in order,
    /// until `visit` returns false.
    pub fn scan_log<E: From<log::Error>>(
        &self,
        from: Seq,
        to: Seq,
        mut visit: impl FnMut(Seq, &[u8]) -> std::result::Result<bool, E>,
    ) -> std::result::Result<(), E> {
        let log_cf = self.db.cf_handle(cf::LOG).expect("created at open");
        let mut ro = self.read_opts();
        ro.set_iterate_upper_bound(log::keys::log(to.saturating_add(1)).to_vec());
        ro.fill_cache(false);
        ro.set_readahead_size(4 << 20);
        let mut it = self.db.raw_iterator_cf_opt(log_cf, ro);
        it.seek(log::keys::log(from));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let Some(seq) = log::keys::log_seq(k) else {
                break;
            };
            if seq > to || !visit(seq, v)? {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(log::Error::from)?;
        Ok(())
    }

    /// Events by seq from the log, at this snapshot.
    pub fn events(&self, seqs: &[Seq]) -> Result<Vec<Event>> {
        let log_cf = self.db.cf_handle(cf::LOG).expect("created at open");
        let keys: Vec<[u8; 9]> = seqs.iter().map(|s| log::keys::log(*s)).collect();
        let values = self
            .db
            .batched_multi_get_cf_opt(log_cf, keys.iter(), true, &self.read_opts());
        seqs.iter()
            .zip(values)
            .map(|(seq, v)| match v? {
                Some(v) => log::codec::decode_event(&v, || format!("log seq {seq}")),
                None => Err(log::Error::Corrupt {
                    location: format!("log seq {seq}"),
                    reason: "a view points at a missing event".into(),
                }),
            })
            .collect()
    }
}

impl Rows for Reader<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf_opt(self.cf, key, &self.read_opts())?)
    }

    fn scan(
        &self,
        lo: &[u8],
        hi: &[u8],
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut ro = self.read_opts();
        ro.set_iterate_lower_bound(lo.to_vec());
        ro.set_iterate_upper_bound(hi.to_vec());
        let mode = if reverse {
            IteratorMode::End
        } else {
            IteratorMode::From(lo, Direction::Forward)
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(self.cf, ro, mode) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

/// A [`Reader`] that owns what it borrows: it can live in a GraphQL request's context.
pub struct OwnedReader {
    // Field order matters: `reader` (which borrows the DB inside `_log`) drops first.
    reader: Reader<'static>,
    _log: Arc<Log>,
}

impl OwnedReader {
    pub fn new(log: Arc<Log>, deployment: DeploymentId) -> OwnedReader {
        let reader = Reader::new(&log, deployment);
        // SAFETY: `reader` borrows the `DB` owned (through an `Arc`) by `log`. The `Log` is
        // heap-allocated and does not move when the `Arc` moves; this struct keeps that
        // `Arc` alive for as long as `reader` exists, and drops `reader` first (field
        // order). No reference with the forged lifetime escapes: `reader()` hands it out
        // tied to `&self`.
        #[allow(unsafe_code)]
        let reader = unsafe { std::mem::transmute::<Reader<'_>, Reader<'static>>(reader) };
        OwnedReader { reader, _log: log }
    }

    pub fn reader(&self) -> &Reader<'_> {
        &self.reader
    }
}

/// The projector the writer runs: every view's `apply`, in a fixed order.
#[derive(Default)]
pub struct Views;

impl Projector for Views {
    fn apply(&mut self, txn: &mut Txn<'_>, seq: Seq, ev: &Event) -> Result<()> {
        // Runs first: partitions and checks resolve against run status.
        runs::apply(txn, seq, ev)?;
        match &ev.body {
            EventBody::AssetMaterialization(_)
            | EventBody::AssetObservation(_)
            | EventBody::AssetMaterializationPlanned(_)
            | EventBody::AssetFailedToMaterialize(_)
            | EventBody::AssetWiped(_) => {
                // The event's asset is interned once, first, for all of its views.
                if let Some(key) = ev.body.asset_key() {
                    let id = intern(txn, ev.envelope.deployment, key)?;
                    assets::apply(txn, seq, ev, id)?;
                    materializations::apply(txn, seq, ev, id)?;
                    partitions::apply(txn, seq, ev, id)?;
                    lineage::apply(txn, seq, ev, id)?;
                    rowcounts::apply(txn, seq, ev, id)?;
                }
            }
            EventBody::AssetCheckPlanned(_) | EventBody::AssetCheckEvaluation(_) => {
                checks::apply(txn, seq, ev)?;
            }
            EventBody::Definitions(d) => {
                lineage::apply_definitions(txn, seq, ev, d)?;
                points::apply_definitions(txn, seq, ev, d)?;
                checks::apply(txn, seq, ev)?;
            }
            EventBody::BackfillCreated(_) | EventBody::BackfillUpdated(_) => {
                backfills::apply(txn, seq, ev)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn applied(&mut self, txn: &mut Txn<'_>, seq: Seq) {
        txn.put(
            K::global(keys::APPLIED_SEQ).build(),
            seq.to_be_bytes().to_vec(),
        );
    }

    fn preparer(&self) -> Option<fn(&Event)> {
        Some(prepare)
    }

    /// Histories, series and indexes, which the views only scan: most of a replay's rows.
    fn unread_kinds(&self) -> &'static [u8] {
        &[
            keys::MATERIALIZATIONS,
            keys::PARTITION_MATERIALIZATIONS,
            keys::OBSERVATIONS,
            keys::RUN_PLANNED,
            keys::UPSTREAM,
            keys::DOWNSTREAM,
            keys::ROW_COUNTS,
            keys::POINTS,
            keys::RUNS_BY_STATUS,
            keys::RUNS_BY_TIME,
            keys::BACKFILL_RUNS,
        ]
    }
}

/// What [`Views`] can do for an event before applying it, on another thread: hash its table
/// schemas (each one is kept with its schema, see [`schema::hash`]).
fn prepare(ev: &Event) {
    let schemas = |m: &crate::event::Metadata| {
        if let Some(s) = m.column_schema() {
            schema::hash(s);
        }
    };
    match &ev.body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => schemas(&a.metadata),
        EventBody::Definitions(d) => d.assets.iter().for_each(|a| schemas(&a.metadata)),
        _ => {}
    }
}

/// The asset id of `key` in `dep`, creating it if new.
pub fn intern(txn: &mut Txn<'_>, dep: DeploymentId, key: &crate::event::AssetKey) -> Result<u64> {
    let k = K::new(keys::ASSET_ID, dep).asset_key(key).build();
    // An asset's id never changes once assigned.
    if let Some(id) = txn.read_immutable(&k, keys::tail_u64)? {
        return Ok(id);
    }
    let counter = K::global(keys::NEXT_ASSET_ID).build();
    let id = txn.get(&counter)?.map(|v| keys::tail_u64(&v)).unwrap_or(1);
    txn.put(counter, (id + 1).to_be_bytes().to_vec());
    txn.put(k, id.to_be_bytes().to_vec());
    txn.put(K::new(keys::ASSET_KEY, dep).u64(id).build(), enc(key));
    Ok(id)
}

/// The asset id of `key`, if it has one.
pub fn asset_id(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &crate::event::AssetKey,
) -> Result<Option<u64>> {
    Ok(rows
        .get(&K::new(keys::ASSET_ID, dep).asset_key(key).build())?
        .map(|v| keys::tail_u64(&v)))
}

/// The asset key of an id.
pub fn asset_key(
    rows: &impl Rows,
    dep: DeploymentId,
    id: u64,
) -> Result<Option<crate::event::AssetKey>> {
    rows.get_as(&K::new(keys::ASSET_KEY, dep).u64(id).build())
}

fn meta_u64(db: &DB, kind: u8) -> Result<Option<u64>> {
    let views = db.cf_handle(cf::VIEWS).expect("created at open");
    Ok(db
        .get_cf(views, K::global(kind).build())?
        .map(|v| keys::tail_u64(&v)))
}

/// Open the store with its views, bringing them up to date first: a store whose views
/// have another version is rebuilt; views that lag the log are caught up.
pub fn open(
    path: impl AsRef<Path>,
    options: LogOptions,
    mut progress: impl FnMut(Seq, Seq),
) -> anyhow::Result<Arc<Log>> {
    let log = Log::open_with(path, options, Some(Box::new(Views)))?;
    let version = meta_u64(log.db(), keys::VERSION)?;
    let last = log.last_seq();
    if version != Some(VIEWS_VERSION as u64) {
        if version.is_some() || last > 0 {
            tracing::warn!(found = ?version, want = VIEWS_VERSION, "views are of another version: rebuilding them from the log");
        }
        rebuild(&log, &mut progress)?;
    } else {
        let applied = meta_u64(log.db(), keys::APPLIED_SEQ)?.unwrap_or(0);
        if applied < last {
            tracing::info!(applied, last, "catching views up with the log");
            log.replay(&mut Views, (applied + 1, last), false, |s| {
                progress(s, last)
            })?;
        }
    }
    Ok(Arc::new(log))
}

/// Open the store to rebuild its views ([`rebuild`] next): neither caught up nor compacted
/// first, since they are about to be dropped.
pub fn open_to_rebuild(path: impl AsRef<Path>, options: LogOptions) -> Result<Arc<Log>> {
    let options = LogOptions {
        hold_views_compactions: true,
        ..options
    };
    Ok(Arc::new(Log::open_with(
        path,
        options,
        Some(Box::new(Views)),
    )?))
}

/// Drop every view row and replay the whole log. Nothing may append meanwhile.
pub fn rebuild(log: &Log, mut progress: impl FnMut(Seq, Seq)) -> Result<()> {
    log.clear_views()?;
    let last = log.last_seq();
    log.replay(&mut Views, (1, last), true, |s| progress(s, last))?;
    let views = log.db().cf_handle(cf::VIEWS).expect("created at open");
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    log.db().put_cf_opt(
        views,
        K::global(keys::VERSION).build(),
        (VIEWS_VERSION as u64).to_be_bytes(),
        &wo,
    )?;
    Ok(())
}

/// Every view row, for comparing live views with rebuilt ones.
pub fn dump(log: &Log) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).expect("created at open");
    let mut out = Vec::new();
    for item in db.iterator_cf(views, IteratorMode::Start) {
        let (k, v) = item?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests;
