//! How a worker's rows are encoded, on every backend: entries under their tuple keys, the
//! metadata record with its version byte, the idempotency index and the in-flight mark.

use crate::layout::keys;
use crate::{Append, SequencedEntry, StorageError, WorkerId, WorkerMetadata, oplog};

/// Version 2 added `snapshot_index`; version 1 records still decode (as having no snapshot).
const METADATA_VERSION: u8 = 2;

#[derive(serde::Deserialize)]
struct WorkerMetadataV1 {
    component_hash: String,
    last_index: u64,
}

/// Key-value pairs to write, already encoded.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

pub(crate) fn encode_metadata(metadata: &WorkerMetadata) -> Vec<u8> {
    postcard::to_extend(metadata, vec![METADATA_VERSION]).expect("metadata always encodes")
}

pub(crate) fn decode_metadata(
    worker: &WorkerId,
    bytes: &[u8],
) -> Result<WorkerMetadata, StorageError> {
    let corrupt = |reason: String| StorageError::Corrupt {
        worker: worker.to_string(),
        seq: 0,
        reason: format!("worker metadata: {reason}"),
    };
    match bytes.split_first() {
        Some((&METADATA_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((1, rest)) => postcard::from_bytes::<WorkerMetadataV1>(rest)
            .map(|v1| WorkerMetadata {
                component_hash: v1.component_hash,
                last_index: v1.last_index,
                snapshot_index: 0,
            })
            .map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown metadata version {v}"))),
        None => Err(corrupt("empty".into())),
    }
}

/// The rows one append writes: each entry under its key, and the metadata.
pub(crate) fn append_rows(append: &Append) -> Result<Rows, StorageError> {
    crate::debug_check_append(append);
    let mut rows = Vec::with_capacity(append.entries.len() + 1);
    for e in &append.entries {
        rows.push((
            keys::oplog_entry(&append.worker, e.seq),
            oplog::encode(&e.entry)?,
        ));
    }
    rows.push((
        keys::worker_metadata(&append.worker),
        encode_metadata(&append.metadata),
    ));
    if let Some((key, seq)) = &append.idempotency {
        rows.push((
            keys::idempotency(&append.worker, key),
            seq.to_le_bytes().to_vec(),
        ));
    }
    if let Some(open) = append.in_flight {
        rows.push((keys::in_flight(&append.worker), vec![u8::from(open)]));
    }
    Ok(rows)
}

pub(crate) fn decode_seq(bytes: &[u8]) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| StorageError::Engine("corrupt idempotency index entry".into()))
}

pub(crate) fn decode_row(
    worker: &WorkerId,
    key: &[u8],
    value: &[u8],
) -> Result<SequencedEntry, StorageError> {
    let seq = keys::seq_of_oplog_key(key).ok_or_else(|| StorageError::Corrupt {
        worker: worker.to_string(),
        seq: 0,
        reason: "malformed oplog key".into(),
    })?;
    let entry = oplog::decode(value).map_err(|e| StorageError::Corrupt {
        worker: worker.to_string(),
        seq,
        reason: e.to_string(),
    })?;
    Ok(SequencedEntry { seq, entry })
}
