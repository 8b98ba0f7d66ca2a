use super::*;
use crate::event::sample;
use crate::event::RunEventKind;

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogOptions::default()).unwrap()
}

fn mat(id: &str, run: &str) -> Event {
    sample::materialization(1, id.into(), run, 3, None, 1_700_000_000_000_000)
}

#[test]
fn appends_get_contiguous_seqs_and_read_back_equal() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let events: Vec<Event> = (0..5).map(|i| mat(&format!("e{i}"), "r1")).collect();
    let appended = log.append_blocking(events.clone()).unwrap();
    assert_eq!(
        appended.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert!(appended.iter().all(|a| !a.duplicate));
    assert_eq!(log.last_seq(), 5);
    let back = log.read(1, 100).unwrap();
    assert_eq!(back.len(), 5);
    for ((seq, ev), (i, orig)) in back.iter().zip(events.iter().enumerate()) {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(ev, orig);
    }
    assert_eq!(log.read(4, 1).unwrap()[0].0, 4);
    assert_eq!(log.get(5).unwrap().as_ref(), Some(&events[4]));
    assert_eq!(log.get(6).unwrap(), None);
}

#[test]
fn resend_returns_original_seqs_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_blocking(vec![mat("a", "r"), mat("b", "r")])
        .unwrap();
    let again = log
        .append_blocking(vec![mat("c", "r"), mat("a", "r"), mat("b", "r")])
        .unwrap();
    assert_eq!(
        again,
        vec![
            Appended {
                seq: 3,
                duplicate: false
            },
            Appended {
                seq: 1,
                duplicate: true
            },
            Appended {
                seq: 2,
                duplicate: true
            },
        ]
    );
    assert_eq!(log.last_seq(), 3);
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

#[test]
fn same_id_with_other_body_is_a_conflict_and_rejects_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_blocking(vec![mat("a", "r")]).unwrap();
    let mut changed = mat("a", "r");
    changed.envelope.timestamp_us += 1;
    let err = log
        .append_blocking(vec![mat("new1", "r"), changed, mat("new2", "r")])
        .unwrap_err();
    match err {
        Error::Conflict {
            index,
            event_id,
            seq,
        } => {
            assert_eq!((index, event_id.as_str(), seq), (1, "a", 1));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(log.last_seq(), 1, "nothing of the rejected batch is stored");
    assert_eq!(log.read(1, 10).unwrap().len(), 1);
    // The ids of the rejected batch are still free.
    let ok = log.append_blocking(vec![mat("new1", "r")]).unwrap();
    assert_eq!(
        ok,
        vec![Appended {
            seq: 2,
            duplicate: false
        }]
    );
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

#[test]
fn same_id_in_two_deployments_is_two_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut other = mat("a", "r");
    other.envelope.deployment = 2;
    let r = log.append_blocking(vec![mat("a", "r"), other]).unwrap();
    assert_eq!(r.iter().filter(|a| !a.duplicate).count(), 2);
}

#[test]
fn run_index_reads_one_run_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut events = Vec::new();
    for i in 0..10 {
        let run = if i % 2 == 0 { "run-a" } else { "run-ab" };
        events.push(sample::run_event(
            1,
            format!("e{i}"),
            run,
            RunEventKind::Start,
            i,
        ));
    }
    log.append_blocking(events).unwrap();
    let a = log.read_run(1, "run-a", 1, 100).unwrap();
    assert_eq!(
        a.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![1, 3, 5, 7, 9]
    );
    let ab = log.read_run(1, "run-ab", 5, 2).unwrap();
    assert_eq!(ab.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![6, 8]);
    assert!(log.read_run(2, "run-a", 1, 100).unwrap().is_empty());
}

#[test]
fn reopen_keeps_events_and_continues_the_sequence() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append_blocking(vec![mat("a", "r"), mat("b", "r")])
            .unwrap();
    }
    let log = open(dir.path());
    assert_eq!(log.last_seq(), 2);
    let r = log
        .append_blocking(vec![mat("a", "r"), mat("c", "r")])
        .unwrap();
    assert_eq!(
        r,
        vec![
            Appended {
                seq: 1,
                duplicate: true
            },
            Appended {
                seq: 3,
                duplicate: false
            }
        ]
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        format::write(log.db(), format::FORMAT_VERSION + 1).unwrap();
    }
    let err = Log::open(dir.path(), LogOptions::default()).err().unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::UnsupportedVersion { .. }), "{msg}");
    assert!(msg.contains("newer assetlog"), "{msg}");
}

#[test]
fn concurrent_appenders_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let id = format!("t{t}-{i}");
                    let r = log.append_blocking(vec![mat(&id, "r")]).unwrap();
                    seqs.push(r[0].seq);
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>());
    let report = log.verify(|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.events, 400);
}

/// The problems `verify` reports after deleting `key` from the index of a two-event store.
fn verify_without(key: &[u8]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_blocking(vec![mat("a", "r"), mat("b", "r")])
        .unwrap();
    // The dedupe entries follow the reply: let them land before deleting one.
    drop(log.pause_writer().unwrap());
    let index = log.db().cf_handle(cf::INDEX).unwrap();
    log.db().delete_cf(index, key).unwrap();
    log.verify(|_| {}).unwrap().problems
}

#[test]
fn verify_finds_a_missing_index_entry() {
    for (key, expected) in [
        (keys::dedupe(1, "b"), "no dedupe entry for id \"b\""),
        (
            keys::run_range(1, "r", 1),
            "seq 2: missing from the index of run \"r\"",
        ),
        (
            keys::deployment_range(1, 1).to_vec(),
            "seq 2: missing from the index of its deployment",
        ),
    ] {
        let problems = verify_without(&key);
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

#[test]
fn dedupe_entries_lost_past_the_watermark_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    {
        let log = open(dir.path());
        for id in &ids {
            log.append_blocking(vec![mat(id, "r")]).unwrap();
        }
        drop(log.pause_writer().unwrap());
        let (db, index) = (log.db(), log.db().cf_handle(cf::INDEX).unwrap());
        let watermark = db.get_cf(index, keys::dedupe_watermark()).unwrap();
        assert_eq!(hex::encode(watermark.unwrap()), "000000000000000a");
        // What a crash leaves when the last groups' dedupe entries were still in memory.
        for id in &ids[4..] {
            db.delete_cf(index, keys::dedupe(1, id)).unwrap();
        }
        db.put_cf(index, keys::dedupe_watermark(), 4u64.to_be_bytes())
            .unwrap();
        let problems = log.verify(|_| {}).unwrap().problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("no dedupe entry for id \"e9\"")),
            "{problems:?}"
        );
    }
    let log = open(dir.path());
    let report = log.verify(|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.dedupe_entries, 10);
    // Re-sends are still recognised, with their original seqs; a changed body still conflicts.
    let again = log
        .append_blocking(ids.iter().map(|id| mat(id, "r")).collect())
        .unwrap();
    let want: Vec<Appended> = (1..=10)
        .map(|seq| Appended {
            seq,
            duplicate: true,
        })
        .collect();
    assert_eq!(again, want);
    let err = log.append_blocking(vec![mat("e7", "other")]).unwrap_err();
    assert!(matches!(err, Error::Conflict { seq: 8, .. }), "{err:?}");
    assert_eq!(log.last_seq(), 10);
}

#[test]
fn a_format_2_store_gets_its_dedupe_watermark_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        log.append_blocking((0..30).map(|i| mat(&format!("e{i}"), "r")).collect())
            .unwrap();
        drop(log.pause_writer().unwrap());
        // Format 2 had no watermark: its dedupe entries were written with their events.
        let (db, index) = (log.db(), log.db().cf_handle(cf::INDEX).unwrap());
        db.delete_cf(index, keys::dedupe_watermark()).unwrap();
        format::write(db, 2).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(
        format::read(log.db()).unwrap(),
        Some(format::FORMAT_VERSION)
    );
    let index = log.db().cf_handle(cf::INDEX).unwrap();
    let watermark = log.db().get_cf(index, keys::dedupe_watermark()).unwrap();
    assert_eq!(watermark.as_deref(), Some(&30u64.to_be_bytes()[..]));
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
    assert!(log.append_blocking(vec![mat("e3", "r")]).unwrap()[0].duplicate);
}

#[test]
fn deployments_get_stable_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    assert_eq!(log.ensure_deployment("default").unwrap(), (1, true));
    assert_eq!(log.ensure_deployment("prod").unwrap(), (2, true));
    assert_eq!(log.ensure_deployment("default").unwrap(), (1, false));
    assert_eq!(log.deployment_id("prod").unwrap(), Some(2));
    assert_eq!(log.deployment_id("nope").unwrap(), None);
    assert_eq!(log.deployments().unwrap().len(), 2);
}

#[test]
fn appends_after_shutdown_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.shutdown();
    assert!(matches!(
        log.append_blocking(vec![mat("a", "r")]),
        Err(Error::Closed)
    ));
}

/// Large requests are encoded on a helper thread: the results must be the same as for
/// small ones (order, duplicates within and across requests, conflicts, stored bytes).
#[test]
fn large_requests_dedupe_and_conflict_like_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let n = PARALLEL_ENCODE * 2 + 7;
    let first: Vec<Event> = (0..n).map(|i| mat(&format!("e{i}"), "r")).collect();
    let a = log.append_blocking(first.clone()).unwrap();
    assert_eq!(a.last().map(|x| x.seq), Some(n as u64));
    // A large re-send mixed with new events: old ids come back as duplicates with their
    // original seqs, new ones get the next seqs in request order.
    let mut second: Vec<Event> = (0..n).map(|i| mat(&format!("f{i}"), "r")).collect();
    second[5] = first[9].clone();
    second[400] = first[0].clone();
    let b = log.append_blocking(second.clone()).unwrap();
    assert!(b[5].duplicate && b[5].seq == 10);
    assert!(b[400].duplicate && b[400].seq == 1);
    let fresh: Vec<u64> = b.iter().filter(|x| !x.duplicate).map(|x| x.seq).collect();
    assert_eq!(
        fresh,
        ((n as u64 + 1)..=(2 * n as u64 - 2)).collect::<Vec<_>>()
    );
    // A changed body under a known id rejects the whole large request.
    let mut third: Vec<Event> = (0..n).map(|i| mat(&format!("g{i}"), "r")).collect();
    third[300] = mat("e3", "other-run");
    assert!(matches!(
        log.append_blocking(third),
        Err(Error::Conflict { index: 300, .. })
    ));
    assert_eq!(log.last_seq(), 2 * n as u64 - 2);
    assert_eq!(log.get(n as u64 + 1).unwrap().as_ref(), Some(&second[0]));
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

/// Every run- and deployment-index entry, as (key hex, value hex).
fn index_ranges(log: &Log) -> Vec<(String, String)> {
    let index = log.db().cf_handle(cf::INDEX).unwrap();
    log.db()
        .iterator_cf(index, IteratorMode::Start)
        .map(|kv| kv.unwrap())
        .filter(|(k, _)| k[0] != keys::DEDUPE && k[0] != keys::DEDUPE_WATERMARK)
        .map(|(k, v)| (hex::encode(k), hex::encode(v)))
        .collect()
}

#[test]
fn index_entries_are_stretches_of_seqs_golden() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut no_run = mat("n", "x");
    no_run.envelope.run_id = None;
    let mut other_deployment = mat("d2", "a");
    other_deployment.envelope.deployment = 2;
    // seqs 1-2 run a, 3 run b, 4 no run, 5 run a; then (dup of 1), 6 run a, 7 deployment 2.
    log.append_blocking(vec![
        mat("e1", "a"),
        mat("e2", "a"),
        mat("e3", "b"),
        no_run,
        mat("e5", "a"),
    ])
    .unwrap();
    log.append_blocking(vec![mat("e1", "a"), mat("e6", "a"), other_deployment])
        .unwrap();
    let seq = |s: u64| hex::encode(s.to_be_bytes());
    let run = |d: u32, r: &str, first: u64| {
        format!(
            "05{}{}00{}",
            hex::encode(d.to_be_bytes()),
            hex::encode(r),
            seq(first)
        )
    };
    let dep = |d: u32, first: u64| format!("06{}{}", hex::encode(d.to_be_bytes()), seq(first));
    // The bytes of format 2's index: kind, deployment, run id, NUL, first seq -> last seq.
    assert_eq!(run(1, "a", 5), "050000000161000000000000000005");
    assert_eq!(
        index_ranges(&log),
        vec![
            (run(1, "a", 1), seq(2)),
            (run(1, "a", 5), seq(5)),
            (run(1, "a", 6), seq(6)),
            (run(1, "b", 3), seq(3)),
            (run(2, "a", 7), seq(7)),
            (dep(1, 1), seq(5)),
            (dep(1, 6), seq(6)),
            (dep(2, 7), seq(7)),
        ]
    );
    let seqs = |v: Vec<(Seq, Event)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
    assert_eq!(
        seqs(log.read_run(1, "a", 0, 100).unwrap()),
        vec![1, 2, 5, 6]
    );
    assert_eq!(seqs(log.read_run(1, "a", 2, 2).unwrap()), vec![2, 5]);
    assert_eq!(
        seqs(log.read_deployment(1, 3, 100).unwrap()),
        vec![3, 4, 5, 6]
    );
    assert_eq!(seqs(log.read_deployment(2, 0, 100).unwrap()), vec![7]);
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

#[test]
fn a_format_1_store_is_migrated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut events: Vec<Event> = (0..300)
        .map(|i| mat(&format!("e{i}"), &format!("run-{}", i % 7)))
        .collect();
    events[10].envelope.run_id = None;
    events[20].envelope.deployment = 2;
    let expected_ranges;
    {
        let log = open(dir.path());
        for chunk in events.chunks(50) {
            log.append_blocking(chunk.to_vec()).unwrap();
        }
        // Rewrite the index as format 1 had it: one entry per event, no stretches.
        let (db, index) = (log.db(), log.db().cf_handle(cf::INDEX).unwrap());
        let mut v1 = WriteBatch::default();
        v1.delete_range_cf(index, [keys::RUN_RANGE], [keys::DEPLOYMENT_RANGE + 1]);
        for (seq, ev) in log.read(1, 1000).unwrap() {
            let d = ev.envelope.deployment.to_be_bytes();
            let mut k = vec![keys::RETIRED_DEPLOYMENT_EVENTS];
            k.extend(d);
            k.extend(seq.to_be_bytes());
            v1.put_cf(index, k, []);
            if let Some(run) = &ev.envelope.run_id {
                let mut k = vec![keys::RETIRED_RUN_EVENTS];
                k.extend(d);
                k.extend(run.as_bytes());
                k.push(0);
                k.extend(seq.to_be_bytes());
                v1.put_cf(index, k, []);
            }
        }
        expected_ranges = index_ranges(&log);
        db.write(v1).unwrap();
        format::write(db, 1).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(
        format::read(log.db()).unwrap(),
        Some(format::FORMAT_VERSION)
    );
    let report = log.verify(|_| {}).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.events, 300);
    assert_eq!(report.run_entries, 299);
    // Stretches are per run now, across the old requests' boundaries too; no old key is left.
    let ranges = index_ranges(&log);
    assert!(ranges
        .iter()
        .all(|(k, _)| k.starts_with("05") || k.starts_with("06")));
    assert!(ranges.len() <= expected_ranges.len());
    let run3: Vec<Seq> = log
        .read_run(1, "run-3", 0, 1000)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let want: Vec<Seq> = (0..300u64)
        .filter(|i| i % 7 == 3 && *i != 10 && *i != 20)
        .map(|i| i + 1)
        .collect();
    assert_eq!(run3, want);
}

mod stretches {
    use super::*;
    use proptest::prelude::*;

    /// (deployment, run (None = no run), id): ids repeat, so some events are re-sends.
    fn request() -> impl Strategy<Value = Vec<(u32, Option<u8>, u8)>> {
        prop::collection::vec((1u32..3, prop::option::of(0u8..3), 0u8..40), 1..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever the requests and however they group, reading a run or a deployment
        /// through its stretches gives exactly its events in seq order, and verify agrees.
        #[test]
        fn run_and_deployment_reads_equal_a_filter_of_the_log(
            requests in prop::collection::vec(request(), 1..8),
            from in 0u64..30,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(open(dir.path()));
            // Half the requests go in together (they may share a group), the rest in turn.
            let (together, alone) = requests.split_at(requests.len() / 2);
            let make = |req: &Vec<(u32, Option<u8>, u8)>| -> Vec<Event> {
                req.iter()
                    .map(|(d, run, id)| {
                        let mut e = mat(&format!("id{id}"), &format!("run{}", run.unwrap_or(0)));
                        e.envelope.deployment = *d;
                        if run.is_none() {
                            e.envelope.run_id = None;
                        }
                        e
                    })
                    .collect()
            };
            // Same id for a different event is a conflict: fine, the request is refused.
            let handles: Vec<_> = together
                .iter()
                .map(|r| {
                    let (log, evs) = (log.clone(), make(r));
                    std::thread::spawn(move || { let _ = log.append_blocking(evs); })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            for r in alone {
                let _ = log.append_blocking(make(r));
            }
            let all = log.read(1, 10_000).unwrap();
            for d in 1u32..3 {
                let want: Vec<Seq> = all
                    .iter()
                    .filter(|(s, e)| *s >= from && e.envelope.deployment == d)
                    .map(|(s, _)| *s)
                    .collect();
                let got: Vec<Seq> =
                    log.read_deployment(d, from, 10_000).unwrap().into_iter().map(|(s, _)| s).collect();
                prop_assert_eq!(got, want);
                for run in ["run0", "run1", "run2"] {
                    let want: Vec<Seq> = all
                        .iter()
                        .filter(|(s, e)| {
                            *s >= from
                                && e.envelope.deployment == d
                                && e.envelope.run_id.as_deref() == Some(run)
                        })
                        .map(|(s, _)| *s)
                        .collect();
                    let got: Vec<Seq> = log
                        .read_run(d, run, from, 10_000)
                        .unwrap()
                        .into_iter()
                        .map(|(s, _)| s)
                        .collect();
                    prop_assert_eq!(got, want);
                }
            }
            let report = log.verify(|_| {}).unwrap();
            prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
        }
    }
}

#[test]
fn memo_remembers_committed_immutable_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"committed", b"1").unwrap();
    let memo = std::cell::RefCell::new(Memo::default());
    let mut txn = Txn::with_memo(db, views, &memo);
    txn.begin();
    txn.put(b"staged".to_vec(), b"2".to_vec());
    assert_eq!(txn.get_immutable(b"staged").unwrap(), Some(b"2".to_vec()));
    assert_eq!(
        txn.get_immutable(b"committed").unwrap(),
        Some(b"1".to_vec())
    );
    txn.rollback();
    assert_eq!(txn.get_immutable(b"staged").unwrap(), None);
    drop(txn);
    // A later group gets the committed row from the memo (RocksDB no longer has it here),
    // and never the rolled-back one.
    db.delete_cf(views, b"committed").unwrap();
    let txn = Txn::with_memo(db, views, &memo);
    assert_eq!(
        txn.get_immutable(b"committed").unwrap(),
        Some(b"1".to_vec())
    );
    assert_eq!(txn.get_immutable(b"staged").unwrap(), None);
    assert_eq!(txn.get(b"committed").unwrap(), None);
}

#[test]
fn a_replay_memo_writes_a_changed_record_back_once_and_reads_and_scans_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    let memo = std::cell::RefCell::new(Memo::for_empty_views(100, &[]));
    let bump = |txn: &mut Txn<'_>| {
        txn.update(b"r", |v: &mut Option<u64>| *v = Some(v.unwrap_or(0) + 1))
            .unwrap()
    };
    let stored = || db.get_cf(views, b"r").unwrap();
    let enc = crate::projection::enc::<u64>;
    // The group that creates the record writes it.
    let mut txn = Txn::with_memo(db, views, &memo);
    bump(&mut txn);
    let mut batch = WriteBatch::default();
    let prev = txn.write_into(&mut batch);
    db.write(batch).unwrap();
    assert_eq!(stored(), Some(enc(&1)));
    // The next one, which changes it, holds it back.
    let mut txn = Txn::with_memo(db, views, &memo).over(prev);
    bump(&mut txn);
    let mut batch = WriteBatch::default();
    let prev = txn.write_into(&mut batch);
    db.write(batch).unwrap();
    assert_eq!(stored(), Some(enc(&1)), "written back, not through");
    // Later groups read and scan the value held back, not RocksDB's.
    let txn = Txn::with_memo(db, views, &memo).over(prev);
    assert_eq!(txn.record::<u64>(b"r").unwrap(), Some(2));
    assert_eq!(
        txn.scan(b"r", b"s").unwrap(),
        vec![(b"r".to_vec(), enc(&2))]
    );
    // The end writes it.
    let mut batch = WriteBatch::default();
    txn.write_back_all(&mut batch);
    db.write(batch).unwrap();
    assert_eq!(stored(), Some(enc(&2)));
}

/// A row as the views family stores it.
fn row(k: &str, v: &str) -> (Vec<u8>, Vec<u8>) {
    (k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

/// Every row of the views family, in key order.
fn stored_views(db: &rocksdb::DB) -> Vec<(Vec<u8>, Vec<u8>)> {
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.iterator_cf(views, rocksdb::IteratorMode::Start)
        .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
        .collect()
}

#[test]
fn rows_of_kinds_only_scanned_are_scanned_in_order_rolled_back_and_written_last_wins() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    let memo = std::cell::RefCell::new(Memo::new(b"h"));
    let mut txn = Txn::with_memo(db, views, &memo);
    txn.begin();
    txn.put(b"h2".to_vec(), b"a".to_vec());
    txn.put(b"h1".to_vec(), b"b".to_vec());
    assert_eq!(
        txn.scan(b"h", b"i").unwrap(),
        [row("h1", "b"), row("h2", "a")]
    );
    // Appended after a scan of their kind: the next scan sees them.
    txn.put(b"h0".to_vec(), b"c".to_vec());
    txn.delete(b"h2".to_vec());
    assert_eq!(
        txn.scan(b"h", b"i").unwrap(),
        [row("h0", "c"), row("h1", "b")]
    );
    txn.begin();
    txn.put(b"h3".to_vec(), b"d".to_vec());
    txn.put(b"h1".to_vec(), b"e".to_vec());
    assert_eq!(
        txn.scan(b"h", b"i").unwrap(),
        [row("h0", "c"), row("h1", "e"), row("h3", "d")]
    );
    txn.rollback();
    assert_eq!(
        txn.scan(b"h", b"i").unwrap(),
        [row("h0", "c"), row("h1", "b")]
    );
    let mut batch = WriteBatch::default();
    txn.write_into(&mut batch);
    db.write(batch).unwrap();
    let stored = stored_views(db);
    assert_eq!(stored, [row("h0", "c"), row("h1", "b")]);
}

#[test]
fn a_sealed_overlay_is_written_by_another_thread_while_the_next_txn_reads_and_scans_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    let memo = std::cell::RefCell::new(Memo::new(b"h"));
    let mut first = Txn::with_memo(db, views, &memo);
    first.put(b"a1".to_vec(), b"x".to_vec());
    first.put(b"h1".to_vec(), b"old".to_vec());
    first.put(b"h1".to_vec(), b"y".to_vec());
    first.put(b"h0".to_vec(), b"z".to_vec());
    let sealed = std::sync::Arc::new(first.seal());
    let writing = sealed.clone();
    let mut second = Txn::with_memo(db, views, &memo).over_shared(sealed);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut batch = WriteBatch::default();
            writing.put_sorted_into(&mut batch, views);
            drop(writing);
            db.write(batch).unwrap();
        });
        // Read while the other thread may be building the batch from the same rows.
        assert_eq!(second.get(b"a1").unwrap(), Some(b"x".to_vec()));
        assert_eq!(
            second.scan(b"h", b"i").unwrap(),
            [row("h0", "z"), row("h1", "y")]
        );
        second.put(b"a2".to_vec(), b"w".to_vec());
        writer.join().unwrap();
    });
    let mut batch = WriteBatch::default();
    second.write_into(&mut batch);
    db.write(batch).unwrap();
    let stored = stored_views(db);
    assert_eq!(
        stored,
        [
            row("a1", "x"),
            row("a2", "w"),
            row("h0", "z"),
            row("h1", "y")
        ]
    );
}

#[test]
fn txn_rollback_restores_the_overlay_as_it_was_at_begin() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"stored", b"0").unwrap();
    let mut txn = Txn::new(db, views);
    txn.begin();
    txn.put(b"a".to_vec(), b"1".to_vec());
    txn.put(b"b".to_vec(), b"1".to_vec());
    txn.begin();
    txn.put(b"a".to_vec(), b"2".to_vec());
    txn.put(b"a".to_vec(), b"3".to_vec());
    txn.delete(b"b".to_vec());
    txn.delete(b"stored".to_vec());
    txn.put(b"c".to_vec(), b"2".to_vec());
    assert_eq!(txn.get(b"a").unwrap(), Some(b"3".to_vec()));
    assert_eq!(txn.get(b"stored").unwrap(), None);
    txn.rollback();
    assert_eq!(txn.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(txn.get(b"b").unwrap(), Some(b"1".to_vec()));
    assert_eq!(txn.get(b"c").unwrap(), None);
    assert_eq!(txn.get(b"stored").unwrap(), Some(b"0".to_vec()));
    let mut batch = WriteBatch::default();
    txn.write_into(&mut batch);
    assert_eq!(batch.len(), 2, "only a and b reach the batch");
}

/// A record kept decoded in the overlay, stored as 8 big-endian bytes.
#[derive(Debug, Clone, PartialEq)]
struct Counter(u64);

impl crate::log::Value for Counter {
    fn encode(&self) -> Vec<u8> {
        self.0.to_be_bytes().to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Counter> {
        Ok(Counter(u64::from_be_bytes(fixed(bytes, "counter")?)))
    }
}

fn bump(txn: &mut Txn<'_>, key: &[u8]) -> u64 {
    txn.update(key, |c: &mut Option<Counter>| {
        let c = c.get_or_insert(Counter(0));
        c.0 += 1;
        c.0
    })
    .unwrap()
}

#[test]
fn records_change_in_place_and_roll_back_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"stored", 10u64.to_be_bytes()).unwrap();
    let mut txn = Txn::new(db, views);
    txn.begin();
    assert_eq!(bump(&mut txn, b"stored"), 11);
    assert_eq!(bump(&mut txn, b"new"), 1);
    assert_eq!(bump(&mut txn, b"new"), 2);
    // The next request changes both again, then fails: both go back to where it began.
    txn.begin();
    assert_eq!(bump(&mut txn, b"stored"), 12);
    assert_eq!(bump(&mut txn, b"new"), 3);
    assert_eq!(bump(&mut txn, b"other"), 1);
    txn.put(b"stored".to_vec(), b"bytes".to_vec());
    txn.rollback();
    assert_eq!(txn.record::<Counter>(b"stored").unwrap(), Some(Counter(11)));
    assert_eq!(txn.record::<Counter>(b"new").unwrap(), Some(Counter(2)));
    assert_eq!(txn.record::<Counter>(b"other").unwrap(), None);
    // Raw reads see a held record's bytes.
    assert_eq!(txn.get(b"new").unwrap(), Some(2u64.to_be_bytes().to_vec()));
    // Looking at an absent record, or leaving it absent, writes nothing.
    txn.begin();
    txn.update(b"ghost", |c: &mut Option<Counter>| assert!(c.is_none()))
        .unwrap();
    // Setting `None` deletes.
    txn.update(b"stored", |c: &mut Option<Counter>| *c = None)
        .unwrap();
    let mut batch = WriteBatch::default();
    txn.write_into(&mut batch);
    assert_eq!(batch.len(), 2, "new, and the delete of stored");
    db.write(batch).unwrap();
    assert_eq!(db.get_cf(views, b"stored").unwrap(), None);
    assert_eq!(
        db.get_cf(views, b"new").unwrap(),
        Some(2u64.to_be_bytes().to_vec())
    );
}

#[test]
fn memo_takes_a_group_once_the_next_one_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"hot", 1u64.to_be_bytes()).unwrap();
    let memo = std::cell::RefCell::new(Memo::default());
    let mut txn = Txn::with_memo(db, views, &memo);
    assert_eq!(txn.record::<Counter>(b"hot").unwrap(), Some(Counter(1)));
    assert_eq!(txn.record::<Counter>(b"absent").unwrap(), None);
    // A request that rolls back leaves nothing behind; the next one's writes are the
    // group's.
    txn.begin();
    bump(&mut txn, b"hot");
    bump(&mut txn, b"absent");
    txn.rollback();
    txn.begin();
    bump(&mut txn, b"hot");
    let mut batch = WriteBatch::default();
    let group = txn.write_into(&mut batch);
    assert_eq!(batch.len(), 1);
    // The group is not in RocksDB here (its batch is not written): the next group reads it
    // from the overlay it is staged on...
    let txn = Txn::with_memo(db, views, &memo).over(group);
    assert_eq!(txn.record::<Counter>(b"hot").unwrap(), Some(Counter(2)));
    assert_eq!(txn.get(b"hot").unwrap(), Some(2u64.to_be_bytes().to_vec()));
    assert_eq!(txn.record::<Counter>(b"absent").unwrap(), None);
    // ...and, once that group is written in turn, from the memo.
    txn.write_into(&mut WriteBatch::default());
    let txn = Txn::with_memo(db, views, &memo);
    assert_eq!(txn.record::<Counter>(b"hot").unwrap(), Some(Counter(2)));
    assert_eq!(txn.record::<Counter>(b"absent").unwrap(), None);
    // Without the memo, RocksDB's committed value.
    assert_eq!(
        Txn::new(db, views).record::<Counter>(b"hot").unwrap(),
        Some(Counter(1))
    );
}

/// Once a group is written and taken into the memo, the next group's updates move its
/// records out of the memo instead of copying them: a request that changes one and rolls
/// back must leave the committed value readable (from RocksDB), and the next request's
/// change must start from it.
#[test]
fn an_update_of_a_remembered_record_rolls_back_to_the_committed_value() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"hot", 1u64.to_be_bytes()).unwrap();
    let memo = std::cell::RefCell::new(Memo::default());
    let commit = |txn: Txn<'_>| {
        let mut batch = WriteBatch::default();
        let written = txn.write_into(&mut batch);
        db.write(batch).unwrap();
        memo.borrow_mut().absorb(written);
    };
    let mut txn = Txn::with_memo(db, views, &memo);
    txn.begin();
    assert_eq!(bump(&mut txn, b"hot"), 2);
    commit(txn);
    let mut txn = Txn::with_memo(db, views, &memo);
    txn.begin();
    assert_eq!(bump(&mut txn, b"hot"), 3);
    assert_eq!(bump(&mut txn, b"hot"), 4);
    txn.rollback();
    assert_eq!(txn.record::<Counter>(b"hot").unwrap(), Some(Counter(2)));
    txn.begin();
    assert_eq!(bump(&mut txn, b"hot"), 3);
    commit(txn);
    let txn = Txn::with_memo(db, views, &memo);
    assert_eq!(txn.record::<Counter>(b"hot").unwrap(), Some(Counter(3)));
    assert_eq!(
        Txn::new(db, views).record::<Counter>(b"hot").unwrap(),
        Some(Counter(3))
    );
}

/// A group staged while the one before it waits to be written dedupes against it: a re-send
/// of an in-flight event gets the in-flight seq back, and nothing is stored twice.
#[test]
fn a_group_in_flight_is_seen_by_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let (arrived, go) = log.hold_commits();
    let batch = || {
        (0..5)
            .map(|i| sample::materialization(1, format!("e{i}"), "r", i, None, 100 + i as i64))
            .collect::<Vec<_>>()
    };
    let first = std::thread::spawn({
        let log = log.clone();
        move || log.append_blocking(batch()).unwrap()
    });
    // The first group is staged and handed to the committer, which holds it unwritten.
    arrived.recv().unwrap();
    let (settling, _) = log.hold_committer(CommitPoint::Settle);
    let again = std::thread::spawn({
        let log = log.clone();
        move || log.append_blocking(batch()).unwrap()
    });
    // The writer stages the re-send, then waits for the first group, which is not written
    // before the go below (and then only after its fsync).
    settling
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the writer staged the re-send");
    go.send(()).unwrap();
    arrived.recv().unwrap();
    drop(go);
    let first = first.join().unwrap();
    let again = again.join().unwrap();
    assert!(first.iter().all(|a| !a.duplicate));
    assert!(again.iter().all(|a| a.duplicate));
    assert_eq!(
        first.iter().map(|a| a.seq).collect::<Vec<_>>(),
        again.iter().map(|a| a.seq).collect::<Vec<_>>()
    );
    assert_eq!(log.last_seq(), 5);
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

/// Between a group's reply and its dedupe entries' write, the index does not know its ids
/// yet: a re-send in that window must still come back as duplicates with the original seqs
/// (the writer dedupes against its table of the unwritten entries), and nothing is stored
/// twice.
#[test]
fn a_resend_before_the_dedupe_write_is_a_duplicate() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let (arrived, go) = log.hold_committer(CommitPoint::Dedupe);
    let batch = || {
        (0..5)
            .map(|i| sample::materialization(1, format!("w{i}"), "r", i, None, 100 + i as i64))
            .collect::<Vec<_>>()
    };
    // Appends the batch on a thread of its own; the answer comes on the channel.
    let send = |log: &Arc<Log>| {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = log.clone();
        std::thread::spawn(move || tx.send(log.append_blocking(batch()).unwrap()));
        rx
    };
    let indexed = |i: usize| {
        let key = keys::dedupe(1, &format!("w{i}"));
        log.db.get_cf(log.cf(cf::INDEX), key).unwrap().is_some()
    };
    let first_rx = send(&log);
    arrived
        .recv_timeout(Duration::from_secs(30))
        .expect("the committer reached the dedupe write");
    // The appender has its answer although the dedupe entries are not written.
    let first = first_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the reply comes before the dedupe write");
    assert!(!(0..5).any(indexed), "an id is indexed already");
    // The writer says when it has staged a group and waits for the one in flight (it is
    // not held there).
    let (settling, _) = log.hold_committer(CommitPoint::Settle);
    let again_rx = send(&log);
    // The re-send is staged against the unwritten entries; its group then waits for this
    // one's dedupe write, which goes on only now.
    settling
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer staged the re-send");
    go.send(()).unwrap();
    drop(go);
    let again = again_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the re-send is answered");
    assert!(first.iter().all(|a| !a.duplicate));
    assert!(again.iter().all(|a| a.duplicate), "{again:?}");
    assert_eq!(
        first.iter().map(|a| a.seq).collect::<Vec<_>>(),
        again.iter().map(|a| a.seq).collect::<Vec<_>>()
    );
    assert_eq!(log.last_seq(), 5);
    assert!((0..5).all(indexed), "an id is not indexed");
    assert!(log.verify(|_| {}).unwrap().problems.is_empty());
}

/// Scans merge RocksDB, the group before and this group, in key order; keys added after a
/// kind was first scanned, or rolled back, show (or vanish) in the next scan.
#[test]
fn txn_scans_see_both_overlays_in_order_through_writes_and_rollbacks() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let db = log.db();
    let views = db.cf_handle(cf::VIEWS).unwrap();
    db.put_cf(views, b"k1", b"db").unwrap();
    db.put_cf(views, b"k4", b"db").unwrap();
    let mut before = Txn::new(db, views);
    before.put(b"k2".to_vec(), b"prev".to_vec());
    before.delete(b"k4".to_vec());
    let prev = before.write_into(&mut WriteBatch::default());
    let mut txn = Txn::new(db, views).over(prev);
    txn.begin();
    txn.put(b"k3".to_vec(), b"this".to_vec());
    txn.put(b"j9".to_vec(), b"other kind".to_vec());
    let scan = |txn: &Txn<'_>| -> Vec<(String, String)> {
        txn.scan(b"k", b"l")
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    };
    let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        scan(&txn),
        pairs(&[("k1", "db"), ("k2", "prev"), ("k3", "this")])
    );
    // Written after the kind was scanned: in the next scan; then a failed request's
    // writes vanish from it again.
    txn.begin();
    txn.put(b"k0".to_vec(), b"new".to_vec());
    txn.put(b"k3".to_vec(), b"changed".to_vec());
    bump(&mut txn, b"k5");
    assert_eq!(
        scan(&txn),
        pairs(&[
            ("k0", "new"),
            ("k1", "db"),
            ("k2", "prev"),
            ("k3", "changed"),
            ("k5", "\0\0\0\0\0\0\0\u{1}")
        ])
    );
    txn.rollback();
    assert_eq!(
        scan(&txn),
        pairs(&[("k1", "db"), ("k2", "prev"), ("k3", "this")])
    );
}

#[test]
fn the_written_filter_never_forgets_a_key_and_rarely_claims_another() {
    let key = |i: u32| keys::dedupe(1, &format!("event-{i}"));
    let unkept = 0x7f;
    let mut written = txn::Written::with_capacity(10_000, &[unkept]);
    for i in 0..10_000 {
        written.insert(&key(i));
    }
    assert!((0..10_000).all(|i| written.may_contain(&key(i))));
    let claimed = (10_000..110_000)
        .filter(|i| written.may_contain(&key(*i)))
        .count();
    assert!(claimed < 1_000, "{claimed} of 100,000 keys never inserted");
    // A kind it does not keep: never known to be unwritten.
    assert!(written.may_contain(&[unkept, 1, 2, 3]));
}

/// The views' options come from an options file; RocksDB records the options it opened the
/// store with, and the views' must be there (a misspelt one would have failed the open).
#[test]
fn the_views_open_with_their_insert_hint_and_leave_no_scratch_behind() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    drop(log);
    let mut views = None;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(!name.starts_with(".views-options"), "left behind: {name}");
        if name.starts_with("OPTIONS-") {
            let text = std::fs::read_to_string(dir.path().join(&name)).unwrap();
            let start = text.find("[CFOptions \"views\"]").expect("a views section");
            let end = text[start..].find("[TableOptions").unwrap() + start;
            views = Some(text[start..end].to_string());
        }
    }
    let views = views.expect("an OPTIONS file");
    for line in [
        "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1",
        &format!("write_buffer_size={VIEWS_MEMTABLE}"),
        "compression=kLZ4Compression",
        &format!("max_write_buffer_number={VIEWS_MEMTABLES_MAX}"),
        &format!("min_write_buffer_number_to_merge={VIEWS_MEMTABLES_MERGED}"),
    ] {
        assert!(views.contains(line), "{line} not in {views}");
    }
}
