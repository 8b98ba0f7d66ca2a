//! The command line, run as a user would: append, log, verify, deployments, tokens, help.

mod common;

use std::process::Command;

use common::BIN;
use serde_json::Value;

fn run(dir: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn append_log_verify_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/examples");
    let file = examples.join("run_lifecycle.json");
    let (ok, out, err) = run(dir.path(), &["append", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        (1..=8).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    // Re-sending prints the original seqs as duplicates.
    let (ok, out, _) = run(dir.path(), &["append", file.to_str().unwrap()]);
    assert!(ok);
    assert_eq!(out.lines().next(), Some("1 duplicate"));
    let ndjson = examples.join("logs_and_engine.ndjson");
    let (ok, out, err) = run(dir.path(), &["append", ndjson.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().count(), 27);

    let (ok, out, _) = run(dir.path(), &["log", "--limit", "3"]);
    assert!(ok);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], "run-1-enqueued");
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["deployment"], "default");
    assert_eq!(lines[0]["tags"]["dagster/backfill"], "bf-1");
    assert_eq!(lines[3 - 1]["type"], "RUN_STARTING");

    let (ok, out, _) = run(dir.path(), &["log", "--run", "run-2", "--from", "1"]);
    assert!(ok);
    let ids: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, vec!["run-2-failure", "eng-8"]);

    // What `log` prints can be appended again (into another store) unchanged.
    let (_, all, _) = run(dir.path(), &["log"]);
    let other = tempfile::tempdir().unwrap();
    let dump = other.path().join("dump.ndjson");
    let stripped: String = all
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("seq");
            v.as_object_mut().unwrap().remove("deployment");
            format!("{v}\n")
        })
        .collect();
    std::fs::write(&dump, &stripped).unwrap();
    let store2 = other.path().join("store");
    let (ok, _, err) = run(&store2, &["append", dump.to_str().unwrap()]);
    assert!(ok, "{err}");
    let (_, all2, _) = run(&store2, &["log"]);
    assert_eq!(all, all2);

    let (ok, out, _) = run(dir.path(), &["verify"]);
    assert!(ok);
    assert!(out.starts_with("ok: 35 events"), "{out}");

    // A bad file is refused whole with the event index.
    let bad = other.path().join("bad.json");
    std::fs::write(&bad, r#"[{"id":"n1","type":"RUN_START","timestamp":1,"run_id":"r"},{"id":"n2","type":"RUN_START","timestamp":1}]"#).unwrap();
    let (ok, _, err) = run(dir.path(), &["append", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("events[1].run_id: is required for RUN_START events"),
        "{err}"
    );
    let (_, out, _) = run(dir.path(), &["verify"]);
    assert!(
        out.starts_with("ok: 35 events"),
        "nothing of the bad file stored: {out}"
    );
}

#[test]
fn deployments_and_tokens_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, _) = run(dir.path(), &["deployment", "create", "prod"]);
    assert!(ok);
    assert!(out.contains("prod (id 2) created"), "{out}");
    let (ok, out, _) = run(dir.path(), &["deployment", "list"]);
    assert!(ok);
    assert_eq!(out, "1\tdefault\n2\tprod\n");
    let (ok, secret, err) = run(
        dir.path(),
        &[
            "token",
            "create",
            "--deployment",
            "prod",
            "--role",
            "viewer",
            "--label",
            "grafana",
        ],
    );
    assert!(ok, "{err}");
    assert!(secret.trim().starts_with("alog_"));
    let (_, list, _) = run(dir.path(), &["token", "list"]);
    assert!(list.contains("prod\tviewer"), "{list}");
    assert!(!list.contains(secret.trim()));
    let id = secret.trim().split('_').nth(1).unwrap().to_string();
    let (ok, _, _) = run(dir.path(), &["token", "revoke", &id]);
    assert!(ok);
    let (ok, _, err) = run(dir.path(), &["token", "revoke", &id]);
    assert!(!ok);
    assert!(err.contains("no token with id"), "{err}");
    let (ok, _, err) = run(dir.path(), &["deployment", "create", "Not OK"]);
    assert!(!ok);
    assert!(err.contains("must be 1-63 characters"), "{err}");
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["append", "--help"],
        vec!["log", "--help"],
        vec!["verify", "--help"],
        vec!["deployment", "--help"],
        vec!["deployment", "create", "--help"],
        vec!["token", "--help"],
        vec!["token", "create", "--help"],
        vec!["token", "revoke", "--help"],
        vec!["export", "--help"],
        vec!["rebuild", "--help"],
        vec!["schema", "--help"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--config",
        "--listen",
        "--max-body-bytes",
        "--tls-cert",
        "ASSETLOG_LISTEN",
        "--dagster-plus-disable-compute-logs",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}");
    }
    // A table name that does not exist is refused with the list of tables.
    let out = Command::new(BIN)
        .args(["export", "--out", "/nonexistent", "--tables", "evnets"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("evnets") && err.contains("row_counts"),
        "{err}"
    );
}
