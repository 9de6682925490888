//! The rule every backend applies before it writes an append, read in the transaction that
//! writes it: the shard's lease must still be this node's (fencing), the append must follow the
//! worker's last entry (contiguity), and an earlier attempt that already wrote the same bytes
//! makes it a no-op (idempotency, for `commit_unknown_result`). Backends implement the reads;
//! the decision is here.

use crate::kv::{KvError, Transaction};
use crate::layout::keys;
use crate::layout::rows::{Rows, decode_metadata};
use crate::{Append, WorkerId, leases};

/// What the checks every backend makes before writing an append need of it.
pub(crate) struct AppendCheck {
    pub worker: WorkerId,
    pub fence: Option<crate::Fence>,
    pub first_seq: u64,
    pub first_row: (Vec<u8>, Vec<u8>),
    /// How many of the append's rows are its entries (they come first).
    pub entries: usize,
    /// The last index its metadata row records.
    pub last_index: u64,
}

/// What an append's checks decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Write the rows.
    Write,
    /// An earlier attempt wrote them already: nothing to do.
    Written,
    /// The first entry is in the log with the same bytes, but the lease has moved since: the
    /// append stands only if **every** entry is in the log with the same bytes (then whoever
    /// wrote them, the log says what the caller computed). Otherwise another node wrote other
    /// entries there, and the caller is fenced.
    CompareEntries,
}

impl AppendCheck {
    pub fn of(append: &Append, rows: &Rows) -> Self {
        Self {
            worker: append.worker.clone(),
            fence: append.fence,
            first_seq: append.entries.first().map_or(0, |e| e.seq),
            first_row: rows[0].clone(),
            entries: append.entries.len(),
            last_index: append.metadata.last_index,
        }
    }

    /// Decides an append from what the store holds, read in the transaction that writes it: the
    /// shard's lease (fencing), the key of the append's first entry (idempotency: the same bytes
    /// there mean an earlier attempt committed), and the worker's metadata (contiguity).
    pub fn decide(
        &self,
        lease: Option<&[u8]>,
        first: Option<&[u8]>,
        metadata: Option<&[u8]>,
    ) -> Result<Decision, KvError> {
        let fenced = self.check_fence(lease);
        // Idempotency before fencing: an earlier attempt that committed did so under the
        // lease it then held, and its repeat writes nothing. Refusing it because the lease has
        // moved since would tell the caller its call did not happen, and it would be run again.
        if first == Some(self.first_row.1.as_slice()) {
            return Ok(match fenced {
                Ok(()) => Decision::Written,
                Err(_) => Decision::CompareEntries,
            });
        }
        fenced?;
        if first.is_some() {
            return Err(KvError::Invalid(format!(
                "entry {} of {} already holds a different entry",
                self.first_seq, self.worker
            )));
        }
        let last = self.last_index(metadata)?;
        if self.first_seq != last + 1 {
            return Err(KvError::Invalid(format!(
                "append at {} to {} does not follow its last entry {last}",
                self.first_seq, self.worker
            )));
        }
        Ok(Decision::Write)
    }

    /// Ends [`Decision::CompareEntries`]: `stored` holds what the log has under each of the
    /// append's entry keys. Returns `false` (nothing to write) or the fence's refusal.
    pub fn compared(
        &self,
        rows: &Rows,
        lease: Option<&[u8]>,
        stored: impl Iterator<Item = Option<Vec<u8>>>,
    ) -> Result<bool, KvError> {
        let same = rows[..self.entries]
            .iter()
            .zip(stored)
            .all(|((_, v), s)| s.as_deref() == Some(v.as_slice()));
        if same {
            return Ok(false);
        }
        self.check_fence(lease)?;
        unreachable!("CompareEntries is decided only under a stale fence")
    }

    fn check_fence(&self, lease: Option<&[u8]>) -> Result<(), KvError> {
        if let Some(fence) = self.fence {
            let found = lease.map(leases::decode).transpose()?.map(|l| l.epoch);
            if found != Some(fence.epoch) {
                return Err(KvError::Fenced {
                    shard: fence.shard,
                    expected: fence.epoch,
                    found,
                });
            }
        }
        Ok(())
    }

    /// Reads the shard's lease, with a conflicting read, and checks the fence.
    pub async fn fence_in<T: Transaction>(&self, tx: &T) -> Result<(), KvError> {
        let lease = self.lease_in(tx).await?;
        self.check_fence(lease.as_deref())
    }

    async fn lease_in<T: Transaction>(&self, tx: &T) -> Result<Option<Vec<u8>>, KvError> {
        match self.fence {
            Some(f) => tx.get(&keys::shard_lease(f.shard), false).await,
            None => Ok(None),
        }
    }

    /// Whether the worker's log already reaches the append's first entry: an earlier attempt of
    /// it committed (or the append is refused anyway when its rows are written).
    pub async fn committed_in<T: Transaction>(&self, tx: &T) -> Result<bool, KvError> {
        let metadata = tx.get(&keys::worker_metadata(&self.worker), false).await?;
        Ok(self.last_index(metadata.as_deref())? >= self.first_seq)
    }

    /// The last index in the worker's metadata record (0: a new worker).
    fn last_index(&self, metadata: Option<&[u8]>) -> Result<u64, KvError> {
        metadata.map_or(Ok(0), |bytes| {
            decode_metadata(&self.worker, bytes)
                .map(|m| m.last_index)
                .map_err(|e| KvError::Invalid(e.to_string()))
        })
    }

    /// Reads what `decide` needs, with conflicting reads, and decides. Returns `true` if the
    /// rows must be written, `false` if they already are.
    pub async fn decide_in<T: Transaction>(&self, tx: &T, rows: &Rows) -> Result<bool, KvError> {
        let lease = self.lease_in(tx).await?;
        let first = tx.get(&self.first_row.0, false).await?;
        let metadata = tx.get(&keys::worker_metadata(&self.worker), false).await?;
        match self.decide(lease.as_deref(), first.as_deref(), metadata.as_deref())? {
            Decision::Write => Ok(true),
            Decision::Written => Ok(false),
            Decision::CompareEntries => {
                let mut stored = Vec::with_capacity(self.entries);
                for (k, _) in &rows[..self.entries] {
                    stored.push(tx.get(k, false).await?);
                }
                self.compared(rows, lease.as_deref(), stored.into_iter())
            }
        }
    }
}
