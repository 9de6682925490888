//! The journal of the invocation in progress: the entries it has recorded and not yet made
//! durable. It is shared by the guest's host calls and the tasks that perform outgoing HTTP,
//! which must make everything recorded durable before a request leaves the process.

use revenant_storage::{
    Append, OplogEntry, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata,
};
use std::sync::{Arc, Mutex};

pub(crate) struct Journal {
    oplog: Arc<dyn OplogStore>,
    worker: WorkerId,
    component_hash: String,
    state: Mutex<State>,
    /// Held across an append, so appends leave in the order their entries were numbered.
    flushing: tokio::sync::Mutex<()>,
}

struct State {
    next_seq: u64,
    unflushed: Vec<OplogEntry>,
    /// Whether the worker is marked in flight in the store (and must be unmarked at the end).
    marked_in_flight: bool,
    failed: Option<String>,
    /// The worker's latest snapshot, and where in `unflushed` a new one starts.
    snapshot_index: u64,
    new_snapshot_at: Option<usize>,
}

impl Journal {
    pub fn new(
        oplog: Arc<dyn OplogStore>,
        worker: WorkerId,
        component_hash: String,
        next_seq: u64,
        marked_in_flight: bool,
        snapshot_index: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            oplog,
            worker,
            component_hash,
            state: Mutex::new(State {
                next_seq,
                unflushed: Vec::new(),
                marked_in_flight,
                failed: None,
                snapshot_index,
                new_snapshot_at: None,
            }),
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn push(&self, entry: OplogEntry) {
        self.state
            .lock()
            .expect("journal lock")
            .unflushed
            .push(entry);
    }

    /// Records the parts of a new snapshot; the metadata points at it once flushed.
    pub fn push_snapshot(&self, parts: Vec<OplogEntry>) {
        let mut state = self.state.lock().expect("journal lock");
        state.new_snapshot_at = Some(state.unflushed.len());
        state.unflushed.extend(parts);
    }

    pub fn snapshot_index(&self) -> u64 {
        self.state.lock().expect("journal lock").snapshot_index
    }

    /// The sequence number of the last entry made durable or numbered.
    pub fn last_index(&self) -> u64 {
        self.state.lock().expect("journal lock").next_seq - 1
    }

    /// Why a flush failed, if one did: the worker's memory then holds state its log lacks.
    pub fn failure(&self) -> Option<String> {
        self.state.lock().expect("journal lock").failed.clone()
    }

    /// Makes everything recorded durable. `open` says whether the invocation stays open after
    /// this (before a side effect) or has ended; `idempotency_key` indexes the last entry.
    pub async fn flush(
        &self,
        open: bool,
        idempotency_key: Option<String>,
    ) -> Result<(), StorageError> {
        let _order = self.flushing.lock().await;
        let append = {
            let mut state = self.state.lock().expect("journal lock");
            if let Some(f) = &state.failed {
                return Err(StorageError::Engine(f.clone()));
            }
            if state.unflushed.is_empty() {
                return Ok(());
            }
            let first = state.next_seq;
            let entries: Vec<SequencedEntry> = std::mem::take(&mut state.unflushed)
                .into_iter()
                .zip(first..)
                .map(|(entry, seq)| SequencedEntry { seq, entry })
                .collect();
            state.next_seq += entries.len() as u64;
            let last_index = state.next_seq - 1;
            if let Some(offset) = state.new_snapshot_at.take() {
                state.snapshot_index = first + offset as u64;
            }
            let in_flight = match (open, state.marked_in_flight) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            };
            state.marked_in_flight = open;
            Append {
                worker: self.worker.clone(),
                // One node owning its store: no lease to check yet (the cluster issue adds it).
                fence: None,
                entries,
                metadata: WorkerMetadata {
                    component_hash: self.component_hash.clone(),
                    last_index,
                    snapshot_index: state.snapshot_index,
                },
                idempotency: idempotency_key.map(|k| (k, last_index)),
                in_flight,
            }
        };
        self.oplog.append(append).await.inspect_err(|e| {
            self.state.lock().expect("journal lock").failed = Some(e.to_string());
        })
    }
}
