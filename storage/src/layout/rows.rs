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

/// What one append writes: its rows (each entry, or the reference to its chunks, under its
/// key; the metadata; the indexes), and the chunks of its large entries. Whoever writes the
/// rows makes the chunks visible: the chunks must be durable first, or in the same commit.
pub(crate) struct AppendRows {
    pub rows: Rows,
    pub chunks: Rows,
}

impl AppendRows {
    pub fn bytes(&self) -> usize {
        self.rows
            .iter()
            .chain(&self.chunks)
            .map(|(k, v)| k.len() + v.len())
            .sum()
    }
}

/// The rows one append writes: each entry under its key, and the metadata.
pub(crate) fn append_rows(append: &Append) -> Result<AppendRows, StorageError> {
    crate::debug_check_append(append);
    let mut rows = Vec::with_capacity(append.entries.len() + 1);
    let mut chunks = Vec::new();
    for e in &append.entries {
        let row = match oplog::store(&e.entry)? {
            oplog::Stored::Inline(bytes) => bytes,
            oplog::Stored::Chunked {
                reference,
                chunks: parts,
            } => {
                chunks.extend(
                    parts
                        .into_iter()
                        .zip(0u32..)
                        .map(|(part, n)| (keys::entry_chunk(&append.worker, e.seq, n), part)),
                );
                reference.encode()
            }
        };
        rows.push((keys::oplog_entry(&append.worker, e.seq), row));
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
    Ok(AppendRows { rows, chunks })
}

pub(crate) fn decode_seq(bytes: &[u8]) -> Result<u64, StorageError> {
    bytes
        .try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| StorageError::Engine("corrupt idempotency index entry".into()))
}

/// An oplog row as read: its entry, or the reference to the chunks that hold it.
pub(crate) enum Row {
    Entry(SequencedEntry),
    Chunked(u64, oplog::ChunkedRef),
}

fn corrupt(worker: &WorkerId, seq: u64, reason: impl ToString) -> StorageError {
    StorageError::Corrupt {
        worker: worker.to_string(),
        seq,
        reason: reason.to_string(),
    }
}

pub(crate) fn decode_row(worker: &WorkerId, key: &[u8], value: &[u8]) -> Result<Row, StorageError> {
    let seq =
        keys::seq_of_oplog_key(key).ok_or_else(|| corrupt(worker, 0, "malformed oplog key"))?;
    if let Some(reference) = oplog::ChunkedRef::of_row(value) {
        return Ok(Row::Chunked(
            seq,
            reference.map_err(|e| corrupt(worker, seq, e))?,
        ));
    }
    let entry = oplog::decode(value).map_err(|e| corrupt(worker, seq, e))?;
    Ok(Row::Entry(SequencedEntry { seq, entry }))
}

/// A chunked entry from the chunk rows read under its key range, in key order.
pub(crate) fn assemble_row(
    worker: &WorkerId,
    seq: u64,
    reference: &oplog::ChunkedRef,
    chunk_rows: Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<SequencedEntry, StorageError> {
    let mut chunks = Vec::with_capacity(chunk_rows.len());
    for ((key, value), n) in chunk_rows.into_iter().zip(0u32..) {
        if key != keys::entry_chunk(worker, seq, n) {
            return Err(corrupt(worker, seq, format!("chunk {n} is missing")));
        }
        chunks.push(value);
    }
    let entry = reference
        .assemble(&chunks)
        .map_err(|e| corrupt(worker, seq, e))?;
    Ok(SequencedEntry { seq, entry })
}

/// The size of an entry as a read page counts it.
pub(crate) fn row_bytes(row: &Row, value: &[u8]) -> usize {
    match row {
        Row::Entry(_) => value.len(),
        Row::Chunked(_, r) => r.bytes as usize,
    }
}
