//! The asset catalog: one record per asset key with its definition, latest materialization,
//! observation, planned and failed events, last run, counts and wipe time.
//!
//! "Latest" is the highest `(timestamp, seq)`. A wipe hides every event of the asset whose
//! timestamp is at or before the wipe's; counts and latest events then cover only later
//! ones, so a late-arriving old event cannot resurrect a wiped asset.
//!
//! A wipe of some partitions hides their materializations and observations at or before
//! it in the same way, here as in the partitions' own views: from the asset's latest
//! events, counts and history. (Planned and failed attempts of those partitions stay in the
//! asset's latest attempt: there is no history of attempts per asset to take the one before
//! from. The partitions' own status forgets them.)

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{intern, later, EventRef, Result, Rows};
use crate::event::{AssetDefinition, AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

/// What the catalog keeps per asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssetRecord {
    pub id: u64,
    pub key: AssetKey,
    /// The definition, and the code location that defines it.
    pub definition: Option<(String, AssetDefinition)>,
    /// `(timestamp, seq)` of the definitions event the definition comes from: an older one
    /// (from another code location, say the one the asset moved from) changes nothing.
    pub defined_at: Option<(i64, Seq)>,
    pub latest_materialization: Option<EventRef>,
    pub latest_observation: Option<EventRef>,
    pub latest_planned: Option<EventRef>,
    pub latest_failed: Option<EventRef>,
    pub materialization_count: u64,
    pub observation_count: u64,
    /// `(timestamp, seq)` of the latest wipe of the whole asset.
    pub wiped_at: Option<(i64, Seq)>,
    pub first_seq: Seq,
    /// Timestamp of the latest wipe of any of its partitions: an event of a partition after
    /// it is hidden by no partition wipe, so only older ones need their partition's.
    pub partitions_wiped_at: Option<i64>,
}

impl AssetRecord {
    fn new(id: u64, key: AssetKey, seq: Seq) -> AssetRecord {
        AssetRecord {
            id,
            key,
            definition: None,
            defined_at: None,
            latest_materialization: None,
            latest_observation: None,
            latest_planned: None,
            latest_failed: None,
            materialization_count: 0,
            observation_count: 0,
            wiped_at: None,
            first_seq: seq,
            partitions_wiped_at: None,
        }
    }

    /// The run of the latest materialization or planned materialization.
    pub fn last_run_id(&self) -> Option<&str> {
        let m = self.latest_materialization.as_ref();
        let p = self.latest_planned.as_ref();
        let latest = match (m, p) {
            (Some(m), Some(p)) => Some(if p.order() > m.order() { p } else { m }),
            (m, p) => m.or(p),
        };
        latest.and_then(|r| r.run_id.as_deref())
    }

    /// Does an event at `timestamp_us` count after the wipe?
    pub fn visible(&self, timestamp_us: i64) -> bool {
        self.wiped_at.is_none_or(|(t, _)| timestamp_us > t)
    }

    /// Could a wipe of its partition hide an event at `timestamp_us` of some partition?
    pub fn partition_wipe_may_hide(&self, timestamp_us: i64) -> bool {
        self.partitions_wiped_at.is_some_and(|t| timestamp_us <= t)
    }

    pub fn group(&self) -> Option<&str> {
        self.definition
            .as_ref()
            .and_then(|(_, d)| d.group_name.as_deref())
    }
}

pub fn key_of(dep: DeploymentId, id: u64) -> Vec<u8> {
    K::new(keys::ASSET, dep).u64(id).build()
}

pub fn get(rows: &impl Rows, dep: DeploymentId, id: u64) -> Result<Option<AssetRecord>> {
    rows.get_hot_as(&key_of(dep, id))
}

/// The record of `key`, created if new (used by the views that define or touch assets).
pub fn get_or_create(
    txn: &mut Txn<'_>,
    dep: DeploymentId,
    key: &AssetKey,
    seq: Seq,
) -> Result<AssetRecord> {
    let id = intern(txn, dep, key)?;
    Ok(get(txn, dep, id)?.unwrap_or_else(|| AssetRecord::new(id, key.clone(), seq)))
}

pub fn put(txn: &mut Txn<'_>, dep: DeploymentId, r: AssetRecord) {
    txn.put_record(key_of(dep, r.id), r);
}

/// Apply an asset event to the record of its asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    let Some(key) = ev.body.asset_key() else {
        return Ok(());
    };
    let ts = ev.envelope.timestamp_us;
    let rk = key_of(dep, id);
    // A materialization or observation of a partition: hidden if a wipe of that partition
    // covers it (looked up only if some partition wipe could).
    let partition_hidden = match &ev.body {
        EventBody::AssetMaterialization(a) | EventBody::AssetObservation(a) => match &a.partition {
            Some(p)
                if txn.read(&rk, |r: Option<&AssetRecord>| {
                    r.is_some_and(|r| r.partition_wipe_may_hide(ts))
                })? =>
            {
                super::partitions::wiped_at(txn, dep, id, p)?.is_some_and(|w| ts <= w)
            }
            _ => false,
        },
        _ => false,
    };
    // A wipe of partitions, and whether it is newer than one of theirs (only then does it
    // change what the asset shows).
    let partitions_wiped = match &ev.body {
        EventBody::AssetWiped(w) if !w.partition_keys.is_empty() => {
            let mut newer = false;
            for p in &w.partition_keys {
                newer |= super::partitions::wiped_at(txn, dep, id, p)?.is_none_or(|at| at < ts);
            }
            Some((w.partition_keys.as_slice(), newer))
        }
        _ => None,
    };
    let wiped = txn.update(&rk, |slot: &mut Option<AssetRecord>| {
        let r = slot.get_or_insert_with(|| AssetRecord::new(id, key.clone(), seq));
        let visible = r.visible(ts);
        let counted = visible && !partition_hidden;
        match &ev.body {
            EventBody::AssetMaterialization(a) if counted => {
                r.latest_materialization = later(
                    r.latest_materialization.take(),
                    EventRef::of(seq, ev, a.partition.clone()),
                );
                r.materialization_count += 1;
            }
            EventBody::AssetObservation(a) if counted => {
                r.latest_observation = later(
                    r.latest_observation.take(),
                    EventRef::of(seq, ev, a.partition.clone()),
                );
                r.observation_count += 1;
            }
            EventBody::AssetMaterializationPlanned(p) if visible => {
                r.latest_planned = later(
                    r.latest_planned.take(),
                    EventRef::of(seq, ev, p.partition.clone()),
                );
            }
            EventBody::AssetFailedToMaterialize(f) if visible => {
                r.latest_failed = later(
                    r.latest_failed.take(),
                    EventRef::of(seq, ev, f.partition.clone()),
                );
            }
            EventBody::AssetWiped(w)
                if w.partition_keys.is_empty() && r.wiped_at.is_none_or(|at| (ts, seq) > at) =>
            {
                r.wiped_at = Some((ts, seq));
                return true;
            }
            EventBody::AssetWiped(_) => {
                if let Some((_, newer)) = partitions_wiped {
                    r.partitions_wiped_at = r.partitions_wiped_at.max(Some(ts));
                    return newer;
                }
            }
            _ => {}
        }
        false
    })?;
    if wiped {
        let mut r = get(txn, dep, id)?.expect("written just above");
        recount_after_wipe(txn, dep, &mut r, partitions_wiped.map(|(p, _)| (p, ts)))?;
        put(txn, dep, r);
    }
    Ok(())
}

/// After a wipe: latest events and counts from the history rows still visible (those after
/// the wipe's time, but for those a wipe of their partition hides: the last of them in key
/// order is the latest). `wiping`: partitions being wiped at a time, whose states do not
/// say so yet.
fn recount_after_wipe(
    txn: &Txn<'_>,
    dep: DeploymentId,
    r: &mut AssetRecord,
    wiping: Option<(&[String], i64)>,
) -> Result<()> {
    let (id, wiped_at) = (r.id, r.wiped_at);
    let visible = |e: &EventRef| wiped_at.is_none_or(|(t, _)| e.timestamp_us > t);
    let mut partition_wipes = super::partitions::PartitionWipes::new(dep, r, wiping);
    let mut after = |kind: u8| -> Result<(Option<EventRef>, u64)> {
        let prefix = K::new(kind, dep).u64(id);
        let (mut latest, mut count) = (None, 0);
        for (k, v) in super::materializations::visible(txn, prefix, wiped_at.map(|(t, _)| t))? {
            let (timestamp_us, seq) = keys::tail_time_seq(&k);
            let e: super::points::Entry = super::dec(&v)?;
            let e = EventRef {
                seq,
                timestamp_us,
                run_id: e.run_id,
                partition: e.partition,
            };
            if !partition_wipes.hides(txn, &e)? {
                count += 1;
                latest = Some(e);
            }
        }
        Ok((latest, count))
    };
    (r.latest_materialization, r.materialization_count) = after(keys::MATERIALIZATIONS)?;
    (r.latest_observation, r.observation_count) = after(keys::OBSERVATIONS)?;
    if r.latest_planned.as_ref().is_some_and(|p| !visible(p)) {
        r.latest_planned = None;
    }
    if r.latest_failed.as_ref().is_some_and(|p| !visible(p)) {
        r.latest_failed = None;
    }
    Ok(())
}

/// Catalog filters; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// Key prefix: the first components of the key.
    pub prefix: Vec<String>,
    pub group: Option<String>,
    pub owner: Option<String>,
    pub tag: Option<(String, String)>,
    pub kind: Option<String>,
    /// Include assets that are wiped and not materialized since (Dagster hides them).
    pub include_wiped: bool,
}

impl AssetFilter {
    pub fn matches(&self, r: &AssetRecord) -> bool {
        let def = r.definition.as_ref().map(|(_, d)| d);
        (self.include_wiped
            || r.wiped_at.is_none()
            || r.materialization_count + r.observation_count > 0
            || r.definition.is_some())
            && self
                .group
                .as_ref()
                .is_none_or(|g| r.group() == Some(g.as_str()))
            && self
                .owner
                .as_ref()
                .is_none_or(|o| def.is_some_and(|d| d.owners.contains(o)))
            && self.tag.as_ref().is_none_or(|(k, v)| {
                def.is_some_and(|d| d.tags.iter().any(|(a, b)| a == k && b == v))
            })
            && self
                .kind
                .as_ref()
                .is_none_or(|k| def.is_some_and(|d| d.kinds.contains(k)))
    }
}

/// A page of the catalog in key order, after the asset `cursor` (its key) if given.
pub fn list(
    rows: &impl Rows,
    dep: DeploymentId,
    filter: &AssetFilter,
    cursor: Option<&AssetKey>,
    limit: usize,
) -> Result<Vec<AssetRecord>> {
    let mut prefix = K::new(keys::ASSET_ID, dep);
    for p in &filter.prefix {
        prefix = prefix.str(p);
    }
    let prefix = prefix.build();
    let hi = keys::end_of(&prefix);
    let lo = match cursor {
        // Just after the cursor's key: append a byte that sorts after nothing it could hold.
        Some(c) => {
            let mut k = K::new(keys::ASSET_ID, dep).asset_key(c).build();
            k.push(0xff);
            k.max(prefix.clone())
        }
        None => prefix.clone(),
    };
    let mut out = Vec::new();
    rows.walk(&lo, &hi, false, |_, v| {
        if let Some(r) = get(rows, dep, keys::tail_u64(v))? {
            if filter.matches(&r) {
                out.push(r);
            }
        }
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// One asset by key.
pub fn by_key(rows: &impl Rows, dep: DeploymentId, key: &AssetKey) -> Result<Option<AssetRecord>> {
    match super::asset_id(rows, dep, key)? {
        Some(id) => get(rows, dep, id),
        None => Ok(None),
    }
}
