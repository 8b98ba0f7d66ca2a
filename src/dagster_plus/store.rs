//! What the Dagster+ API keeps beside the log, in the `meta` column family: the runs as the
//! client serialized them (status and times are derived from the run's events at read
//! time, see [`super::runs`]), job and execution-plan snapshots by content id, dynamic
//! partitions, and uploaded compute logs. These are registrations and blobs, not events:
//! a view rebuild does not touch them.
//!
//! | kind | key after the kind byte | value |
//! |------|-------------------------|-------|
//! | 0x20 | deployment `u32`, run id | [`StoredRun`] (JSON) |
//! | 0x21 | deployment `u32` | next run storage id `u64` |
//! | 0x22 | deployment `u32`, snapshot id | the serialized snapshot |
//! | 0x23 | deployment `u32`, partitions def name, NUL, partition key | empty |
//! | 0x24 | deployment `u32`, run id, NUL, log key, NUL, `stdout`/`stderr` | log bytes |

use std::sync::Mutex;

use rocksdb::{Direction, IteratorMode, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::event::DeploymentId;
use crate::log::{cf, Log, Result};

const RUN: u8 = 0x20;
const NEXT_RUN: u8 = 0x21;
const SNAPSHOT: u8 = 0x22;
const DYNAMIC_PARTITION: u8 = 0x23;
const COMPUTE_LOG: u8 = 0x24;

fn key(kind: u8, dep: DeploymentId, parts: &[&str]) -> Vec<u8> {
    let mut k = vec![kind];
    k.extend_from_slice(&dep.to_be_bytes());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

/// A run as `addRun` stored it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRun {
    pub storage_id: u64,
    /// The serdes `PipelineRun` JSON as the client sent it, with tags added since merged in.
    pub serialized: String,
    /// Unix seconds when assetlog stored it.
    pub created: f64,
}

pub struct Registry<'a> {
    log: &'a Log,
}

/// Serializes run creation (storage ids) and tag merges.
static WRITE: Mutex<()> = Mutex::new(());

impl<'a> Registry<'a> {
    pub fn new(log: &'a Log) -> Registry<'a> {
        Registry { log }
    }

    fn cf(&self) -> &rocksdb::ColumnFamily {
        self.log.db().cf_handle(cf::META).expect("created at open")
    }

    fn put(&self, k: Vec<u8>, v: &[u8]) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.log.db().put_cf_opt(self.cf(), k, v, &wo)?;
        Ok(())
    }

    fn get(&self, k: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.log.db().get_cf(self.cf(), k)?)
    }

    /// Every `(key, value)` under `prefix`.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .log
            .db()
            .iterator_cf(self.cf(), IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }

    /// Store a new run; `false` if the run id exists.
    pub fn add_run(&self, dep: DeploymentId, run_id: &str, serialized: String) -> Result<bool> {
        let _g = WRITE.lock().unwrap_or_else(|p| p.into_inner());
        let k = key(RUN, dep, &[run_id]);
        if self.get(&k)?.is_some() {
            return Ok(false);
        }
        let nk = key(NEXT_RUN, dep, &[]);
        let next = self
            .get(&nk)?
            .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(1);
        let run = StoredRun {
            storage_id: next,
            serialized,
            created: chrono::Utc::now().timestamp_micros() as f64 / 1e6,
        };
        self.put(nk, &(next + 1).to_be_bytes())?;
        self.put(k, &serde_json::to_vec(&run).unwrap_or_default())?;
        Ok(true)
    }

    pub fn run(&self, dep: DeploymentId, run_id: &str) -> Result<Option<StoredRun>> {
        Ok(self
            .get(&key(RUN, dep, &[run_id]))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Every run of the deployment, by storage id ascending.
    pub fn runs(&self, dep: DeploymentId) -> Result<Vec<StoredRun>> {
        let mut runs: Vec<StoredRun> = self
            .scan(&key(RUN, dep, &[]))?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect();
        runs.sort_by_key(|r| r.storage_id);
        Ok(runs)
    }

    /// Merge tags into a stored run's serialized form.
    pub fn add_run_tags(
        &self,
        dep: DeploymentId,
        run_id: &str,
        tags: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool> {
        let _g = WRITE.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut run) = self.run(dep, run_id)? else {
            return Ok(false);
        };
        let Ok(mut v) = serde_json::from_str::<serde_json::Value>(&run.serialized) else {
            return Ok(false);
        };
        if let Some(obj) = v.as_object_mut() {
            let t = obj.entry("tags").or_insert_with(|| serde_json::json!({}));
            if let Some(t) = t.as_object_mut() {
                for (k, x) in tags {
                    t.insert(k.clone(), x.clone());
                }
            }
        }
        run.serialized = v.to_string();
        self.put(
            key(RUN, dep, &[run_id]),
            &serde_json::to_vec(&run).unwrap_or_default(),
        )?;
        Ok(true)
    }

    pub fn put_snapshot(&self, dep: DeploymentId, id: &str, serialized: &str) -> Result<()> {
        self.put(key(SNAPSHOT, dep, &[id]), serialized.as_bytes())
    }

    pub fn snapshot(&self, dep: DeploymentId, id: &str) -> Result<Option<String>> {
        Ok(self
            .get(&key(SNAPSHOT, dep, &[id]))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub fn add_dynamic_partitions(
        &self,
        dep: DeploymentId,
        def: &str,
        keys: &[String],
    ) -> Result<()> {
        for k in keys {
            self.put(key(DYNAMIC_PARTITION, dep, &[def, k]), b"")?;
        }
        Ok(())
    }

    pub fn dynamic_partitions(&self, dep: DeploymentId, def: &str) -> Result<Vec<String>> {
        let mut prefix = key(DYNAMIC_PARTITION, dep, &[def]);
        prefix.push(0);
        Ok(self
            .scan(&prefix)?
            .into_iter()
            .map(|(k, _)| String::from_utf8_lossy(&k[prefix.len()..]).into_owned())
            .collect())
    }

    pub fn put_compute_log(
        &self,
        dep: DeploymentId,
        run_id: &str,
        log_key: &str,
        io: &str,
        bytes: &[u8],
    ) -> Result<()> {
        self.put(key(COMPUTE_LOG, dep, &[run_id, log_key, io]), bytes)
    }

    pub fn compute_log(
        &self,
        dep: DeploymentId,
        run_id: &str,
        log_key: &str,
        io: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.get(&key(COMPUTE_LOG, dep, &[run_id, log_key, io]))
    }
}
