//! Shared helpers of the end-to-end tests: a real `assetlog serve` process on a loopback
//! port, and small HTTP helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_assetlog");

/// The assetlog binary the servers run: this build's, or `ASSETLOG_TEST_BIN` (`tools/test`
/// points it at the release build).
pub fn bin() -> PathBuf {
    std::env::var_os("ASSETLOG_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BIN))
}

/// The Python with the test clients installed (`tools/test` makes `.venv`);
/// `ASSETLOG_TEST_PYTHON` overrides it.
pub fn python() -> std::path::PathBuf {
    std::env::var_os("ASSETLOG_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// A running `assetlog serve` child process.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub admin: String,
    stderr_lines: std::sync::Mutex<std::sync::mpsc::Receiver<String>>,
}

impl Server {
    /// Start on `dir` with extra `serve` flags; waits until it listens.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_scheme(dir, extra, "http")
    }

    pub fn start_scheme(dir: &Path, extra: &[&str], scheme: &str) -> Server {
        let mut child = Command::new(bin())
            .args(["serve", "--data-dir"])
            .arg(dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("ASSETLOG_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn assetlog serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let addr = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("assetlog serve did not start listening");
            if line.contains("assetlog serving") {
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("addr="))
                    .expect("addr in the serving line")
                    .to_string();
                break addr;
            }
        };
        let admin = std::fs::read_to_string(dir.join("admin-token"))
            .expect("admin token file")
            .trim()
            .to_string();
        Server {
            child,
            base: format!("{scheme}://{addr}"),
            dir: dir.to_path_buf(),
            admin,
            stderr_lines: std::sync::Mutex::new(rx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Send SIGTERM and wait for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(ok.success(), "kill -TERM {pid}");
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    /// Lines the server logged so far.
    pub fn logged(&self) -> Vec<String> {
        self.stderr_lines.lock().unwrap().try_iter().collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `assetlog --data-dir DIR ARGS...` to completion, asserting it succeeds; its stdout.
pub fn run_assetlog(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(bin())
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run assetlog");
    assert!(
        out.status.success(),
        "assetlog {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// POST a body to `/api/v1/events`; returns (status, JSON reply).
pub async fn post_events(
    server: &Server,
    token: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let resp = client()
        .post(server.url("/api/v1/events"))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every event the token's deployment can read, via `GET /api/v1/events`.
pub async fn read_all(server: &Server, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let resp = client()
            .get(server.url(&format!("/api/v1/events?from={from}&limit=10000")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let events = v["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        from = v["next_from"].as_u64().unwrap();
        out.extend(events);
    }
}

/// Create a deployment and a token on it through the admin API.
pub async fn token_for(server: &Server, deployment: &str, role: &str) -> (String, String) {
    let c = client();
    let r = c
        .post(server.url("/api/v1/deployments"))
        .bearer_auth(&server.admin)
        .json(&json!({"name": deployment}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = c
        .post(server.url("/api/v1/tokens"))
        .bearer_auth(&server.admin)
        .json(&json!({"deployment": deployment, "role": role}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    (
        v["token"].as_str().unwrap().to_string(),
        v["id"].as_str().unwrap().to_string(),
    )
}

/// A valid materialization event with this id.
pub fn mat(id: &str) -> Value {
    json!({"id": id, "type": "ASSET_MATERIALIZATION", "timestamp": "2026-11-01T10:00:00Z",
           "run_id": "run-1", "asset_key": ["warehouse", "orders"],
           "metadata": {"dagster/row_count": 10}})
}

/// A counter or gauge from `/metrics`.
pub async fn metric(server: &Server, name: &str) -> u64 {
    let text = client()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// The `assetlog_log_last_seq` gauge from `/metrics`.
pub async fn last_seq(server: &Server) -> u64 {
    metric(server, "assetlog_log_last_seq").await
}

/// `POST /graphql` with a raw document; the whole reply (`data`, `errors`, `extensions`).
pub async fn gql(server: &Server, token: &str, query: &str, variables: Value) -> Value {
    let r = client()
        .post(server.url("/graphql"))
        .bearer_auth(token)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// `data`, asserting there were no errors.
pub async fn data(server: &Server, token: &str, query: &str, variables: Value) -> Value {
    let v = gql(server, token, query, variables).await;
    assert!(v.get("errors").is_none(), "errors: {}", v["errors"]);
    v["data"].clone()
}
