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
    /// The appender's lease epoch is not the shard's current one: another node owns the shard.
    #[error("fenced: the lease of shard {shard} is at epoch {found:?}, not {expected}")]
    Fenced {
        shard: u32,
        expected: u64,
        found: Option<u64>,
    },
    /// The append does not follow the log (a gap, or a different entry at its position).
    #[error("append refused: {0}")]
    Rejected(String),
    /// Stored data is damaged where the store cannot tell it from good data by itself; nothing
    /// was changed on disk. Refused at start-up (`journal_audit.rs`).
    #[error(
        "{file} is damaged at byte {offset}: {reason}. The file was left as it is: restore the \
         store from a backup, or move the damaged file aside to start from what precedes it"
    )]
    Damaged {
        file: String,
        offset: u64,
        reason: String,
    },
    /// The store's files are damaged where a read needed them (a table block whose checksum
    /// fails, say): the data is not served, and retrying will not help.
    #[error("the store's files are damaged: {0}")]
    Unreadable(String),
    /// The disk holding the store is (nearly) full: the write was refused before anything was
    /// written (`disk_space.rs`); it may be retried once space is freed.
    #[error("writes are refused: {0}")]
    Full(String),
    /// The store is shutting down or its committer is gone.
    #[error("storage is closed")]
    Closed,
}

impl StorageError {
    pub(crate) fn engine(e: impl fmt::Display) -> Self {
        Self::Engine(e.to_string())
    }

    /// The stored data itself is wrong (an entry, a journal, a table): the answer is
    /// `storage_damaged`, not the `storage_unavailable` that invites a retry.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. } | Self::Damaged { .. } | Self::Unreadable(_)
        )
    }

    /// An error of fjall's, told apart: damage its checksums or decoders found, or the
    /// engine failing.
    pub(crate) fn fjall(e: fjall::Error) -> Self {
        if fjall_damage(&e) {
            Self::Unreadable(e.to_string())
        } else {
            Self::Engine(e.to_string())
        }
    }
}

/// Whether fjall's error says its files hold something it cannot read back.
pub(crate) fn fjall_damage(e: &fjall::Error) -> bool {
    use fjall::Error as F;
    use fjall::LsmError as L;
    match e {
        F::Storage(l) => matches!(
            l,
            L::ChecksumMismatch { .. }
                | L::Decompress(_)
                | L::InvalidTag(_)
                | L::InvalidTrailer
                | L::InvalidHeader(_)
                | L::InvalidVersion(_)
                | L::Utf8(_)
        ),
        F::JournalRecovery(_)
        | F::Decompress(_)
        | F::InvalidTrailer
        | F::InvalidTag(_)
        | F::InvalidVersion(_) => true,
        _ => false,
    }
}

/// fjall's error as a transaction's.
pub(crate) fn fjall_kv(e: fjall::Error) -> crate::kv::KvError {
    if fjall_damage(&e) {
        crate::kv::KvError::Damaged(e.to_string())
    } else {
        crate::kv::KvError::Engine(e.to_string())
    }
}

impl From<crate::kv::KvError> for StorageError {
    fn from(e: crate::kv::KvError) -> Self {
        use crate::kv::KvError;
        match e {
            KvError::Fenced {
                shard,
                expected,
                found,
            } => Self::Fenced {
                shard,
                expected,
                found,
            },
            KvError::Invalid(m) => Self::Rejected(m),
            KvError::ValueTooLarge { bytes, limit } => Self::EntryTooLarge { bytes, limit },
            // Without the prefix the engine's message already has.
            KvError::Engine(m) => Self::Engine(m),
            KvError::Damaged(m) => Self::Unreadable(m),
            KvError::Full(m) => Self::Full(m),
            other => Self::Engine(other.to_string()),
        }
    }
}
