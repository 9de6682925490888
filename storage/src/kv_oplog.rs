//! The `OplogStore` written once over the KV interface: one small transaction per append (what
//! FoundationDB wants: many in parallel), snapshot range reads in pages for replay.

use crate::kv::{KvStore, Transaction, snapshot_range};
use crate::layout::append::AppendCheck;
use crate::layout::rows::{append_rows, decode_metadata, decode_row, decode_seq};
use crate::limits::READ_PAGE_ENTRIES_MAX;
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

#[async_trait]
impl<K: KvStore> OplogStore for KvOplog<K> {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let rows = Arc::new(append_rows(&append)?);
        let check = Arc::new(AppendCheck::of(&append, &rows));
        self.kv
            .transact(|tx, _maybe_committed| {
                let (rows, check) = (rows.clone(), check.clone());
                async move {
                    // Whether or not an earlier attempt may have committed, the check below finds
                    // out from the store itself.
                    if check.decide_in(&tx).await? {
                        for (k, v) in rows.iter() {
                            tx.set(k, v);
                        }
                    }
                    Ok(())
                }
            })
            .await?;
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
        rows.iter().map(|(k, v)| decode_row(worker, k, v)).collect()
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

/// Clears a worker's entries before `seq`, over any KV store. A range clear is one small
/// mutation however many entries it covers.
pub(crate) async fn truncate_before<K: KvStore>(
    kv: &K,
    worker: &WorkerId,
    seq: u64,
) -> Result<(), StorageError> {
    let begin = keys::oplog_entry(worker, 0);
    let end = keys::oplog_entry(worker, seq);
    kv.transact(|tx, _| {
        let (begin, end) = (begin.clone(), end.clone());
        async move {
            tx.clear_range(&begin, &end);
            Ok(())
        }
    })
    .await?;
    Ok(())
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
        keys::worker_family_range("l", worker),
        keys::worker_family_range("i", worker),
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
