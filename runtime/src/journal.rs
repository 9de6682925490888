//! The journal of the invocation in progress: the entries it has recorded and not yet made
//! durable. It is shared by the guest's host calls and the tasks that perform outgoing HTTP,
//! which must make everything recorded durable before a request leaves the process.

use revenant_storage::{
    Append, Fence, OplogEntry, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata,
};
use std::sync::{Arc, Mutex};

pub(crate) struct Journal {
    oplog: Arc<dyn OplogStore>,
    worker: WorkerId,
    /// The lease this node holds on the worker's shard; the store refuses appends under any
    /// other (`None`: one node owning its store).
    fence: Option<Fence>,
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
    failed: Option<Failure>,
    /// The invocation's start (and a new worker's creation) from an append that failed: what
    /// [`Journal::abandon`] writes again before the failure it records.
    refused_start: Vec<OplogEntry>,
    /// The worker's latest snapshot, and where in `unflushed` a new one starts.
    snapshot_index: u64,
    new_snapshot_at: Option<usize>,
}

impl Journal {
    pub fn new(
        oplog: Arc<dyn OplogStore>,
        worker: WorkerId,
        fence: Option<Fence>,
        component_hash: String,
        next_seq: u64,
        marked_in_flight: bool,
        snapshot_index: u64,
    ) -> Arc<Self> {
        Arc::new(Self {
            oplog,
            worker,
            fence,
            component_hash,
            state: Mutex::new(State {
                next_seq,
                unflushed: Vec::new(),
                marked_in_flight,
                failed: None,
                refused_start: Vec::new(),
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
    pub fn failure(&self) -> Option<Failure> {
        self.state.lock().expect("journal lock").failed.clone()
    }

    /// Whether the worker is marked in flight: something of the invocation reached the world.
    pub fn in_flight(&self) -> bool {
        self.state.lock().expect("journal lock").marked_in_flight
    }

    /// After a failed flush: drops everything the invocation recorded since it started, and
    /// makes durable its start with `ending` (its failure) instead, closing it. The store's own
    /// checks make this safe if the failed append did commit after all: this one, at the same
    /// position with other entries, is then refused.
    pub async fn abandon(
        &self,
        ending: Vec<OplogEntry>,
        idempotency_key: Option<String>,
    ) -> Result<(), StorageError> {
        {
            let mut state = self.state.lock().expect("journal lock");
            let mut entries = std::mem::take(&mut state.refused_start);
            entries.extend(ending);
            state.unflushed = entries;
            state.failed = None;
            state.new_snapshot_at = None;
        }
        self.flush(false, idempotency_key).await
    }

    /// Makes everything recorded durable. `open` says whether the invocation stays open after
    /// this (before a side effect) or has ended; `idempotency_key` indexes the last entry.
    pub async fn flush(
        &self,
        open: bool,
        idempotency_key: Option<String>,
    ) -> Result<(), StorageError> {
        let _order = self.flushing.lock().await;
        let (append, start, snapshot_index) = {
            let mut state = self.state.lock().expect("journal lock");
            if let Some(f) = &state.failed {
                return Err(StorageError::Engine(f.message.clone()));
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
            let last_index = first + entries.len() as u64 - 1;
            let snapshot_index = match state.new_snapshot_at {
                Some(offset) => first + offset as u64,
                None => state.snapshot_index,
            };
            // Kept until the append succeeds, for `abandon`: small, and only the start.
            let start: Vec<OplogEntry> = entries
                .iter()
                .filter(|e| {
                    matches!(
                        e.entry,
                        OplogEntry::Create { .. }
                            | OplogEntry::Engine { .. }
                            | OplogEntry::InvocationStarted { .. }
                    )
                })
                .map(|e| e.entry.clone())
                .collect();
            let in_flight = match (open, state.marked_in_flight) {
                (true, false) => Some(true),
                (false, true) => Some(false),
                _ => None,
            };
            let append = Append {
                worker: self.worker.clone(),
                fence: self.fence,
                entries,
                metadata: WorkerMetadata {
                    component_hash: self.component_hash.clone(),
                    last_index,
                    snapshot_index,
                },
                idempotency: idempotency_key.map(|k| (k, last_index)),
                in_flight,
            };
            (append, start, snapshot_index)
        };
        let last_index = append.metadata.last_index;
        let outcome = self.oplog.append(append).await;
        let mut state = self.state.lock().expect("journal lock");
        match &outcome {
            Ok(()) => {
                state.next_seq = last_index + 1;
                state.snapshot_index = snapshot_index;
                state.new_snapshot_at = None;
                state.marked_in_flight = open;
            }
            Err(e) => {
                state.failed = Some(Failure {
                    message: e.to_string(),
                    too_large: matches!(e, StorageError::EntryTooLarge { .. }),
                    fenced: matches!(e, StorageError::Fenced { .. }),
                    full: matches!(e, StorageError::Full(_)),
                });
                state.refused_start = start;
            }
        }
        outcome
    }
}

/// Why a flush failed.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub message: String,
    /// The store refused an entry for its size: trying again cannot help.
    pub too_large: bool,
    /// The store refused the append because another node now holds the worker's shard.
    pub fenced: bool,
    /// The store refused it for want of disk space (nothing written).
    pub full: bool,
}
