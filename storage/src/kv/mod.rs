//! The ordered, transactional key-value interface, shaped like FoundationDB's so that every
//! layer written against it runs unchanged on FoundationDB, on the embedded store, and on the
//! in-memory FoundationDB model used in tests.
//!
//! A transaction sees a consistent snapshot plus its own writes. Non-snapshot reads add read
//! conflict ranges; a commit fails with [`KvError::Conflict`] if a transaction that committed
//! after this one's snapshot wrote into any of them (serializable isolation). `transact` retries
//! retryable failures, and tells the closure when an earlier attempt may have committed, so that
//! every layer can make its writes idempotent.

pub(crate) mod buffer;
pub mod model;

pub(crate) use buffer::TxBuffer;
pub use buffer::{BufferedTx, SnapshotReader};

use crate::limits::KV_ATTEMPTS_MAX;
use std::future::Future;

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A half-open key range `[begin, end)`.
pub(crate) type KeyRange = (Vec<u8>, Vec<u8>);

/// A committed transaction's version and the ranges it wrote, kept for conflict checks.
pub(crate) type CommitRecord = (u64, Vec<KeyRange>);

/// How a range is read.
#[derive(Clone, Copy, Debug, Default)]
pub struct RangeOptions {
    /// Most pairs returned; 0 means the backend's page bound (`limits::KV_RANGE_ROWS_MAX`).
    pub limit: usize,
    /// From the end of the range backwards.
    pub reverse: bool,
    /// A snapshot read adds no read conflict range.
    pub snapshot: bool,
}

/// Whether an earlier attempt of this transaction may have committed: its commit ended in
/// `commit_unknown_result`. A closure that sees `true` must not assume its writes are absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaybeCommitted(pub bool);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// Another transaction wrote what this one read (FoundationDB `not_committed`, 1020).
    #[error("the transaction conflicted with a concurrent commit")]
    Conflict,
    /// A transient failure; retrying is safe.
    #[error("transient failure: {0}")]
    Retryable(String),
    /// The commit may or may not have happened (FoundationDB 1021).
    #[error("the commit's outcome is unknown")]
    CommitUnknownResult,
    /// The transaction outlived the store's snapshot window (FoundationDB 1007, 5 s).
    #[error("the transaction is too old")]
    TooOld,
    #[error("a key of {bytes} bytes exceeds the limit of {limit}")]
    KeyTooLarge { bytes: usize, limit: usize },
    #[error("a value of {bytes} bytes exceeds the limit of {limit}")]
    ValueTooLarge { bytes: usize, limit: usize },
    #[error("a transaction of {bytes} bytes exceeds the limit of {limit}")]
    TransactionTooLarge { bytes: usize, limit: usize },
    #[error("gave up after {attempts} attempts; last error: {last}")]
    RetriesExhausted { attempts: u32, last: Box<KvError> },
    /// The writer's lease epoch is not the shard's current one: it must not write.
    #[error("fenced: the lease of shard {shard} is at epoch {found:?}, not {expected}")]
    Fenced {
        shard: u32,
        expected: u64,
        found: Option<u64>,
    },
    /// A layer refused the transaction's contents (not retryable).
    #[error("{0}")]
    Invalid(String),
    #[error("storage engine failed: {0}")]
    Engine(String),
    /// The store's disk is (nearly) full: nothing was written.
    #[error("writes are refused: {0}")]
    Full(String),
    /// The store's files hold something its checksums or decoders refuse.
    #[error("the store's files are damaged: {0}")]
    Damaged(String),
    /// An error from the FoundationDB client, by its code (FoundationDB's own retry loop has
    /// already retried it if it was retryable).
    #[error("FoundationDB error {code}: {message}")]
    Foundation { code: i32, message: String },
}

impl KvError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Conflict | Self::Retryable(_) | Self::CommitUnknownResult | Self::TooOld
        )
    }
}

/// One transaction: a cheap handle (clone it freely inside the closure).
pub trait Transaction: Clone + Send + Sync + 'static {
    fn get(
        &self,
        key: &[u8],
        snapshot: bool,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send;

    /// Pairs with `begin <= key < end`, in key order (or reversed).
    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
    ) -> impl Future<Output = Result<Vec<KeyValue>, KvError>> + Send;

    fn set(&self, key: &[u8], value: &[u8]);
    fn clear(&self, key: &[u8]);
    /// Clears `begin <= key < end`.
    fn clear_range(&self, begin: &[u8], end: &[u8]);
    /// Adds `delta` to the little-endian 64-bit integer at `key` (absent is 0), wrapping. Adds
    /// no read conflict: concurrent adds never conflict.
    fn atomic_add(&self, key: &[u8], delta: i64);
    /// Stores the larger of `value` and the little-endian unsigned 64-bit integer at `key`.
    fn atomic_max(&self, key: &[u8], value: u64);
}

/// A store that runs transactions.
pub trait KvStore: Send + Sync + 'static {
    type Tx: Transaction;

    /// Runs `f` in a transaction and commits it, retrying retryable failures up to
    /// `limits::KV_ATTEMPTS_MAX` attempts. `f` must be idempotent when told `MaybeCommitted(true)`.
    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(Self::Tx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send;
}

/// The backends whose transactions this crate drives (optimistic concurrency in this process,
/// or PostgreSQL's) share one retry loop.
pub(crate) trait OccBackend: Send + Sync {
    type Tx: Transaction;
    fn begin(&self) -> impl Future<Output = Result<Self::Tx, KvError>> + Send;
    fn commit(&self, tx: Self::Tx) -> impl Future<Output = Result<(), KvError>> + Send;
    /// Ends a transaction whose closure failed. Nothing to do where a transaction holds nothing
    /// open until its commit (the in-process backends); PostgreSQL rolls back.
    fn abandon(&self, _tx: Self::Tx) -> impl Future<Output = ()> + Send {
        async {}
    }
}

pub(crate) async fn run_transaction<B, T, F, Fut>(backend: &B, f: F) -> Result<T, KvError>
where
    B: OccBackend,
    T: Send,
    F: Fn(B::Tx, MaybeCommitted) -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, KvError>> + Send,
{
    let mut maybe_committed = false;
    let mut last = KvError::Conflict;
    for _ in 0..KV_ATTEMPTS_MAX {
        let error = match backend.begin().await {
            Ok(tx) => match f(tx.clone(), MaybeCommitted(maybe_committed)).await {
                Ok(value) => match backend.commit(tx).await {
                    Ok(()) => return Ok(value),
                    Err(e) => e,
                },
                Err(e) => {
                    backend.abandon(tx).await;
                    e
                }
            },
            Err(e) => e,
        };
        if !error.is_retryable() {
            return Err(error);
        }
        if error == KvError::CommitUnknownResult {
            maybe_committed = true;
        }
        last = error;
        // Let the transaction that beat this one finish before trying again.
        tokio::task::yield_now().await;
    }
    Err(KvError::RetriesExhausted {
        attempts: KV_ATTEMPTS_MAX,
        last: Box::new(last),
    })
}

/// Reads `[begin, end)`, at most `limit` pairs, in a transaction of its own with snapshot reads
/// (no conflicts): what the layers use to read history, listings and blobs.
pub(crate) async fn snapshot_range<K: KvStore>(
    kv: &K,
    begin: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<Vec<KeyValue>, KvError> {
    // Owned copies: the closure runs once per attempt and its future must not borrow the caller.
    let (begin, end) = (begin.to_vec(), end.to_vec());
    kv.transact(|tx, _| {
        let (begin, end) = (begin.clone(), end.clone());
        async move {
            let options = RangeOptions {
                limit,
                reverse: false,
                snapshot: true,
            };
            tx.get_range(&begin, &end, options).await
        }
    })
    .await
}

/// `key` followed by a zero byte: the first key after `key`, so `[key, key_after(key))` holds
/// exactly `key`.
pub(crate) fn key_after(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.extend_from_slice(key);
    k.push(0);
    k
}

/// The value of an atomic op applied to `current`, as FoundationDB computes it for 8-byte
/// operands: the current value is read little-endian, zero-padded or truncated to 8 bytes.
pub(crate) fn apply_atomic(current: Option<&[u8]>, op: &AtomicOp) -> Vec<u8> {
    let mut bytes = [0u8; 8];
    if let Some(c) = current {
        let n = c.len().min(8);
        bytes[..n].copy_from_slice(&c[..n]);
    }
    let value = u64::from_le_bytes(bytes);
    let result = match *op {
        AtomicOp::Add(delta) => value.wrapping_add(delta as u64),
        AtomicOp::Max(other) => value.max(other),
    };
    result.to_le_bytes().to_vec()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtomicOp {
    Add(i64),
    Max(u64),
}

impl<K: KvStore> KvStore for std::sync::Arc<K> {
    type Tx = K::Tx;

    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(Self::Tx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send,
    {
        K::transact(self, f)
    }
}
