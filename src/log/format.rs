//! The DB format version, in the meta column family, checked at open.
//!
//! Value of the `format` key: magic `ALOG` then the version as `u32` BE. A store with a
//! newer version is refused with a message saying to use a newer assetlog; an older one is
//! migrated at open (see [`super::Log::open`]).
//!
//! | version | change |
//! |---------|--------|
//! | 1 | first |
//! | 2 | run and deployment indexes hold stretches of seqs (kinds 0x05, 0x06) instead of one entry per event (0x03, 0x04) |
//! | 3 | dedupe entries are written after their group's durable write, without the WAL; the dedupe watermark (0x07) says how far they are complete, and open re-indexes the log past it |

use std::path::Path;

use rocksdb::{WriteOptions, DB};

use super::error::{Error, Result};
use super::{cf, keys};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 3;
const MAGIC: &[u8; 4] = b"ALOG";

pub fn encode(version: u32) -> [u8; 8] {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(MAGIC);
    v[4..].copy_from_slice(&version.to_be_bytes());
    v
}

/// Read the stored format version, if any.
pub fn read(db: &DB) -> Result<Option<u32>> {
    let meta = db.cf_handle(cf::META).expect("created at open");
    match db.get_cf(meta, keys::meta(keys::META_FORMAT, b"format"))? {
        None => Ok(None),
        Some(v) if v.len() == 8 && &v[..4] == MAGIC => Ok(Some(u32::from_be_bytes(
            v[4..].try_into().unwrap_or_default(),
        ))),
        Some(v) => Err(Error::Corrupt {
            location: "format marker".into(),
            reason: format!("unexpected {} bytes", v.len()),
        }),
    }
}

/// Write the format version (tests use it to fake a store from the future).
pub fn write(db: &DB, version: u32) -> Result<()> {
    let meta = db.cf_handle(cf::META).expect("created at open");
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    db.put_cf_opt(
        meta,
        keys::meta(keys::META_FORMAT, b"format"),
        encode(version),
        &wo,
    )?;
    Ok(())
}

/// At open: stamp a new store, accept the current version, refuse a newer one. Returns the
/// stored version when it is older and the store needs migrating.
pub fn check_or_init(db: &DB, path: &Path) -> Result<Option<u32>> {
    match read(db)? {
        None => {
            let log = db.cf_handle(cf::LOG).expect("created at open");
            let mut it = db.raw_iterator_cf(log);
            it.seek_to_first();
            if it.valid() {
                return Err(Error::NotAStore {
                    path: path.display().to_string(),
                });
            }
            write(db, FORMAT_VERSION)?;
            Ok(None)
        }
        Some(v) if v == FORMAT_VERSION => Ok(None),
        Some(v) if v > FORMAT_VERSION => Err(Error::UnsupportedVersion {
            path: path.display().to_string(),
            found: v,
            supported: FORMAT_VERSION,
        }),
        Some(v) => Ok(Some(v)),
    }
}
