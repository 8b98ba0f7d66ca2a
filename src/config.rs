//! Configuration: defaults < TOML file < `ASSETLOG_*` environment variables < flags.
//!
//! The file has the same names as the flags, in snake case (see `assetlog.example.toml`).
//! [`Config::default`] documents every default.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use crate::telemetry::LogFormat;

/// Everything `assetlog serve` needs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// RocksDB directory of the embedded store.
    pub data_dir: PathBuf,
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Log format: `text` or `json`.
    pub log_format: LogFormat,
    /// fsync every group commit before acknowledging (turn off only for experiments).
    pub sync: bool,
    /// Requests waiting for the writer before ingest answers 503 with `Retry-After`.
    pub queue_capacity: usize,
    /// Largest request body, after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Most events in one request.
    pub max_events_per_request: usize,
    /// Largest single event (its JSON text), in bytes.
    pub max_event_bytes: usize,
    /// Most metadata entries (or tags) on one event.
    pub max_metadata_entries: usize,
    /// Deepest JSON nesting inside one event.
    pub max_depth: usize,
    /// Longest string value, in bytes.
    pub max_string_bytes: usize,
    /// PEM certificate chain; with `tls_key`, serve HTTPS (TLS 1.2+).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Deployments whose Dagster compute logs are not uploaded to assetlog
    /// (`gen_logs_url` answers `skip_upload`).
    pub dagster_plus_disable_compute_logs: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            log_format: LogFormat::Text,
            sync: true,
            queue_capacity: 1024,
            max_body_bytes: 32 << 20,
            max_events_per_request: 10_000,
            max_event_bytes: 1 << 20,
            max_metadata_entries: 1000,
            max_depth: 64,
            max_string_bytes: 256 << 10,
            tls_cert: None,
            tls_key: None,
            dagster_plus_disable_compute_logs: Vec::new(),
        }
    }
}

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Defaults overlaid with the TOML file at `path`, if given.
    pub fn from_file(path: Option<&std::path::Path>) -> Result<Config, Error> {
        let Some(path) = path else {
            return Ok(Config::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| Error::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Check combinations that the types alone cannot.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Error::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.queue_capacity == 0 || self.max_events_per_request == 0 {
            return Err(Error::Invalid(
                "queue_capacity and max_events_per_request must be positive".into(),
            ));
        }
        Ok(())
    }

    /// The limits that event validation applies.
    pub fn limits(&self) -> crate::event::validate::Limits {
        crate::event::validate::Limits {
            max_string_bytes: self.max_string_bytes,
            max_metadata_entries: self.max_metadata_entries,
            max_id_bytes: 256,
            max_depth: self.max_depth,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:9000\"\nmax_depth = 10\n").unwrap();
        let c = Config::from_file(Some(&p)).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.max_depth, 10);
        assert_eq!(c.max_body_bytes, Config::default().max_body_bytes);

        std::fs::write(&p, "lisen = \"0.0.0.0:9000\"\n").unwrap();
        let e = Config::from_file(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }
}
