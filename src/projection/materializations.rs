//! Materialization (and observation) history per asset and per partition, newest first,
//! paged by storage id (the log seq). Rows hold an [`EventRef`]; the events themselves are
//! read from the log by seq.

use super::keys::{self, K};
use super::{enc, EventRef, Result, Rows};
use crate::event::{AssetKey, DeploymentId, Event, EventBody, Seq};
use crate::log::Txn;

/// Apply an asset event of the asset `id`.
pub fn apply(txn: &mut Txn<'_>, seq: Seq, ev: &Event, id: u64) -> Result<()> {
    let dep = ev.envelope.deployment;
    match &ev.body {
        EventBody::AssetMaterialization(a) => {
            let r = EventRef::of(seq, ev, a.partition.clone());
            txn.put(
                K::new(keys::MATERIALIZATIONS, dep).u64(id).u64(seq).build(),
                enc(&r),
            );
            if let Some(p) = &a.partition {
                txn.put(
                    K::new(keys::PARTITION_MATERIALIZATIONS, dep)
                        .u64(id)
                        .str(p)
                        .u64(seq)
                        .build(),
                    enc(&r),
                );
            }
        }
        EventBody::AssetObservation(a) => {
            let r = EventRef::of(seq, ev, a.partition.clone());
            txn.put(
                K::new(keys::OBSERVATIONS, dep).u64(id).u64(seq).build(),
                enc(&r),
            );
        }
        _ => {}
    }
    Ok(())
}

/// Which history to page through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Materializations,
    Observations,
}

/// A history page query.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub partition: Option<String>,
    /// Only events with seq below this (the cursor of the previous page).
    pub before_seq: Option<Seq>,
    pub after_us: Option<i64>,
    pub before_us: Option<i64>,
    pub limit: usize,
}

/// Newest first. Events hidden by a wipe are left out.
pub fn history(
    rows: &impl Rows,
    dep: DeploymentId,
    key: &AssetKey,
    kind: Kind,
    q: &HistoryQuery,
) -> Result<Vec<EventRef>> {
    let Some(asset) = super::assets::by_key(rows, dep, key)? else {
        return Ok(Vec::new());
    };
    let prefix = match (kind, &q.partition) {
        (Kind::Materializations, Some(p)) => K::new(keys::PARTITION_MATERIALIZATIONS, dep)
            .u64(asset.id)
            .str(p)
            .build(),
        (Kind::Materializations, None) => K::new(keys::MATERIALIZATIONS, dep).u64(asset.id).build(),
        (Kind::Observations, _) => K::new(keys::OBSERVATIONS, dep).u64(asset.id).build(),
    };
    let hi = match q.before_seq {
        Some(s) => {
            let mut k = prefix.clone();
            k.extend_from_slice(&s.to_be_bytes());
            k
        }
        None => keys::end_of(&prefix),
    };
    let mut out = Vec::with_capacity(q.limit.min(1024));
    let mut hi = hi;
    while out.len() < q.limit {
        let page = rows.scan(&prefix, &hi, true, (q.limit - out.len()).max(64))?;
        if page.is_empty() {
            break;
        }
        for (_, v) in &page {
            let e: EventRef = super::dec(v)?;
            let ok = asset.visible(e.timestamp_us)
                && (kind == Kind::Observations
                    || q.partition.is_none()
                    || e.partition == q.partition)
                && q.after_us.is_none_or(|t| e.timestamp_us > t)
                && q.before_us.is_none_or(|t| e.timestamp_us < t);
            if ok {
                out.push(e);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        hi = page.last().map(|(k, _)| k.clone()).unwrap_or_default();
    }
    Ok(out)
}
