//! The `OplogStore` written once over the KV interface: one small transaction per append (what
//! FoundationDB wants: many in parallel), snapshot range reads in pages for replay.
//!
//! An append whose large entries make it bigger than `APPEND_ONE_TRANSACTION_BYTES_MAX` is
//! written in steps: its chunks first, in transactions of their own, then the rows in the one
//! transaction that checks the append and makes it visible. A crash between the two leaves
//! chunks that no row points at; they lie at or past the worker's next sequence number, where
//! the worker's next append clears them (`docs/storage.md`, "Large entries").

use crate::kv::{KvStore, Transaction, snapshot_range};
use crate::layout::append::AppendCheck;
use crate::layout::rows::{
    AppendRows, Row, append_rows, assemble_row, decode_metadata, decode_row, decode_seq, row_bytes,
};
use crate::limits::{
    APPEND_ONE_TRANSACTION_BYTES_MAX, BLOB_CHUNKS_PER_TRANSACTION, KV_RANGE_ROWS_MAX,
    READ_PAGE_BYTES_MAX, READ_PAGE_ENTRIES_MAX,
};
use crate::{Append, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata, keys};
use async_trait::async_trait;
use std::sync::Arc;

pub struct KvOplog<K> {
    kv: K,
}

impl<K: KvStore> KvOplog<K> {
    pub fn new(kv: K) -> Self {
        Self { kv }
    }

    pub fn kv(&self) -> &K {
        &self.kv
    }
}

impl<K: KvStore> KvOplog<K> {
    /// Writes the chunks of an append too large for one transaction, ahead of its rows. The
    /// first step clears chunks left at or past the append's first entry by an attempt that
    /// never committed, unless the append itself already committed (then there is nothing to
    /// do). Each step checks the fence, so a node that lost its lease cannot overwrite chunks
    /// of the node that took it over.
    ///
    /// Public for tests, which stop here to play a crash between the chunks and the rows.
    #[doc(hidden)]
    pub async fn stage_chunks(&self, append: &Append) -> Result<(), StorageError> {
        let rows = append_rows(append)?;
        let check = AppendCheck::of(append, &rows.rows);
        self.write_chunks(Arc::new(rows), Arc::new(check)).await
    }

    async fn write_chunks(
        &self,
        rows: Arc<AppendRows>,
        check: Arc<AppendCheck>,
    ) -> Result<(), StorageError> {
        for (step, first) in (0..rows.chunks.len())
            .step_by(BLOB_CHUNKS_PER_TRANSACTION)
            .enumerate()
        {
            let committed = self
                .kv
                .transact(|tx, _| {
                    let (rows, check) = (rows.clone(), check.clone());
                    async move {
                        // Committed already (checked before the fence, as in `decide`): the
                        // rows' transaction finds out whether it was this append.
                        if step == 0 && check.committed_in(&tx).await? {
                            return Ok(true);
                        }
                        check.fence_in(&tx).await?;
                        if step == 0 {
                            let (b, e) = keys::chunks_from(&check.worker, check.first_seq);
                            tx.clear_range(&b, &e);
                        }
                        let last = (first + BLOB_CHUNKS_PER_TRANSACTION).min(rows.chunks.len());
                        for (k, v) in &rows.chunks[first..last] {
                            tx.set(k, v);
                        }
                        Ok(false)
                    }
                })
                .await?;
            if committed {
                break;
            }
        }
        Ok(())
    }

    /// The chunks of entry `seq` and the entry they make up.
    async fn assemble(
        &self,
        worker: &WorkerId,
        seq: u64,
        reference: &crate::oplog::ChunkedRef,
    ) -> Result<SequencedEntry, StorageError> {
        let (b, e) = keys::entry_chunks(worker, seq);
        let limit = (reference.chunks as usize).clamp(1, KV_RANGE_ROWS_MAX);
        let rows = snapshot_range(&self.kv, &b, &e, limit).await?;
        assemble_row(worker, seq, reference, rows)
    }
}

#[async_trait]
impl<K: KvStore> OplogStore for KvOplog<K> {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let rows = append_rows(&append)?;
        let check = Arc::new(AppendCheck::of(&append, &rows.rows));
        // Small appends (nearly all) are one transaction: chunks and rows together.
        let staged = !rows.chunks.is_empty() && rows.bytes() > APPEND_ONE_TRANSACTION_BYTES_MAX;
        let rows = Arc::new(rows);
        if staged {
            self.write_chunks(rows.clone(), check.clone()).await?;
        }
        let (garbage_from, garbage_end) = keys::chunks_from(&append.worker, check.first_seq);
        self.kv
            .transact(|tx, _maybe_committed| {
                let (rows, check) = (rows.clone(), check.clone());
                let (garbage_from, garbage_end) = (garbage_from.clone(), garbage_end.clone());
                async move {
                    // Whether or not an earlier attempt may have committed, the check below finds
                    // out from the store itself.
                    if check.decide_in(&tx, &rows.rows).await? {
                        if !staged {
                            // Chunks past the log are left by an append that never committed:
                            // nothing points at them (a range clear is one mutation).
                            tx.clear_range(&garbage_from, &garbage_end);
                            for (k, v) in &rows.chunks {
                                tx.set(k, v);
                            }
                        }
                        for (k, v) in &rows.rows {
                            tx.set(k, v);
                        }
                    }
                    Ok(())
                }
            })
            .await?;
        crate::metrics::appended(rows.bytes());
        Ok(())
    }

    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        let (start, end) = keys::oplog_range_from(worker, from);
        let limit = limit.clamp(1, READ_PAGE_ENTRIES_MAX);
        // Replay reads history that no longer changes: snapshot reads add no conflicts.
        let rows = snapshot_range(&self.kv, &start, &end, limit).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        for (k, v) in &rows {
            let row = decode_row(worker, k, v)?;
            bytes += row_bytes(&row, v);
            if bytes > READ_PAGE_BYTES_MAX && !out.is_empty() {
                break;
            }
            out.push(match row {
                Row::Entry(e) => e,
                Row::Chunked(seq, reference) => self.assemble(worker, seq, &reference).await?,
            });
        }
        Ok(out)
    }

    async fn log_bytes(&self, worker: &WorkerId) -> Result<u64, StorageError> {
        log_bytes(&self.kv, worker).await
    }

    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError> {
        truncate_before(&self.kv, worker, seq).await
    }

    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        in_flight_workers(&self.kv).await
    }

    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        list_workers(&self.kv, component, after, limit).await
    }

    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError> {
        delete_worker(&self.kv, worker).await
    }

    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        let index = keys::idempotency(worker, key);
        let value = self
            .kv
            .transact(|tx, _| {
                let index = index.clone();
                async move { tx.get(&index, true).await }
            })
            .await?;
        value.map(|v| decode_seq(&v)).transpose()
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        let key = keys::worker_metadata(worker);
        let bytes = self
            .kv
            .transact(|tx, _| {
                let key = key.clone();
                async move { tx.get(&key, true).await }
            })
            .await?;
        bytes.map(|b| decode_metadata(worker, &b)).transpose()
    }
}

/// Clears a worker's entries before `seq`, and their chunks, over any KV store. A range clear
/// is one small mutation however many entries it covers.
pub(crate) async fn truncate_before<K: KvStore>(
    kv: &K,
    worker: &WorkerId,
    seq: u64,
) -> Result<(), StorageError> {
    let ranges = [
        (keys::oplog_entry(worker, 0), keys::oplog_entry(worker, seq)),
        keys::chunks_before(worker, seq),
    ];
    kv.transact(|tx, _| {
        let ranges = ranges.clone();
        async move {
            for (b, e) in &ranges {
                tx.clear_range(b, e);
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Bytes the store holds for a worker's log (keys and values of its entries and chunks), over
/// any KV store, read in pages.
pub(crate) async fn log_bytes<K: KvStore>(kv: &K, worker: &WorkerId) -> Result<u64, StorageError> {
    let mut total = 0u64;
    for tag in [
        crate::layout::Family::Oplog.tag(),
        crate::layout::Family::EntryChunk.tag(),
    ] {
        let (mut from, end) = keys::worker_family_range(tag, worker);
        loop {
            let page = snapshot_range(kv, &from, &end, KV_RANGE_ROWS_MAX).await?;
            let Some((last, _)) = page.last() else { break };
            from = crate::kv::key_after(last);
            total += page
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum::<u64>();
        }
    }
    Ok(total)
}

/// Workers whose in-flight marker is set, over any KV store, read in pages.
pub(crate) async fn in_flight_workers<K: KvStore>(kv: &K) -> Result<Vec<WorkerId>, StorageError> {
    let (mut from, end) = keys::in_flight_range();
    let mut workers = Vec::new();
    loop {
        let page = snapshot_range(kv, &from, &end, 1_000).await?;
        let Some((last, _)) = page.last() else { break };
        from = crate::kv::key_after(last);
        for (k, v) in &page {
            if v.as_slice() == [1] {
                workers.extend(keys::worker_of_in_flight_key(k));
            }
        }
    }
    Ok(workers)
}

/// Lists workers of a component from their metadata rows, over any KV store.
pub(crate) async fn list_workers<K: KvStore>(
    kv: &K,
    component: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
    let (begin, end) = keys::workers_range(component, after);
    let rows = snapshot_range(kv, &begin, &end, limit).await?;
    rows.iter()
        .map(|(k, v)| {
            let worker = keys::worker_of_metadata_key(k)
                .ok_or_else(|| StorageError::Engine("corrupt worker metadata key".into()))?;
            let metadata = decode_metadata(&worker, v)?;
            Ok((worker, metadata))
        })
        .collect()
}

/// Deletes a worker's oplog, metadata, idempotency index and in-flight marker in one
/// transaction (range clears are single mutations, whatever they cover).
pub(crate) async fn delete_worker<K: KvStore>(
    kv: &K,
    worker: &WorkerId,
) -> Result<(), StorageError> {
    let ranges = [
        keys::worker_family_range(crate::layout::Family::Oplog.tag(), worker),
        keys::worker_family_range(crate::layout::Family::EntryChunk.tag(), worker),
        keys::worker_family_range(crate::layout::Family::Idempotency.tag(), worker),
    ];
    let points = [keys::worker_metadata(worker), keys::in_flight(worker)];
    kv.transact(|tx, _| {
        let (ranges, points) = (ranges.clone(), points.clone());
        async move {
            for (b, e) in &ranges {
                tx.clear_range(b, e);
            }
            for k in &points {
                tx.clear(k);
            }
            Ok(())
        }
    })
    .await?;
    Ok(())
}
