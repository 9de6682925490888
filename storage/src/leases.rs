//! Shard leases, written once over the KV interface. A lease is a node's time-bounded claim on a
//! shard with a fencing epoch that grows by one at every change of holder; oplog appends check
//! the epoch inside their own transaction (see [`crate::Fence`]).
//!
//! Time is passed in (milliseconds since the epoch), never read here.

use crate::keys;
use crate::kv::{KvError, KvStore, Transaction};
use serde::{Deserialize, Serialize};

const LEASE_VERSION: u8 = 1;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub node: String,
    pub epoch: u64,
    pub expires_at_ms: u64,
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
    kv.transact(|tx, _| async move {
        let key = keys::shard_lease(shard);
        let current = match tx.get(&key, false).await? {
            Some(b) => Some(decode(&b)?),
            None => None,
        };
        let epoch = match &current {
            Some(l) if l.node == node => l.epoch,
            Some(l) if l.expires_at_ms > now_ms => return Ok(None),
            Some(l) => l.epoch + 1,
            None => 1,
        };
        let lease = Lease {
            node: node.to_string(),
            epoch,
            expires_at_ms: now_ms + ttl_ms,
        };
        tx.set(&key, &encode(&lease));
        Ok(Some(lease))
    })
    .await
}
