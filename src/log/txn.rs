//! A write overlay over the views column family, for the writer's group commit.
//!
//! Projections read and write view rows through a [`Txn`]: reads see the rows written
//! earlier in the same group (not yet in RocksDB), writes stay in the overlay until the
//! writer puts the whole group, log entries and view rows together, into one `WriteBatch`.
//! A request that fails half-way is rolled back to the point where it began.

use std::collections::BTreeMap;

use rocksdb::{ColumnFamily, ReadOptions, WriteBatch, DB};

use super::error::Result;

/// A key and the overlay entry it had before a write (`None`: it had none).
type Undo = (Vec<u8>, Option<Option<Vec<u8>>>);

pub struct Txn<'a> {
    db: &'a DB,
    cf: &'a ColumnFamily,
    overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Previous overlay state of every key touched since [`Txn::begin`].
    undo: Vec<Undo>,
}

impl<'a> Txn<'a> {
    pub fn new(db: &'a DB, cf: &'a ColumnFamily) -> Txn<'a> {
        Txn {
            db,
            cf,
            overlay: BTreeMap::new(),
            undo: Vec::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.clone());
        }
        Ok(self.db.get_cf(self.cf, key)?)
    }

    fn record(&mut self, key: &[u8]) {
        let prev = self.overlay.get(key).cloned();
        self.undo.push((key.to_vec(), prev));
    }

    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.record(&key);
        self.overlay.insert(key, Some(value));
    }

    pub fn delete(&mut self, key: Vec<u8>) {
        self.record(&key);
        self.overlay.insert(key, None);
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
        for (k, v) in self.overlay.range(lo.to_vec()..hi.to_vec()) {
            match v {
                Some(v) => rows.insert(k.clone(), v.clone()),
                None => rows.remove(k),
            };
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

    /// Move the overlay into `batch`.
    pub fn write_into(self, batch: &mut WriteBatch) {
        for (k, v) in self.overlay {
            match v {
                Some(v) => batch.put_cf(self.cf, k, v),
                None => batch.delete_cf(self.cf, k),
            }
        }
    }
}
