//! Crash safety of the log with a real process: a child appends from several threads and
//! prints every acknowledgement; the parent `kill -9`s it at a random moment, reopens the
//! store and checks that every acknowledged event is present, intact and in order, that
//! `verify` passes, and that re-sending acknowledged events stores nothing. 25 rounds on the
//! same store, with every view projected; at the end the live views must equal views rebuilt
//! from the log, byte for byte.
//!
//! The child is this test binary itself, re-run with `ASSETLOG_CRASH_CHILD` set.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use assetlog::event::{sample, Event};
use assetlog::log::LogOptions;
use rand::Rng;

const CHILD_ENV: &str = "ASSETLOG_CRASH_CHILD";

/// The event with this id: content derived from the id, so the parent can check it.
fn event_for(id: &str, n: u64) -> Event {
    sample::materialization(
        1,
        id.to_string(),
        &format!("run-{}", n % 7),
        (n % 50) as usize,
        n.is_multiple_of(3).then(|| format!("p{n}")),
        1_700_000_000_000_000 + n as i64,
    )
}

/// Child mode: append until killed, printing `ack <id> <n> <seq>` for every event.
#[test]
fn child_appender() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // not a child: nothing to do in a normal test run
    };
    let round: u64 = std::env::var("ASSETLOG_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let log = assetlog::projection::open(&dir, LogOptions::default(), |_, _| {}).unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let log = log.clone();
            let out = out.clone();
            std::thread::spawn(move || {
                let mut rng = rand::thread_rng();
                let mut n = 0u64;
                loop {
                    let size = rng.gen_range(1..=40);
                    let batch: Vec<(String, u64)> = (0..size)
                        .map(|_| {
                            n += 1;
                            let k = round * 10_000_000 + t * 1_000_000 + n;
                            (format!("r{round}-t{t}-{n}"), k)
                        })
                        .collect();
                    let events = batch.iter().map(|(id, k)| event_for(id, *k)).collect();
                    let acks = log.append_blocking(events).unwrap();
                    let mut o = out.lock().unwrap();
                    for ((id, k), a) in batch.iter().zip(acks) {
                        writeln!(o, "ack {id} {k} {}", a.seq).unwrap();
                    }
                    o.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn kill_9_loses_no_acknowledged_event() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::thread_rng();
    let mut acked: Vec<(String, u64, u64)> = Vec::new();
    let rounds = 25;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_appender",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("ASSETLOG_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acks on a thread; kill after a random delay measured from the first ack.
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("ack ") {
                    let mut parts = rest.split(' ');
                    let id = parts.next().unwrap().to_string();
                    let k: u64 = parts.next().unwrap().parse().unwrap();
                    let seq: u64 = parts.next().unwrap().parse().unwrap();
                    lines.push((id, k, seq));
                }
            }
            lines
        });
        // The kill moment is random; nothing here depends on timing for correctness.
        std::thread::sleep(Duration::from_millis(rng.gen_range(50..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let round_acks = reader.join().unwrap();
        let checked_before = acked.len();
        acked.extend(round_acks);

        // Reopen and check this round's acknowledgements (all of them in the last round).
        let log = assetlog::projection::open(dir.path(), LogOptions::default(), |_, _| {}).unwrap();
        let from = if round == rounds - 1 {
            0
        } else {
            checked_before
        };
        for (id, k, seq) in &acked[from..] {
            let ev = log.get(*seq).unwrap().unwrap_or_else(|| {
                panic!("round {round}: acknowledged seq {seq} ({id}) is missing")
            });
            assert_eq!(
                &ev,
                &event_for(id, *k),
                "round {round}: seq {seq} is not what was acked"
            );
        }
        // In order: each thread's acks have increasing seqs.
        let mut last: std::collections::HashMap<String, u64> = Default::default();
        for (id, _, seq) in &acked {
            let thread = id.rsplit_once('-').unwrap().0.to_string();
            if let Some(prev) = last.insert(thread, *seq) {
                assert!(*seq > prev, "seq order broke at {id}");
            }
        }
        let report = log.verify(|_| {}).unwrap();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        assert!(report.events >= acked.len() as u64);
        // Ids stay deduplicated across the crash (the dedupe entries of the last groups are
        // rebuilt from the log at open): re-sending the round's latest acks stores nothing.
        let latest = &acked[acked.len().saturating_sub(200).max(checked_before)..];
        let resent = log
            .append_blocking(latest.iter().map(|(id, k, _)| event_for(id, *k)).collect())
            .unwrap();
        for ((id, _, seq), a) in latest.iter().zip(&resent) {
            assert!(
                a.duplicate && a.seq == *seq,
                "round {round}: re-sent {id} came back as {a:?}, acked as seq {seq}"
            );
        }
        assert_eq!(log.verify(|_| {}).unwrap().events, report.events);
    }
    assert!(
        acked.len() > 1000,
        "the child acknowledged only {} events in {rounds} rounds",
        acked.len()
    );
    println!(
        "crash rounds: {rounds}, acknowledged events checked: {}",
        acked.len()
    );
}
