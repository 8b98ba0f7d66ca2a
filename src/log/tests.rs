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

#[test]
fn verify_finds_a_missing_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append_blocking(vec![mat("a", "r"), mat("b", "r")])
        .unwrap();
    let index = log.db().cf_handle(cf::INDEX).unwrap();
    log.db().delete_cf(index, keys::dedupe(1, "b")).unwrap();
    let report = log.verify(|_| {}).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("no dedupe entry for id \"b\"")),
        "{:?}",
        report.problems
    );
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
