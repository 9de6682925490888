//! An in-memory `OplogStore`: for tests, and as the base of test wrappers that delay or fail
//! durability on purpose. Nothing survives the process.

use crate::embedded::{append_rows, decode_metadata, decode_row};
use crate::limits::READ_PAGE_ENTRIES_MAX;
use crate::{Append, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata, keys};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Rows in one ordered map, encoded exactly as the embedded backend encodes them, so tests on
/// it exercise the real encodings.
#[derive(Default)]
pub struct MemoryStore {
    // std's Mutex: held only for map operations, never across an await.
    rows: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl OplogStore for MemoryStore {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let rows = append_rows(&append)?;
        let mut map = self.rows.lock().expect("memory store lock");
        map.extend(rows);
        Ok(())
    }

    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        let (start, end) = keys::oplog_range_from(worker, from);
        let map = self.rows.lock().expect("memory store lock");
        map.range(start..end)
            .take(limit.min(READ_PAGE_ENTRIES_MAX))
            .map(|(k, v)| decode_row(worker, k, v))
            .collect()
    }

    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        let (begin, end) = keys::in_flight_range();
        let map = self.rows.lock().expect("memory store lock");
        Ok(map
            .range(begin..end)
            .filter(|(_, v)| v.as_slice() == [1])
            .filter_map(|(k, _)| keys::worker_of_in_flight_key(k))
            .collect())
    }

    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        let (begin, end) = keys::workers_range(component, after);
        let map = self.rows.lock().expect("memory store lock");
        map.range(begin..end)
            .take(limit)
            .map(|(k, v)| {
                let worker = keys::worker_of_metadata_key(k)
                    .ok_or_else(|| StorageError::Engine("corrupt worker metadata key".into()))?;
                let metadata = decode_metadata(&worker, v)?;
                Ok((worker, metadata))
            })
            .collect()
    }

    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError> {
        let mut map = self.rows.lock().expect("memory store lock");
        for (b, e) in [
            keys::worker_family_range("l", worker),
            keys::worker_family_range("i", worker),
        ] {
            let doomed: Vec<Vec<u8>> = map.range(b..e).map(|(k, _)| k.clone()).collect();
            for k in doomed {
                map.remove(&k);
            }
        }
        map.remove(&keys::worker_metadata(worker));
        map.remove(&keys::in_flight(worker));
        Ok(())
    }

    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        let map = self.rows.lock().expect("memory store lock");
        map.get(&keys::idempotency(worker, key))
            .map(|v| crate::embedded::decode_seq(v))
            .transpose()
    }

    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError> {
        let mut map = self.rows.lock().expect("memory store lock");
        map.retain(|k, _| {
            !(k.as_slice() >= keys::oplog_entry(worker, 0).as_slice()
                && k.as_slice() < keys::oplog_entry(worker, seq).as_slice())
        });
        Ok(())
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        let map = self.rows.lock().expect("memory store lock");
        map.get(&keys::worker_metadata(worker))
            .map(|v| decode_metadata(worker, v))
            .transpose()
    }
}
