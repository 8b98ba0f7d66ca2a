//! A write overlay over the views column family, for the writer's group commit.
//!
//! Projections read and write view rows through a [`Txn`]: reads see the rows written
//! earlier in the same group (not yet in RocksDB), writes stay in the overlay until the
//! writer puts the whole group, log entries and view rows together, into one `WriteBatch`.
//! A request that fails half-way is rolled back to the point where it began.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, DB};

use super::error::Result;

/// Rows written by a group and not yet in RocksDB (`None`: deleted).
pub type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A key and the overlay entry it had before a write (`None`: it had none).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

/// Committed view rows remembered across groups by their one writer, so that hot lookups
/// skip RocksDB:
///
/// - `rows`: rows that never change once written (asset ids, schemas by hash);
/// - `hot`: the committed value (or absence) of rows read and rewritten often (asset, run
///   and step records, partition counts), kept current by [`Txn::write_into`].
///
/// Only committed values go in: rows read from RocksDB, and a group's rows as it is
/// written. A rolled-back request's overlay never reaches the memo, and a group whose write
/// fails poisons the writer, so no later group reads what it left. Anyone else who writes
/// the views (a rebuild) makes the writer drop its memo first (see `Log::clear_views`).
#[derive(Default)]
pub struct Memo {
    rows: HashMap<Vec<u8>, Vec<u8>, ahash::RandomState>,
    hot: HashMap<Vec<u8>, Option<Vec<u8>>, ahash::RandomState>,
}

impl Memo {
    /// Most rows remembered in each map; beyond it that map starts over.
    const CAPACITY: usize = 1 << 20;
    const HOT_CAPACITY: usize = 1 << 18;
}

pub struct Txn<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    overlay: Overlay,
    /// The previous group's rows, while the committer writes them: under this overlay.
    prev: Option<&'a Overlay>,
    /// Previous overlay state of every key touched since [`Txn::begin`].
    undo: Vec<Undo>,
    memo: Option<&'a RefCell<Memo>>,
}

impl<'a> Txn<'a> {
    pub fn new(db: &'a DB, cf: &'a ColumnFamily) -> Txn<'a> {
        Txn {
            db,
            cf,
            overlay: Overlay::new(),
            prev: None,
            undo: Vec::new(),
            memo: None,
        }
    }

    /// A txn that remembers immutable rows in `memo` (see [`Txn::get_immutable`]).
    pub fn with_memo(db: &'a DB, cf: &'a ColumnFamily, memo: &'a RefCell<Memo>) -> Txn<'a> {
        Txn {
            memo: Some(memo),
            ..Txn::new(db, cf)
        }
    }

    /// This txn, on top of the rows of a group still being written.
    pub fn over(self, prev: &'a Overlay) -> Txn<'a> {
        Txn {
            prev: Some(prev),
            ..self
        }
    }

    /// The row at `key` in this txn's overlays, if either has it (`Some(None)`: deleted).
    fn staged(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.overlay
            .get(key)
            .or_else(|| self.prev.and_then(|p| p.get(key)))
    }

    /// [`Txn::get`] for a row that is never changed or deleted once written (the caller
    /// promises): answered from the memo when it can be.
    pub fn get_immutable(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // A remembered row is committed and never changes: no overlay can hold another
        // value for it, so the memo answers first.
        if let Some(v) = self.memo.and_then(|m| m.borrow().rows.get(key).cloned()) {
            return Ok(Some(v));
        }
        if let Some(v) = self.staged(key) {
            return Ok(v.clone());
        }
        let found = self.db.get_cf(self.cf, key)?;
        if let (Some(memo), Some(v)) = (self.memo, &found) {
            let mut memo = memo.borrow_mut();
            if memo.rows.len() >= Memo::CAPACITY {
                memo.rows.clear();
            }
            memo.rows.insert(key.to_vec(), v.clone());
        }
        Ok(found)
    }

    /// Is there a row at `key`, which is never changed or deleted once written?
    pub fn contains_immutable(&self, key: &[u8]) -> Result<bool> {
        if self.memo.is_some_and(|m| m.borrow().rows.contains_key(key)) {
            return Ok(true);
        }
        Ok(self.get_immutable(key)?.is_some())
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(key, |v| v.map(<[u8]>::to_vec))
    }

    /// [`Txn::get`], handing `read` the row's bytes where they lie instead of a copy.
    pub fn with<R>(&self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.read_row(key, false, read)
    }

    /// [`Txn::get`] for a row that is read and rewritten often: its committed value is
    /// remembered in the memo (and kept current as groups are written).
    pub fn get_hot(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_hot(key, |v| v.map(<[u8]>::to_vec))
    }

    /// [`Txn::get_hot`], handing `read` the row's bytes where they lie instead of a copy.
    pub fn with_hot<R>(&self, key: &[u8], read: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.read_row(key, true, read)
    }

    /// The row at `key` for `read`: from the overlays, else the memo's hot rows, else
    /// RocksDB (and then remembered among the hot rows if `hot`).
    fn read_row<R>(
        &self,
        key: &[u8],
        hot: bool,
        read: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        if let Some(v) = self.staged(key) {
            return Ok(read(v.as_deref()));
        }
        if let Some(memo) = self.memo {
            if let Some(v) = memo.borrow().hot.get(key) {
                return Ok(read(v.as_deref()));
            }
            if hot {
                let found = self.db.get_cf(self.cf, key)?;
                let out = read(found.as_deref());
                let mut memo = memo.borrow_mut();
                if memo.hot.len() >= Memo::HOT_CAPACITY {
                    memo.hot.clear();
                }
                memo.hot.insert(key.to_vec(), found);
                return Ok(out);
            }
        }
        Ok(read(self.db.get_pinned_cf(self.cf, key)?.as_deref()))
    }

    /// Write `entry` for `key`, remembering what the overlay had (moved out, not copied).
    fn set(&mut self, key: Vec<u8>, entry: Option<Vec<u8>>) {
        let prev = self.overlay.insert(key.clone(), entry);
        self.undo.push((key, prev));
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.set(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// Every row with `lo <= key < hi`, ascending, overlay applied.
    pub fn scan(&self, lo: &[u8], hi: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut rows: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut ro = ReadOptions::default();
        ro.set_iterate_upper_bound(hi.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf, ro);
        it.seek(lo);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            rows.insert(k.to_vec(), v.to_vec());
            it.next();
        }
        it.status()?;
        let range = lo.to_vec()..hi.to_vec();
        for layer in self.prev.into_iter().chain([&self.overlay]) {
            for (k, v) in layer.range(range.clone()) {
                match v {
                    Some(v) => rows.insert(k.clone(), v.clone()),
                    None => rows.remove(k),
                };
            }
        }
        Ok(rows.into_iter().collect())
    }

    /// Start a request: what follows can be rolled back alone.
    pub fn begin(&mut self) {
        self.undo.clear();
    }

    /// Undo every write since [`Txn::begin`].
    pub fn rollback(&mut self) {
        while let Some((k, prev)) = self.undo.pop() {
            match prev {
                Some(v) => self.overlay.insert(k, v),
                None => self.overlay.remove(&k),
            };
        }
    }

    pub fn is_empty(&self) -> bool {
        self.overlay.is_empty()
    }

    /// Put the overlay into `batch` and hand it back (the next group reads it until the
    /// batch is written). The memo's hot rows take their new values: the caller writes the
    /// batch next, and stops writing altogether if that fails.
    pub fn write_into(self, batch: &mut WriteBatch) -> Overlay {
        let mut memo = self.memo.map(RefCell::borrow_mut);
        for (k, v) in &self.overlay {
            match v {
                Some(v) => batch.put_cf(self.cf, k, v),
                None => batch.delete_cf(self.cf, k),
            }
            if let Some(memo) = memo.as_mut() {
                if let Some(hot) = memo.hot.get_mut(k) {
                    hot.clone_from(v);
                }
            }
        }
        self.overlay
    }
}
