//! Layers written once over the KV interface for what is not an oplog: content-addressed blobs in
//! chunks (component bytes, API definition documents), their named and versioned records, and
//! the node registry. Each runs unchanged on every backend.

use crate::keys;
use crate::kv::{KvError, KvStore, Transaction, snapshot_range};
use crate::limits::{
    BLOB_BYTES_MAX, BLOB_CHUNK_BYTES, BLOB_CHUNKS_PER_TRANSACTION, KV_RANGE_ROWS_MAX,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

const RECORD_VERSION: u8 = 1;

/// A named, versioned blob: which content it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// SHA-256 of the bytes, hex.
    pub hash: String,
    pub size: u64,
}

/// A node's last heartbeat.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    /// Where peers reach the node's internal listener (`http://host:port`).
    pub address: String,
    pub heartbeat_ms: u64,
    /// The node is shutting down: it takes no shards and hands over those it holds.
    pub leaving: bool,
}

/// What kind of named blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    Component,
    Definition,
}

impl BlobKind {
    fn key(self, name: &str, version: u64) -> Vec<u8> {
        match self {
            Self::Component => keys::component(name, version),
            Self::Definition => keys::definition(name, version),
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Self::Component => "c",
            Self::Definition => "api",
        }
    }
}

fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    postcard::to_extend(record, vec![RECORD_VERSION]).expect("a record always encodes")
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, KvError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| KvError::Invalid(format!("corrupt record: {e}")))
        }
        _ => Err(KvError::Invalid("corrupt record: unknown version".into())),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores `bytes` as `name` at `version`. The chunks go first, in transactions of bounded size,
/// under their content hash (so a retry rewrites the same bytes); the record goes last, so a
/// reader never finds a record whose chunks are missing. A version is written once: storing
/// other bytes under an existing version is refused.
pub async fn put_blob<K: KvStore>(
    kv: &K,
    kind: BlobKind,
    name: &str,
    version: u64,
    bytes: &[u8],
) -> Result<BlobRecord, KvError> {
    if bytes.len() > BLOB_BYTES_MAX {
        return Err(KvError::Invalid(format!(
            "a blob of {} bytes exceeds the limit of {BLOB_BYTES_MAX}",
            bytes.len()
        )));
    }
    let record = BlobRecord {
        hash: sha256_hex(bytes),
        size: bytes.len() as u64,
    };
    let chunks: Arc<Vec<Vec<u8>>> =
        Arc::new(bytes.chunks(BLOB_CHUNK_BYTES).map(<[u8]>::to_vec).collect());
    for first in (0..chunks.len()).step_by(BLOB_CHUNKS_PER_TRANSACTION) {
        let (chunks, hash) = (chunks.clone(), record.hash.clone());
        kv.transact(move |tx, _| {
            let (chunks, hash) = (chunks.clone(), hash.clone());
            async move {
                let last = (first + BLOB_CHUNKS_PER_TRANSACTION).min(chunks.len());
                for (i, chunk) in chunks[first..last].iter().enumerate() {
                    tx.set(&keys::blob_chunk(&hash, (first + i) as u32), chunk);
                }
                Ok(())
            }
        })
        .await?;
    }
    let key = kind.key(name, version);
    let encoded = encode(&record);
    kv.transact(|tx, _| {
        let (key, encoded) = (key.clone(), encoded.clone());
        async move {
            match tx.get(&key, false).await? {
                Some(existing) if existing == encoded => Ok(()),
                Some(_) => Err(KvError::Invalid(format!(
                    "{} `{name}` version {version} already exists with other content",
                    kind.tag()
                ))),
                None => {
                    tx.set(&key, &encoded);
                    Ok(())
                }
            }
        }
    })
    .await?;
    Ok(record)
}

/// Reads `name` at `version`, checking its size and hash. `None` if there is no such version.
pub async fn get_blob<K: KvStore>(
    kv: &K,
    kind: BlobKind,
    name: &str,
    version: u64,
) -> Result<Option<(BlobRecord, Vec<u8>)>, KvError> {
    let key = kind.key(name, version);
    let record = kv
        .transact(|tx, _| {
            let key = key.clone();
            async move { tx.get(&key, true).await }
        })
        .await?;
    let Some(record) = record else {
        return Ok(None);
    };
    let record: BlobRecord = decode(&record)?;
    let (begin, end) = keys::blob_range(&record.hash);
    let mut bytes = Vec::with_capacity(record.size as usize);
    let mut from = begin;
    loop {
        // Pages of chunks, each in its own snapshot transaction: a large blob never holds one
        // transaction open past FoundationDB's 5 s.
        let page = snapshot_range(kv, &from, &end, BLOB_CHUNKS_PER_TRANSACTION).await?;
        let Some((last, _)) = page.last() else { break };
        from = crate::kv::key_after(last);
        for (_, chunk) in page {
            bytes.extend_from_slice(&chunk);
        }
    }
    if bytes.len() as u64 != record.size || sha256_hex(&bytes) != record.hash {
        return Err(KvError::Invalid(format!(
            "{} `{name}` version {version}: stored bytes do not match their record",
            kind.tag()
        )));
    }
    Ok(Some((record, bytes)))
}

/// The versions stored under `name`, ascending.
pub async fn versions<K: KvStore>(kv: &K, kind: BlobKind, name: &str) -> Result<Vec<u64>, KvError> {
    let (begin, end) = keys::versions_range(kind.tag(), name);
    let rows = snapshot_range(kv, &begin, &end, KV_RANGE_ROWS_MAX).await?;
    rows.iter()
        .map(|(k, _)| {
            foundationdb_tuple::unpack::<(String, String, u64)>(k)
                .map(|(_, _, v)| v)
                .map_err(|e| KvError::Invalid(format!("corrupt version key: {e}")))
        })
        .collect()
}

/// Stores `bytes` as the next version of `name` (one after the highest stored) and returns
/// that version. Two writers racing for one version: the loser sees the conflict and takes the
/// next, a bounded number of times.
pub async fn put_next_version<K: KvStore>(
    kv: &K,
    kind: BlobKind,
    name: &str,
    bytes: &[u8],
) -> Result<(u64, BlobRecord), KvError> {
    let mut last = None;
    for _ in 0..VERSION_RACE_RETRIES {
        let version = versions(kv, kind, name).await?.last().map_or(1, |v| v + 1);
        match put_blob(kv, kind, name, version, bytes).await {
            Ok(record) => return Ok((version, record)),
            Err(KvError::Invalid(m)) if m.contains("already exists") => last = Some(m),
            Err(e) => return Err(e),
        }
    }
    Err(KvError::Invalid(last.unwrap_or_default()))
}

/// Writers racing for a version number retry this often before giving up.
const VERSION_RACE_RETRIES: usize = 5;

/// Marks `version` of `name` as the deployed one, or (with `None`) undeploys `name`. A version
/// that is not stored cannot be deployed.
pub async fn set_live<K: KvStore>(
    kv: &K,
    kind: BlobKind,
    name: &str,
    version: Option<u64>,
) -> Result<(), KvError> {
    let live_key = keys::live(kind.tag(), name);
    kv.transact(|tx, _| {
        let live_key = live_key.clone();
        async move {
            match version {
                Some(v) => {
                    if tx.get(&kind.key(name, v), false).await?.is_none() {
                        return Err(KvError::Invalid(format!(
                            "{} `{name}` has no version {v}",
                            kind.tag()
                        )));
                    }
                    tx.set(&live_key, &v.to_be_bytes());
                }
                None => tx.clear(&live_key),
            }
            Ok(())
        }
    })
    .await
}

/// Every deployed `(name, version)` of a kind, by name.
pub async fn live<K: KvStore>(kv: &K, kind: BlobKind) -> Result<Vec<(String, u64)>, KvError> {
    let (begin, end) = keys::live_range(kind.tag());
    let rows = snapshot_range(kv, &begin, &end, KV_RANGE_ROWS_MAX).await?;
    rows.iter()
        .map(|(k, v)| {
            let name = keys::name_of_live_key(k)
                .ok_or_else(|| KvError::Invalid("corrupt live key".into()))?;
            let version: [u8; 8] = v
                .as_slice()
                .try_into()
                .map_err(|_| KvError::Invalid(format!("corrupt live version of `{name}`")))?;
            Ok((name, u64::from_be_bytes(version)))
        })
        .collect()
}

/// Records a node's heartbeat: alive at `record.address` at `record.heartbeat_ms`.
pub async fn heartbeat<K: KvStore>(kv: &K, record: &NodeRecord) -> Result<(), KvError> {
    let key = keys::node(&record.node);
    let record = encode(record);
    kv.transact(|tx, _| {
        let (key, record) = (key.clone(), record.clone());
        async move {
            tx.set(&key, &record);
            Ok(())
        }
    })
    .await
}

/// Nodes whose last heartbeat is no older than `ttl_ms` at `now_ms`.
pub async fn live_nodes<K: KvStore>(
    kv: &K,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Vec<NodeRecord>, KvError> {
    let mut live = nodes(kv).await?;
    live.retain(|n| n.heartbeat_ms + ttl_ms >= now_ms);
    Ok(live)
}

/// Every node that ever heartbeat, in id order, with its last heartbeat.
pub async fn nodes<K: KvStore>(kv: &K) -> Result<Vec<NodeRecord>, KvError> {
    let (begin, end) = keys::nodes_range();
    let rows = snapshot_range(kv, &begin, &end, KV_RANGE_ROWS_MAX).await?;
    rows.iter().map(|(_, v)| decode(v)).collect()
}
