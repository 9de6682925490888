//! The embedded backend: one fjall database in a directory, for a single machine.
//!
//! Appends go through a group committer: one thread takes every append queued at that moment
//! (up to the batch bounds in `limits`), writes them as one atomic fjall batch, syncs the
//! journal once, and only then tells each appender its entries are durable. Under load many
//! workers share one sync, which is what makes durable invocations cheap (see
//! `docs/storage.md` for the measurements that chose this design).

use crate::kv::buffer::{BufferedTx, Point, SnapshotReader};
use crate::kv::{
    CommitRecord, KeyValue, KvError, KvStore, MaybeCommitted, OccBackend, TxBuffer, apply_atomic,
    key_after, run_transaction,
};
use crate::layout::append::{AppendCheck, Decision};
use crate::layout::rows::{
    Row, Rows, append_rows, assemble_row, decode_metadata, decode_row, decode_seq, row_bytes,
};
use crate::limits::{
    APPEND_QUEUE_BYTES_MAX, APPEND_QUEUE_DEPTH, COMMITTER_TAILS_MAX, GROUP_COMMIT_BYTES_MAX,
    GROUP_COMMIT_ENTRIES_MAX, KV_COMMIT_HISTORY_MAX, KV_TRANSACTION_DURATION_MAX,
    READ_PAGE_BYTES_MAX, READ_PAGE_ENTRIES_MAX,
};
use crate::{Append, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata, keys};
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Counters of the group committer, for benchmarks and metrics.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Durable commits (syncs) performed.
    pub commits: AtomicU64,
    /// Appends made durable by them.
    pub appends: AtomicU64,
    /// KV transactions committed by them.
    pub transactions: AtomicU64,
    /// Flushed memtables freed by the reaper thread (`MemtableReaper`), not under fjall's lock.
    pub memtables_reaped: AtomicU64,
}

enum Pending {
    Append {
        rows: Rows,
        check: AppendCheck,
        done: oneshot::Sender<Result<(), KvError>>,
        /// The append's share of `APPEND_QUEUE_BYTES_MAX`, returned once it is answered.
        _queued: tokio::sync::OwnedSemaphorePermit,
    },
    Transaction {
        buffer: TxBuffer,
        read_version: u64,
        done: oneshot::Sender<Result<(), KvError>>,
    },
}

impl Pending {
    fn rows(&self) -> usize {
        match self {
            Self::Append { rows, .. } => rows.len(),
            Self::Transaction { buffer, .. } => buffer.points.len() + buffer.cleared.len(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Self::Append { rows, .. } => rows.iter().map(|(k, v)| k.len() + v.len()).sum(),
            Self::Transaction { buffer, .. } => buffer.bytes(),
        }
    }

    fn finish(self, result: Result<(), KvError>) {
        let done = match self {
            Self::Append { done, .. } | Self::Transaction { done, .. } => done,
        };
        // A waiter that gave up is no error: the outcome stands either way.
        let _ = done.send(result);
    }
}

/// The version of the data visible to new transactions, and the fjall snapshot that goes with
/// it, advanced together by the committer.
struct Visible {
    version: u64,
}

/// The fjall-backed store: the KV interface (serializable transactions) and the oplog (group
/// commit). Cheap to share behind an `Arc`; dropping it stops the committer after the batch in
/// hand.
pub struct EmbeddedStore {
    db: Database,
    keyspace: Keyspace,
    visible: Arc<Mutex<Visible>>,
    queue: mpsc::Sender<Pending>,
    /// Bytes of appends queued, in KiB (`APPEND_QUEUE_BYTES_MAX`).
    queued_kib: Arc<tokio::sync::Semaphore>,
    stats: Arc<CommitStats>,
    committer: Option<std::thread::JoinHandle<()>>,
    _reaper: MemtableReaper,
    space: crate::disk_space::DiskSpace,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir`, recovering whatever its journal holds.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, crate::limits::DISK_FREE_MIN_BYTES_DEFAULT)
    }

    /// As `open`, refusing writes while the disk has less than `disk_free_min` bytes free
    /// (`disk_space.rs`).
    pub fn open_with(dir: &Path, disk_free_min: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(StorageError::engine)?;
        // Before fjall, which would cut a damaged journal where it stops reading.
        if let Some(torn) = crate::journal_audit::audit(dir)? {
            tracing::warn!(
                file = %torn.file.display(),
                offset = torn.offset,
                bytes = torn.bytes,
                "the journal ends in a torn write (a batch cut short by a crash, never \
                 acknowledged); it is dropped"
            );
        }
        let db = Database::builder(dir)
            .open()
            .map_err(StorageError::engine)?;
        let keyspace = db
            .keyspace("revenant", KeyspaceCreateOptions::default)
            .map_err(StorageError::engine)?;
        let (queue, receiver) = mpsc::channel(APPEND_QUEUE_DEPTH);
        let stats = Arc::new(CommitStats::default());
        let visible = Arc::new(Mutex::new(Visible { version: 1 }));
        let space = crate::disk_space::DiskSpace::new(dir.to_path_buf(), disk_free_min);
        let committer = Committer {
            space: space.clone(),
            db: db.clone(),
            keyspace: keyspace.clone(),
            receiver,
            stats: stats.clone(),
            visible: visible.clone(),
            history: VecDeque::new(),
            tails: HashMap::new(),
        };
        let committer = std::thread::Builder::new()
            .name("revenant-group-commit".into())
            .spawn(move || committer.run())
            .map_err(StorageError::engine)?;
        let reaper = MemtableReaper::start(keyspace.clone(), stats.clone())?;
        Ok(Self {
            db,
            keyspace,
            visible,
            queue,
            queued_kib: Arc::new(tokio::sync::Semaphore::new(APPEND_QUEUE_BYTES_MAX / 1024)),
            stats,
            committer: Some(committer),
            _reaper: reaper,
            space,
        })
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    async fn submit(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), KvError>>) -> Pending,
    ) -> Result<(), KvError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(make(done))
            .await
            .map_err(|_| KvError::Engine("the store is closed".into()))?;
        outcome
            .await
            .map_err(|_| KvError::Engine("the committer stopped".into()))?
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

/// Frees fjall's flushed memtables on a thread of its own.
///
/// fjall (3.1) drops a memtable once it is flushed, while it holds the keyspace's version lock,
/// which every read and write of the keyspace takes: freeing the ~750,000 entries of a full 64
/// MiB memtable took about 220 ms, and every commit waited (docs/performance.md, "The 220 ms
/// stall"). This thread holds a reference to each memtable it sees active; once it holds the
/// last, it drops it, outside any lock of fjall's. Written by hand because fjall has no hook
/// for it; it relies only on `AbstractTree::active_memtable`, which fjall exports (undocumented):
/// the test `reaper_frees_flushed_memtables` checks that it still works.
struct MemtableReaper {
    /// Dropped to stop the thread (it sees the channel close).
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for MemtableReaper {
    /// Stops the thread and waits for it: it holds the keyspace, and with it the database,
    /// which must be released when the store is dropped so that it can be reopened at once.
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl MemtableReaper {
    fn start(keyspace: Keyspace, stats: Arc<CommitStats>) -> Result<Self, StorageError> {
        use fjall::AbstractTree;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("revenant-memtable-reaper".into())
            .spawn(move || {
                let mut held = VecDeque::new();
                let mut newest = None;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(MEMTABLE_REAP_INTERVAL)
                {
                    let active = keyspace.tree.active_memtable();
                    if newest != Some(active.id()) {
                        newest = Some(active.id());
                        held.push_back(active);
                    }
                    // Ours is the last reference: fjall is done with it, and it is freed here.
                    let before = held.len();
                    held.retain(|m| Arc::strong_count(m) > 1);
                    let freed = (before - held.len()) as u64;
                    stats.memtables_reaped.fetch_add(freed, Ordering::Relaxed);
                    while held.len() > MEMTABLES_HELD_MAX {
                        held.pop_front();
                    }
                }
            })
            .map_err(StorageError::engine)?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

/// How often the reaper looks for a new memtable: a memtable lives seconds (64 MiB of writes).
const MEMTABLE_REAP_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Memtables the reaper holds at most: fjall halts writes at 4 sealed ones, plus the active one
/// and those it has just let go of. Past it the oldest is let go (fjall then frees it).
const MEMTABLES_HELD_MAX: usize = 8;

/// A group commit taking longer than this is logged with where its time went (checks, the
/// write into fjall's memtable, the sync).
const SLOW_COMMIT: std::time::Duration = std::time::Duration::from_millis(50);

struct Committer {
    space: crate::disk_space::DiskSpace,
    db: Database,
    keyspace: Keyspace,
    receiver: mpsc::Receiver<Pending>,
    stats: Arc<CommitStats>,
    visible: Arc<Mutex<Visible>>,
    /// Recent commits' versions and written ranges, for conflict checks.
    history: VecDeque<CommitRecord>,
    /// The last index of each worker's log as this committer last wrote it, with the batch in
    /// hand applied (`COMMITTER_TAILS_MAX`). An append that follows it needs no reads: its
    /// first entry cannot be there yet and the metadata says what the map says. A transaction
    /// that may change a worker's metadata or entries takes the worker out (or empties the map),
    /// and so does a batch that fails to commit.
    tails: HashMap<WorkerId, u64>,
}

/// What a batch has written so far, read before the database by later items of the same batch.
#[derive(Default)]
struct Overlay {
    values: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Committer {
    fn run(mut self) {
        // A blocking thread, not a task: the sync blocks for milliseconds and must not stall
        // the async workers that are filling the next batch meanwhile.
        while let Some(first) = self.receiver.blocking_recv() {
            let mut rows = first.rows();
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while rows < GROUP_COMMIT_ENTRIES_MAX && bytes < GROUP_COMMIT_BYTES_MAX {
                match self.receiver.try_recv() {
                    Ok(p) => {
                        rows += p.rows();
                        bytes += p.bytes();
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<Pending>) {
        // Measures the commit itself, for the slow-commit warning: real time is what it is about.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let mut version = self.visible.lock().expect("visible lock").version;
        let mut overlay = Overlay::default();
        let mut write = self.db.batch();
        let mut outcomes: Vec<Result<(), KvError>> = Vec::with_capacity(batch.len());
        let (mut appends, mut transactions) = (0u64, 0u64);
        // Refused before fjall sees them, which would poison itself at the end of the disk.
        let full = self.space.check().err().map(KvError::Full);
        for (i, pending) in batch.iter().enumerate() {
            if i == 1 {
                crate::crash_points::reached("store.mid_batch");
            }
            let outcome = match pending {
                Pending::Append { .. } if full.is_some() => Err(full.clone().expect("checked")),
                Pending::Transaction { buffer, .. } if full.is_some() && !buffer.is_read_only() => {
                    Err(full.clone().expect("checked"))
                }
                Pending::Append { rows, check, .. } => self
                    .validate_append(check, rows, &overlay)
                    .map(|write_rows| {
                        if write_rows {
                            version += 1;
                            let mut ranges = Vec::with_capacity(rows.len());
                            for (k, v) in rows {
                                write.insert(&self.keyspace, k.as_slice(), v.as_slice());
                                overlay.values.insert(k.clone(), Some(v.clone()));
                                ranges.push((k.clone(), key_after(k)));
                            }
                            self.remember(version, ranges);
                        }
                        appends += 1;
                    }),
                Pending::Transaction {
                    buffer,
                    read_version,
                    ..
                } => self
                    .validate_transaction(buffer, *read_version)
                    .and_then(|()| {
                        if buffer.is_read_only() {
                            return Ok(());
                        }
                        version += 1;
                        self.forget_tails(buffer);
                        self.apply_transaction(buffer, &mut write, &mut overlay)?;
                        self.remember(version, buffer.write_ranges());
                        transactions += 1;
                        Ok(())
                    }),
            };
            outcomes.push(outcome);
        }
        // Make the batch visible to new transactions, then durable, then tell the waiters. A
        // reader may see the batch before the sync; whatever it commits is journaled after it,
        // so it can never become durable without the batch.
        let validated = began.elapsed();
        crate::crash_points::reached("store.before_append");
        let written = {
            let mut visible = self.visible.lock().expect("visible lock");
            let r = write.commit();
            if r.is_ok() {
                visible.version = version;
            }
            r
        };
        let applied = began.elapsed();
        crate::crash_points::reached("store.before_sync");
        let written = written.and_then(|()| self.db.persist(PersistMode::SyncData));
        let synced = began.elapsed();
        crate::crash_points::reached("store.after_sync");
        crate::metrics::committed(batch.len(), synced);
        if synced > SLOW_COMMIT {
            tracing::warn!(
                items = batch.len(),
                validate_ms = validated.as_secs_f64() * 1e3,
                apply_ms = (applied - validated).as_secs_f64() * 1e3,
                sync_ms = (synced - applied).as_secs_f64() * 1e3,
                "slow group commit"
            );
        }
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        self.stats.appends.fetch_add(appends, Ordering::Relaxed);
        self.stats
            .transactions
            .fetch_add(transactions, Ordering::Relaxed);
        let failure = written.err().map(|e| KvError::Engine(e.to_string()));
        if failure.is_some() {
            // The batch is not in the store: neither are the tails it advanced.
            self.tails.clear();
        }
        let mut answers: Vec<(Pending, Result<(), KvError>)> = batch
            .into_iter()
            .zip(outcomes)
            .map(|(pending, outcome)| match (&failure, outcome) {
                (Some(e), Ok(())) => (pending, Err(e.clone())),
                (_, o) => (pending, o),
            })
            .collect();
        // Refused transactions hear first, so that their retries queue ahead of the winners'
        // next transactions; otherwise the first in a batch wins every round and the others
        // starve under contention.
        answers.sort_by_key(|(_, outcome)| outcome.is_ok());
        for (pending, outcome) in answers {
            pending.finish(outcome);
        }
    }

    /// Takes out of `tails` every worker whose metadata or entries `buffer` may change.
    fn forget_tails(&mut self, buffer: &TxBuffer) {
        let writes = buffer.points.keys().map(|k| (k.as_slice(), None)).chain(
            buffer
                .cleared
                .iter()
                .map(|(b, e)| (b.as_slice(), Some(e.as_slice()))),
        );
        for (begin, end) in writes {
            match keys::touched_logs(begin, end) {
                Some(workers) => {
                    for w in workers {
                        self.tails.remove(&w);
                    }
                }
                None => {
                    self.tails.clear();
                    return;
                }
            }
        }
    }

    fn remember(&mut self, version: u64, ranges: Vec<(Vec<u8>, Vec<u8>)>) {
        self.history.push_back((version, ranges));
        if self.history.len() > KV_COMMIT_HISTORY_MAX {
            self.history.pop_front();
        }
    }

    fn current(&self, overlay: &Overlay, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        if let Some(v) = overlay.values.get(key) {
            return Ok(v.clone());
        }
        self.keyspace
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(crate::error::fjall_kv)
    }

    fn validate_append(
        &mut self,
        check: &AppendCheck,
        rows: &crate::layout::rows::Rows,
        overlay: &Overlay,
    ) -> Result<bool, KvError> {
        let write = self.decide_append(check, rows, overlay);
        // What the worker's log ends at once this batch is written, if the append writes it.
        let follows = check.entries > 0
            && check.last_index == check.first_seq + check.entries as u64 - 1
            && check.fence.is_none();
        match &write {
            Ok(true) if follows => {
                if self.tails.len() >= COMMITTER_TAILS_MAX
                    && !self.tails.contains_key(&check.worker)
                {
                    self.tails.clear();
                }
                self.tails.insert(check.worker.clone(), check.last_index);
            }
            Ok(false) => {}
            _ => {
                self.tails.remove(&check.worker);
            }
        }
        write
    }

    fn decide_append(
        &self,
        check: &AppendCheck,
        rows: &crate::layout::rows::Rows,
        overlay: &Overlay,
    ) -> Result<bool, KvError> {
        // The worker's log ends where this committer last wrote it: nothing to read (a fenced
        // append still reads the lease, which transactions write).
        if check.fence.is_none()
            && check.entries > 0
            && self
                .tails
                .get(&check.worker)
                .is_some_and(|last| check.first_seq == last + 1)
        {
            return Ok(true);
        }
        // The checks every backend makes, here against the latest data: the committer is the
        // only writer, so nothing changes between the check and the write.
        let lease = match check.fence {
            Some(f) => self.current(overlay, &keys::shard_lease(f.shard))?,
            None => None,
        };
        let first = self.current(overlay, &check.first_row.0)?;
        let metadata = self.current(overlay, &keys::worker_metadata(&check.worker))?;
        match check.decide(lease.as_deref(), first.as_deref(), metadata.as_deref())? {
            Decision::Write => Ok(true),
            Decision::Written => Ok(false),
            Decision::CompareEntries => {
                let stored = rows[..check.entries]
                    .iter()
                    .map(|(k, _)| self.current(overlay, k))
                    .collect::<Result<Vec<_>, _>>()?;
                check.compared(rows, lease.as_deref(), stored.into_iter())
            }
        }
    }

    fn validate_transaction(&self, buffer: &TxBuffer, read_version: u64) -> Result<(), KvError> {
        if let Some(e) = &buffer.limit_error {
            return Err(e.clone());
        }
        let oldest = self.history.front().map_or(0, |(v, _)| v - 1);
        if read_version < oldest {
            return Err(KvError::TooOld);
        }
        let conflicted = self
            .history
            .iter()
            .rev()
            .take_while(|(v, _)| *v > read_version)
            .any(|(_, writes)| buffer.conflicts_with(writes));
        if conflicted {
            return Err(KvError::Conflict);
        }
        Ok(())
    }

    fn apply_transaction(
        &self,
        buffer: &TxBuffer,
        write: &mut fjall::OwnedWriteBatch,
        overlay: &mut Overlay,
    ) -> Result<(), KvError> {
        for (b, e) in &buffer.cleared {
            let mut doomed: Vec<Vec<u8>> = Vec::new();
            for item in self.keyspace.range(b.as_slice()..e.as_slice()) {
                doomed.push(item.key().map_err(crate::error::fjall_kv)?.to_vec());
            }
            doomed.extend(
                overlay
                    .values
                    .range(b.clone()..e.clone())
                    .map(|(k, _)| k.clone()),
            );
            for k in doomed {
                write.remove(&self.keyspace, k.as_slice());
                overlay.values.insert(k, None);
            }
        }
        for (k, p) in &buffer.points {
            let value = match p {
                Point::Value(v) => v.clone(),
                Point::Atomic(ops) => {
                    let mut current = self.current(overlay, k)?;
                    for op in ops {
                        current = Some(apply_atomic(current.as_deref(), op));
                    }
                    current
                }
            };
            match &value {
                Some(v) => write.insert(&self.keyspace, k.as_slice(), v.as_slice()),
                None => write.remove(&self.keyspace, k.as_slice()),
            }
            overlay.values.insert(k.clone(), value);
        }
        Ok(())
    }
}

#[async_trait]
impl OplogStore for EmbeddedStore {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let rows = append_rows(&append)?;
        let check = AppendCheck::of(&append, &rows.rows);
        // One fjall batch holds an append whatever its size: its chunks and the rows that point
        // at them become durable together, so no chunk is ever left behind here.
        let kib = (rows.bytes() / 1024 + 1).min(APPEND_QUEUE_BYTES_MAX / 1024) as u32;
        let queued = self
            .queued_kib
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| StorageError::Closed)?;
        // The entries' rows first: the checks compare them by position (`AppendCheck::entries`).
        let mut all = rows.rows;
        all.extend(rows.chunks);
        let bytes = all.iter().map(|(k, v)| k.len() + v.len()).sum();
        self.submit(|done| Pending::Append {
            rows: all,
            check,
            done,
            _queued: queued,
        })
        .await
        .map_err(StorageError::from)?;
        crate::metrics::appended(bytes);
        Ok(())
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
            let mut bytes = 0;
            for item in keyspace.range(start..end).take(limit) {
                let (key, value) = item.into_inner().map_err(StorageError::fjall)?;
                let row = decode_row(&worker, &key, &value)?;
                bytes += row_bytes(&row, &value);
                if bytes > READ_PAGE_BYTES_MAX && !out.is_empty() {
                    break;
                }
                out.push(match row {
                    Row::Entry(e) => e,
                    Row::Chunked(seq, reference) => {
                        let (b, e) = keys::entry_chunks(&worker, seq);
                        let chunks = keyspace
                            .range(b..e)
                            .take(reference.chunks as usize)
                            .map(|g| {
                                g.into_inner()
                                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                                    .map_err(StorageError::fjall)
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        assemble_row(&worker, seq, &reference, chunks)?
                    }
                });
            }
            debug_assert!(out.windows(2).all(|w| w[1].seq == w[0].seq + 1));
            Ok(out)
        })
        .await
        .map_err(StorageError::engine)?
    }

    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError> {
        crate::kv_oplog::truncate_before(self, worker, seq).await
    }

    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        crate::kv_oplog::in_flight_workers(self).await
    }

    async fn log_bytes(&self, worker: &WorkerId) -> Result<u64, StorageError> {
        crate::kv_oplog::log_bytes(self, worker).await
    }

    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        crate::kv_oplog::list_workers(self, component, after, limit).await
    }

    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError> {
        crate::kv_oplog::delete_worker(self, worker).await
    }

    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        let value = self
            .keyspace
            .get(keys::idempotency(worker, key))
            .map_err(StorageError::fjall)?;
        value.map(|v| decode_seq(&v)).transpose()
    }

    async fn writable(&self) -> Result<(), StorageError> {
        self.space.check().map_err(StorageError::Full)
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        let value = self
            .keyspace
            .get(keys::worker_metadata(worker))
            .map_err(StorageError::fjall)?;
        value.map(|v| decode_metadata(worker, &v)).transpose()
    }
}

/// The snapshot side of an embedded transaction: a fjall snapshot.
#[derive(Clone)]
pub struct FjallReader {
    snapshot: Snapshot,
    keyspace: Keyspace,
    read_version: u64,
    started: Instant,
}

/// A transaction on the embedded store: reads from a fjall snapshot through its own writes;
/// the committer validates it against the commits made since the snapshot.
pub type EmbeddedTx = BufferedTx<FjallReader>;

impl SnapshotReader for FjallReader {
    fn check(&self) -> Result<(), KvError> {
        if self.started.elapsed() > KV_TRANSACTION_DURATION_MAX {
            return Err(KvError::TooOld);
        }
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        self.snapshot
            .get(&self.keyspace, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(crate::error::fjall_kv)
    }

    fn read_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        let iter = self.snapshot.range(&self.keyspace, begin..end);
        let rows: Box<dyn Iterator<Item = fjall::Guard>> = if reverse {
            Box::new(iter.rev())
        } else {
            Box::new(iter)
        };
        rows.take(limit)
            .map(|g| {
                g.into_inner()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(crate::error::fjall_kv)
            })
            .collect()
    }
}

impl OccBackend for EmbeddedStore {
    type Tx = EmbeddedTx;

    fn begin(&self) -> impl Future<Output = Result<EmbeddedTx, KvError>> + Send {
        // The snapshot and its version are taken together, under the lock the committer holds
        // while it makes a batch visible.
        let visible = self.visible.lock().expect("visible lock");
        std::future::ready(Ok(BufferedTx::new(FjallReader {
            snapshot: self.db.snapshot(),
            keyspace: self.keyspace.clone(),
            read_version: visible.version,
            started: Instant::now(),
        })))
    }

    fn commit(&self, tx: EmbeddedTx) -> impl Future<Output = Result<(), KvError>> + Send {
        let buffer = std::mem::take(&mut *tx.buffer.lock().expect("tx lock"));
        let read_version = tx.reader.read_version;
        async move {
            if buffer.is_read_only() && buffer.limit_error.is_none() {
                return Ok(());
            }
            self.submit(|done| Pending::Transaction {
                buffer,
                read_version,
                done,
            })
            .await
        }
    }
}

impl KvStore for EmbeddedStore {
    type Tx = EmbeddedTx;

    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(EmbeddedTx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send,
    {
        run_transaction(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reaper depends on how fjall lets go of a flushed memtable: if a new fjall kept its
    /// memtables some other way, the reaper would free nothing, and this fails.
    #[test]
    #[allow(clippy::disallowed_methods)]
    fn reaper_frees_flushed_memtables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Database::builder(dir.path()).open().expect("open");
        let keyspace = db
            .keyspace("test", || {
                KeyspaceCreateOptions::default().max_memtable_size(1024 * 1024)
            })
            .expect("keyspace");
        let stats = Arc::new(CommitStats::default());
        let _reaper = MemtableReaper::start(keyspace.clone(), stats.clone()).expect("reaper");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let value = vec![7u8; 1024];
        let mut n = 0u64;
        while stats.memtables_reaped.load(Ordering::Relaxed) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no memtable was freed by the reaper after {n} writes"
            );
            // Slowly enough that the reaper sees every memtable while it is active.
            for _ in 0..64 {
                keyspace.insert(n.to_be_bytes(), &value).expect("insert");
                n += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}
