//! Tokens: random bearer secrets bound to one deployment and one role, stored only as
//! SHA-256 hashes in the meta column family.
//!
//! Keys (kinds in [`crate::log::keys`]): `0x13 sha256(secret)` -> [`TOKEN_V1`] + postcard
//! [`TokenRecord`]; `0x14 token id` (public, 12 hex chars) -> `sha256(secret)`.
//!
//! A token is `alog_<id>_<secret part>`; the id part lets operators list and revoke tokens
//! without ever seeing secrets again. Every request looks its token up (a bloom-filtered
//! point read), so a revocation takes effect on the next request.

use std::sync::Arc;

use rand::RngCore;
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::event::DeploymentId;
use crate::log::{cf, keys, Log};

use keys::{META_TOKEN_HASH as TOKEN_HASH, META_TOKEN_ID as TOKEN_ID};
/// Codec byte of stored token records.
pub const TOKEN_V1: u8 = 0x01;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Write events to and read its deployment.
    Agent,
    /// Read its deployment.
    Viewer,
    /// Read and write its deployment; manage deployments and tokens.
    Admin,
}

impl Role {
    pub fn can_write(self) -> bool {
        matches!(self, Role::Agent | Role::Admin)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// What is stored per token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub deployment: DeploymentId,
    pub deployment_name: String,
    pub role: Role,
    pub created_us: i64,
    pub label: Option<String>,
}

/// The caller, once its token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub deployment: DeploymentId,
    pub deployment_name: String,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("log: {0}")]
    Log(#[from] crate::log::Error),
    #[error("corrupt token record: {0}")]
    Corrupt(String),
    #[error("no deployment named {0:?}")]
    NoSuchDeployment(String),
    #[error("no token with id {0:?}")]
    NoSuchToken(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Token storage over the store's meta column family.
#[derive(Clone)]
pub struct Tokens {
    log: Arc<Log>,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn meta(db: &DB) -> &rocksdb::ColumnFamily {
    db.cf_handle(cf::META).expect("created at open")
}

impl Tokens {
    pub fn new(log: Arc<Log>) -> Tokens {
        Tokens { log }
    }

    /// Create a token; returns the secret (shown once) and its record.
    pub fn create(
        &self,
        deployment: &str,
        role: Role,
        label: Option<String>,
    ) -> Result<(String, TokenRecord)> {
        let dep = self
            .log
            .deployment_id(deployment)?
            .ok_or_else(|| Error::NoSuchDeployment(deployment.into()))?;
        let mut bytes = [0u8; 30];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let id = hex::encode(&bytes[..6]);
        let secret = format!("alog_{id}_{}", hex::encode(&bytes[6..]));
        let record = TokenRecord {
            id: id.clone(),
            deployment: dep,
            deployment_name: deployment.to_string(),
            role,
            created_us: chrono::Utc::now().timestamp_micros(),
            label,
        };
        let h = hash(&secret);
        let db = self.log.db();
        let mut value = vec![TOKEN_V1];
        value.extend(postcard::to_allocvec(&record).map_err(|e| Error::Corrupt(e.to_string()))?);
        let mut batch = WriteBatch::default();
        batch.put_cf(meta(db), keys::meta(TOKEN_HASH, &h), value);
        batch.put_cf(meta(db), keys::meta(TOKEN_ID, id.as_bytes()), h);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        Ok((secret, record))
    }

    /// Check a presented secret.
    pub fn authenticate(&self, secret: &str) -> Result<Option<Principal>> {
        if !secret.starts_with("alog_") || secret.len() > 128 {
            return Ok(None);
        }
        let db = self.log.db();
        let Some(v) = db.get_pinned_cf(meta(db), keys::meta(TOKEN_HASH, &hash(secret)))? else {
            return Ok(None);
        };
        let record = decode(&v)?;
        Ok(Some(Principal {
            token_id: record.id,
            deployment: record.deployment,
            deployment_name: record.deployment_name,
            role: record.role,
        }))
    }

    /// Every token (never the secrets).
    pub fn list(&self) -> Result<Vec<TokenRecord>> {
        let db = self.log.db();
        let mut out = Vec::new();
        for item in db.iterator_cf(
            meta(db),
            IteratorMode::From(&[TOKEN_HASH], Direction::Forward),
        ) {
            let (k, v) = item?;
            if k.first() != Some(&TOKEN_HASH) {
                break;
            }
            out.push(decode(&v)?);
        }
        out.sort_by(|a, b| a.created_us.cmp(&b.created_us).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Revoke a token by its public id; it is refused from the next request on.
    pub fn revoke(&self, id: &str) -> Result<()> {
        let db = self.log.db();
        let id_key = keys::meta(TOKEN_ID, id.as_bytes());
        let Some(h) = db.get_cf(meta(db), &id_key)? else {
            return Err(Error::NoSuchToken(id.into()));
        };
        let mut batch = WriteBatch::default();
        batch.delete_cf(meta(db), keys::meta(TOKEN_HASH, &h));
        batch.delete_cf(meta(db), id_key);
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        db.write_opt(batch, &wo)?;
        Ok(())
    }
}

fn decode(v: &[u8]) -> Result<TokenRecord> {
    match v.split_first() {
        Some((&TOKEN_V1, body)) => {
            postcard::from_bytes(body).map_err(|e| Error::Corrupt(e.to_string()))
        }
        _ => Err(Error::Corrupt("unknown token codec".into())),
    }
}

/// On first start of an empty store: create the `default` deployment and an admin token,
/// and write the token to `<data_dir>/admin-token` (mode 0600). Returns the file path when
/// it created one.
pub fn bootstrap(log: &Arc<Log>) -> Result<Option<std::path::PathBuf>> {
    let (_, created) = log.ensure_deployment("default")?;
    if !created {
        return Ok(None);
    }
    let tokens = Tokens::new(log.clone());
    let (secret, _) = tokens.create("default", Role::Admin, Some("bootstrap".into()))?;
    let path = log.path().join("admin-token");
    write_secret(&path, &secret)
        .map_err(|e| Error::Corrupt(format!("writing {}: {e}", path.display())))?;
    Ok(Some(path))
}

fn write_secret(path: &std::path::Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogOptions;

    #[test]
    fn create_authenticate_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
        let path = bootstrap(&log).unwrap().expect("first start bootstraps");
        assert!(bootstrap(&log).unwrap().is_none(), "only once");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let admin = std::fs::read_to_string(&path).unwrap();
        let tokens = Tokens::new(log.clone());
        let p = tokens.authenticate(admin.trim()).unwrap().unwrap();
        assert_eq!(
            (p.role, p.deployment_name.as_str()),
            (Role::Admin, "default")
        );

        log.ensure_deployment("b").unwrap();
        let (secret, rec) = tokens.create("b", Role::Viewer, None).unwrap();
        let p = tokens.authenticate(&secret).unwrap().unwrap();
        assert_eq!((p.role, p.deployment), (Role::Viewer, rec.deployment));
        assert!(tokens.authenticate("alog_nope").unwrap().is_none());
        assert!(tokens
            .authenticate(&secret[..secret.len() - 1])
            .unwrap()
            .is_none());
        assert_eq!(tokens.list().unwrap().len(), 2);
        // Secrets are not stored: no value in the store contains one.
        for item in log.db().iterator_cf(meta(log.db()), IteratorMode::Start) {
            let (k, v) = item.unwrap();
            let needle = &secret.as_bytes()[18..];
            assert!(!k.windows(needle.len()).any(|w| w == needle));
            assert!(!v.windows(needle.len()).any(|w| w == needle));
        }
        tokens.revoke(&rec.id).unwrap();
        assert!(tokens.authenticate(&secret).unwrap().is_none());
        assert!(matches!(tokens.revoke(&rec.id), Err(Error::NoSuchToken(_))));
        assert!(matches!(
            tokens.create("nope", Role::Agent, None),
            Err(Error::NoSuchDeployment(_))
        ));
    }
}
