//! `storage` owns everything Revenant keeps on disk: the per-worker oplogs, worker metadata,
//! and the encodings of both. It offers the [`OplogStore`] interface, the embedded backend on
//! fjall with a group committer that makes many workers' appends durable with one sync, and an
//! in-memory backend for tests.
//!
//! It must not know about WebAssembly, wasmtime or HTTP: an oplog entry is data to it, and a
//! [`Value`] is a self-describing tree, not a WIT type.

pub mod catalog;
pub mod crash_points;
pub mod disk_space;
pub mod embedded;
mod error;
#[cfg(feature = "foundationdb")]
pub mod fdb;
pub mod intercept;
pub mod journal_audit;
pub mod kv;
pub mod kv_oplog;
pub mod layout;
pub mod leases;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod oplog;
pub mod pg_oplog;
pub mod postgres;
mod value;

pub use error::StorageError;
pub use layout::keys;
pub use oplog::{OplogEntry, SequencedEntry};
pub use value::Value;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The identity of one worker: the component it instantiates and its name, e.g.
/// `("user-activity", "user-42")`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkerId {
    pub component: String,
    pub name: String,
}

impl WorkerId {
    pub fn new(component: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            component: component.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.component, self.name)
    }
}

/// What the store keeps about a worker besides its oplog. Written in the same atomic batch as
/// the entries it describes, so it never disagrees with the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerMetadata {
    /// Content hash of the component version the worker runs.
    pub component_hash: String,
    /// Sequence number of the last entry in the oplog.
    pub last_index: u64,
    /// Sequence number of the first part of the latest snapshot; 0 if there is none.
    pub snapshot_index: u64,
}

/// One worker's append: entries with consecutive sequence numbers, following the worker's last
/// durable entry, and the metadata that describes the log after them.
#[derive(Clone, Debug)]
pub struct Append {
    pub worker: WorkerId,
    /// The lease the writer believes it holds. When set, the append commits only if the shard's
    /// lease is still at this epoch, checked inside the append's own transaction, so a node that
    /// lost its lease cannot write whatever it believes. `None` (one node that owns its store
    /// exclusively) skips the check.
    pub fence: Option<Fence>,
    pub entries: Vec<SequencedEntry>,
    pub metadata: WorkerMetadata,
    /// An idempotency key and the sequence number of the entry that ended its invocation,
    /// indexed atomically with the entries.
    pub idempotency: Option<(String, u64)>,
    /// Marks (`Some(true)`) or clears (`Some(false)`) the worker as having an invocation in
    /// flight, for recovery at start-up.
    pub in_flight: Option<bool>,
}

/// A shard and the lease epoch an appender holds on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
}

/// The durable log of every worker. Sequence numbers start at 1 and have no gaps.
///
/// `append` returns only once the entries are durable: a caller may then tell the outside world
/// about them. Implementations may batch appends of many workers into one durable commit.
///
/// Appends are idempotent: repeating an append whose first entry is already stored with the same
/// bytes succeeds without writing (this is how a retry after an unknown commit result is safe);
/// an append that would leave a gap, or overwrite a different entry, is refused.
#[async_trait]
pub trait OplogStore: Send + Sync + 'static {
    /// Makes `append.entries` durable, atomically with the metadata.
    async fn append(&self, append: Append) -> Result<(), StorageError>;

    /// Up to `limit` entries of `worker` with sequence numbers `>= from`, in order.
    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError>;

    /// The worker's metadata, or `None` if the worker was never created.
    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError>;

    /// Whether appends would be accepted now, as far as the store can tell without writing:
    /// `Err(StorageError::Full)` when the embedded store's disk is under its reserve
    /// (`disk_space.rs`). For `/readyz`.
    async fn writable(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Workers marked as having an invocation in flight.
    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError>;

    /// Up to `limit` workers of `component` whose names come after `after`, in name order, with
    /// their metadata.
    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError>;

    /// Removes everything stored about the worker: its oplog, metadata and indexes.
    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError>;

    /// The sequence number of the entry that ended the worker's invocation with this
    /// idempotency key, if there was one.
    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError>;

    /// Removes the worker's entries before `seq` (those a snapshot made unnecessary). The
    /// metadata, and so the last index, are unchanged.
    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError>;

    /// Bytes the store holds for the worker's log: the keys and values of its entries and of
    /// the chunks of its large entries, as written (what a call costs the log).
    async fn log_bytes(&self, worker: &WorkerId) -> Result<u64, StorageError>;
}

/// A store that makes appends its own way and reads through another: it gets every other
/// method of [`OplogStore`] from [`reads`](Self::reads).
#[async_trait]
pub trait AppendsItsOwnWay: Send + Sync + 'static {
    type Reads: OplogStore;
    fn reads(&self) -> &Self::Reads;
    async fn append_its_way(&self, append: Append) -> Result<(), StorageError>;
}

#[async_trait]
impl<T: AppendsItsOwnWay> OplogStore for T {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        self.append_its_way(append).await
    }

    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        self.reads().read(worker, from, limit).await
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        self.reads().metadata(worker).await
    }

    async fn writable(&self) -> Result<(), StorageError> {
        self.reads().writable().await
    }

    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        self.reads().in_flight_workers().await
    }

    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        self.reads().list_workers(component, after, limit).await
    }

    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError> {
        self.reads().delete_worker(worker).await
    }

    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        self.reads().idempotent_outcome(worker, key).await
    }

    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError> {
        self.reads().truncate_before(worker, seq).await
    }

    async fn log_bytes(&self, worker: &WorkerId) -> Result<u64, StorageError> {
        self.reads().log_bytes(worker).await
    }
}

/// Checks the invariants every backend relies on before it writes: a non-empty run of
/// consecutive sequence numbers ending at the metadata's last index. A violation is a bug in the
/// caller, so it is asserted, not returned.
pub(crate) fn debug_check_append(append: &Append) {
    debug_assert!(
        !append.entries.is_empty(),
        "empty append for {}",
        append.worker
    );
    debug_assert!(
        append.entries.windows(2).all(|w| w[1].seq == w[0].seq + 1),
        "non-consecutive sequence numbers in append for {}",
        append.worker
    );
    debug_assert_eq!(
        append.entries.last().map(|e| e.seq),
        Some(append.metadata.last_index),
        "metadata last_index disagrees with the appended entries of {}",
        append.worker
    );
}
