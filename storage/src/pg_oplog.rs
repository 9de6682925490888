//! The oplog on PostgreSQL with group commit: appends of many workers waiting at once become one
//! serializable transaction of two round trips (its reads in one statement, its writes and the
//! commit in another), the way the embedded store makes them one fjall batch. Everything else,
//! and appends too large for one transaction, goes through [`KvOplog`] on the same store.
//!
//! The checks are the ones every backend makes (`layout::append`): each append is decided
//! against the rows read in the batch's own transaction, so a batch that raced a lease change
//! (another node's renewal) fails to commit as not serializable and is tried again whole, and
//! an append that is refused (fenced, out of order) is answered alone while the rest commit.

use crate::kv::KvError;
use crate::kv_oplog::KvOplog;
use crate::layout::append::{AppendCheck, Decision};
use crate::layout::keys;
use crate::layout::rows::{AppendRows, append_rows};
use crate::limits::{
    APPEND_ONE_TRANSACTION_BYTES_MAX, APPEND_QUEUE_DEPTH, GROUP_COMMIT_BYTES_MAX,
    GROUP_COMMIT_ENTRIES_MAX, KV_ATTEMPTS_MAX, PG_COMMITTERS,
};
use crate::postgres::{PgStore, UPSERT, clear_ranges, pg_error};
use crate::{Append, AppendsItsOwnWay, OplogStore, StorageError};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::{Mutex, mpsc, oneshot};

struct Pending {
    rows: AppendRows,
    check: AppendCheck,
    done: oneshot::Sender<Result<(), KvError>>,
}

impl Pending {
    fn bytes(&self) -> usize {
        self.rows.bytes()
    }
}

pub struct PgOplog {
    store: PgStore,
    kv: KvOplog<PgStore>,
    queue: mpsc::Sender<Pending>,
}

impl PgOplog {
    /// The oplog on `store`, with `PG_COMMITTERS` committer tasks (on the current tokio
    /// runtime) sharing one queue.
    pub fn new(store: PgStore) -> Self {
        let (queue, receiver) = mpsc::channel(APPEND_QUEUE_DEPTH);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..PG_COMMITTERS {
            tokio::spawn(committer(store.clone(), receiver.clone()));
        }
        Self {
            kv: KvOplog::new(store.clone()),
            store,
            queue,
        }
    }

    /// The KV store it runs on.
    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

/// Takes a batch from the queue (what is waiting, within the bounds) and commits it, until the
/// queue closes.
async fn committer(store: PgStore, queue: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = Vec::new();
        {
            let mut receiver = queue.lock().await;
            let Some(first) = receiver.recv().await else {
                return;
            };
            let (mut entries, mut bytes) = (first.rows.rows.len(), first.bytes());
            batch.push(first);
            while entries < GROUP_COMMIT_ENTRIES_MAX && bytes < GROUP_COMMIT_BYTES_MAX {
                match receiver.try_recv() {
                    Ok(next) => {
                        entries += next.rows.rows.len();
                        bytes += next.bytes();
                        batch.push(next);
                    }
                    Err(_) => break,
                }
            }
        }
        commit_batch(&store, batch).await;
    }
}

/// Commits a batch, retrying it whole on conflicts and lost connections, and answers each
/// append.
async fn commit_batch(store: &PgStore, batch: Vec<Pending>) {
    // One append per worker in a transaction: a worker's appends follow one another, so a
    // second one (after an unknown outcome, say) waits for the next round.
    let mut seen = BTreeSet::new();
    let (now, later): (Vec<Pending>, Vec<Pending>) = batch
        .into_iter()
        .partition(|p| seen.insert(p.check.worker.clone()));
    let mut outcomes: Vec<Result<(), KvError>> = Vec::new();
    let mut last = KvError::Conflict;
    let mut done = false;
    // Its time, tries included, is what the appends waited.
    #[allow(clippy::disallowed_methods)]
    let began = std::time::Instant::now();
    for _ in 0..KV_ATTEMPTS_MAX {
        match attempt(store, &now).await {
            Ok(o) => {
                outcomes = o;
                done = true;
                break;
            }
            Err(e) if e.is_retryable() => {
                last = e;
                tokio::task::yield_now().await;
            }
            Err(e) => {
                last = e;
                break;
            }
        }
    }
    if !done {
        let failure = match last {
            e if e.is_retryable() => KvError::RetriesExhausted {
                attempts: KV_ATTEMPTS_MAX,
                last: Box::new(e),
            },
            e => e,
        };
        outcomes = now.iter().map(|_| Err(failure.clone())).collect();
    }
    crate::metrics::committed(now.len(), began.elapsed());
    for (pending, outcome) in now.into_iter().zip(outcomes) {
        let _ = pending.done.send(outcome);
    }
    if !later.is_empty() {
        Box::pin(commit_batch(store, later)).await;
    }
}

/// One try of a batch: read what the checks need, decide each append, write the accepted ones
/// and commit. Returns each append's outcome; `Err` for the whole batch when it must be tried
/// again (or cannot be).
async fn attempt(store: &PgStore, batch: &[Pending]) -> Result<Vec<Result<(), KvError>>, KvError> {
    let client = store.client().await?;
    let mut wanted: BTreeSet<Vec<u8>> = BTreeSet::new();
    for p in batch {
        if let Some(f) = p.check.fence {
            wanted.insert(keys::shard_lease(f.shard));
        }
        wanted.insert(p.check.first_row.0.clone());
        wanted.insert(keys::worker_metadata(&p.check.worker));
    }
    let wanted: Vec<Vec<u8>> = wanted.into_iter().collect();
    // BEGIN and the read travel together (tokio-postgres pipelines them).
    let begin = client.batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE");
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&wanted];
    let read = client.query(
        "SELECT key, value FROM revenant_kv WHERE key = ANY($1)",
        &params,
    );
    let (begun, rows) = tokio::join!(begin, read);
    let result = async {
        begun.map_err(pg_error)?;
        let found: BTreeMap<Vec<u8>, Vec<u8>> = rows
            .map_err(pg_error)?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut outcomes = Vec::with_capacity(batch.len());
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        let mut clears = Vec::new();
        for p in batch {
            let lease = p
                .check
                .fence
                .and_then(|f| found.get(&keys::shard_lease(f.shard)));
            let first = found.get(&p.check.first_row.0);
            let metadata = found.get(&keys::worker_metadata(&p.check.worker));
            let decided = match p.check.decide(
                lease.map(Vec::as_slice),
                first.map(Vec::as_slice),
                metadata.map(Vec::as_slice),
            ) {
                Ok(Decision::CompareEntries) => {
                    let entry_keys: Vec<Vec<u8>> = p.rows.rows[..p.check.entries]
                        .iter()
                        .map(|(k, _)| k.clone())
                        .collect();
                    let stored: BTreeMap<Vec<u8>, Vec<u8>> = client
                        .query(
                            "SELECT key, value FROM revenant_kv WHERE key = ANY($1)",
                            &[&entry_keys],
                        )
                        .await
                        .map_err(pg_error)?
                        .into_iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect();
                    p.check.compared(
                        &p.rows.rows,
                        lease.map(Vec::as_slice),
                        entry_keys.iter().map(|k| stored.get(k).cloned()),
                    )
                }
                Ok(Decision::Write) => Ok(true),
                Ok(Decision::Written) => Ok(false),
                Err(e) => Err(e),
            };
            match decided {
                Ok(true) => {
                    if !p.rows.chunks.is_empty() {
                        // Chunks left past the log by an append that never committed.
                        clears.push(keys::chunks_from(&p.check.worker, p.check.first_seq));
                    }
                    for (k, v) in p.rows.rows.iter().chain(&p.rows.chunks) {
                        keys.push(k.clone());
                        values.push(v.clone());
                    }
                    outcomes.push(Ok(()));
                }
                Ok(false) => outcomes.push(Ok(())),
                Err(e) => outcomes.push(Err(e)),
            }
        }
        clear_ranges(&client, &clears).await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&keys, &values];
        let write = client.execute(UPSERT, &params);
        let commit = client.batch_execute("COMMIT");
        let (written, committed) = tokio::join!(write, commit);
        written.map_err(pg_error)?;
        committed.map_err(|e| match e.code() {
            Some(_) => pg_error(e),
            // The connection went during COMMIT: the batch may have committed. Trying it
            // again is safe: each append then finds its own rows (`Decision::Written`).
            None => KvError::CommitUnknownResult,
        })?;
        Ok(outcomes)
    }
    .await;
    if result.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

#[async_trait]
impl AppendsItsOwnWay for PgOplog {
    type Reads = KvOplog<PgStore>;

    fn reads(&self) -> &KvOplog<PgStore> {
        &self.kv
    }

    async fn append_its_way(&self, append: Append) -> Result<(), StorageError> {
        let rows = append_rows(&append)?;
        if rows.bytes() > APPEND_ONE_TRANSACTION_BYTES_MAX {
            // Large entries are written in steps, chunks first (`KvOplog`).
            return self.kv.append(append).await;
        }
        let check = AppendCheck::of(&append, &rows.rows);
        let bytes = rows.bytes();
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { rows, check, done })
            .await
            .map_err(|_| StorageError::Closed)?;
        outcome.await.map_err(|_| StorageError::Closed)??;
        crate::metrics::appended(bytes);
        Ok(())
    }
}
