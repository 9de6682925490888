use std::fmt;

/// Everything that can go wrong in `storage`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The underlying engine failed (I/O error, poisoned journal, ...). Nothing was acknowledged.
    #[error("storage engine failed: {0}")]
    Engine(String),
    /// A stored entry could not be decoded: corruption or a format this build does not know.
    #[error("corrupt oplog entry {seq} of {worker}: {reason}")]
    Corrupt {
        worker: String,
        seq: u64,
        reason: String,
    },
    /// An entry is larger than any backend accepts (see `limits::ENTRY_BYTES_MAX`).
    #[error("oplog entry of {bytes} bytes exceeds the limit of {limit} bytes")]
    EntryTooLarge { bytes: usize, limit: usize },
    /// The store is shutting down or its committer is gone.
    #[error("storage is closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn engine(e: impl fmt::Display) -> Self {
        Self::Engine(e.to_string())
    }
}
