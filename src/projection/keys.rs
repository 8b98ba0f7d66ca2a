//! View keys, in the `views` column family: the only place they are built.
//!
//! `[kind: u8][deployment: u32 BE][...]`. Kinds 0x20-0x7f belong to the views; a kind, once
//! assigned, is never reused. Integers are big-endian (timestamps with the sign bit flipped
//! so negative times sort first); strings are NUL-terminated (validation rejects NUL in
//! asset key parts, partitions, run ids and check names) so a string never sorts into its
//! neighbour's range.
//!
//! | kind | key after deployment | value |
//! |------|----------------------|-------|
//! | 0x20 | asset key parts, each NUL-terminated | asset id `u64` |
//! | 0x21 | asset id | [`crate::event::AssetKey`] |
//! | 0x22 | (global, no deployment) | next asset id `u64` |
//! | 0x2e | (global) | applied seq `u64` |
//! | 0x2f | (global) | views version `u64` |
//! | 0x30 | asset id | `assets::AssetRecord` |
//! | 0x34 | asset id, partition | `partitions::PartitionState` |
//! | 0x35 | run id, asset id, partition | empty: partitions a run planned |
//! | 0x36 | asset id | `partitions::PartitionCounts` |
//! | 0x37 | asset id, timestamp, seq | materialization `points::Entry` |
//! | 0x38 | asset id, partition, timestamp, seq | run id `Option<String>`, from a partition's second visible materialization on |
//! | 0x39 | asset id, timestamp, seq | observation `points::Entry` |
//! | 0x40 | asset id, upstream asset id | empty |
//! | 0x41 | asset id, downstream asset id | empty |
//! | 0x42 | code location | `lineage::LocationRecord` |
//! | 0x43 | asset id | `lineage::ColumnLineageRecord` |
//! | 0x44 | schema hash `u64` | [`crate::event::TableSchema`] |
//! | 0x46 | asset id, partition, timestamp, seq | partition row count `i64` |
//! | 0x48 | asset id, timestamp, seq | a definitions event's schema, `points::Entry` |
//! | 0x49 | asset id, label | empty: labels with numeric values |
//! | 0x50 | run id | `runs::RunRecord` |
//! | 0x51 | status, created, run id | empty |
//! | 0x52 | created, run id | empty |
//! | 0x53 | run id, step key | `runs::StepStats` |
//! | 0x60 | asset id, check name | `checks::CheckSummary` |
//! | 0x61 | asset id, check name, execution id, partition | `checks::CheckExecution` |
//! | 0x62 | asset id, check name, run id, partition | execution id |
//! | 0x63 | asset id, check name, timestamp, execution id, partition | empty: executions by their latest time |
//! | 0x64 | code location | `checks::CheckLocation`: the checks it last defined |
//! | 0x70 | backfill id | `backfills::BackfillRecord` |
//! | 0x71 | backfill id, run id | empty |

use crate::event::{AssetKey, DeploymentId};

pub const ASSET_ID: u8 = 0x20;
pub const ASSET_KEY: u8 = 0x21;
pub const NEXT_ASSET_ID: u8 = 0x22;
pub const APPLIED_SEQ: u8 = 0x2e;
pub const VERSION: u8 = 0x2f;
pub const ASSET: u8 = 0x30;
// 0x31-0x33 (histories by seq, views version 3): now by time, with what each event measured.
pub const MATERIALIZATIONS: u8 = 0x37;
pub const PARTITION_MATERIALIZATIONS: u8 = 0x38;
pub const OBSERVATIONS: u8 = 0x39;
pub const PARTITION: u8 = 0x34;
pub const RUN_PLANNED: u8 = 0x35;
pub const PARTITION_COUNTS: u8 = 0x36;
pub const UPSTREAM: u8 = 0x40;
pub const DOWNSTREAM: u8 = 0x41;
pub const LOCATION: u8 = 0x42;
pub const COLUMN_LINEAGE: u8 = 0x43;
pub const SCHEMA: u8 = 0x44;
// 0x45 (schema history) and 0x47 (numeric series): views version 1, now in the histories.
/// Partition row counts only (whole-table ones are in POINTS).
pub const ROW_COUNTS: u8 = 0x46;
pub const POINTS: u8 = 0x48;
pub const NUMERIC_LABELS: u8 = 0x49;
pub const RUN: u8 = 0x50;
pub const RUNS_BY_STATUS: u8 = 0x51;
pub const RUNS_BY_TIME: u8 = 0x52;
pub const RUN_STEP: u8 = 0x53;
pub const CHECK: u8 = 0x60;
pub const CHECK_EXECUTION: u8 = 0x61;
pub const CHECK_EXECUTION_BY_RUN: u8 = 0x62;
pub const CHECK_EXECUTION_BY_TIME: u8 = 0x63;
pub const CHECK_LOCATION: u8 = 0x64;
pub const BACKFILL: u8 = 0x70;
pub const BACKFILL_RUNS: u8 = 0x71;

/// A key under construction.
#[derive(Debug, Clone)]
pub struct K(Vec<u8>);

impl K {
    pub fn new(kind: u8, dep: DeploymentId) -> K {
        let mut v = Vec::with_capacity(32);
        v.push(kind);
        v.extend_from_slice(&dep.to_be_bytes());
        K(v)
    }

    pub fn global(kind: u8) -> K {
        K(vec![kind])
    }

    pub fn u64(mut self, x: u64) -> K {
        self.0.extend_from_slice(&x.to_be_bytes());
        self
    }

    pub fn u8(mut self, x: u8) -> K {
        self.0.push(x);
        self
    }

    /// A timestamp: sign bit flipped so the byte order is the numeric order.
    pub fn time(mut self, t: i64) -> K {
        self.0
            .extend_from_slice(&((t as u64) ^ (1 << 63)).to_be_bytes());
        self
    }

    pub fn str(mut self, s: &str) -> K {
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
        self
    }

    pub fn asset_key(mut self, k: &AssetKey) -> K {
        for p in &k.0 {
            self = self.str(p);
        }
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.0
    }
}

/// The smallest key after every key that starts with `prefix`.
pub fn end_of(prefix: &[u8]) -> Vec<u8> {
    crate::log::keys::prefix_end(prefix)
}

/// The trailing `u64` of a key (seq or id).
pub fn tail_u64(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|s| key.get(s..))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// The two trailing `u64`s of a key: (time, seq) as written by [`K::time`] + [`K::u64`].
pub fn tail_time_seq(key: &[u8]) -> (i64, u64) {
    let seq = tail_u64(key);
    let t = key
        .len()
        .checked_sub(16)
        .and_then(|s| key.get(s..s + 8))
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .map(|u| (u ^ (1 << 63)) as i64)
        .unwrap_or(0);
    (t, seq)
}

/// The NUL-terminated string that starts at `offset` in `key`.
pub fn str_at(key: &[u8], offset: usize) -> Option<&str> {
    let rest = key.get(offset..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&rest[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn time_then_seq_orders_like_the_pair(a: i64, b: i64, s1: u64, s2: u64) {
            let k1 = K::new(ROW_COUNTS, 1).u64(5).time(a).u64(s1).build();
            let k2 = K::new(ROW_COUNTS, 1).u64(5).time(b).u64(s2).build();
            prop_assert_eq!((a, s1).cmp(&(b, s2)), k1.cmp(&k2));
            prop_assert_eq!(tail_time_seq(&k1), (a, s1));
        }

        #[test]
        fn string_parts_never_interleave(a in "[a-z]{1,6}", b in "[a-z]{1,6}", s1: u64, s2: u64) {
            let k1 = K::new(PARTITION_MATERIALIZATIONS, 1).u64(1).str(&a).u64(s1).build();
            let k2 = K::new(PARTITION_MATERIALIZATIONS, 1).u64(1).str(&b).u64(s2).build();
            if a != b {
                let p1 = K::new(PARTITION_MATERIALIZATIONS, 1).u64(1).str(&a).build();
                prop_assert!(!k2.starts_with(&p1));
            } else {
                prop_assert_eq!(s1.cmp(&s2), k1.cmp(&k2));
            }
        }
    }
}
