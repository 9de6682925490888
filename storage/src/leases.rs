//! Shard leases, written once over the KV interface. A lease is a node's time-bounded claim on a
//! shard with a fencing epoch that grows at every change of holder; oplog appends check the
//! epoch inside their own transaction (see [`crate::Fence`]), so a node that lost its lease
//! cannot write, whatever its clock or its memory says.
//!
//! Time is passed in (milliseconds since the Unix epoch, from the caller's clock), never read
//! here. Clocks only decide when a lease counts as expired, which can delay a takeover or cause
//! a needless one; they never let two nodes write one shard, because the epoch decides that.

use crate::keys;
use crate::kv::{KvError, KvStore, Transaction, snapshot_range};
use crate::limits::KV_RANGE_ROWS_MAX;
use serde::{Deserialize, Serialize};

const LEASE_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The holder; empty once released.
    pub node: String,
    pub epoch: u64,
    pub expires_at_ms: u64,
}

impl Lease {
    /// Whether `node` may not take the shard at `now_ms`: someone else holds it unexpired.
    pub fn held_by_other(&self, node: &str, now_ms: u64) -> bool {
        !self.node.is_empty() && self.node != node && self.expires_at_ms > now_ms
    }
}

pub(crate) fn encode(lease: &Lease) -> Vec<u8> {
    postcard::to_extend(lease, vec![LEASE_VERSION]).expect("a lease always encodes")
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Lease, KvError> {
    match bytes.split_first() {
        Some((&LEASE_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| KvError::Invalid(format!("corrupt lease: {e}")))
        }
        _ => Err(KvError::Invalid("corrupt lease: unknown version".into())),
    }
}

/// Takes or renews the lease on `shard` for `node` until `now_ms + ttl_ms`. Succeeds if the
/// shard is free, expired, or already `node`'s; the epoch grows when the holder changes.
/// Returns the lease held, or `None` if another node holds it.
pub async fn acquire<K: KvStore>(
    kv: &K,
    shard: u32,
    node: &str,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Option<Lease>, KvError> {
    let changes = update(kv, node, now_ms, ttl_ms, &[shard], &[]).await?;
    Ok(changes.into_iter().next().and_then(|(_, lease)| lease))
}

/// One node's lease changes, in one transaction: takes or renews each shard of `take` (as
/// [`acquire`]) and releases each of `release` that it still holds. A release makes the epoch
/// grow at once, so that the releasing node's late appends are refused even before another
/// node takes the shard, and leaves the lease expired so the next taker need not wait.
///
/// Returns, for each shard of `take`, the lease now held (`None`: another node holds it).
pub async fn update<K: KvStore>(
    kv: &K,
    node: &str,
    now_ms: u64,
    ttl_ms: u64,
    take: &[u32],
    release: &[u32],
) -> Result<Vec<(u32, Option<Lease>)>, KvError> {
    kv.transact(|tx, _| async move {
        let mut out = Vec::with_capacity(take.len());
        for &shard in take {
            let key = keys::shard_lease(shard);
            let current = match tx.get(&key, false).await? {
                Some(b) => Some(decode(&b)?),
                None => None,
            };
            let epoch = match &current {
                Some(l) if l.node == node => l.epoch,
                Some(l) if l.held_by_other(node, now_ms) => {
                    out.push((shard, None));
                    continue;
                }
                Some(l) => l.epoch + 1,
                None => 1,
            };
            let lease = Lease {
                node: node.to_string(),
                epoch,
                expires_at_ms: now_ms + ttl_ms,
            };
            tx.set(&key, &encode(&lease));
            out.push((shard, Some(lease)));
        }
        for &shard in release {
            let key = keys::shard_lease(shard);
            let Some(bytes) = tx.get(&key, false).await? else {
                continue;
            };
            let current = decode(&bytes)?;
            if current.node != node {
                continue;
            }
            let released = Lease {
                node: String::new(),
                epoch: current.epoch + 1,
                expires_at_ms: 0,
            };
            tx.set(&key, &encode(&released));
        }
        Ok(out)
    })
    .await
}

/// Every shard's lease, as one snapshot (no conflicts): what a node routes by.
pub async fn all<K: KvStore>(kv: &K) -> Result<Vec<(u32, Lease)>, KvError> {
    let (begin, end) = keys::leases_range();
    let rows = snapshot_range(kv, &begin, &end, KV_RANGE_ROWS_MAX).await?;
    rows.iter()
        .map(|(k, v)| {
            let shard = keys::shard_of_lease_key(k)
                .ok_or_else(|| KvError::Invalid("corrupt lease key".into()))?;
            Ok((shard, decode(v)?))
        })
        .collect()
}

/// The cluster's shard count: the one stored, or `proposed`, stored now, if the store has none
/// yet. It is fixed at first use because it decides where every worker lives.
pub async fn shard_count<K: KvStore>(kv: &K, proposed: u32) -> Result<u32, KvError> {
    assert!(proposed > 0, "a cluster has at least one shard");
    kv.transact(|tx, _| async move {
        let key = keys::cluster_shards();
        if let Some(bytes) = tx.get(&key, false).await? {
            let count: [u8; 4] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KvError::Invalid("corrupt shard count".into()))?;
            return Ok(u32::from_be_bytes(count));
        }
        tx.set(&key, &proposed.to_be_bytes());
        Ok(proposed)
    })
    .await
}
