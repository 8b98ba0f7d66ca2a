//! A write overlay over the views column family, for the writer's group commit.
//!
//! Projections read and write view rows through a [`Txn`]: reads see the rows written
//! earlier in the same group (not yet in RocksDB), writes stay in the overlay until the
//! writer puts the whole group, log entries and view rows together, into one `WriteBatch`.
//! A request that fails half-way is rolled back to the point where it began.
//!
//! Records that are read and rewritten by many events (a run, an asset, a step) stay
//! decoded in the overlay ([`Txn::update`]): a group of 1,000 events of one run decodes and
//! encodes its record once, not 1,000 times. Encoding happens in [`Txn::write_into`] (in a
//! replay, on the writing thread: see [`Txn::seal`]).
//!
//! Layers, first match wins: this group's overlay, the previous group's (still being
//! written), the memo of committed rows, RocksDB.

use std::any::Any;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, DB};

use super::error::Result;

/// A view value that can be kept decoded in the overlay. The projections implement it for
/// their records with the views' codec.
pub trait Value: Clone + Send + Sync + Sized + 'static {
    fn encode(&self) -> Vec<u8>;
    fn decode(bytes: &[u8]) -> Result<Self>;
}

/// A decoded row of some [`Value`] type (`None`: deleted).
struct Typed<T>(Option<T>);

/// [`Typed`] with its type erased, so one overlay holds records of every view.
trait Record: Send + Sync {
    fn encode(&self) -> Option<Vec<u8>>;
    fn clone_box(&self) -> Box<dyn Record>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Value> Record for Typed<T> {
    fn encode(&self) -> Option<Vec<u8>> {
        self.0.as_ref().map(T::encode)
    }
    fn clone_box(&self) -> Box<dyn Record> {
        Box::new(Typed(self.0.clone()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A view row above RocksDB.
enum Row {
    Bytes(Vec<u8>),
    Deleted,
    Record(Box<dyn Record>),
}

impl Row {
    /// The row's stored bytes, encoded if need be, for `f`.
    fn with_bytes<R>(&self, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        match self {
            Row::Bytes(v) => f(Some(v)),
            Row::Deleted => f(None),
            Row::Record(r) => f(r.encode().as_deref()),
        }
    }

    /// The row as a `T` for `f`: in place if it is held decoded as one, else decoded.
    fn with_typed<T: Value, R>(&self, f: impl FnOnce(Option<&T>) -> R) -> Result<R> {
        match self {
            Row::Bytes(v) => Ok(f(Some(&T::decode(v)?))),
            Row::Deleted => Ok(f(None)),
            Row::Record(r) => match r.as_any().downcast_ref::<Typed<T>>() {
                Some(t) => Ok(f(t.0.as_ref())),
                // Held as another type (never done on purpose): through its bytes.
                None => Ok(f(r.encode().map(|v| T::decode(&v)).transpose()?.as_ref())),
            },
        }
    }

    fn put_into(&self, batch: &mut WriteBatch, cf: &ColumnFamily, key: &[u8]) {
        match self {
            Row::Bytes(v) => batch.put_cf(cf, key, v),
            Row::Deleted => batch.delete_cf(cf, key),
            Row::Record(r) => match r.encode() {
                Some(v) => batch.put_cf(cf, key, v),
                None => batch.delete_cf(cf, key),
            },
        }
    }
}

/// What a key had in the overlay before the current request first wrote it.
enum Before {
    /// Nothing: a rollback removes the key.
    Vacant,
    Was(Row, u32),
}

/// An overlay entry: the row, the request (`gen`) that last wrote it, what it was before
/// that request (meaningful only while `gen` is the current request's), and whether it is a
/// record that had no row before its group (see [`Memo::absorb`]).
struct Slot {
    row: Row,
    gen: u32,
    before: Before,
    fresh: bool,
}

impl Slot {
    /// A record that had a row before its group: the memo takes it in, and a memo that
    /// writes records back holds it back from the group's batch.
    fn kept(&self) -> bool {
        !self.fresh && matches!(self.row, Row::Record(_))
    }
}

/// Rows written by a group and not yet in RocksDB, by key.
///
/// Scans while staging are rare and stay within one kind of key (its first byte), so keys
/// are kept in order only per kind that has been scanned: built on the first scan of that
/// kind, then kept up to date. Every other key costs one hash-map entry, but for rows of
/// the kinds the projector never reads by key (see [`Memo::unread`]): those are only
/// appended, in the order written.
#[derive(Default)]
pub struct Overlay {
    rows: HashMap<Vec<u8>, Slot, foldhash::fast::RandomState>,
    ordered: Lazy<BTreeMap<u8, BTreeSet<Vec<u8>>>>,
    appended: Vec<(Vec<u8>, Row)>,
    /// For the kinds scanned so far: their appended keys in order, each with the index of
    /// its last row in `appended` (as `ordered` is for the others).
    appended_ordered: Lazy<BTreeMap<u8, BTreeMap<Vec<u8>, usize>>>,
}

/// An index an [`Overlay`] builds on its first scan, behind `&self`. A lock, not a
/// `RefCell`: a replay's writing thread reads a sealed overlay (see [`Txn::seal`]) while
/// the projecting thread may still scan it, so an overlay must be `Sync`. Only the
/// projecting thread ever locks it.
#[derive(Default)]
struct Lazy<T>(Mutex<T>);

impl<T> Lazy<T> {
    fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The kind of a key: its first byte.
fn kind(key: &[u8]) -> u8 {
    key.first().copied().unwrap_or(0)
}

/// A set of key kinds, a bit each.
#[derive(Default, Clone, Copy)]
struct Kinds([u64; 4]);

impl Kinds {
    fn all() -> Kinds {
        Kinds([u64::MAX; 4])
    }

    fn insert(&mut self, k: u8) {
        self.0[usize::from(k / 64)] |= 1 << (k % 64);
    }

    fn remove(&mut self, k: u8) {
        self.0[usize::from(k / 64)] &= !(1 << (k % 64));
    }

    /// Whether the kind of `key` is in the set.
    fn has_kind_of(&self, key: &[u8]) -> bool {
        let k = kind(key);
        self.0[usize::from(k / 64)] & (1 << (k % 64)) != 0
    }
}

impl Overlay {
    pub fn clear(&mut self) {
        self.rows.clear();
        self.ordered.get_mut().clear();
        self.appended.clear();
        self.appended_ordered.get_mut().clear();
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.appended.is_empty()
    }

    /// Put every row into `batch`, in key order (a key appended twice: in the order
    /// written, so the last one wins). Sorted by the keys' first 24 bytes held inline
    /// (zero-padded, which orders as the bytes do), then by the whole keys: most
    /// comparisons then read no key.
    pub fn put_sorted_into(&self, batch: &mut WriteBatch, cf: &ColumnFamily) {
        let head = |k: &[u8]| {
            let mut head = [0u8; 24];
            let n = k.len().min(24);
            head[..n].copy_from_slice(&k[..n]);
            let (hi, lo) = head.split_at(16);
            (
                u128::from_be_bytes(hi.try_into().expect("16 bytes")),
                u64::from_be_bytes(lo.try_into().expect("8 bytes")),
            )
        };
        let mut sorted: Vec<(u128, u64, &Vec<u8>, usize, &Row)> =
            Vec::with_capacity(self.rows.len() + self.appended.len());
        sorted.extend(self.rows.iter().map(|(k, slot)| {
            let (hi, lo) = head(k);
            (hi, lo, k, 0, &slot.row)
        }));
        sorted.extend(self.appended.iter().enumerate().map(|(i, (k, row))| {
            let (hi, lo) = head(k);
            (hi, lo, k, i, row)
        }));
        sorted.sort_unstable_by(|a, b| {
            (a.0, a.1)
                .cmp(&(b.0, b.1))
                .then_with(|| a.2.cmp(b.2))
                .then(a.3.cmp(&b.3))
        });
        for (_, _, k, _, row) in sorted {
            row.put_into(batch, cf, k);
        }
    }

    fn row(&self, key: &[u8]) -> Option<&Row> {
        self.rows.get(key).map(|s| &s.row)
    }

    /// Put `row` at `key`, to be written through, unless the overlay has a row there.
    fn put_fresh(&mut self, key: Vec<u8>, row: Row) {
        if let std::collections::hash_map::Entry::Vacant(e) = self.rows.entry(key) {
            if let Some(keys) = self.ordered.get_mut().get_mut(&kind(e.key())) {
                keys.insert(e.key().clone());
            }
            e.insert(Slot {
                row,
                gen: 0,
                before: Before::Vacant,
                fresh: true,
            });
        }
    }

    /// Append a row of a kind read only by scans.
    fn append(&mut self, key: Vec<u8>, row: Row) {
        if let Some(keys) = self.appended_ordered.get_mut().get_mut(&kind(&key)) {
            keys.insert(key.clone(), self.appended.len());
        }
        self.appended.push((key, row));
    }

    /// Drop the rows appended after the first `len` (their kinds' order is rebuilt on the
    /// next scan).
    fn truncate_appended(&mut self, len: usize) {
        self.appended.truncate(len);
        self.appended_ordered.get_mut().clear();
    }

    /// Visit the rows with `lo <= key < hi`: the appended ones (for a key appended more
    /// than once, its last row), then the others, each in key order.
    fn visit_range(&self, lo: &[u8], hi: &[u8], mut visit: impl FnMut(&Vec<u8>, &Row)) {
        use std::ops::Bound::{Excluded, Included};
        if lo >= hi {
            return;
        }
        if !self.appended.is_empty() {
            let mut ordered = self.appended_ordered.lock();
            for k in kind(lo)..=kind(hi) {
                let keys = ordered.entry(k).or_insert_with(|| {
                    let mut keys = BTreeMap::new();
                    for (i, (key, _)) in self.appended.iter().enumerate() {
                        if kind(key) == k {
                            keys.insert(key.clone(), i);
                        }
                    }
                    keys
                });
                for (key, i) in keys.range::<[u8], _>((Included(lo), Excluded(hi))) {
                    visit(key, &self.appended[*i].1);
                }
            }
        }
        if self.rows.is_empty() {
            return;
        }
        let mut ordered = self.ordered.lock();
        for k in kind(lo)..=kind(hi) {
            let keys = ordered.entry(k).or_insert_with(|| {
                self.rows
                    .keys()
                    .filter(|key| kind(key) == k)
                    .cloned()
                    .collect()
            });
            for key in keys.range::<[u8], _>((Included(lo), Excluded(hi))) {
                visit(key, &self.rows[key].row);
            }
        }
    }
}

/// Committed view rows remembered across groups by their one writer, so that hot lookups
/// skip RocksDB:
///
/// - `rows`: rows that never change once written (asset ids, schemas by hash);
/// - `hot`: the committed value (or absence) of rows read and rewritten often (asset, run
///   and step records, partition states and counts, check summaries), records kept
///   decoded.
///
/// Only committed values go in: rows read from RocksDB, and a group's rows once it is
/// written ([`Memo::absorb`]: by [`Txn::write_into`], or before the next group is staged
/// if the writer finds it written by then). [`Txn::update`] moves a record out of the memo
/// rather than copying it; its group gives it back. A rolled-back request's overlay never
/// reaches the memo, and a group whose write fails poisons the writer, so no later group
/// reads what it left. Anyone else who writes the views (a rebuild) makes the writer drop its memo first
/// (see `Log::clear_views`).
#[derive(Default)]
pub struct Memo {
    rows: HashMap<MemoKey, Vec<u8>, foldhash::fast::RandomState>,
    hot: HashMap<MemoKey, Row, foldhash::fast::RandomState>,
    /// For a replay into empty views: every key written so far. A key that is not in it
    /// has no row, and its read skips RocksDB.
    written: Option<Written>,
    /// The kinds of the keys ever put in `hot`: a row of another kind cannot be there, and
    /// [`Memo::absorb`] does not look.
    hot_kinds: Kinds,
    /// The kinds of row the projector never reads by key, only scans (histories, series,
    /// indexes): a txn appends them to its overlay instead of hashing them in, and they
    /// have nothing for the memo.
    unread: Kinds,
    /// Records are written back, not through (a replay into empty views, which nobody else
    /// reads or writes, and which rolls nothing back): a record that had a row before its
    /// group is not written with the group but kept in `hot`, and written once, when `hot`
    /// is full or at the end ([`Txn::write_back_all`]). A record that an asset's or a
    /// run's events rewrite chunk after chunk is then written once.
    write_back: bool,
    /// An absorbed overlay, emptied, whose table the next txn takes (a group's table grown
    /// afresh every time costs rehashing and page faults on the writer's path).
    spare: Overlay,
}

/// A key in the memo's tables, held inline when short (most are): a lookup that finds its
/// entry then compares the key without another cache miss on a heap allocation.
type MemoKey = smallvec::SmallVec<[u8; 40]>;

fn memo_key(key: Vec<u8>) -> MemoKey {
    if key.len() <= 40 {
        MemoKey::from_slice(&key)
    } else {
        MemoKey::from_vec(key)
    }
}

/// A set of keys as a blocked bloom filter: `may_contain` is never false for an inserted key,
/// and rarely true for another one (a fraction of a percent at 16 bits per key). A key's probes all lie
/// in one 64-byte block, so a lookup or an insert touches one cache line, not six.
pub struct Written {
    blocks: Vec<Block>,
    /// The kinds of the keys it keeps; a key of another kind is never inserted and may
    /// always be contained.
    kept: Kinds,
}

/// 512 bits, one cache line.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Block([u64; 8]);

impl Written {
    const PROBES: u32 = 6;

    /// Room for about `keys` keys at 16 bits each, within 2^30 bits (128 MB), of any kind
    /// but those in `unkept`.
    pub fn with_capacity(keys: usize, unkept: &[u8]) -> Written {
        let bits = (keys.saturating_mul(16))
            .clamp(1 << 16, 1 << 30)
            .next_power_of_two();
        let mut kept = Kinds::all();
        unkept.iter().for_each(|k| kept.remove(*k));
        Written {
            blocks: vec![Block([0; 8]); bits / 512],
            kept,
        }
    }

    /// The block of `key` (the hash's high half) and the bit positions of its probes in the
    /// block (nine bits each of the low half).
    fn probes(&self, key: &[u8]) -> (usize, impl Iterator<Item = usize>) {
        let h = xxhash_rust::xxh3::xxh3_128(key);
        let block = ((h >> 64) as usize) & (self.blocks.len() - 1);
        let low = h as u64;
        (
            block,
            (0..Self::PROBES).map(move |i| ((low >> (9 * i)) & 511) as usize),
        )
    }

    pub fn insert(&mut self, key: &[u8]) {
        if !self.kept.has_kind_of(key) {
            return;
        }
        let (b, probes) = self.probes(key);
        let block = &mut self.blocks[b].0;
        for p in probes {
            block[p / 64] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, key: &[u8]) -> bool {
        if !self.kept.has_kind_of(key) {
            return true;
        }
        let (b, mut probes) = self.probes(key);
        let block = &self.blocks[b].0;
        probes.all(|p| block[p / 64] & (1 << (p % 64)) != 0)
    }
}

impl Memo {
    /// A memo for replaying about `events` events into empty views (see [`Written`]), whose
    /// projector never reads a row of the `unread` kinds by its key.
    pub fn for_empty_views(events: usize, unread: &[u8]) -> Memo {
        Memo {
            // About two rows per event that the views read by key (the rest are `unread`): a
            // filter much larger than that misses the cache on every probe.
            written: Some(Written::with_capacity(events.saturating_mul(2), unread)),
            write_back: true,
            ..Memo::new(unread)
        }
    }

    /// A memo for a projector that never reads a row of the `unread` kinds by its key.
    pub fn new(unread: &[u8]) -> Memo {
        let mut kinds = Kinds::default();
        unread.iter().for_each(|k| kinds.insert(*k));
        Memo {
            unread: kinds,
            ..Memo::default()
        }
    }

    /// Most rows remembered in each map; beyond it that map starts over.
    /// (Small in tests, so that they let go of rows, and write records back, too.)
    const CAPACITY: usize = if cfg!(test) { 1 << 8 } else { 1 << 20 };
    const HOT_CAPACITY: usize = if cfg!(test) { 1 << 10 } else { 1 << 18 };

    fn remember_hot(&mut self, key: Vec<u8>, row: Row) {
        // Written back: `Txn::write_into` makes room, writing what it lets go.
        if self.hot.len() >= Memo::HOT_CAPACITY && !self.write_back {
            self.hot.clear();
        }
        self.hot_kinds.insert(kind(&key));
        self.hot.insert(memo_key(key), row);
    }

    /// Take in a group's overlay once the group is written: its records (decoded) and its
    /// new values of rows the memo already holds. The emptied overlay is kept for the next
    /// txn (see [`Memo::take_spare`]).
    ///
    /// A record that its group created is not taken in unless the memo already holds its
    /// key: most such records (a partition's state, a new asset's or run's record) are
    /// written once, or again soon, within the group. One that is read again later costs
    /// one read from RocksDB, after which it is remembered.
    pub fn absorb(&mut self, mut written: Overlay) {
        for (k, slot) in written.rows.drain() {
            if slot.kept() {
                self.remember_hot(k, slot.row);
            } else if self.hot_kinds.has_kind_of(&k) {
                if let Some(hot) = self.hot.get_mut(k.as_slice()) {
                    *hot = slot.row;
                }
            }
        }
        written.ordered.get_mut().clear();
        written.appended.clear();
        written.appended_ordered.get_mut().clear();
        if written.rows.capacity() > self.spare.rows.capacity() {
            self.spare = written;
        }
    }

    /// Whether records are written back (see [`Memo::write_back`]): the replay then ends
    /// with [`Txn::write_back_all`].
    pub fn writes_back(&self) -> bool {
        self.write_back
    }

    /// An empty overlay, with the room of the largest one absorbed since the last call.
    fn take_spare(&mut self) -> Overlay {
        std::mem::take(&mut self.spare)
    }
}

pub struct Txn<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    overlay: Overlay,
    /// The previous group's rows, while the committer writes them: under this overlay.
    /// Shared with the thread that writes them in a replay (see [`Txn::seal`]).
    prev: Arc<Overlay>,
    /// The current request, for rollback (see [`Slot`]), and how many rows the overlay had
    /// appended when it began.
    gen: u32,
    appended_before: usize,
    /// See [`Memo::unread`].
    unread: Kinds,
    memo: Option<&'a RefCell<Memo>>,
}

impl<'a> Txn<'a> {
    pub fn new(db: &'a DB, cf: &'a ColumnFamily) -> Txn<'a> {
        Txn {
            db,
            cf,
            overlay: Overlay::default(),
            prev: Arc::default(),
            gen: 0,
            appended_before: 0,
            unread: Kinds::default(),
            memo: None,
        }
    }

    /// A txn that remembers committed rows in `memo` (see [`Memo`]).
    pub fn with_memo(db: &'a DB, cf: &'a ColumnFamily, memo: &'a RefCell<Memo>) -> Txn<'a> {
        let mut m = memo.borrow_mut();
        Txn {
            memo: Some(memo),
            overlay: m.take_spare(),
            unread: m.unread,
            ..Txn::new(db, cf)
        }
    }

    /// This txn, on top of the rows of the group before, which its writer is writing (and
    /// has written by the time this txn's [`Txn::write_into`] is called).
    pub fn over(self, prev: Overlay) -> Txn<'a> {
        self.over_shared(Arc::new(prev))
    }

    /// [`Txn::over`] a sealed overlay (see [`Txn::seal`]) that another thread is writing:
    /// it must let go of it before this txn is sealed or written.
    pub fn over_shared(self, prev: Arc<Overlay>) -> Txn<'a> {
        Txn { prev, ..self }
    }

    /// Whether `key` certainly has no row in RocksDB: the txn replays into empty views and
    /// has never written it.
    fn unwritten(&self, key: &[u8]) -> bool {
        self.memo.is_some_and(|m| {
            m.borrow()
                .written
                .as_ref()
                .is_some_and(|w| !w.may_contain(key))
        })
    }

    /// The row at `key` in this txn's overlays, if either has it.
    fn staged(&self, key: &[u8]) -> Option<&Row> {
        debug_assert!(
            !self.unread.has_kind_of(key),
            "a row of a kind the projector said it only scans was read by its key"
        );
        self.overlay.row(key).or_else(|| self.prev.row(key))
    }

    /// [`Txn::get`] for a row that is never changed or deleted once written (the caller
    /// promises): answered from the memo when it can be.
    pub fn get_immutable(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read_immutable(key, <[u8]>::to_vec)
    }

    /// [`Txn::get_immutable`], handing `read` the row's bytes where they lie.
    pub fn read_immutable<R>(
        &self,
        key: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>> {
        // A remembered row is committed and never changes: no overlay can hold another
        // value for it, so the memo answers first.
        if let Some(memo) = self.memo {
            if let Some(v) = memo.borrow().rows.get(key) {
                return Ok(Some(read(v)));
            }
        }
        if let Some(row) = self.staged(key) {
            return Ok(row.with_bytes(|v| v.map(read)));
        }
        if self.unwritten(key) {
            return Ok(None);
        }
        let found = self.db.get_cf(self.cf, key)?;
        if let (Some(memo), Some(v)) = (self.memo, &found) {
            let mut memo = memo.borrow_mut();
            if memo.rows.len() >= Memo::CAPACITY {
                memo.rows.clear();
            }
            memo.rows.insert(MemoKey::from_slice(key), v.clone());
        }
        Ok(found.map(|v| read(&v)))
    }

    /// Is there a row at `key`, which is never changed or deleted once written?
    pub fn contains_immutable(&self, key: &[u8]) -> Result<bool> {
        Ok(self.read_immutable(key, |_| ())?.is_some())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// [`Txn::get`], handing `read` the row's bytes where they lie instead of a copy.
    pub fn with<R>(&self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        if let Some(row) = self.staged(key) {
            return Ok(row.with_bytes(read));
        }
        if let Some(memo) = self.memo {
            if let Some(row) = memo.borrow().hot.get(key) {
                return Ok(row.with_bytes(read));
            }
        }
        if self.unwritten(key) {
            return Ok(read(None));
        }
        Ok(read(self.db.get_pinned_cf(self.cf, key)?.as_deref()))
    }

    /// A record that is read and rewritten often, for `read` (decoded in place when it
    /// is held decoded; once read from RocksDB, remembered decoded in the memo).
    pub fn read<T: Value, R>(&self, key: &[u8], read: impl FnOnce(Option<&T>) -> R) -> Result<R> {
        if let Some(row) = self.staged(key) {
            return row.with_typed(read);
        }
        if let Some(memo) = self.memo {
            if let Some(row) = memo.borrow().hot.get(key) {
                return row.with_typed(read);
            }
        }
        if self.unwritten(key) {
            // Certainly absent, and as cheap to know again as to remember.
            return Ok(read(None));
        }
        let found = self.db.get_pinned_cf(self.cf, key)?;
        let value = found.map(|v| T::decode(&v)).transpose()?;
        let out = read(value.as_ref());
        if let Some(memo) = self.memo {
            let row = Row::Record(Box::new(Typed(value)));
            memo.borrow_mut().remember_hot(key.to_vec(), row);
        }
        Ok(out)
    }

    /// A copy of the record at `key` (see [`Txn::read`]).
    pub fn record<T: Value>(&self, key: &[u8]) -> Result<Option<T>> {
        self.read(key, |v: Option<&T>| v.cloned())
    }

    /// Change the record at `key` in place (`None`: there is none; leave `None` to have
    /// none, set `None` to delete). The record stays decoded until the group is written.
    pub fn update<T: Value, R>(
        &mut self,
        key: &[u8],
        change: impl FnOnce(&mut Option<T>) -> R,
    ) -> Result<R> {
        let gen = self.gen;
        if let Some(slot) = self.overlay.rows.get_mut(key) {
            if let Row::Record(r) = &mut slot.row {
                if r.as_any().is::<Typed<T>>() {
                    if slot.gen != gen {
                        slot.before = Before::Was(Row::Record(r.clone_box()), slot.gen);
                        slot.gen = gen;
                    }
                    let typed = r.as_any_mut().downcast_mut::<Typed<T>>().expect("checked");
                    return Ok(change(&mut typed.0));
                }
            }
        }
        let typed = |value: Option<T>| -> Box<dyn Record> { Box::new(Typed(value)) };
        let mut record: Box<dyn Record> = match self.staged(key) {
            Some(row) => typed(row.with_typed(|v: Option<&T>| v.cloned())?),
            None => match self.memo.and_then(|m| m.borrow_mut().hot.remove(key)) {
                // The memo's copy is moved, not cloned: this overlay holds the record now,
                // and gives it back to the memo once its group is written. (A rollback
                // leaves the memo without it: the next read goes to RocksDB.) Its box moves
                // whole: the record is not copied out and back in.
                Some(Row::Record(r)) if r.as_any().is::<Typed<T>>() => r,
                Some(row) => typed(row.with_typed(|v: Option<&T>| v.cloned())?),
                None if self.unwritten(key) => typed(None),
                None => typed(
                    self.db
                        .get_pinned_cf(self.cf, key)?
                        .map(|v| T::decode(&v))
                        .transpose()?,
                ),
            },
        };
        let value = &mut record
            .as_any_mut()
            .downcast_mut::<Typed<T>>()
            .expect("made or checked as one")
            .0;
        let existed = value.is_some();
        let out = change(value);
        if existed || value.is_some() {
            self.set_fresh(key.to_vec(), Row::Record(record), !existed);
        }
        Ok(out)
    }

    /// Write `row` for `key`, remembering what the overlay had if this request had not
    /// written it yet (moved, not copied).
    fn set(&mut self, key: Vec<u8>, row: Row) {
        self.set_fresh(key, row, false)
    }

    /// [`Txn::set`]; `fresh`: the row is a record that had none before (kept from the
    /// group's first write of the key).
    fn set_fresh(&mut self, key: Vec<u8>, row: Row, fresh: bool) {
        if self.unread.has_kind_of(&key) {
            self.overlay.append(key, row);
            return;
        }
        let gen = self.gen;
        match self.overlay.rows.entry(key) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let slot = e.get_mut();
                let old = std::mem::replace(&mut slot.row, row);
                if slot.gen != gen {
                    slot.before = Before::Was(old, slot.gen);
                    slot.gen = gen;
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                if let Some(keys) = self.overlay.ordered.get_mut().get_mut(&kind(e.key())) {
                    keys.insert(e.key().clone());
                }
                e.insert(Slot {
                    row,
                    gen,
                    before: Before::Vacant,
                    fresh,
                });
            }
        }
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Row::Bytes(value));
    }

    /// Write a record, kept decoded until the group is written (see [`Txn::update`]).
    pub fn put_record<T: Value>(&mut self, key: Vec<u8>, value: T) {
        self.set(key, Row::Record(Box::new(Typed(Some(value)))));
    }

    /// [`Txn::put_record`] at a key that has no row (see [`Memo::absorb`]).
    pub fn put_new_record<T: Value>(&mut self, key: Vec<u8>, value: T) {
        self.set_fresh(key, Row::Record(Box::new(Typed(Some(value)))), true);
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, Row::Deleted);
    }

    /// Every row with `lo <= key < hi`, ascending, overlays applied.
    pub fn scan(&self, lo: &[u8], hi: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(hi.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf, ro);
        it.seek(lo);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            rows.insert(k.to_vec(), v.to_vec());
            it.next();
        }
        it.status()?;
        let mut apply = |k: &[u8], row: &Row| {
            match row.with_bytes(|v| v.map(<[u8]>::to_vec)) {
                Some(v) => rows.insert(k.to_vec(), v),
                None => rows.remove(k),
            };
        };
        // RocksDB has every group before `prev`, but for the records a memo writes back,
        // which are newer there (a scan of records is rare: a wipe's of partition states).
        if let Some(memo) = self.memo {
            let memo = memo.borrow();
            let held = || (kind(lo)..=kind(hi)).any(|k| memo.hot_kinds.has_kind_of(&[k]));
            if memo.write_back && held() {
                memo.hot
                    .iter()
                    .filter(|(k, _)| lo <= k.as_slice() && k.as_slice() < hi)
                    .for_each(|(k, row)| apply(k, row));
            }
        }
        for layer in [&self.prev, &self.overlay] {
            layer.visit_range(lo, hi, |k, row| apply(k, row));
        }
        Ok(rows.into_iter().collect())
    }

    /// Start a request: what follows can be rolled back alone.
    pub fn begin(&mut self) {
        self.gen += 1;
        self.appended_before = self.overlay.appended.len();
    }

    /// Undo every write since [`Txn::begin`].
    pub fn rollback(&mut self) {
        self.overlay.truncate_appended(self.appended_before);
        let gen = self.gen;
        let ordered = self.overlay.ordered.get_mut();
        self.overlay.rows.retain(|k, slot| {
            if slot.gen != gen {
                return true;
            }
            match std::mem::replace(&mut slot.before, Before::Vacant) {
                Before::Vacant => {
                    if let Some(keys) = ordered.get_mut(&kind(k)) {
                        keys.remove(k);
                    }
                    false
                }
                Before::Was(row, g) => {
                    slot.row = row;
                    slot.gen = g;
                    true
                }
            }
        });
    }

    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }

    /// Put the overlay into `batch`, sorted (the memtable inserts sorted keys faster), and
    /// hand it back: the next group reads it until the batch is written. The group before,
    /// written by now, moves into the memo: its records (decoded) and its new values of
    /// rows the memo already holds.
    pub fn write_into(self, batch: &mut WriteBatch) -> Overlay {
        let cf = self.cf;
        let overlay = self.seal();
        overlay.put_sorted_into(batch, cf);
        overlay
    }

    /// What [`Txn::write_into`] does before it builds the batch: the group before, written
    /// by now, moves into the memo; a memo that writes records back lets go of them when
    /// full (into this overlay, to be written with it) and takes this group's kept records
    /// out of it. The overlay left is what the group writes ([`Overlay::put_sorted_into`]),
    /// which a replay does on its writing thread while the next group reads the overlay.
    pub fn seal(self) -> Overlay {
        let Txn {
            mut overlay,
            prev,
            memo,
            ..
        } = self;
        let Some(memo) = memo else {
            return overlay;
        };
        let mut memo = memo.borrow_mut();
        let prev = Arc::try_unwrap(prev)
            .unwrap_or_else(|_| panic!("the group before was sealed while still being written"));
        memo.absorb(prev);
        let write_back = memo.write_back;
        if write_back && memo.hot.len() > Memo::HOT_CAPACITY {
            // Let go of every record kept: written with this group (which also has the
            // next group read them from the overlay until then), unless it has a newer
            // one.
            for (k, row) in memo.hot.drain() {
                overlay.put_fresh(k.into_vec(), row);
            }
        }
        if let Some(written) = &mut memo.written {
            overlay.rows.keys().for_each(|k| written.insert(k));
        }
        if write_back {
            // The records held back go to the memo now, not when the group is written (they
            // are not in it): the next group then takes them from there instead of copying
            // them out of this overlay.
            let ordered = overlay.ordered.get_mut();
            let held = overlay.rows.extract_if(|_, slot| slot.kept());
            for (k, slot) in held {
                if let Some(keys) = ordered.get_mut(&kind(&k)) {
                    keys.remove(&k);
                }
                memo.remember_hot(k, slot.row);
            }
        }
        overlay
    }

    /// End a replay whose memo writes records back: put into `batch` this txn's rows, then
    /// every record the memo kept (the group before is written by now, as for
    /// [`Txn::write_into`]).
    pub fn write_back_all(self, batch: &mut WriteBatch) {
        let (cf, memo) = (self.cf, self.memo);
        let overlay = self.write_into(batch);
        if let Some(memo) = memo {
            let mut memo = memo.borrow_mut();
            // Nothing reads the memo after this: the group's own records join it unwritten.
            memo.absorb(overlay);
            let mut kept: Vec<(MemoKey, Row)> = memo.hot.drain().collect();
            kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (k, row) in kept {
                row.put_into(batch, cf, &k);
            }
        }
    }
}
