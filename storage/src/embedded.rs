//! The embedded backend: one fjall database in a directory, for a single machine.
//!
//! Appends go through a group committer: one thread takes every append queued at that moment
//! (up to the batch bounds in `limits`), writes them as one atomic fjall batch, syncs the
//! journal once, and only then tells each appender its entries are durable. Under load many
//! workers share one sync, which is what makes durable invocations cheap (see
//! `docs/storage.md` for the measurements that chose this design).

use crate::limits::{
    APPEND_QUEUE_DEPTH, GROUP_COMMIT_BYTES_MAX, GROUP_COMMIT_ENTRIES_MAX, READ_PAGE_ENTRIES_MAX,
};
use crate::{
    Append, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata, keys, oplog,
};
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

const METADATA_VERSION: u8 = 1;

/// Counters of the group committer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Durable commits (syncs) performed.
    pub commits: AtomicU64,
    /// Appends made durable by them.
    pub appends: AtomicU64,
}

/// Key-value pairs to write, already encoded.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

struct Pending {
    rows: Rows,
    bytes: usize,
    done: oneshot::Sender<Result<(), String>>,
}

/// The fjall-backed store. Cheap to share behind an `Arc`; dropping the last handle stops the
/// committer after it has finished the batch in hand.
pub struct EmbeddedStore {
    keyspace: Keyspace,
    queue: mpsc::Sender<Pending>,
    stats: Arc<CommitStats>,
    committer: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, recovering whatever its journal holds.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(StorageError::engine)?;
        let db = Database::builder(dir)
            .open()
            .map_err(StorageError::engine)?;
        let keyspace = db
            .keyspace("revenant", KeyspaceCreateOptions::default)
            .map_err(StorageError::engine)?;
        let (queue, receiver) = mpsc::channel(APPEND_QUEUE_DEPTH);
        let stats = Arc::new(CommitStats::default());
        let committer = Committer {
            db,
            keyspace: keyspace.clone(),
            receiver,
            stats: stats.clone(),
        };
        let committer = std::thread::Builder::new()
            .name("revenant-group-commit".into())
            .spawn(move || committer.run())
            .map_err(StorageError::engine)?;
        Ok(Self {
            keyspace,
            queue,
            stats,
            committer: Some(committer),
        })
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }
}

impl Drop for EmbeddedStore {
    /// Closes the queue and waits for the committer to finish its batch and release the
    /// database, so that the directory can be reopened at once.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.queue, closed));
        if let Some(committer) = self.committer.take() {
            let _ = committer.join();
        }
    }
}

struct Committer {
    db: Database,
    keyspace: Keyspace,
    receiver: mpsc::Receiver<Pending>,
    stats: Arc<CommitStats>,
}

impl Committer {
    fn run(mut self) {
        // A blocking thread, not a task: the sync blocks for milliseconds and must not stall
        // the async workers that are filling the next batch meanwhile.
        while let Some(first) = self.receiver.blocking_recv() {
            let mut rows = first.rows.len();
            let mut bytes = first.bytes;
            let mut batch = vec![first];
            while rows < GROUP_COMMIT_ENTRIES_MAX && bytes < GROUP_COMMIT_BYTES_MAX {
                match self.receiver.try_recv() {
                    Ok(p) => {
                        rows += p.rows.len();
                        bytes += p.bytes;
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let result = self.commit(&batch);
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats
                .appends
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            for p in batch {
                // An appender that gave up waiting is no error: its entries are durable anyway.
                let _ = p.done.send(result.clone());
            }
        }
    }

    fn commit(&self, batch: &[Pending]) -> Result<(), String> {
        let mut write = self.db.batch().durability(Some(PersistMode::SyncData));
        for pending in batch {
            for (key, value) in &pending.rows {
                write.insert(&self.keyspace, key.as_slice(), value.as_slice());
            }
        }
        write.commit().map_err(|e| e.to_string())
    }
}

pub(crate) fn encode_metadata(metadata: &WorkerMetadata) -> Vec<u8> {
    postcard::to_extend(metadata, vec![METADATA_VERSION]).expect("metadata always encodes")
}

pub(crate) fn decode_metadata(
    worker: &WorkerId,
    bytes: &[u8],
) -> Result<WorkerMetadata, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        worker: worker.to_string(),
        seq: 0,
        reason: format!("worker metadata: {reason}"),
    };
    match bytes.split_first() {
        Some((&METADATA_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((v, _)) => Err(corrupt(format!("unknown metadata version {v}"))),
        None => Err(corrupt("empty".into())),
    }
}

/// The rows one append writes: each entry under its key, and the metadata.
pub(crate) fn append_rows(append: &Append) -> Result<Rows, StorageError> {
    crate::debug_check_append(append);
    let mut rows = Vec::with_capacity(append.entries.len() + 1);
    for e in &append.entries {
        rows.push((
            keys::oplog_entry(&append.worker, e.seq),
            oplog::encode(&e.entry)?,
        ));
    }
    rows.push((
        keys::worker_metadata(&append.worker),
        encode_metadata(&append.metadata),
    ));
    Ok(rows)
}

pub(crate) fn decode_row(
    worker: &WorkerId,
    key: &[u8],
    value: &[u8],
) -> Result<SequencedEntry, StorageError> {
    let seq = keys::seq_of_oplog_key(key).ok_or_else(|| StorageError::Corrupt {
        worker: worker.to_string(),
        seq: 0,
        reason: "malformed oplog key".into(),
    })?;
    let entry = oplog::decode(value).map_err(|e| StorageError::Corrupt {
        worker: worker.to_string(),
        seq,
        reason: e.to_string(),
    })?;
    Ok(SequencedEntry { seq, entry })
}

#[async_trait]
impl OplogStore for EmbeddedStore {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let rows = append_rows(&append)?;
        let bytes = rows.iter().map(|(k, v)| k.len() + v.len()).sum();
        let (done, durable) = oneshot::channel();
        self.queue
            .send(Pending { rows, bytes, done })
            .await
            .map_err(|_| StorageError::Closed)?;
        match durable.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::Engine(e)),
            Err(_) => Err(StorageError::Closed),
        }
    }

    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        let limit = limit.min(READ_PAGE_ENTRIES_MAX);
        let keyspace = self.keyspace.clone();
        let worker = worker.clone();
        tokio::task::spawn_blocking(move || {
            let (start, end) = keys::oplog_range_from(&worker, from);
            let mut out = Vec::new();
            for item in keyspace.range(start..end).take(limit) {
                let (key, value) = item.into_inner().map_err(StorageError::engine)?;
                out.push(decode_row(&worker, &key, &value)?);
            }
            debug_assert!(out.windows(2).all(|w| w[1].seq == w[0].seq + 1));
            Ok(out)
        })
        .await
        .map_err(StorageError::engine)?
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        let value = self
            .keyspace
            .get(keys::worker_metadata(worker))
            .map_err(StorageError::engine)?;
        value.map(|v| decode_metadata(worker, &v)).transpose()
    }
}
