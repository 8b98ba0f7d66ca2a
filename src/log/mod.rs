//! The append-only event log on RocksDB.
//!
//! One writer thread owns sequence numbers. Appenders send whole requests to it through a
//! bounded queue; it drains whatever has queued up (group commit), checks each event id
//! against the dedupe index, assigns sequence numbers, puts log entries, index entries and
//! view rows of all those requests in **one** `WriteBatch`, writes it with fsync, and only
//! then answers the appenders and advances the tail watch. So:
//!
//! - an acknowledged event is durable and visible to every read after the ack;
//! - a request is atomic: it is validated as a whole before it reaches the writer, and the
//!   writer stages it as a whole (a conflict anywhere in it rejects all of it);
//! - a re-sent event id gets its original sequence number back; the same id with different
//!   bytes is [`Error::Conflict`];
//! - after a failed write the writer is poisoned and refuses further writes (the state of a
//!   failed fsync is unknowable; restarting recovers from the WAL).
//!
//! Staging and writing are a two-stage pipeline: while a committer thread writes group N
//! (memtable inserts, WAL, fsync) and then answers its appenders, the writer stages group
//! N+1 on top of it. Group N's dedupe entries and view rows stay visible to that staging
//! until N is written, and N+1 is handed over only after N is written: if N fails, N+1
//! fails with it.
//!
//! The dedupe entries (event id -> seq and content hash) follow their group: once the group
//! is durable and answered, the committer writes them unsynced (they are derived from the
//! log, and left out of the fsynced batch they cut its write by a quarter). The
//! dedupe watermark, written with them, says through which seq they are complete; a crash
//! loses at most the memtable's share, and open re-indexes the log past the watermark before
//! the writer starts. Until a group's entries are in, the writer dedupes against its
//! in-memory table of them.
//!
//! The run and deployment indexes hold stretches, not events: consecutive new events of one
//! run (of one deployment) in a group share one entry `first seq -> last seq`. A batch of
//! 1,000 events of a few runs adds a handful of index entries instead of 2,000.
//!
//! Layout of keys and values: [`keys`] and [`codec`]; the DB format version: [`format`].

pub mod codec;
pub mod error;
pub mod format;
pub mod keys;
pub mod txn;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::thread::JoinHandle;

use rocksdb::{
    BlockBasedOptions, ColumnFamilyDescriptor, Direction, IteratorMode, Options, ReadOptions,
    WriteBatch, WriteOptions, DB,
};
use tokio::sync::{oneshot, watch};

use crate::event::{DeploymentId, Event, Seq};
use codec::DedupeEntry;
pub use error::{Error, Result};
pub use txn::{Memo, Overlay, Txn, Value};

/// Derives view rows from newly stored events, inside the writer's batch. Implemented by
/// [`crate::projection::Views`]; the log knows nothing of what the rows mean.
pub trait Projector: Send + 'static {
    /// Apply one new event. Rows written to `txn` commit atomically with the event.
    fn apply(&mut self, txn: &mut Txn<'_>, seq: Seq, event: &Event) -> Result<()>;

    /// Every event through `seq` has been applied (once per request or replayed chunk).
    fn applied(&mut self, txn: &mut Txn<'_>, seq: Seq);

    /// Work on an event that `apply` would otherwise do itself and that needs no view row,
    /// for another thread to do first: the writer's helper thread runs it on a large
    /// request's events while the writer projects them, and a replay's reading thread on
    /// every event it reads.
    fn preparer(&self) -> Option<fn(&Event)> {
        None
    }

    /// Kinds of view rows (their keys' first byte) that `apply` only writes or scans, never
    /// reads by key: a replay into empty views need not remember which of them it wrote.
    /// (A kind listed wrongly costs only speed: its reads then go to RocksDB.)
    fn unread_kinds(&self) -> &'static [u8] {
        &[]
    }
}

/// Column family names.
pub mod cf {
    pub const META: &str = "meta";
    pub const LOG: &str = "log";
    pub const INDEX: &str = "index";
    /// Owned by the projections (`crate::projection`); opaque to the log.
    pub const VIEWS: &str = "views";
    pub const ALL: [&str; 4] = [META, LOG, INDEX, VIEWS];
}

/// How the log is opened.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// fsync the WAL before acknowledging (the default). Off only for experiments.
    pub sync: bool,
    /// Requests that may wait for the writer; beyond this `try_append` says
    /// [`Error::QueueFull`].
    pub queue_capacity: usize,
    /// Most events the writer puts into one group commit (a request is never split: one
    /// larger than this is a group of its own).
    ///
    /// Small groups keep the pipeline full: while one group is written, the next is staged,
    /// and the appenders answered first send again meanwhile. Larger ones only save fsyncs,
    /// which cost less than staging the events they cover: with four HTTP agents sending
    /// 500 events each, a 20,000-event limit let every group gather all four requests and
    /// the stages run in turn (86,000-94,000 events/s), where 500 reaches 114,000-120,000.
    pub max_group_events: usize,
    /// Open with the views' background compactions held until [`Log::clear_views`], for a
    /// store whose views are about to be rebuilt: a compaction started at open would merge
    /// old view rows that the rebuild then drops, and its output could not be dropped whole.
    pub hold_views_compactions: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            sync: true,
            queue_capacity: 1024,
            max_group_events: 500,
            hold_views_compactions: false,
        }
    }
}

/// Where one appended event ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Appended {
    pub seq: Seq,
    /// True when the id was already stored (this reply gives the original seq).
    pub duplicate: bool,
}

struct Request {
    /// Shared with the encoder thread while the writer stages it, and with the appender.
    events: Arc<Vec<Event>>,
    reply: oneshot::Sender<Result<Vec<Appended>>>,
}

/// Where an appender waits for its answer.
type Reply = oneshot::Receiver<Result<Vec<Appended>>>;

/// What the writer's queue carries.
enum Msg {
    Append(Request),
    /// Hold the writer (tests, maintenance, `verify`).
    Pause(Pause),
}

/// A pause of the writer: it says on `settled` once everything queued before is written
/// (dedupe entries included), then waits until `release` hangs up.
struct Pause {
    settled: SyncSender<()>,
    release: Receiver<()>,
}

impl Pause {
    fn hold(self) {
        let _ = self.settled.send(());
        let _ = self.release.recv();
    }
}

/// Holds the writer still while alive; see [`Log::pause_writer`].
pub struct WriterPause {
    _release: SyncSender<()>,
}

/// The event log: open once per process and share (`Arc<Log>`).
pub struct Log {
    db: Arc<DB>,
    path: PathBuf,
    queue: RwLock<Option<SyncSender<Msg>>>,
    queue_capacity: usize,
    /// Messages sent to the writer and not yet taken by it.
    queued: Arc<AtomicUsize>,
    /// Bumped whenever the views are written by anyone but the writer (a rebuild): the
    /// writer then forgets the view rows it remembers.
    views_epoch: Arc<AtomicU64>,
    tail: watch::Receiver<Seq>,
    writer: Mutex<Option<JoinHandle<()>>>,
    admin: Mutex<()>,
    #[cfg(test)]
    commit_gate: CommitGate,
}

fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_max_background_jobs(2);
    o.set_bytes_per_sync(1 << 20);
    o.set_keep_log_file_num(4);
    // Reused WAL files are overwritten in place: an fsync then has no file size to update
    // (a third less latency than an appending one on this disk), which is what a lone
    // appender and small groups wait for. RocksDB then refuses writes without the WAL:
    // every write goes through it (unsynced where durability is not needed).
    o.set_recycle_log_file_num(4);
    // WAL files become reusable once every memtable they hold rows for is flushed: a
    // bound on their total forces that (and bounds the replay at open).
    o.set_max_total_wal_size(256 << 20);
    // Flushes and compactions run at the lowest CPU priority. A lone appender's request
    // waits on a chain of steps (staging on two threads, then the synced write) that keeps
    // about one core of two busy; a flush or compaction that takes a core from it
    // lengthens the chain, where at low priority it runs in the gaps. Under saturation
    // they still get their turn: a memtable or level 0 that fills up stalls writes until
    // they do. (Views ingest: median 3% higher over eight paired runs; see BENCHMARKS.md.)
    if let Ok(mut env) = rocksdb::Env::new() {
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        o.set_env(&env);
    }
    o
}

/// The views' memtable while appending (see [`views_options_file`]) and while replaying.
/// Inserts go into one small memtable, whose skiplist stays in cache (a 16 MB one took
/// 2.7-3.4 ms to take a group of 1,000 events; a 2 MB one, 0.9-1.2 ms). Full ones are
/// flushed [`VIEWS_MEMTABLES_MERGED`] at a time, into one file: as few and as large level-0
/// files as one 16 MB memtable gave. A replay writes nothing but
/// views, and larger flushes mean less compaction of rows it overwrites again and again.
const VIEWS_MEMTABLE: usize = 2 << 20;
const VIEWS_REPLAY_MEMTABLE: usize = 8 << 20;
const VIEWS_MEMTABLES_MERGED: usize = 8;
/// Room for a flush's worth of full memtables, the one being filled and a few more before
/// writes wait for the flush.
const VIEWS_MEMTABLES_MAX: usize = 12;

fn cf_options(name: &str) -> Options {
    let mut o = Options::default();
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_write_buffer_size(64 << 20);
    o.set_max_write_buffer_number(4);
    if name == cf::INDEX {
        // Almost every dedupe lookup is for a new id: a bloom over the memtable's whole keys
        // answers those misses without searching the skiplist (halves the lookup).
        o.set_memtable_prefix_bloom_ratio(0.1);
        o.set_memtable_whole_key_filtering(true);
    }
    let mut table = BlockBasedOptions::default();
    if name != cf::LOG {
        // Point lookups (dedupe ids, view rows) are often misses: a bloom filter answers them.
        table.set_bloom_filter(10.0, false);
    }
    table.set_block_size(16 << 10);
    o.set_block_based_table_factory(&table);
    o
}

/// The views' options, as an options file (see [`views_descriptor`]):
///
/// - small memtables, flushed several at a time (see [`VIEWS_MEMTABLE`]);
/// - an insert hint per key kind (`memtable_insert_with_hint_prefix_extractor`, the key's
///   first byte). The writer puts a group's view rows into its batch sorted, so each row
///   goes in a little after the row before it of its kind, between older rows of other
///   assets. Without a hint, RocksDB's single-writer insert searches the skiplist from its
///   top for every such row; from the hint it only climbs as far as the gap requires.
/// - Lz4, 16 KB blocks and a bloom filter, as the other families;
/// - background compactions off until [`Log::open_with`] turns them on (see
///   [`LogOptions::hold_views_compactions`]).
fn views_options_file() -> String {
    format!(
        "[Version]\n  rocksdb_version=10.4.2\n  options_file_version=1.1\n\n\
         [DBOptions]\n\n\
         [CFOptions \"default\"]\n\n\
         [CFOptions \"{views}\"]\n\
         \x20 memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1\n\
         \x20 compression=kLZ4Compression\n\
         \x20 write_buffer_size={memtable}\n\
         \x20 max_write_buffer_number={most}\n\
         \x20 min_write_buffer_number_to_merge={merged}\n\
         \x20 disable_auto_compactions=true\n\n\
         [TableOptions/BlockBasedTable \"{views}\"]\n\
         \x20 block_size=16384\n\
         \x20 filter_policy=bloomfilter:10:false\n",
        views = cf::VIEWS,
        memtable = VIEWS_MEMTABLE,
        most = VIEWS_MEMTABLES_MAX,
        merged = VIEWS_MEMTABLES_MERGED,
    )
}

/// Turn the views' background compactions on or off.
fn set_views_compactions(db: &DB, on: bool) -> Result<()> {
    let views = db.cf_handle(cf::VIEWS).expect("created at open");
    let off = if on { "false" } else { "true" };
    Ok(db.set_options_cf(views, &[("disable_auto_compactions", off)])?)
}

/// The views' column family, with [`views_options_file`]: the Rust bindings have no setter
/// for the insert hint, so the options are loaded from that file, written for the purpose
/// to a scratch directory in the store's (removed before RocksDB opens the store).
fn views_descriptor(store: &Path) -> Result<ColumnFamilyDescriptor> {
    let dir = store.join(format!(".views-options-{}", std::process::id()));
    let io = |e: std::io::Error| Error::ViewsOptions(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(&dir).map_err(io)?;
    let loaded = std::fs::write(dir.join("OPTIONS-000001"), views_options_file())
        .map_err(io)
        .and_then(|()| {
            Ok(Options::load_latest(
                &dir,
                rocksdb::Env::new()?,
                false,
                rocksdb::Cache::new_lru_cache(32 << 20),
            )?)
        });
    let _ = std::fs::remove_dir_all(&dir);
    let (_, families) = loaded?;
    families
        .into_iter()
        .find(|d| d.name() == cf::VIEWS)
        .ok_or_else(|| Error::ViewsOptions("no views family in the file".into()))
}

/// What a replay's projecting thread hands its writing thread for one chunk.
enum ToWrite {
    /// A sealed overlay (see [`Txn::seal`]), which the writing thread puts into a batch while
    /// the projecting thread reads it under the next chunk.
    Sealed(Arc<Overlay>),
    /// A batch built already (the records a memo wrote back, at the end).
    Batch(WriteBatch),
}

impl Log {
    /// Open (or create) the store at `path` and start its writer thread.
    pub fn open(path: impl AsRef<Path>, options: LogOptions) -> Result<Log> {
        Self::open_with(path, options, None)
    }

    /// Open with a projector that the writer runs on every new event.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: LogOptions,
        projector: Option<Box<dyn Projector>>,
    ) -> Result<Log> {
        let path = path.as_ref().to_path_buf();
        let mut descriptors: Vec<ColumnFamilyDescriptor> = cf::ALL
            .iter()
            .filter(|n| **n != cf::VIEWS)
            .map(|n| ColumnFamilyDescriptor::new(*n, cf_options(n)))
            .collect();
        descriptors.push(views_descriptor(&path)?);
        let db = Arc::new(DB::open_cf_descriptors(&db_options(), &path, descriptors)?);
        if let Some(old) = format::check_or_init(&db, &path)? {
            migrate(&db, old)?;
        }
        if !options.hold_views_compactions {
            set_views_compactions(&db, true)?;
        }
        let last = last_seq(&db)?;
        reindex(&db, last)?;
        let (tail_tx, tail_rx) = watch::channel(last);
        let (tx, rx) = sync_channel(options.queue_capacity);
        let queued = Arc::new(AtomicUsize::new(0));
        let views_epoch = Arc::new(AtomicU64::new(0));
        #[cfg(test)]
        let commit_gate = CommitGate::default();
        let (commits, committer) = spawn_committer(
            db.clone(),
            options.sync,
            tail_tx,
            #[cfg(test)]
            commit_gate.clone(),
        )
        .map_err(|e| Error::Corrupt {
            location: "committer thread".into(),
            reason: e.to_string(),
        })?;
        let memo = new_memo(projector.as_deref());
        let writer = Writer {
            queued: queued.clone(),
            views_epoch: views_epoch.clone(),
            memo_epoch: 0,
            db: db.clone(),
            next_seq: last + 1,
            max_group_events: options.max_group_events,
            poisoned: false,
            projector,
            batch_bytes: 0,
            encoder: spawn_encoder(),
            memo,
            commits: Some(commits),
            committer: Some(committer),
            inflight: None,
            prev_pending: Pending::default(),
            spare_pending: Pending::default(),
            prev_overlay: Overlay::default(),
            #[cfg(test)]
            gate: commit_gate.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("assetlog-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Corrupt {
                location: "writer thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Log {
            db,
            path,
            queue: RwLock::new(Some(tx)),
            queue_capacity: options.queue_capacity,
            queued,
            views_epoch,
            tail: tail_rx,
            writer: Mutex::new(Some(handle)),
            admin: Mutex::new(()),
            #[cfg(test)]
            commit_gate,
        })
    }

    /// Tests only: from now on the committer sends on the first channel when it has a group
    /// in hand, then writes it only after a message (or hang-up) on the second.
    #[cfg(test)]
    pub(crate) fn hold_commits(&self) -> (Receiver<()>, SyncSender<()>) {
        self.hold_committer(CommitPoint::Write)
    }

    /// Tests only: hold the committer at `point` of every group, as [`Log::hold_commits`].
    #[cfg(test)]
    pub(crate) fn hold_committer(&self, point: CommitPoint) -> (Receiver<()>, SyncSender<()>) {
        let (arrived_tx, arrived) = sync_channel(16);
        let (go, go_rx) = sync_channel(16);
        *self.commit_gate[point as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((arrived_tx, go_rx));
        (arrived, go)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The RocksDB handle, for the layers above (views, tenancy) that own their own keys.
    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    fn send(&self, msg: Msg, wait: bool) -> Result<()> {
        let guard = self.queue.read().unwrap_or_else(|p| p.into_inner());
        let Some(queue) = guard.as_ref() else {
            return Err(Error::Closed);
        };
        self.queued.fetch_add(1, Ordering::SeqCst);
        let sent = if wait {
            queue.send(msg).map_err(|_| Error::Closed)
        } else {
            queue.try_send(msg).map_err(|e| match e {
                TrySendError::Full(_) => Error::QueueFull {
                    capacity: self.queue_capacity,
                },
                TrySendError::Disconnected(_) => Error::Closed,
            })
        };
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
        sent
    }

    /// Queue `events` for the writer. The caller keeps a handle on them and drops it once
    /// answered: the writer's side lets go first, so the events are freed by the thread that
    /// made them, off the writer's and committer's path.
    fn enqueue(&self, events: Vec<Event>, wait: bool) -> Result<(Reply, Arc<Vec<Event>>)> {
        let (reply, rx) = oneshot::channel();
        let events = Arc::new(events);
        let mine = events.clone();
        self.send(Msg::Append(Request { events, reply }), wait)?;
        Ok((rx, mine))
    }

    /// Requests waiting in the writer's queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Hold the writer after what it is doing now, until the returned guard is dropped.
    /// Appends queue up meanwhile (and `try_append` reports a full queue): this is how the
    /// backpressure tests fill the queue deterministically.
    pub fn pause_writer(&self) -> Result<WriterPause> {
        let (release, wait) = sync_channel(0);
        let (settled, is_settled) = sync_channel(1);
        self.send(
            Msg::Pause(Pause {
                settled,
                release: wait,
            }),
            true,
        )?;
        // Once the writer has taken the pause and written all before it, the queue is empty
        // behind it. (An error means the writer is gone: nothing is left to wait for.)
        let _ = is_settled.recv();
        Ok(WriterPause { _release: release })
    }

    /// Append a validated batch and wait until it is durable. Waits for queue space.
    pub async fn append(&self, events: Vec<Event>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (rx, events) = self.enqueue(events, true)?;
        let replied = rx.await;
        drop(events);
        replied.map_err(|_| Error::Closed)?
    }

    /// Like [`Log::append`] but fails with [`Error::QueueFull`] instead of waiting for space.
    pub async fn try_append(&self, events: Vec<Event>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (rx, events) = self.enqueue(events, false)?;
        let replied = rx.await;
        drop(events);
        replied.map_err(|_| Error::Closed)?
    }

    /// [`Log::append`] for synchronous callers (CLI, benches, tests).
    pub fn append_blocking(&self, events: Vec<Event>) -> Result<Vec<Appended>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (rx, events) = self.enqueue(events, true)?;
        let replied = rx.blocking_recv();
        drop(events);
        replied.map_err(|_| Error::Closed)?
    }

    /// Stop taking appends, let the writer finish what is queued, and wait for it.
    pub fn shutdown(&self) {
        self.queue.write().unwrap_or_else(|p| p.into_inner()).take();
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
            // The dedupe entries live in the memtable only: persist them now, so the next
            // open need not re-index the log's tail.
            if let Err(e) = self.db.flush_cf(self.cf(cf::INDEX)) {
                tracing::warn!(error = %e, "flushing the dedupe index at shutdown failed; the next open re-indexes");
            }
        }
    }

    /// How many requests may wait for the writer.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// The highest committed sequence number (0 when empty).
    pub fn last_seq(&self) -> Seq {
        *self.tail.borrow()
    }

    /// A receiver that changes whenever new events are committed.
    pub fn subscribe(&self) -> watch::Receiver<Seq> {
        self.tail.clone()
    }

    /// One event by sequence number.
    pub fn get(&self, seq: Seq) -> Result<Option<Event>> {
        let cf = self.cf(cf::LOG);
        match self.db.get_pinned_cf(cf, keys::log(seq))? {
            Some(v) => Ok(Some(codec::decode_event(&v, || format!("log seq {seq}"))?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` events with sequence number `>= from`, in order.
    pub fn read(&self, from: Seq, limit: usize) -> Result<Vec<(Seq, Event)>> {
        let mut out = Vec::with_capacity(limit.min(4096));
        self.scan(from, |seq, ev| {
            out.push((seq, ev));
            out.len() < limit
        })?;
        Ok(out)
    }

    /// Visit events from `from` on, in order, until `visit` returns false.
    pub fn scan(&self, from: Seq, mut visit: impl FnMut(Seq, Event) -> bool) -> Result<()> {
        self.scan_raw(from, |seq, bytes| {
            let ev = codec::decode_event(bytes, || format!("log seq {seq}"))?;
            Ok(visit(seq, ev))
        })
    }

    /// Visit stored values from `from` on, undecoded.
    pub fn scan_raw(&self, from: Seq, visit: impl FnMut(Seq, &[u8]) -> Result<bool>) -> Result<()> {
        scan_log(&self.db, from, visit)
    }

    /// Up to `limit` events of one run with sequence number `>= from`, in order.
    pub fn read_run(
        &self,
        deployment: DeploymentId,
        run_id: &str,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Event)>> {
        self.read_ranges(&keys::run_range_prefix(deployment, run_id), from, limit)
    }

    /// Up to `limit` events of one deployment with sequence number `>= from`, in order.
    pub fn read_deployment(
        &self,
        deployment: DeploymentId,
        from: Seq,
        limit: usize,
    ) -> Result<Vec<(Seq, Event)>> {
        self.read_ranges(&keys::deployment_range_prefix(deployment), from, limit)
    }

    /// Events `>= from` of the stretches under `prefix` (run or deployment index), in order:
    /// the stretch holding `from` is found with one backward seek, then each stretch is one
    /// forward scan of the log.
    fn read_ranges(&self, prefix: &[u8], from: Seq, limit: usize) -> Result<Vec<(Seq, Event)>> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(prefix.to_vec());
        ro.set_iterate_upper_bound(keys::prefix_end(prefix));
        let mut ranges = self.db.raw_iterator_cf_opt(self.cf(cf::INDEX), ro);
        if stretch_at(&mut ranges, prefix, from)?.is_none() {
            // No stretch starts at or before `from`: begin with the first one.
            ranges.seek_to_first();
        }
        let mut log = self.db.raw_iterator_cf(self.cf(cf::LOG));
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (ranges.key(), ranges.value()) {
            let (first, last) = decode_range(k, v)?;
            let mut seq = first.max(from);
            if seq <= last {
                log.seek(keys::log(seq));
            }
            while seq <= last {
                if out.len() >= limit {
                    return Ok(out);
                }
                match (log.key().and_then(keys::log_seq), log.value()) {
                    (Some(found), Some(bytes)) if found == seq => out.push((
                        seq,
                        codec::decode_event(bytes, || format!("log seq {seq}"))?,
                    )),
                    _ => {
                        log.status()?;
                        return Err(Error::Corrupt {
                            location: format!("index {}", hex::encode(prefix)),
                            reason: format!("points at missing seq {seq}"),
                        });
                    }
                }
                log.next();
                seq += 1;
            }
            ranges.next();
        }
        ranges.status()?;
        Ok(out)
    }

    /// Run `projector` over stored events `from..=to` in chunks, committing view rows per
    /// chunk (rebuild and catch-up). Call only while nothing appends (before serving).
    /// `views_empty` says the views hold no row (just cleared, for a rebuild): the replay
    /// then reads only the keys it has written itself from RocksDB.
    pub fn replay(
        &self,
        projector: &mut dyn Projector,
        (from, to): (Seq, Seq),
        views_empty: bool,
        progress: impl FnMut(Seq),
    ) -> Result<()> {
        let views_cf = self.cf(cf::VIEWS);
        let memtable = |bytes: usize| {
            let bytes = bytes.to_string();
            self.db
                .set_options_cf(views_cf, &[("write_buffer_size", bytes.as_str())])
        };
        memtable(VIEWS_REPLAY_MEMTABLE)?;
        let memo = match views_empty {
            true => Memo::for_empty_views(
                to.saturating_sub(from) as usize + 1,
                projector.unread_kinds(),
            ),
            false => Memo::new(projector.unread_kinds()),
        };
        let replayed = self.replay_chunks(projector, from, to, memo, progress);
        memtable(VIEWS_MEMTABLE)?;
        replayed?;
        self.flush_views()
    }

    /// Flush the views' memtables and return once no row is left in one.
    ///
    /// Not `flush_cf`, which can wait forever (seen once in a rebuild): a background flush
    /// that picks the merged memtables (see [`VIEWS_MEMTABLES_MERGED`]) just after a
    /// manual flush asked for the newest one clears that request (RocksDB 10.4,
    /// `MemTableList::PickMemtablesToFlush`), and the one memtable left is fewer than a
    /// flush needs. Asking again, without waiting, until no memtable holds a row, gets
    /// round it.
    fn flush_views(&self) -> Result<()> {
        let views = self.cf(cf::VIEWS);
        let mut ask = rocksdb::FlushOptions::default();
        ask.set_wait(false);
        let count = |property: &str| -> Result<u64> {
            Ok(self.db.property_int_value_cf(views, property)?.unwrap_or(0))
        };
        loop {
            self.db.flush_cf_opt(views, &ask)?;
            if count("rocksdb.num-immutable-mem-table")? == 0
                && count("rocksdb.num-entries-active-mem-table")? == 0
            {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn replay_chunks(
        &self,
        projector: &mut dyn Projector,
        from: Seq,
        to: Seq,
        memo: Memo,
        mut progress: impl FnMut(Seq),
    ) -> Result<()> {
        // Small chunks keep a chunk's overlay (a few thousand rows), which the next chunk
        // also reads, in the projecting core's cache: 1,024 events rebuilt the
        // partition-heavy store faster than 8,192, 4,096 or 2,048 did, and as fast as 512.
        const CHUNK: usize = 1024;
        let views_cf = self.cf(cf::VIEWS);
        let memo = RefCell::new(memo);
        let mut prev = Arc::new(Overlay::default());
        // Three stages on three threads: a reader reads, decodes and prepares the next chunks,
        // this thread projects one, a writer puts the one before it into a batch and writes
        // it (and hands its events back to the reader to free).
        let (tx, rx) = sync_channel::<Result<Vec<(Seq, Event)>>>(2);
        let (to_write, writes) = sync_channel::<(ToWrite, Vec<(Seq, Event)>)>(1);
        let (ack, acks) = sync_channel::<Result<()>>(1);
        // Written chunks' events go back to the reader, which frees them: it allocated them,
        // and the allocator frees on the allocating thread faster than across threads.
        let (give_back, given_back) = std::sync::mpsc::channel::<Vec<(Seq, Event)>>();
        let prepare = projector.preparer();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                let mut next = from;
                while next <= to {
                    given_back.try_iter().for_each(drop);
                    // Up to CHUNK events' weight: a chunk of large definitions events would
                    // grow the overlay's table to millions of rows.
                    let mut events = Vec::with_capacity(CHUNK.min((to - next + 1) as usize));
                    let mut weight = 0;
                    let chunk = self
                        .scan(next, |seq, ev| {
                            if seq > to {
                                return false;
                            }
                            weight += ev.weight();
                            events.push((seq, ev));
                            weight < CHUNK
                        })
                        .map(|()| events);
                    if let (Ok(events), Some(prepare)) = (&chunk, prepare) {
                        events.iter().for_each(|(_, ev)| prepare(ev));
                    }
                    let end = match &chunk {
                        Ok(events) => events.last().map(|(s, _)| s + 1),
                        Err(_) => None,
                    };
                    let last = chunk.is_err() || end.is_none();
                    if tx.send(chunk).is_err() || last {
                        return;
                    }
                    next = end.unwrap_or(to + 1);
                }
            });
            scope.spawn(move || {
                // Not synced: a replay that dies half-way is simply redone (the views'
                // version marker is written only after the flush below).
                let wo = WriteOptions::default();
                let mut batch_bytes = 0;
                for (rows, events) in writes {
                    let batch = match rows {
                        ToWrite::Batch(batch) => batch,
                        ToWrite::Sealed(overlay) => {
                            // Room for about as much as the last chunk wrote: a batch that
                            // grows copies itself again and again.
                            let mut batch =
                                WriteBatch::with_capacity_bytes(batch_bytes + batch_bytes / 8);
                            overlay.put_sorted_into(&mut batch, views_cf);
                            // Let go before answering: the projector takes it back then.
                            drop(overlay);
                            batch_bytes = batch.size_in_bytes();
                            batch
                        }
                    };
                    let written = self.db.write_opt(batch, &wo).map_err(Error::from);
                    // The reader may be gone (it read the last chunk): then free them here.
                    let _ = give_back.send(events);
                    if ack.send(written).is_err() {
                        return;
                    }
                }
            });
            // The last seq of the chunk being written.
            let mut writing: Option<Seq> = None;
            let mut settle = |writing: &mut Option<Seq>| -> Result<()> {
                if let Some(last) = writing.take() {
                    acks.recv().map_err(|_| Error::Closed)??;
                    progress(last);
                }
                Ok(())
            };
            for chunk in rx {
                let events = chunk?;
                let Some(last) = events.last().map(|(s, _)| *s) else {
                    break;
                };
                let mut txn = Txn::with_memo(&self.db, views_cf, &memo).over_shared(prev);
                for (seq, ev) in &events {
                    projector.apply(&mut txn, *seq, ev)?;
                }
                projector.applied(&mut txn, last);
                // The chunk before is written before this one is sealed (which moves the
                // chunk before into the memo as committed).
                settle(&mut writing)?;
                prev = Arc::new(txn.seal());
                to_write
                    .send((ToWrite::Sealed(prev.clone()), events))
                    .map_err(|_| Error::Closed)?;
                writing = Some(last);
            }
            if memo.borrow().writes_back() {
                // The records the memo kept back, once the last chunk is written.
                if let Some(last) = writing {
                    settle(&mut writing)?;
                    let mut batch = WriteBatch::default();
                    Txn::with_memo(&self.db, views_cf, &memo)
                        .over_shared(std::mem::take(&mut prev))
                        .write_back_all(&mut batch);
                    to_write
                        .send((ToWrite::Batch(batch), Vec::new()))
                        .map_err(|_| Error::Closed)?;
                    writing = Some(last);
                }
            }
            drop(to_write);
            settle(&mut writing)
        })
    }

    /// Delete every view row (the projections' rebuild starts here).
    ///
    /// One range tombstone hides them all at once. Files below level 0 then hold only
    /// deleted rows and are dropped whole (dropping files ignores snapshots: nothing reads
    /// the views while they are rebuilt). The rest, in level 0 and the memtables, stays
    /// under the tombstone until background compaction removes it: compacting it here, up
    /// front, took a sixth of a rebuild.
    ///
    /// A compaction that began before the tombstone would write the old rows out again
    /// below level 0, and the files it works on cannot be dropped: the views' compactions
    /// stop, and the clear waits for any running one, first. (A rebuild that held them from
    /// open, see [`LogOptions::hold_views_compactions`], waits for none.)
    pub fn clear_views(&self) -> Result<()> {
        self.views_epoch.fetch_add(1, Ordering::SeqCst);
        set_views_compactions(&self.db, false)?;
        while self
            .db
            .property_int_value("rocksdb.num-running-compactions")?
            .unwrap_or(0)
            > 0
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let cf = self.cf(cf::VIEWS);
        let (from, to) = ([0u8].as_slice(), [0xffu8; 9].as_slice());
        self.db.delete_range_cf(cf, from, to)?;
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(WriteBatch::default(), &wo)?;
        // Into a level-0 file, where the first compaction of the old level-0 files sees it
        // and drops their rows instead of writing them out again.
        self.flush_views()?;
        self.db.delete_file_in_range_cf(cf, from, to)?;
        set_views_compactions(&self.db, true)
    }

    /// A consistent point-in-time view of the store, for reads that span several keys.
    pub fn snapshot(&self) -> rocksdb::Snapshot<'_> {
        self.db.snapshot()
    }

    /// The id of a deployment by name.
    pub fn deployment_id(&self, name: &str) -> Result<Option<DeploymentId>> {
        let cf = self.cf(cf::META);
        match self
            .db
            .get_pinned_cf(cf, keys::meta(keys::META_DEPLOYMENT, name.as_bytes()))?
        {
            Some(v) => Ok(Some(u32::from_be_bytes(fixed(&v, "deployment id")?))),
            None => Ok(None),
        }
    }

    /// Every deployment, by name.
    pub fn deployments(&self) -> Result<Vec<(String, DeploymentId)>> {
        let prefix = [keys::META_DEPLOYMENT];
        let mut out = Vec::new();
        for item in self.db.iterator_cf(
            self.cf(cf::META),
            IteratorMode::From(&prefix, Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.first() != Some(&keys::META_DEPLOYMENT) {
                break;
            }
            out.push((
                String::from_utf8_lossy(&k[1..]).into_owned(),
                u32::from_be_bytes(fixed(&v, "deployment id")?),
            ));
        }
        Ok(out)
    }

    /// The id of a deployment, creating it if new. Returns (id, created).
    pub fn ensure_deployment(&self, name: &str) -> Result<(DeploymentId, bool)> {
        let _guard = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(id) = self.deployment_id(name)? {
            return Ok((id, false));
        }
        let cf = self.cf(cf::META);
        let next_key = keys::meta(keys::META_NEXT_DEPLOYMENT, b"");
        let id = match self.db.get_pinned_cf(cf, &next_key)? {
            Some(v) => u32::from_be_bytes(fixed(&v, "next deployment id")?),
            None => 1,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf,
            keys::meta(keys::META_DEPLOYMENT, name.as_bytes()),
            id.to_be_bytes(),
        );
        batch.put_cf(cf, next_key, (id + 1).to_be_bytes());
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo)?;
        Ok((id, true))
    }

    /// Check the whole store: contiguous sequence numbers from 1, every value decodes, and
    /// the dedupe and run indexes agree with the log, entry for entry.
    pub fn verify(&self, mut progress: impl FnMut(Seq)) -> Result<VerifyReport> {
        // Appends wait meanwhile, and the last group's dedupe entries are in (a closed log
        // has nothing in flight).
        let _pause = self.pause_writer();
        let mut report = VerifyReport::default();
        let mut expected = 1;
        let index = self.cf(cf::INDEX);
        let mut problems = Vec::new();
        let mut covered = Coverage {
            ranges: self.db.raw_iterator_cf(index),
            last: Vec::new(),
        };
        self.scan_raw(1, |seq, bytes| {
            if seq != expected {
                problems.push(format!("gap: expected seq {expected}, found {seq}"));
            }
            expected = seq + 1;
            let ev = match codec::decode_event(bytes, || format!("log seq {seq}")) {
                Ok(ev) => ev,
                Err(e) => {
                    problems.push(e.to_string());
                    return Ok(true);
                }
            };
            let hash = codec::content_hash(bytes);
            let dkey = keys::dedupe(ev.envelope.deployment, &ev.envelope.event_id);
            match self.db.get_pinned_cf(index, &dkey)? {
                Some(v) => {
                    let d = DedupeEntry::decode(&v)?;
                    if d.seq != seq || d.hash != hash {
                        problems.push(format!(
                            "seq {seq}: dedupe entry of {:?} says seq {} / other hash",
                            ev.envelope.event_id, d.seq
                        ));
                    }
                }
                None => problems.push(format!(
                    "seq {seq}: no dedupe entry for id {:?}",
                    ev.envelope.event_id
                )),
            }
            let deployment = ev.envelope.deployment;
            if !covered.covers(&keys::deployment_range_prefix(deployment), seq)? {
                problems.push(format!(
                    "seq {seq}: missing from the index of its deployment"
                ));
            }
            if let Some(run) = &ev.envelope.run_id {
                if !covered.covers(&keys::run_range_prefix(deployment, run), seq)? {
                    problems.push(format!("seq {seq}: missing from the index of run {run:?}"));
                }
                report.run_entries_expected += 1;
            }
            report.events += 1;
            if report.events % 65_536 == 0 {
                progress(seq);
            }
            Ok(problems.len() < 100)
        })?;
        // Every index entry must point at a log entry (no orphans from a torn write).
        for item in self.db.iterator_cf(index, IteratorMode::Start) {
            let (k, v) = item?;
            match k.first() {
                Some(&keys::DEDUPE) => {
                    report.dedupe_entries += 1;
                    let d = DedupeEntry::decode(&v)?;
                    if d.seq == 0 || d.seq >= expected {
                        problems.push(format!("dedupe entry points past the log: seq {}", d.seq));
                    }
                }
                Some(&keys::RUN_RANGE) => {
                    let (first, last) = decode_range(&k, &v)?;
                    report.run_entries += last.saturating_sub(first) + 1;
                }
                Some(&keys::DEPLOYMENT_RANGE) => {
                    let (first, last) = decode_range(&k, &v)?;
                    report.deployment_entries += last.saturating_sub(first) + 1;
                    if last >= expected {
                        problems.push(format!("deployment index points past the log: seq {last}"));
                    }
                }
                _ => {}
            }
        }
        if report.dedupe_entries != report.events {
            problems.push(format!(
                "{} dedupe entries for {} events",
                report.dedupe_entries, report.events
            ));
        }
        if report.deployment_entries != report.events {
            problems.push(format!(
                "{} deployment-index entries for {} events",
                report.deployment_entries, report.events
            ));
        }
        if report.run_entries != report.run_entries_expected {
            problems.push(format!(
                "{} run-index entries for {} events with a run",
                report.run_entries, report.run_entries_expected
            ));
        }
        report.problems = problems;
        Ok(report)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events: u64,
    pub dedupe_entries: u64,
    /// Events covered by run-index stretches.
    pub run_entries: u64,
    pub run_entries_expected: u64,
    /// Events covered by deployment-index stretches.
    pub deployment_entries: u64,
    /// Empty when the store is sound.
    pub problems: Vec<String>,
}

/// Bring a store of an older format up to [`format::FORMAT_VERSION`]. Safe to redo after a
/// crash half-way: the version marker is written last.
fn migrate(db: &DB, from: u32) -> Result<()> {
    tracing::info!(
        from,
        to = format::FORMAT_VERSION,
        "migrating the store's format"
    );
    let index = db.cf_handle(cf::INDEX).expect("created at open");
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    if from < 2 {
        index_runs_as_stretches(db, &wo)?;
    }
    // 2 -> 3: the dedupe entries of older formats were written with their events, so they
    // are complete through the last seq.
    db.put_cf_opt(
        index,
        keys::dedupe_watermark(),
        last_seq(db)?.to_be_bytes(),
        &wo,
    )?;
    format::write(db, format::FORMAT_VERSION)?;
    tracing::info!(from, "store migrated");
    Ok(())
}

/// Format 1 -> 2: per-event run and deployment index entries become stretches.
fn index_runs_as_stretches(db: &DB, wo: &WriteOptions) -> Result<()> {
    let index = db.cf_handle(cf::INDEX).expect("created at open");
    let mut clear = WriteBatch::default();
    clear.delete_range_cf(
        index,
        [keys::RETIRED_RUN_EVENTS],
        [keys::DEPLOYMENT_RANGE + 1],
    );
    db.write_opt(clear, wo)?;
    let mut stretches = Stretches::default();
    let mut batch = WriteBatch::default();
    scan_log(db, 0, |seq, v| {
        let envelope = codec::decode_envelope(v, || format!("log seq {seq}"))?;
        stretches.add(
            &mut batch,
            index,
            envelope.deployment,
            envelope.run_id.as_deref(),
            seq,
        );
        if batch.len() >= 65_536 {
            db.write(std::mem::take(&mut batch))?;
        }
        Ok(true)
    })?;
    stretches.finish(&mut batch, index);
    db.write_opt(batch, wo)?;
    Ok(())
}

/// Visit the raw log entries with seq `>= from`, in order, while `visit` says true.
fn scan_log(db: &DB, from: Seq, mut visit: impl FnMut(Seq, &[u8]) -> Result<bool>) -> Result<()> {
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(vec![keys::LOG + 1]);
    let mut it = db.raw_iterator_cf_opt(db.cf_handle(cf::LOG).expect("created at open"), ro);
    it.seek(keys::log(from));
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let seq = keys::log_seq(k).ok_or_else(|| Error::Corrupt {
            location: format!("log key {}", hex::encode(k)),
            reason: "not a log key".into(),
        })?;
        if !visit(seq, v)? {
            return Ok(());
        }
        it.next();
    }
    it.status()?;
    Ok(())
}

/// Point lookups of `keys`, answered in the order given. RocksDB gets them sorted: sorting
/// them here is cheaper than its own sort through the comparator (1,000 ids: 0.30 instead
/// of 0.40 ms).
fn multi_get_sorted<'a>(
    db: &'a DB,
    cf: &rocksdb::ColumnFamily,
    keys: &[Vec<u8>],
) -> Vec<std::result::Result<Option<rocksdb::DBPinnableSlice<'a>>, rocksdb::Error>> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| keys[a].cmp(&keys[b]));
    let found = db.batched_multi_get_cf(cf, order.iter().map(|&i| &keys[i]), true);
    let mut out: Vec<Option<_>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
    for (&i, r) in order.iter().zip(found) {
        out[i] = Some(r);
    }
    out.into_iter()
        .map(|r| r.expect("RocksDB answers every key of a MultiGet"))
        .collect()
}

/// Put back the dedupe entries of the events past the dedupe watermark: those of the last
/// groups before a crash, which were written unsynced. Redone harmlessly if cut short.
fn reindex(db: &DB, last: Seq) -> Result<()> {
    let index = db.cf_handle(cf::INDEX).expect("created at open");
    let through = match db.get_cf(index, keys::dedupe_watermark())? {
        Some(v) => u64::from_be_bytes(fixed(&v, "dedupe watermark")?),
        None => 0,
    };
    if through >= last {
        return Ok(());
    }
    tracing::info!(
        from = through + 1,
        to = last,
        "re-indexing the event ids of the log's tail"
    );
    let mut batch = WriteBatch::default();
    scan_log(db, through + 1, |seq, v| {
        let envelope = codec::decode_envelope(v, || format!("log seq {seq}"))?;
        let entry = DedupeEntry {
            seq,
            hash: codec::content_hash(v),
        };
        batch.put_cf(
            index,
            keys::dedupe(envelope.deployment, &envelope.event_id),
            entry.encode(),
        );
        if batch.len() >= 65_536 {
            batch.put_cf(index, keys::dedupe_watermark(), seq.to_be_bytes());
            db.write(std::mem::take(&mut batch))?;
        }
        Ok(true)
    })?;
    batch.put_cf(index, keys::dedupe_watermark(), last.to_be_bytes());
    db.write(batch)?;
    Ok(())
}

/// Put `it` on the last stretch under `prefix` that starts at or before `seq`, and return it
/// (`None`, and `it` anywhere, when there is none).
fn stretch_at(
    it: &mut rocksdb::DBRawIteratorWithThreadMode<'_, DB>,
    prefix: &[u8],
    seq: Seq,
) -> Result<Option<(Seq, Seq)>> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    it.seek_for_prev(&key);
    it.status()?;
    match (it.key(), it.value()) {
        (Some(k), Some(v)) if k.len() == key.len() && k.starts_with(prefix) => {
            Ok(Some(decode_range(k, v)?))
        }
        _ => Ok(None),
    }
}

/// Answers "is `seq` inside a stretch under `prefix`?" for `verify`, remembering the last
/// few stretches found (runs may interleave) so a scan in seq order seeks about once per
/// stretch.
struct Coverage<'a> {
    ranges: rocksdb::DBRawIteratorWithThreadMode<'a, DB>,
    /// (prefix, first, last) of stretches found lately, oldest first.
    last: Vec<(Vec<u8>, Seq, Seq)>,
}

impl Coverage<'_> {
    const REMEMBERED: usize = 8;

    fn covers(&mut self, prefix: &[u8], seq: Seq) -> Result<bool> {
        if self
            .last
            .iter()
            .any(|(p, first, last)| p == prefix && (*first..=*last).contains(&seq))
        {
            return Ok(true);
        }
        match stretch_at(&mut self.ranges, prefix, seq)? {
            Some((first, last)) if (first..=last).contains(&seq) => {
                if self.last.len() >= Self::REMEMBERED {
                    self.last.remove(0);
                }
                self.last.push((prefix.to_vec(), first, last));
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// A stretch entry of the run or deployment index: (first, last) seq.
fn decode_range(key: &[u8], value: &[u8]) -> Result<(Seq, Seq)> {
    let corrupt = || Error::Corrupt {
        location: format!("index {}", hex::encode(key)),
        reason: format!("not a stretch entry ({} value bytes)", value.len()),
    };
    let first = keys::range_first(key).ok_or_else(corrupt)?;
    let last = value
        .try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| corrupt())?;
    if last < first {
        return Err(corrupt());
    }
    Ok((first, last))
}

/// Consecutive new events of one deployment, and of one run, become one index entry each.
/// Fed in seq order; [`Stretches::finish`] puts the open ones.
#[derive(Default)]
struct Stretches {
    deployment: Option<(DeploymentId, Seq, Seq)>,
    run: Option<(DeploymentId, String, Seq, Seq)>,
}

impl Stretches {
    fn add(
        &mut self,
        batch: &mut WriteBatch,
        cf: &rocksdb::ColumnFamily,
        deployment: DeploymentId,
        run: Option<&str>,
        seq: Seq,
    ) {
        match &mut self.deployment {
            Some((d, _, last)) if *d == deployment && *last + 1 == seq => *last = seq,
            open => {
                if let Some((d, first, last)) = open.replace((deployment, seq, seq)) {
                    batch.put_cf(cf, keys::deployment_range(d, first), last.to_be_bytes());
                }
            }
        }
        let Some(run) = run else { return };
        match &mut self.run {
            Some((d, r, _, last)) if *d == deployment && *last + 1 == seq && r == run => {
                *last = seq
            }
            open => {
                if let Some((d, r, first, last)) =
                    open.replace((deployment, run.to_owned(), seq, seq))
                {
                    batch.put_cf(cf, keys::run_range(d, &r, first), last.to_be_bytes());
                }
            }
        }
    }

    fn finish(&mut self, batch: &mut WriteBatch, cf: &rocksdb::ColumnFamily) {
        if let Some((d, first, last)) = self.deployment.take() {
            batch.put_cf(cf, keys::deployment_range(d, first), last.to_be_bytes());
        }
        if let Some((d, r, first, last)) = self.run.take() {
            batch.put_cf(cf, keys::run_range(d, &r, first), last.to_be_bytes());
        }
    }
}

/// A fixed-width value (the big-endian integers of the meta and index rows), or
/// [`Error::Corrupt`] naming `what`.
fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N]> {
    v.try_into().map_err(|_| Error::Corrupt {
        location: what.into(),
        reason: format!("expected {N} bytes, found {}", v.len()),
    })
}

fn last_seq(db: &DB) -> Result<Seq> {
    let cf = db.cf_handle(cf::LOG).expect("created at open");
    let mut it = db.raw_iterator_cf(cf);
    it.seek_to_last();
    it.status()?;
    Ok(it.key().and_then(keys::log_seq).unwrap_or(0))
}

/// Requests with at least this many events are encoded on a helper thread while the writer
/// looks up their ids.
const PARALLEL_ENCODE: usize = 256;
/// Events per unit of that shared encoding work.
const ENCODE_CHUNK: usize = 64;

/// The single writer: owns `next_seq` and every write to the log and its indexes.
struct Writer {
    db: Arc<DB>,
    next_seq: Seq,
    max_group_events: usize,
    poisoned: bool,
    queued: Arc<AtomicUsize>,
    projector: Option<Box<dyn Projector>>,
    /// Size of the last group's batch, to size the next one.
    batch_bytes: usize,
    /// `None` if the thread could not be started: the writer then encodes alone.
    encoder: Option<SyncSender<EncodeMsg>>,
    /// View rows remembered across groups, valid while `views_epoch` is `memo_epoch`.
    memo: Memo,
    views_epoch: Arc<AtomicU64>,
    memo_epoch: u64,
    /// The committer thread, and the answer it owes for the group it was last handed.
    commits: Option<SyncSender<Commit>>,
    committer: Option<JoinHandle<()>>,
    inflight: Option<Receiver<bool>>,
    /// The previous group's new dedupe entries and view rows: what staging must see of it
    /// until it is in RocksDB.
    prev_pending: Pending,
    prev_overlay: Overlay,
    #[cfg(test)]
    gate: CommitGate,
    /// An empty `Pending` with room, for the next group.
    spare_pending: Pending,
}

/// New dedupe entries of a group, by dedupe key, until the group is written.
type Pending = HashMap<Vec<u8>, DedupeEntry, foldhash::fast::RandomState>;

/// A staged group on its way to RocksDB.
struct Commit {
    batch: WriteBatch,
    /// The group's dedupe entries and the new dedupe watermark, written unsynced once the
    /// replies are out (the log past the watermark is re-indexed at open).
    dedupe: WriteBatch,
    staged: Vec<Staged>,
    /// The requests' events. Let go of before the replies, so that each appender, still
    /// holding them, frees its own (dropping thousands of events is real work, slower still
    /// on a thread that did not allocate them, and must not hold up the next group).
    spent: Vec<Arc<Vec<Event>>>,
    /// The group's last seq, if it appended anything.
    last_seq: Option<Seq>,
    /// Whether the write succeeded, sent once the replies are out.
    done: SyncSender<bool>,
}

/// Tests only: one gate per [`CommitPoint`]. Once set, the thread that reaches the point
/// says so and waits for a go (see `Log::hold_committer`).
#[cfg(test)]
type CommitGate = Arc<[Mutex<Option<(SyncSender<()>, Receiver<()>)>>; 3]>;

/// Tests only: where the committer (or the writer) can be held (see `Log::hold_committer`).
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) enum CommitPoint {
    /// The committer has a group in hand, not yet written.
    Write = 0,
    /// The committer has written and answered a group, its dedupe entries not yet written.
    Dedupe = 1,
    /// The writer has staged a group and waits for the one in flight to be written.
    Settle = 2,
}

#[cfg(test)]
fn pass_gate(gate: &CommitGate, point: CommitPoint) {
    if let Some((arrived, go)) = gate[point as usize]
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        let _ = arrived.send(());
        let _ = go.recv();
    }
}

/// The committer thread: writes each staged group, advances the tail, answers.
fn spawn_committer(
    db: Arc<DB>,
    sync: bool,
    tail: watch::Sender<Seq>,
    #[cfg(test)] gate: CommitGate,
) -> std::io::Result<(SyncSender<Commit>, JoinHandle<()>)> {
    let (tx, rx) = sync_channel::<Commit>(1);
    let handle = std::thread::Builder::new()
        .name("assetlog-commit".into())
        .spawn(move || {
            let mut wo = WriteOptions::default();
            wo.set_sync(sync);
            // Not synced: the log past the dedupe watermark is re-indexed at open.
            let unsynced = WriteOptions::default();
            for c in rx {
                #[cfg(test)]
                pass_gate(&gate, CommitPoint::Write);
                let written = if c.batch.is_empty() {
                    Ok(())
                } else {
                    db.write_opt(c.batch, &wo)
                };
                drop(c.spent);
                let ok = match written {
                    Ok(()) => {
                        if let Some(last) = c.last_seq {
                            tail.send_replace(last);
                        }
                        for s in c.staged {
                            let _ = s.reply.send(Ok(s.result));
                        }
                        // The events are durable: their dedupe entries can follow, off the
                        // appenders' path. The writer sees them in its pending tables until
                        // `done` is sent.
                        #[cfg(test)]
                        pass_gate(&gate, CommitPoint::Dedupe);
                        if c.dedupe.is_empty() {
                            true
                        } else if let Err(e) = db.write_opt(c.dedupe, &unsynced) {
                            tracing::error!(error = %e, "dedupe index write failed; refusing further writes");
                            false
                        } else {
                            true
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "log write failed; refusing further writes");
                        for s in c.staged {
                            let _ = s.reply.send(Err(Error::Poisoned));
                        }
                        false
                    }
                };
                let _ = c.done.send(ok);
            }
        })?;
    Ok((tx, handle))
}

/// The work on one request's events besides projecting them: the projector's preparer (on
/// the encoder thread), looking their ids up in the dedupe index (once, by whoever claims it
/// first), and encoding and hashing them, in chunks that the writer and the encoder thread
/// claim in turn.
struct EncodeJob {
    events: Arc<Vec<Event>>,
    /// The projector's [`Projector::preparer`], which the encoder thread runs first.
    prepare: Option<fn(&Event)>,
    db: Arc<DB>,
    lookup_claimed: AtomicBool,
    looked_up: OnceLock<Lookup>,
    next: AtomicUsize,
    out: Vec<OnceLock<Encoded>>,
}

/// Stored bytes and content hash of each event of a chunk.
type Encoded = Vec<(Vec<u8>, u128)>;

/// The events' dedupe keys, and what the index has for each.
type Lookup = (Vec<Vec<u8>>, Vec<Result<Option<DedupeEntry>>>);

/// What the encoder thread receives: a job, and where to say it has stopped working on it.
type EncodeMsg = (Arc<EncodeJob>, SyncSender<()>);

/// What a finished [`EncodeJob`] hands back: per event, its dedupe key, what the index has
/// for it, and its stored bytes and hash.
struct Finished {
    dkeys: Vec<Vec<u8>>,
    stored: Vec<Result<Option<DedupeEntry>>>,
    encoded: Encoded,
}

impl EncodeJob {
    fn new(events: Arc<Vec<Event>>, db: Arc<DB>, prepare: Option<fn(&Event)>) -> EncodeJob {
        let out = (0..events.len().div_ceil(ENCODE_CHUNK))
            .map(|_| OnceLock::new())
            .collect();
        EncodeJob {
            events,
            prepare,
            db,
            lookup_claimed: AtomicBool::new(false),
            looked_up: OnceLock::new(),
            next: AtomicUsize::new(0),
            out,
        }
    }

    fn chunk(&self, c: usize) -> &[Event] {
        let end = ((c + 1) * ENCODE_CHUNK).min(self.events.len());
        &self.events[c * ENCODE_CHUNK..end]
    }

    fn encode(events: &[Event]) -> Encoded {
        events
            .iter()
            .map(|e| {
                let b = codec::encode_event(e);
                let h = codec::content_hash(&b);
                (b, h)
            })
            .collect()
    }

    fn lookup(db: &DB, events: &[Event]) -> Lookup {
        let dkeys: Vec<Vec<u8>> = events
            .iter()
            .map(|e| keys::dedupe(e.envelope.deployment, &e.envelope.event_id))
            .collect();
        let index_cf = db.cf_handle(cf::INDEX).expect("created at open");
        let stored = multi_get_sorted(db, index_cf, &dkeys)
            .into_iter()
            .map(|found| match found? {
                Some(v) => DedupeEntry::decode(&v).map(Some),
                None => Ok(None),
            })
            .collect();
        (dkeys, stored)
    }

    /// Run the projector's preparer on every event (the encoder thread does, while the
    /// writer projects them).
    fn prepare(&self) {
        if let Some(prepare) = self.prepare {
            self.events.iter().for_each(prepare);
        }
    }

    /// Do the lookup if no one has claimed it, then encode chunks until none is left.
    fn work(&self) {
        if !self.lookup_claimed.swap(true, Ordering::Relaxed) {
            let _ = self.looked_up.set(Self::lookup(&self.db, &self.events));
        }
        loop {
            let c = self.next.fetch_add(1, Ordering::Relaxed);
            if c >= self.out.len() {
                return;
            }
            let _ = self.out[c].set(Self::encode(self.chunk(c)));
        }
    }

    /// The job's results in order, once no one else holds the job. A part is missing only
    /// if the encoder thread died on it; it is done here then.
    fn finish(job: Arc<EncodeJob>) -> Finished {
        let job = Arc::try_unwrap(job).unwrap_or_else(|shared| {
            EncodeJob::new(shared.events.clone(), shared.db.clone(), None)
        });
        let EncodeJob {
            events,
            db,
            looked_up,
            out,
            ..
        } = job;
        let (dkeys, stored) = looked_up
            .into_inner()
            .unwrap_or_else(|| Self::lookup(&db, &events));
        let mut encoded = Vec::with_capacity(events.len());
        for (chunk, out) in events.chunks(ENCODE_CHUNK).zip(out) {
            match out.into_inner() {
                Some(done) => encoded.extend(done),
                None => encoded.extend(Self::encode(chunk)),
            }
        }
        Finished {
            dkeys,
            stored,
            encoded,
        }
    }
}

/// The encoder thread: a long-lived second pair of hands for the writer (a thread started
/// per request would pay for its start and a fresh allocator heap every time).
fn spawn_encoder() -> Option<SyncSender<EncodeMsg>> {
    let (tx, rx) = sync_channel::<EncodeMsg>(1);
    std::thread::Builder::new()
        .name("assetlog-encoder".into())
        .spawn(move || {
            for (job, done) in rx {
                job.prepare();
                job.work();
                // Let go of the job before saying so: the writer then owns it alone.
                drop(job);
                let _ = done.send(());
            }
        })
        .ok()?;
    Some(tx)
}

/// Largest batch capacity reserved up front.
const MAX_BATCH_HINT: usize = 32 << 20;

/// A request staged into the group: its replies, waiting for the commit.
struct Staged {
    reply: oneshot::Sender<Result<Vec<Appended>>>,
    result: Vec<Appended>,
}

/// An empty memo for a writer with `projector`.
fn new_memo(projector: Option<&dyn Projector>) -> Memo {
    Memo::new(projector.map_or(&[], |p| p.unread_kinds()))
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        while let Ok(first) = rx.recv() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let first = match first {
                Msg::Append(r) => r,
                Msg::Pause(p) => {
                    self.settle();
                    p.hold();
                    continue;
                }
            };
            let mut group = VecDeque::from([first]);
            let mut pause = self.drain(&rx, &mut group, 0);
            // Past a pause, nothing more joins the group.
            let more = pause.is_none().then_some(&rx);
            if let Some(p) = self.commit_group(group, more) {
                pause = Some(p);
            }
            if let Some(p) = pause.take() {
                self.settle();
                p.hold();
            }
        }
        self.settle();
        self.commits = None;
        if let Some(h) = self.committer.take() {
            let _ = h.join();
        }
        tracing::debug!(last_seq = self.next_seq - 1, "writer stopped");
    }

    /// Add what has queued up to `group` until the group (with `staged` events already
    /// staged out of it) reaches the group size; stops at a pause and returns it.
    fn drain(
        &self,
        rx: &Receiver<Msg>,
        group: &mut VecDeque<Request>,
        staged: usize,
    ) -> Option<Pause> {
        let mut n = staged + group.iter().map(|r| r.events.len()).sum::<usize>();
        while n < self.max_group_events {
            match rx.try_recv() {
                Ok(Msg::Append(r)) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    n += r.events.len();
                    group.push_back(r);
                }
                Ok(Msg::Pause(p)) => {
                    self.queued.fetch_sub(1, Ordering::SeqCst);
                    return Some(p);
                }
                Err(_) => break,
            }
        }
        None
    }

    /// Wait until the group handed to the committer is written; false if its write failed
    /// (the writer is then poisoned).
    fn settle(&mut self) -> bool {
        #[cfg(test)]
        if self.inflight.is_some() {
            pass_gate(&self.gate, CommitPoint::Settle);
        }
        if let Some(done) = self.inflight.take() {
            if !done.recv().unwrap_or(false) {
                self.poisoned = true;
            }
        }
        !self.poisoned
    }

    /// Settle the group in flight if it is written already, without waiting: true if no
    /// group is in flight now and the writer is not poisoned.
    fn settle_if_written(&mut self) -> bool {
        let Some(done) = &self.inflight else {
            return !self.poisoned;
        };
        match done.try_recv() {
            Err(TryRecvError::Empty) => false,
            written => {
                self.inflight = None;
                if !written.unwrap_or(false) {
                    self.poisoned = true;
                }
                !self.poisoned
            }
        }
    }

    /// Stage `group` and hand it to the committer. Requests that queue up while the previous
    /// group is still being written join this one (fsyncs stay shared as widely as without
    /// the pipeline), unless `more` is `None`; a pause met on the way is returned.
    fn commit_group(
        &mut self,
        mut group: VecDeque<Request>,
        more: Option<&Receiver<Msg>>,
    ) -> Option<Pause> {
        if self.poisoned {
            for r in group {
                let _ = r.reply.send(Err(Error::Poisoned));
            }
            return None;
        }
        let mut pause = None;
        let epoch = self.views_epoch.load(Ordering::SeqCst);
        if epoch != self.memo_epoch {
            // Someone else rewrote the views: what the writer remembers of them is void.
            // (Nothing is in flight then: a rebuild runs with no appends.)
            self.memo = new_memo(self.projector.as_deref());
            self.prev_overlay.clear();
            self.memo_epoch = epoch;
        }
        // A lone appender waits for its answer, so the group before is usually written by
        // now: its rows go to the memo before staging, where this group's updates take its
        // records instead of copying them out of the overlay it handed on.
        if self.settle_if_written() {
            self.memo.absorb(std::mem::take(&mut self.prev_overlay));
        }
        let db = self.db.clone();
        let log_cf = db.cf_handle(cf::LOG).expect("created at open");
        let index_cf = db.cf_handle(cf::INDEX).expect("created at open");
        let views_cf = db.cf_handle(cf::VIEWS).expect("created at open");
        let memo = RefCell::new(std::mem::take(&mut self.memo));
        let prev_overlay = std::mem::take(&mut self.prev_overlay);
        let mut prev_pending = std::mem::take(&mut self.prev_pending);
        let mut txn = Txn::with_memo(&db, views_cf, &memo).over(prev_overlay);
        // Sized like the last group's batch, so it rarely has to grow (and copy) on the way.
        let mut batch = WriteBatch::with_capacity_bytes(self.batch_bytes);
        let mut dedupe = WriteBatch::default();
        // Ids staged in this group, so two requests in one group (and the next group, while
        // this one is being written) dedupe against them.
        let mut pending = std::mem::take(&mut self.spare_pending);
        let mut stretches = Stretches::default();
        let mut staged: Vec<Staged> = Vec::with_capacity(group.len());
        let start_seq = self.next_seq;
        let mut spent: Vec<Arc<Vec<Event>>> = Vec::with_capacity(group.len());
        let mut settled = false;
        let mut staged_events = 0;
        loop {
            let Some(req) = group.pop_front() else {
                if settled {
                    break;
                }
                settled = true;
                if !self.settle() {
                    for s in staged {
                        let _ = s.reply.send(Err(Error::Poisoned));
                    }
                    return None;
                }
                if let Some(rx) = more {
                    pause = self.drain(rx, &mut group, staged_events);
                }
                continue;
            };
            txn.begin();
            staged_events += req.events.len();
            let outcome = self.stage(
                &req.events,
                (&mut pending, &prev_pending),
                &mut stretches,
                (&mut batch, &mut dedupe),
                &mut txn,
                (log_cf, index_cf),
            );
            spent.push(req.events);
            match outcome {
                Ok(result) => staged.push(Staged {
                    reply: req.reply,
                    result,
                }),
                Err(e) => {
                    txn.rollback();
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        stretches.finish(&mut batch, index_cf);
        if self.next_seq != start_seq {
            dedupe.put_cf(
                index_cf,
                keys::dedupe_watermark(),
                (self.next_seq - 1).to_be_bytes(),
            );
        }
        let overlay = txn.write_into(&mut batch);
        self.memo = memo.into_inner();
        self.batch_bytes = batch.size_in_bytes().min(MAX_BATCH_HINT);
        // The group before was settled above: this one, staged on top of it, goes next.
        self.prev_overlay = overlay;
        self.prev_pending = pending;
        // Its table is kept for the next group: growing a fresh one every group costs page
        // faults on the writer's path.
        prev_pending.clear();
        self.spare_pending = prev_pending;
        let (done, inflight) = sync_channel(1);
        let commit = Commit {
            batch,
            dedupe,
            staged,
            spent,
            last_seq: (self.next_seq != start_seq).then(|| self.next_seq - 1),
            done,
        };
        let sent = match &self.commits {
            Some(tx) => tx.send(commit).map_err(|e| e.0),
            None => Err(commit),
        };
        match sent {
            Ok(()) => self.inflight = Some(inflight),
            Err(commit) => {
                tracing::error!("the committer thread is gone; refusing further writes");
                self.poisoned = true;
                for s in commit.staged {
                    let _ = s.reply.send(Err(Error::Poisoned));
                }
            }
        }
        pause
    }

    /// Stage one request into the batch, all or nothing.
    fn stage(
        &mut self,
        events: &Arc<Vec<Event>>,
        (pending, prev_pending): (&mut Pending, &Pending),
        stretches: &mut Stretches,
        (batch, dedupe): (&mut WriteBatch, &mut WriteBatch),
        txn: &mut Txn<'_>,
        (log_cf, index_cf): (&rocksdb::ColumnFamily, &rocksdb::ColumnFamily),
    ) -> Result<Vec<Appended>> {
        let first_seq = self.next_seq;
        // The ids are looked up and the events encoded and hashed together with the encoder
        // thread, for large requests. Meanwhile this thread projects the views as if every
        // event were new, which is the usual case; a request with a duplicate is projected
        // again once the lookups tell which of its events are new.
        let prepare = self.projector.as_ref().and_then(|p| p.preparer());
        let job = Arc::new(EncodeJob::new(events.clone(), self.db.clone(), prepare));
        let helped = match &self.encoder {
            Some(tx) if events.len() >= PARALLEL_ENCODE => {
                let (done_tx, done_rx) = sync_channel(1);
                tx.send((job.clone(), done_tx)).ok().map(|_| done_rx)
            }
            _ => None,
        };
        let mut projected = false;
        if let (Some(p), Some(_)) = (self.projector.as_mut(), &helped) {
            projected = events
                .iter()
                .zip(first_seq..)
                .try_for_each(|(ev, seq)| p.apply(txn, seq, ev))
                .is_ok();
            if !projected {
                // Projected again below, in order, after the lookups (whose errors come first).
                txn.rollback();
            }
        }
        job.work();
        if let Some(done) = helped {
            // An error means the encoder died; its part is redone below.
            let _ = done.recv();
        }
        let Finished {
            mut dkeys,
            stored,
            encoded,
        } = EncodeJob::finish(job);
        let mut local: HashMap<&[u8], DedupeEntry, foldhash::fast::RandomState> =
            HashMap::with_capacity_and_hasher(events.len(), Default::default());
        let mut new_entries = Vec::with_capacity(events.len());
        let mut result = Vec::with_capacity(events.len());
        let mut seq = first_seq;
        for (i, (((ev, dkey), stored), (bytes, hash))) in events
            .iter()
            .zip(&dkeys)
            .zip(stored)
            .zip(encoded)
            .enumerate()
        {
            let existing = match local
                .get(dkey.as_slice())
                .or_else(|| pending.get(dkey))
                .or_else(|| prev_pending.get(dkey))
            {
                Some(d) => Some(*d),
                None => stored?,
            };
            match existing {
                Some(d) if d.hash == hash => result.push(Appended {
                    seq: d.seq,
                    duplicate: true,
                }),
                Some(d) => {
                    return Err(Error::Conflict {
                        index: i,
                        event_id: ev.envelope.event_id.clone(),
                        seq: d.seq,
                    })
                }
                None => {
                    let entry = DedupeEntry { seq, hash };
                    local.insert(dkey, entry);
                    new_entries.push((i, seq, bytes, entry));
                    result.push(Appended {
                        seq,
                        duplicate: false,
                    });
                    seq += 1;
                }
            }
        }
        // Views before the log rows: a projection error must leave the batch untouched (the
        // txn rolls back).
        if let Some(p) = self.projector.as_mut() {
            if projected && new_entries.len() != events.len() {
                txn.rollback();
                projected = false;
            }
            if !projected {
                for (i, seq, _, _) in &new_entries {
                    p.apply(txn, *seq, &events[*i])?;
                }
            }
            if let Some((_, last, _, _)) = new_entries.last() {
                p.applied(txn, *last);
            }
        }
        drop(local);
        pending.reserve(new_entries.len());
        for (i, seq, bytes, entry) in new_entries {
            let envelope = &events[i].envelope;
            let dkey = std::mem::take(&mut dkeys[i]);
            batch.put_cf(log_cf, keys::log(seq), &bytes);
            dedupe.put_cf(index_cf, &dkey, entry.encode());
            stretches.add(
                batch,
                index_cf,
                envelope.deployment,
                envelope.run_id.as_deref(),
                seq,
            );
            pending.insert(dkey, entry);
        }
        self.next_seq = seq;
        Ok(result)
    }
}

#[cfg(test)]
mod tests;
