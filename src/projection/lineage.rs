//! Lineage: asset-level edges from definitions events (per code location: a newer
//! definitions event of a location replaces its assets' edges), and column-level lineage
//! from `dagster/column_lineage` on materializations (the latest per asset). Traversal is
//! breadth-first with a depth limit and a node budget.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::keys::{self, K};
use super::{enc, intern, EventRef, Result, Rows};
use crate::event::{AssetKey, ColumnLineage, Definitions, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

/// What a code location last defined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationRecord {
    pub name: String,
    pub version: Option<String>,
    pub defined_at: (i64, Seq),
    pub assets: Vec<u64>,
}

/// The latest column lineage of an asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnLineageRecord {
    pub at: EventRef,
    pub lineage: ColumnLineage,
}

/// Apply a definitions event: its location's assets and their edges replace the old ones.
pub fn apply_definitions(txn: &mut Txn<'_>, seq: Seq, ev: &Event, d: &Definitions) -> Result<()> {
    let dep = ev.envelope.deployment;
    let ts = ev.envelope.timestamp_us;
    let lkey = K::new(keys::LOCATION, dep).str(&d.code_location).build();
    let old: Option<LocationRecord> = txn.get_as(&lkey)?;
    if old.as_ref().is_some_and(|o| o.defined_at > (ts, seq)) {
        return Ok(()); // an older definition arriving late changes nothing
    }
    // Remove the old definition's edges and definitions.
    if let Some(old) = &old {
        for &a in &old.assets {
            for (k, _) in txn.scan_prefix(
                &K::new(keys::UPSTREAM, dep).u64(a).build(),
                false,
                usize::MAX,
            )? {
                let up = keys::tail_u64(&k);
                txn.delete(k);
                txn.delete(K::new(keys::DOWNSTREAM, dep).u64(up).u64(a).build());
            }
            if let Some(mut r) = super::assets::get(txn, dep, a)? {
                if r.definition
                    .as_ref()
                    .is_some_and(|(l, _)| l == &d.code_location)
                {
                    // No time kept: another location may define it, whenever.
                    r.definition = None;
                    r.defined_at = None;
                    super::assets::put(txn, dep, r);
                }
            }
        }
    }
    let mut ids = Vec::with_capacity(d.assets.len());
    for def in &d.assets {
        let mut r = super::assets::get_or_create(txn, dep, &def.asset_key, seq)?;
        if r.defined_at.is_none_or(|at| (ts, seq) > at) {
            r.definition = Some((d.code_location.clone(), def.clone()));
            r.defined_at = Some((ts, seq));
        }
        let id = r.id;
        super::assets::put(txn, dep, r);
        ids.push(id);
        for up in &def.deps {
            let u = intern(txn, dep, up)?;
            txn.put(
                K::new(keys::UPSTREAM, dep).u64(id).u64(u).build(),
                Vec::new(),
            );
            txn.put(
                K::new(keys::DOWNSTREAM, dep).u64(u).u64(id).build(),
                Vec::new(),
            );
        }
    }
    txn.put(
        lkey,
        enc(&LocationRecord {
            name: d.code_location.clone(),
            version: d.version.clone(),
            defined_at: (ts, seq),
            assets: ids,
        }),
    );
    Ok(())
}

/// Apply an asset event of the asset `id`: a materialization's column lineage.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    if let EventBody::AssetMaterialization(a) = &ev.body {
        if let Some(l) = a.metadata.column_lineage() {
            let key = K::new(keys::COLUMN_LINEAGE, dep).u64(id).build();
            let old: Option<ColumnLineageRecord> = txn.get_as(&key)?;
            let at = EventRef::of(seq, ev, a.partition.clone());
            if old.is_none_or(|o| at.order() > o.at.order()) {
                txn.put(
                    key,
                    enc(&ColumnLineageRecord {
                        at,
                        lineage: l.clone(),
                    }),
                );
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
}

/// Direct neighbours of an asset.
pub fn neighbours(
    rows: &impl Rows,
    dep: DeploymentId,
    id: u64,
    dir: Direction,
) -> Result<Vec<u64>> {
    let kind = match dir {
        Direction::Upstream => keys::UPSTREAM,
        Direction::Downstream => keys::DOWNSTREAM,
    };
    Ok(rows
        .scan_prefix(&K::new(kind, dep).u64(id).build(), false, usize::MAX)?
        .iter()
        .map(|(k, _)| keys::tail_u64(k))
        .collect())
}

/// The result of a traversal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traversal {
    /// (asset key, depth), in breadth-first order; the start is not included.
    pub nodes: Vec<(AssetKey, u32)>,
    /// Edges (from, to) between visited assets, in the traversal's direction.
    pub edges: Vec<(AssetKey, AssetKey)>,
    /// True when the node budget stopped the walk before the depth limit.
    pub truncated: bool,
}

/// Walk up or downstream from `start` to `max_depth` hops, visiting at most `max_nodes`.
pub fn traverse(
    rows: &impl Rows,
    dep: DeploymentId,
    start: &AssetKey,
    dir: Direction,
    max_depth: u32,
    max_nodes: usize,
) -> Result<Traversal> {
    let mut out = Traversal {
        nodes: Vec::new(),
        edges: Vec::new(),
        truncated: false,
    };
    let Some(start_id) = super::asset_id(rows, dep, start)? else {
        return Ok(out);
    };
    let mut seen = HashSet::from([start_id]);
    let mut queue = VecDeque::from([(start_id, start.clone(), 0u32)]);
    while let Some((id, key, depth)) = queue.pop_front() {
        if depth >= max_depth {
            continue;
        }
        for n in neighbours(rows, dep, id, dir)? {
            let Some(nkey) = super::asset_key(rows, dep, n)? else {
                continue;
            };
            out.edges.push((key.clone(), nkey.clone()));
            if seen.insert(n) {
                if out.nodes.len() >= max_nodes {
                    out.truncated = true;
                    return Ok(out);
                }
                out.nodes.push((nkey.clone(), depth + 1));
                queue.push_back((n, nkey, depth + 1));
            }
        }
    }
    Ok(out)
}

/// The latest column lineage of an asset.
pub fn column_lineage(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
) -> Result<Option<ColumnLineageRecord>> {
    match super::asset_id(rows, dep, key)? {
        Some(id) => rows.get_as(&K::new(keys::COLUMN_LINEAGE, dep).u64(id).build()),
        None => Ok(None),
    }
}
