//! Errors of the log layer.

use crate::event::Seq;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("corrupt value at {location}: {reason}")]
    Corrupt { location: String, reason: String },
    #[error(
        "the store at {path} has format version {found}, newer than version {supported} that \
         this assetlog understands; open it with a newer assetlog"
    )]
    UnsupportedVersion {
        path: String,
        found: u32,
        supported: u32,
    },
    #[error("could not load the views' options: {0}")]
    ViewsOptions(String),
    #[error("{path} is not an assetlog store (no format marker, but it holds data)")]
    NotAStore { path: String },
    #[error(
        "events[{index}]: id {event_id:?} was already stored as seq {seq} with a different \
         body; a new event needs a new id"
    )]
    Conflict {
        index: usize,
        event_id: String,
        seq: Seq,
    },
    #[error("the writer stopped after a failed write and accepts no more; restart assetlog")]
    Poisoned,
    #[error("the write queue is full ({capacity} requests)")]
    QueueFull { capacity: usize },
    #[error("the writer has shut down")]
    Closed,
}

pub type Result<T> = std::result::Result<T, Error>;
