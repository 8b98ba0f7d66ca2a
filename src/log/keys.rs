//! Key layout: the only place keys are built.
//!
//! Every key starts with a one-byte kind. **A kind byte, once assigned, is never reused**,
//! even when its key family is retired. Integers are big-endian so byte order equals numeric
//! order; variable-length strings come last or are NUL-terminated (validation rejects NUL in
//! the strings that are used this way).
//!
//! | kind | column family | key | value |
//! |------|---------------|-----|-------|
//! | 0x01 | log    | `seq: u64` | codec byte + postcard [`crate::event::Event`] |
//! | 0x02 | index  | `deployment: u32, event_id` | [`super::codec::DedupeEntry`] |
//! | 0x03 | index  | retired (format 1: one run-index entry per event) | |
//! | 0x04 | index  | retired (format 1: one deployment-index entry per event) | |
//! | 0x05 | index  | `deployment: u32, run_id, 0x00, first_seq: u64` | `last_seq: u64` |
//! | 0x06 | index  | `deployment: u32, first_seq: u64` | `last_seq: u64` |
//! | 0x07 | index  | (the kind byte alone) | `seq: u64`: dedupe entries are complete through it |
//! | 0x10 | meta   | `"format"` | magic `ALOG` + format version `u32` |
//! | 0x11 | meta   | `"next_deployment"` | `u32` |
//! | 0x12 | meta   | `deployment name` | `u32` deployment id |
//! | 0x13 | meta   | `sha256(token secret)` | token record ([`crate::auth`]) |
//! | 0x14 | meta   | `token id` | `sha256(token secret)` |

use crate::event::{DeploymentId, Seq};

pub const LOG: u8 = 0x01;
pub const DEDUPE: u8 = 0x02;
/// Format 1's per-event run index; deleted when a store is migrated to format 2.
pub const RETIRED_RUN_EVENTS: u8 = 0x03;
/// Format 1's per-event deployment index; deleted when a store is migrated to format 2.
pub const RETIRED_DEPLOYMENT_EVENTS: u8 = 0x04;
/// A stretch of consecutive sequence numbers that all belong to one run: the run index.
pub const RUN_RANGE: u8 = 0x05;
/// A stretch of consecutive sequence numbers that all belong to one deployment.
pub const DEPLOYMENT_RANGE: u8 = 0x06;
/// How far the dedupe entries (written after their group, unsynced) are complete.
pub const DEDUPE_WATERMARK: u8 = 0x07;
pub const META_FORMAT: u8 = 0x10;
pub const META_NEXT_DEPLOYMENT: u8 = 0x11;
pub const META_DEPLOYMENT: u8 = 0x12;
pub const META_TOKEN_HASH: u8 = 0x13;
pub const META_TOKEN_ID: u8 = 0x14;

pub fn log(seq: Seq) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The sequence number of a log key, if it is one.
pub fn log_seq(key: &[u8]) -> Option<Seq> {
    match key {
        [LOG, rest @ ..] if rest.len() == 8 => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

pub fn dedupe(deployment: DeploymentId, event_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + event_id.len());
    k.push(DEDUPE);
    k.extend_from_slice(&deployment.to_be_bytes());
    k.extend_from_slice(event_id.as_bytes());
    k
}

pub fn dedupe_watermark() -> [u8; 1] {
    [DEDUPE_WATERMARK]
}

/// Prefix of every run-index key of one run.
pub fn run_range_prefix(deployment: DeploymentId, run_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(14 + run_id.len());
    k.push(RUN_RANGE);
    k.extend_from_slice(&deployment.to_be_bytes());
    k.extend_from_slice(run_id.as_bytes());
    k.push(0);
    k
}

/// The run-index entry of the stretch that starts at `first`.
pub fn run_range(deployment: DeploymentId, run_id: &str, first: Seq) -> Vec<u8> {
    let mut k = run_range_prefix(deployment, run_id);
    k.extend_from_slice(&first.to_be_bytes());
    k
}

/// Prefix of every deployment-index key of one deployment.
pub fn deployment_range_prefix(deployment: DeploymentId) -> [u8; 5] {
    let mut k = [0u8; 5];
    k[0] = DEPLOYMENT_RANGE;
    k[1..].copy_from_slice(&deployment.to_be_bytes());
    k
}

/// The deployment-index entry of the stretch that starts at `first`.
pub fn deployment_range(deployment: DeploymentId, first: Seq) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..5].copy_from_slice(&deployment_range_prefix(deployment));
    k[5..].copy_from_slice(&first.to_be_bytes());
    k
}

/// The first sequence number of a range key (the last 8 bytes of run and deployment keys).
pub fn range_first(key: &[u8]) -> Option<Seq> {
    let tail = key.get(key.len().checked_sub(8)?..)?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

pub fn meta(kind: u8, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(kind);
    k.extend_from_slice(name);
    k
}

/// The smallest key greater than every key starting with `prefix` (prefixes never end in
/// 0xff here: kinds are small and strings are UTF-8 or end in NUL).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xff; prefix.len() + 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn log_key_order_is_seq_order(a: u64, b: u64) {
            prop_assert_eq!(a.cmp(&b), log(a).cmp(&log(b)));
            prop_assert_eq!(log_seq(&log(a)), Some(a));
        }

        #[test]
        fn run_keys_group_by_run_then_order_by_seq(
            r1 in "[a-z0-9-]{1,12}", r2 in "[a-z0-9-]{1,12}", s1: u64, s2: u64
        ) {
            let k1 = run_range(7, &r1, s1);
            let k2 = run_range(7, &r2, s2);
            if r1 == r2 {
                prop_assert_eq!(s1.cmp(&s2), k1.cmp(&k2));
            } else {
                // A run's keys never interleave with another run's, even when one id is a
                // prefix of the other (the NUL terminator sorts first).
                let p1 = run_range_prefix(7, &r1);
                prop_assert!(!k2.starts_with(&p1));
            }
            prop_assert_eq!(range_first(&k1), Some(s1));
        }

        #[test]
        fn deployment_keys_order_by_deployment_then_seq(d1: u32, d2: u32, s1: u64, s2: u64) {
            let (k1, k2) = (deployment_range(d1, s1), deployment_range(d2, s2));
            prop_assert_eq!((d1, s1).cmp(&(d2, s2)), k1.cmp(&k2));
            prop_assert_eq!(range_first(&k1), Some(s1));
        }
    }

    #[test]
    fn prefix_end_bounds_the_prefix() {
        let p = run_range_prefix(1, "run");
        let end = prefix_end(&p);
        assert!(run_range(1, "run", u64::MAX) < end);
        assert!(run_range(1, "run0", 0) > p);
    }
}
