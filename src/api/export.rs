//! `GET /api/v1/export/{table}.parquet?since=&until=`: one table of the caller's
//! deployment as a Parquet file, streamed as it is written.
//!
//! The file is consistent at one snapshot; the response headers `Assetlog-Since` and
//! `Assetlog-Until` give the range it covers (pass `Assetlog-Until` as the next `since` to
//! continue). Errors found before the first byte are 4xx/5xx answers; an error while
//! streaming aborts the response, so a client never takes a truncated file for a whole one.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{AppState, Caller, Error};
use crate::export::{self, Plan, Table};
use crate::projection::OwnedReader;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub since: Option<u64>,
    pub until: Option<u64>,
}

/// Bytes handed to the response body at a time.
const CHUNK: usize = 256 * 1024;

/// A `Write` that sends what it is given to the response body; it blocks while the client
/// is slower than the export (at most a few chunks wait), and fails once the client is gone.
struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl BodyWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

pub async fn get_table(
    State(state): State<AppState>,
    caller: Caller,
    Path(file): Path<String>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Error> {
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    let name = file.strip_suffix(".parquet").ok_or_else(|| {
        Error::NotFound(format!(
            "no export {file:?}: tables are fetched as <table>.parquet"
        ))
    })?;
    let table = Table::parse(name).ok_or_else(|| {
        let names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        Error::NotFound(format!(
            "no table {name:?}; tables are {}",
            names.join(", ")
        ))
    })?;
    let dep = caller.0.deployment;
    let dep_name = caller.0.deployment_name.clone();
    let reader = OwnedReader::new(state.log.clone(), dep);
    let position = reader.reader().position()?;
    let plan = Plan::new(
        vec![table],
        q.since.unwrap_or(0),
        q.until,
        Some(dep),
        position,
    )
    .map_err(|e| match e {
        export::Error::Invalid(m) => Error::BadRequest(m),
        other => Error::Internal(other.into()),
    })?;

    let (tx, rx) = mpsc::channel(4);
    let (since, until) = (plan.since, plan.until);
    tokio::task::spawn_blocking(move || {
        let names = [(dep, dep_name)].into_iter().collect();
        let out = BodyWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = export::export(reader.reader(), &names, &plan, vec![out], &mut |_| {})
            .and_then(|mut w| {
                let mut out = w.pop().map(|w| w.inner);
                out.as_mut()
                    .map_or(Ok(()), |o| o.flush())
                    .map_err(|e| export::Error::Io {
                        path: "response body".into(),
                        source: e,
                    })
            });
        if let Err(e) = result {
            tracing::error!(error = %e, table = table.name(), "export stream failed");
            let _ = tx.blocking_send(Err(std::io::Error::other("export failed")));
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.apache.parquet"),
    );
    let disposition = format!(
        "attachment; filename=\"{}-{}-{until}.parquet\"",
        table.name(),
        since + 1
    );
    for (k, v) in [
        ("content-disposition", disposition),
        ("assetlog-since", since.to_string()),
        ("assetlog-until", until.to_string()),
        ("assetlog-schema-version", table.version().to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}
