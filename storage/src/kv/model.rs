//! An in-memory model of FoundationDB for tests: multi-version storage, snapshot reads,
//! optimistic transactions with read-conflict detection, FoundationDB's size and duration
//! limits, and seeded injection of retryable errors and `commit_unknown_result` — including
//! commits that did happen. Layers tested against it meet the failures FoundationDB produces.
//!
//! Time is tokio's clock, so tests can pause and advance it.

use super::buffer::{BufferedTx, Point, SnapshotReader, TxBuffer};
use super::{
    CommitRecord, KeyValue, KvError, KvStore, MaybeCommitted, OccBackend, apply_atomic,
    run_transaction,
};
use crate::limits::{KV_COMMIT_HISTORY_MAX, KV_TRANSACTION_DURATION_MAX};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Which faults to inject at commit, in parts per thousand of commits, from a seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub seed: u64,
    /// Commits refused with a retryable error before anything is applied.
    pub retryable_per_mille: u32,
    /// Commits that end in `commit_unknown_result`; half of them did commit.
    pub unknown_result_per_mille: u32,
}

/// Counts of what the model did, for tests to assert on.
#[derive(Debug, Default)]
pub struct ModelStats {
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub injected_retryable: AtomicU64,
    pub injected_unknown_committed: AtomicU64,
    pub injected_unknown_not_committed: AtomicU64,
}

impl ModelStats {
    pub fn injected(&self) -> u64 {
        self.injected_retryable.load(Ordering::Relaxed)
            + self.injected_unknown_committed.load(Ordering::Relaxed)
            + self.injected_unknown_not_committed.load(Ordering::Relaxed)
    }
}

/// A key's versions, oldest first; `None` is a deletion.
type Versions = Vec<(u64, Option<Vec<u8>>)>;

struct State {
    version: u64,
    /// Every key's versions, oldest first; `None` is a deletion.
    data: BTreeMap<Vec<u8>, Versions>,
    /// Recent commits' versions and written ranges, oldest first.
    commits: VecDeque<CommitRecord>,
    rng: fastrand::Rng,
    faults: Faults,
}

impl State {
    fn oldest_readable(&self) -> u64 {
        self.commits.front().map_or(0, |(v, _)| v - 1)
    }

    fn value_at(&self, key: &[u8], version: u64) -> Option<Vec<u8>> {
        self.data.get(key).and_then(|versions| {
            versions
                .iter()
                .rev()
                .find(|(v, _)| *v <= version)
                .and_then(|(_, value)| value.clone())
        })
    }

    fn range_at(
        &self,
        begin: &[u8],
        end: &[u8],
        version: u64,
        limit: usize,
        reverse: bool,
    ) -> Vec<KeyValue> {
        let range = self.data.range(begin.to_vec()..end.to_vec());
        let visible = |(k, versions): (&Vec<u8>, &Versions)| {
            versions
                .iter()
                .rev()
                .find(|(v, _)| *v <= version)
                .and_then(|(_, value)| value.clone().map(|v| (k.clone(), v)))
        };
        if reverse {
            range.rev().filter_map(visible).take(limit).collect()
        } else {
            range.filter_map(visible).take(limit).collect()
        }
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>, version: u64) {
        self.data
            .entry(key.to_vec())
            .or_default()
            .push((version, value));
    }

    fn apply(&mut self, buffer: &TxBuffer, version: u64) {
        for (b, e) in &buffer.cleared {
            let keys: Vec<Vec<u8>> = self
                .data
                .range(b.clone()..e.clone())
                .map(|(k, _)| k.clone())
                .collect();
            for k in keys {
                self.write(&k, None, version);
            }
        }
        for (k, p) in &buffer.points {
            let value = match p {
                Point::Value(v) => v.clone(),
                Point::Atomic(ops) => {
                    let mut current = self.value_at(k, version);
                    for op in ops {
                        current = Some(apply_atomic(current.as_deref(), op));
                    }
                    current
                }
            };
            self.write(k, value, version);
        }
        self.commits.push_back((version, buffer.write_ranges()));
        if self.commits.len() > KV_COMMIT_HISTORY_MAX {
            self.commits.pop_front();
            if version.is_multiple_of(4096) {
                self.compact();
            }
        }
    }

    /// Drops versions no transaction can read any more.
    fn compact(&mut self) {
        let horizon = self.oldest_readable();
        self.data.retain(|_, versions| {
            let keep_from = versions
                .iter()
                .rposition(|(v, _)| *v <= horizon)
                .unwrap_or(0);
            versions.drain(..keep_from);
            !(versions.len() == 1 && versions[0].1.is_none())
        });
    }
}

/// The model. Clones share one database.
#[derive(Clone)]
pub struct FdbModel {
    state: Arc<Mutex<State>>,
    stats: Arc<ModelStats>,
}

impl FdbModel {
    pub fn new(faults: Faults) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                version: 1,
                data: BTreeMap::new(),
                commits: VecDeque::new(),
                rng: fastrand::Rng::with_seed(faults.seed),
                faults,
            })),
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> &ModelStats {
        &self.stats
    }

    /// Changes the faults injected from now on (e.g. none, to check the final state).
    pub fn set_faults(&self, faults: Faults) {
        let mut s = self.state.lock().expect("model lock");
        s.rng = fastrand::Rng::with_seed(faults.seed);
        s.faults = faults;
    }
}

/// The snapshot side of a model transaction.
#[derive(Clone)]
pub struct ModelReader {
    state: Arc<Mutex<State>>,
    read_version: u64,
    started: Instant,
}

/// A transaction on the model.
pub type ModelTx = BufferedTx<ModelReader>;

impl SnapshotReader for ModelReader {
    fn check(&self) -> Result<(), KvError> {
        let state = self.state.lock().expect("model lock");
        if self.started.elapsed() > KV_TRANSACTION_DURATION_MAX
            || self.read_version < state.oldest_readable()
        {
            return Err(KvError::TooOld);
        }
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self
            .state
            .lock()
            .expect("model lock")
            .value_at(key, self.read_version))
    }

    fn read_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        let state = self.state.lock().expect("model lock");
        Ok(state.range_at(begin, end, self.read_version, limit, reverse))
    }
}

impl OccBackend for FdbModel {
    type Tx = ModelTx;

    fn begin(&self) -> impl Future<Output = Result<ModelTx, KvError>> + Send {
        let version = self.state.lock().expect("model lock").version;
        std::future::ready(Ok(BufferedTx::new(ModelReader {
            state: self.state.clone(),
            read_version: version,
            started: Instant::now(),
        })))
    }

    fn commit(&self, tx: ModelTx) -> impl Future<Output = Result<(), KvError>> + Send {
        std::future::ready(self.commit_now(&tx))
    }
}

impl FdbModel {
    fn commit_now(&self, tx: &ModelTx) -> Result<(), KvError> {
        // Transaction buffer, then model: the order reads take them in.
        let buffer = tx.buffer.lock().expect("tx lock");
        let mut state = self.state.lock().expect("model lock");
        if let Some(e) = &buffer.limit_error {
            return Err(e.clone());
        }
        if tx.reader.started.elapsed() > KV_TRANSACTION_DURATION_MAX
            || tx.reader.read_version < state.oldest_readable()
        {
            return Err(KvError::TooOld);
        }
        if buffer.is_read_only() {
            return Ok(());
        }
        let faults = state.faults;
        let roll = state.rng.u32(0..1000);
        if roll < faults.retryable_per_mille {
            self.stats
                .injected_retryable
                .fetch_add(1, Ordering::Relaxed);
            return Err(KvError::Retryable("injected fault".into()));
        }
        let unknown = roll < faults.retryable_per_mille + faults.unknown_result_per_mille;
        let conflicted = state
            .commits
            .iter()
            .rev()
            .take_while(|(v, _)| *v > tx.reader.read_version)
            .any(|(_, writes)| buffer.conflicts_with(writes));
        if conflicted {
            self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
            // A commit that would have conflicted may still report an unknown result.
            return Err(if unknown {
                self.stats
                    .injected_unknown_not_committed
                    .fetch_add(1, Ordering::Relaxed);
                KvError::CommitUnknownResult
            } else {
                KvError::Conflict
            });
        }
        if unknown && state.rng.bool() {
            self.stats
                .injected_unknown_not_committed
                .fetch_add(1, Ordering::Relaxed);
            return Err(KvError::CommitUnknownResult);
        }
        state.version += 1;
        let version = state.version;
        state.apply(&buffer, version);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        if unknown {
            self.stats
                .injected_unknown_committed
                .fetch_add(1, Ordering::Relaxed);
            return Err(KvError::CommitUnknownResult);
        }
        Ok(())
    }
}

impl KvStore for FdbModel {
    type Tx = ModelTx;

    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(ModelTx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send,
    {
        run_transaction(self, f)
    }
}
