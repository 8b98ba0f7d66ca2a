//! The log pass of an export, on every core. The calling thread reads raw log values at the
//! snapshot and hands them out in chunks; workers decode them and build each table's Arrow
//! batches; one writer thread puts the batches into the Parquet writers in log order.
//! Channels are bounded, so memory stays a few chunks deep whatever the log's size.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;

use super::columns::Rows;
use super::{tables, Error, Plan, Result, Sink, Table, Touched};
use crate::event::{DeploymentId, Seq};
use crate::log;
use crate::projection::Reader;

/// Events per chunk (and so rows per record batch of the events table).
const CHUNK_EVENTS: usize = 8192;
/// A chunk also closes at this many bytes of stored events.
const CHUNK_BYTES: usize = 8 << 20;

struct Chunk {
    index: u64,
    events: Vec<(Seq, Vec<u8>)>,
}

struct Built {
    index: u64,
    /// (position of the sink, batch)
    batches: Vec<(usize, RecordBatch)>,
    touched: Option<Touched>,
}

/// Decode one chunk and build its rows for every append table among `tables`.
fn build(
    chunk: Chunk,
    tables: &[Table],
    rows: &mut [Rows],
    names: &BTreeMap<DeploymentId, String>,
    plan: &Plan,
    track: bool,
) -> Result<Built> {
    let mut touched = track.then(|| Touched::new(plan.since));
    for (seq, bytes) in &chunk.events {
        let ev = log::codec::decode_event(bytes, || format!("log seq {seq}"))?;
        let dep = ev.envelope.deployment;
        if !plan.wants_deployment(dep) {
            continue;
        }
        if let Some(t) = touched.as_mut() {
            t.note(dep, &ev.body, ev.envelope.run_id.as_deref());
        }
        let cx = tables::Ctx {
            deployment: names.get(&dep).map_or("", String::as_str),
            as_of: plan.until,
        };
        for (t, r) in tables.iter().zip(rows.iter_mut()) {
            match t {
                Table::Events => tables::events(r, &cx, *seq, &ev),
                Table::Materializations => tables::asset_events(r, &cx, *seq, &ev, false),
                Table::Observations => tables::asset_events(r, &cx, *seq, &ev, true),
                Table::RowCounts => tables::row_counts(r, &cx, *seq, &ev),
                Table::LineageEdges => tables::lineage_edges(r, &cx, *seq, &ev),
                _ => {}
            }
        }
    }
    let mut batches = Vec::new();
    for (i, r) in rows.iter_mut().enumerate() {
        if !r.is_empty() {
            batches.push((i, r.finish()?));
        }
    }
    Ok(Built {
        index: chunk.index,
        batches,
        touched,
    })
}

/// Write the append tables' rows of the plan's range into `sinks`; with `touched`, also
/// note the entities the range's events touched.
pub(super) fn run<W: Write + Send>(
    reader: &Reader<'_>,
    names: &BTreeMap<DeploymentId, String>,
    plan: &Plan,
    sinks: &mut [Sink<W>],
    touched: Option<&mut Touched>,
    progress: &mut dyn FnMut(Seq),
) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let tables: Vec<Table> = sinks.iter().map(|s| s.table).collect();
    let track = touched.is_some();
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<Chunk>(workers * 2);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = sync_channel::<Result<Built>>(workers * 2);
        for _ in 0..workers {
            let (job_rx, done_tx, tables) = (job_rx.clone(), done_tx.clone(), tables.clone());
            scope.spawn(move || {
                let mut rows: Vec<Rows> = tables.iter().map(|t| Rows::new(t.columns())).collect();
                loop {
                    let job = job_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok(chunk) = job else { break };
                    let built = build(chunk, &tables, &mut rows, names, plan, track);
                    if done_tx.send(built).is_err() {
                        break;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = scope.spawn(move || write_in_order(done_rx, sinks));

        let mut chunk = Chunk {
            index: 0,
            events: Vec::with_capacity(CHUNK_EVENTS),
        };
        let mut bytes = 0;
        let mut receivers_gone = false;
        let scanned = reader.scan_log(plan.since + 1, plan.until, |seq, v| -> Result<bool> {
            chunk.events.push((seq, v.to_vec()));
            bytes += v.len();
            if chunk.events.len() >= CHUNK_EVENTS || bytes >= CHUNK_BYTES {
                let next = Chunk {
                    index: chunk.index + 1,
                    events: Vec::with_capacity(CHUNK_EVENTS),
                };
                bytes = 0;
                if job_tx.send(std::mem::replace(&mut chunk, next)).is_err() {
                    receivers_gone = true;
                    return Ok(false);
                }
                progress(seq);
            }
            Ok(true)
        });
        if scanned.is_ok() && !receivers_gone && !chunk.events.is_empty() {
            let _ = job_tx.send(chunk);
        }
        drop(job_tx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the export writer panicked".into())));
        scanned?;
        let found = written?;
        if let (Some(t), Some(found)) = (touched, found) {
            t.merge(found);
        }
        Ok(())
    })
}

/// Put built chunks into the sinks in chunk order.
fn write_in_order<W: Write + Send>(
    done: Receiver<Result<Built>>,
    sinks: &mut [Sink<W>],
) -> Result<Option<Touched>> {
    let mut pending: BTreeMap<u64, Built> = BTreeMap::new();
    let mut next = 0u64;
    let mut touched: Option<Touched> = None;
    for built in done {
        let built = built?;
        pending.insert(built.index, built);
        while let Some(b) = pending.remove(&next) {
            for (i, batch) in b.batches {
                sinks[i].write_batch(&batch)?;
            }
            if let Some(t) = b.touched {
                match touched.as_mut() {
                    Some(all) => all.merge(t),
                    None => touched = Some(t),
                }
            }
            next += 1;
        }
    }
    Ok(touched)
}
