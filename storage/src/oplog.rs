//! Oplog entries and their persisted encoding.
//!
//! An encoded entry is `[format version: u8][crc32 of payload: u32 LE][payload]`, the payload
//! being the entry in postcard's stable wire format. The version byte selects the decoder; the
//! checksum turns silent corruption into a loud error. `docs/oplog-format.md` is the reference.
//!
//! An entry longer than `ENTRY_INLINE_BYTES_MAX` is stored as chunks of its encoding, and its
//! row holds a [`ChunkedRef`] instead: `[2][crc32 of the whole encoding: u32 LE][length: u32
//! LE][chunks: u32 LE]`. Version byte 2 marks such a row; the entry inside is still version 1.

use crate::limits::{ENTRY_BYTES_MAX, ENTRY_CHUNK_BYTES, ENTRY_INLINE_BYTES_MAX};
use crate::{StorageError, Value};
use serde::{Deserialize, Serialize};

/// The format this build writes. Older versions stay decodable forever.
pub const FORMAT_VERSION: u8 = 1;

const HEADER_BYTES: usize = 1 + 4;

/// One step of a worker that cannot be recomputed.
///
/// The variant order is part of the persisted format: append new kinds at the end, never
/// reorder or remove one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OplogEntry {
    /// The worker came into being, running the component with this content hash.
    Create { component_hash: String },
    /// An export was called. Replay calls it again with the same arguments.
    InvocationStarted {
        idempotency_key: String,
        function: String,
        args: Vec<Value>,
    },
    /// A host call made by the invocation in progress, with the result it returned.
    HostCall {
        interface: String,
        function: String,
        request: Value,
        response: Value,
    },
    /// The invocation in progress returned.
    InvocationCompleted {
        idempotency_key: String,
        result: Vec<Value>,
    },
    /// The invocation in progress trapped. Its effects on the worker's state are rolled back:
    /// replay skips it.
    InvocationFailed {
        idempotency_key: String,
        error: String,
    },
    /// Part `part` (of `parts`, numbered from 0) of a snapshot of the worker's state, saved by
    /// its `save-snapshot` export. The parts are consecutive entries written in one append;
    /// recovery loads the latest snapshot and replays only what follows it.
    Snapshot {
        part: u32,
        parts: u32,
        bytes: Vec<u8>,
    },
    /// An operator interrupted the worker: its running invocation (if any) was stopped and
    /// recorded as failed, and it takes no invocation until `Resumed`.
    Interrupted,
    /// An operator resumed an interrupted worker.
    Resumed,
    /// The guest ended itself (`wasi:cli/exit`) with this code: the worker takes no more
    /// invocations. The invocation that exited is recorded as failed before it.
    Exited { code: i32 },
    /// The invocation in progress failed, with the stable code of the failure
    /// (`invocation_timeout`, `memory_limit`, `worker_trap`, ...), so that a retry with its
    /// idempotency key answers with the same code. Written instead of `InvocationFailed`, which
    /// older logs still hold (read as `worker_trap`); replay skips both alike.
    InvocationFailedWithCode {
        idempotency_key: String,
        code: String,
        error: String,
    },
    /// The invocation in progress returned, and it had no idempotency key: nobody can ask for
    /// its result again, so only the result's SHA-256 (over its postcard encoding, as
    /// [`result_digest`] computes it) and length are kept, enough for replay to detect a guest
    /// that now returns something else. A `GET` of a large list costs the log this, not the list.
    InvocationCompletedDigest { sha256: [u8; 32], bytes: u64 },
    /// The settings of the engine that made the entries that follow (NaN canonicalisation,
    /// relaxed SIMD, ...): written after `Create` and after each snapshot, so that a node whose
    /// engine would compute differently refuses to replay the log instead of diverging
    /// silently. Logs older than it were made under wasmtime's defaults and carry none.
    Engine { settings: String },
    /// What the invocation in progress wrote to one of its output streams (`stream`: 1 is
    /// stdout, 2 is stderr), up to the bound on output per invocation; `dropped` bytes past it
    /// were not kept. Written before the invocation's outcome, and never replayed: a replay's
    /// output is discarded, so that a line appears once however often its call is re-run.
    GuestOutput {
        stream: u8,
        bytes: Vec<u8>,
        dropped: u64,
    },
}

/// The SHA-256 and length of a result's postcard encoding, as `InvocationCompletedDigest`
/// records them.
pub fn result_digest(result: &[Value]) -> ([u8; 32], u64) {
    use sha2::Digest;
    let encoded = postcard::to_allocvec(result).expect("values always encode");
    (sha2::Sha256::digest(&encoded).into(), encoded.len() as u64)
}

/// Bytes of a value's encoding in an entry: what it costs the log and what the bounds count.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .expect("values always encode")
}

/// An entry with its position in the worker's oplog.
#[derive(Clone, Debug, PartialEq)]
pub struct SequencedEntry {
    pub seq: u64,
    pub entry: OplogEntry,
}

/// Why bytes did not decode into an entry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("entry is {0} bytes, shorter than its header")]
    Truncated(usize),
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("payload does not decode: {0}")]
    Payload(String),
    /// A chunked entry's chunks are missing, too many, or do not add up to what its row says.
    #[error("chunked entry: {0}")]
    Chunks(String),
}

/// The version byte of a row that points at chunks instead of holding its entry.
pub const CHUNKED_VERSION: u8 = 2;

const CHUNKED_REF_BYTES: usize = 1 + 4 + 4 + 4;

/// What the row of a chunked entry holds: enough to find its chunks and check them whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedRef {
    /// crc32 of the entry's whole encoding (header included), checked after reassembly.
    pub crc: u32,
    /// Length of the whole encoding.
    pub bytes: u32,
    /// Number of chunks, numbered from 0.
    pub chunks: u32,
}

impl ChunkedRef {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNKED_REF_BYTES);
        out.push(CHUNKED_VERSION);
        out.extend_from_slice(&self.crc.to_le_bytes());
        out.extend_from_slice(&self.bytes.to_le_bytes());
        out.extend_from_slice(&self.chunks.to_le_bytes());
        out
    }

    /// The reference a row holds, or `None` if the row holds its entry inline.
    pub fn of_row(row: &[u8]) -> Option<Result<Self, DecodeError>> {
        if row.first() != Some(&CHUNKED_VERSION) {
            return None;
        }
        if row.len() != CHUNKED_REF_BYTES {
            return Some(Err(DecodeError::Chunks(format!(
                "a reference is {CHUNKED_REF_BYTES} bytes, this one {}",
                row.len()
            ))));
        }
        let word = |i: usize| u32::from_le_bytes(row[i..i + 4].try_into().expect("4 bytes"));
        Some(Ok(Self {
            crc: word(1),
            bytes: word(5),
            chunks: word(9),
        }))
    }

    /// The entry, from its chunks in order, checked against this reference.
    pub fn assemble(&self, chunks: &[Vec<u8>]) -> Result<OplogEntry, DecodeError> {
        if chunks.len() != self.chunks as usize {
            return Err(DecodeError::Chunks(format!(
                "{} of {} chunks found",
                chunks.len(),
                self.chunks
            )));
        }
        let whole: Vec<u8> = chunks.concat();
        if whole.len() != self.bytes as usize {
            return Err(DecodeError::Chunks(format!(
                "chunks hold {} bytes, the reference says {}",
                whole.len(),
                self.bytes
            )));
        }
        let computed = crc32fast::hash(&whole);
        if computed != self.crc {
            return Err(DecodeError::Checksum {
                stored: self.crc,
                computed,
            });
        }
        decode(&whole)
    }
}

/// How an encoded entry is stored in its row.
pub enum Stored {
    /// The encoding itself.
    Inline(Vec<u8>),
    /// A reference, and the chunks it points at.
    Chunked {
        reference: ChunkedRef,
        chunks: Vec<Vec<u8>>,
    },
}

/// Encodes `entry` and decides how it is stored: inline up to `ENTRY_INLINE_BYTES_MAX`, in
/// chunks of `ENTRY_CHUNK_BYTES` past it.
pub fn store(entry: &OplogEntry) -> Result<Stored, StorageError> {
    let bytes = encode(entry)?;
    if bytes.len() <= ENTRY_INLINE_BYTES_MAX {
        return Ok(Stored::Inline(bytes));
    }
    let chunks: Vec<Vec<u8>> = bytes
        .chunks(ENTRY_CHUNK_BYTES)
        .map(<[u8]>::to_vec)
        .collect();
    Ok(Stored::Chunked {
        reference: ChunkedRef {
            crc: crc32fast::hash(&bytes),
            // `encode` bounds an entry far below 4 GiB.
            bytes: bytes.len() as u32,
            chunks: chunks.len() as u32,
        },
        chunks,
    })
}

/// Encodes `entry` in the current format, refusing entries over `ENTRY_BYTES_MAX`.
pub fn encode(entry: &OplogEntry) -> Result<Vec<u8>, StorageError> {
    // The header is written first with a zero checksum, filled in once the payload is known.
    let mut out = postcard::to_extend(entry, vec![FORMAT_VERSION, 0, 0, 0, 0])
        .map_err(|e| StorageError::Engine(format!("encoding an oplog entry: {e}")))?;
    if out.len() > ENTRY_BYTES_MAX {
        return Err(StorageError::EntryTooLarge {
            bytes: out.len(),
            limit: ENTRY_BYTES_MAX,
        });
    }
    let crc = crc32fast::hash(&out[HEADER_BYTES..]);
    out[1..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes an entry written in any known format version.
pub fn decode(bytes: &[u8]) -> Result<OplogEntry, DecodeError> {
    if bytes.len() < HEADER_BYTES {
        return Err(DecodeError::Truncated(bytes.len()));
    }
    let version = bytes[0];
    if version == CHUNKED_VERSION {
        return Err(DecodeError::Chunks(
            "the row holds a reference to chunks, not an entry".into(),
        ));
    }
    if version != 1 {
        return Err(DecodeError::UnknownVersion(version));
    }
    let stored = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    let payload = &bytes[HEADER_BYTES..];
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    postcard::from_bytes(payload).map_err(|e| DecodeError::Payload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> OplogEntry {
        OplogEntry::InvocationStarted {
            idempotency_key: "k-1".into(),
            function: "revenant:user-activity/api.add-activity".into(),
            args: vec![Value::String("run".into()), Value::U64(7)],
        }
    }

    #[test]
    fn an_entry_round_trips() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(bytes[0], FORMAT_VERSION);
        assert_eq!(decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn a_flipped_bit_is_reported_not_decoded() {
        let mut bytes = encode(&sample()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        assert!(matches!(decode(&bytes), Err(DecodeError::Checksum { .. })));
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let mut bytes = encode(&sample()).unwrap();
        bytes[0] = 99;
        assert_eq!(decode(&bytes), Err(DecodeError::UnknownVersion(99)));
    }

    #[test]
    fn a_large_entry_is_chunked_and_reassembled_and_a_damaged_chunk_is_caught() {
        let entry = OplogEntry::InvocationCompleted {
            idempotency_key: "k".into(),
            result: vec![Value::String("abc".repeat(100_000))],
        };
        let Stored::Chunked { reference, chunks } = store(&entry).unwrap() else {
            panic!("300 KB is stored in chunks");
        };
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.len() <= ENTRY_CHUNK_BYTES));
        let row = reference.encode();
        assert_eq!(ChunkedRef::of_row(&row), Some(Ok(reference)));
        assert_eq!(reference.assemble(&chunks).unwrap(), entry);
        let mut damaged = chunks.clone();
        damaged[2][7] ^= 1;
        assert!(matches!(
            reference.assemble(&damaged),
            Err(DecodeError::Checksum { .. })
        ));
        assert!(matches!(
            reference.assemble(&chunks[..4]),
            Err(DecodeError::Chunks(_))
        ));
        assert!(ChunkedRef::of_row(&encode(&sample()).unwrap()).is_none());
    }

    #[test]
    fn an_oversized_entry_is_refused_not_truncated() {
        let entry = OplogEntry::InvocationCompleted {
            idempotency_key: "k".into(),
            result: vec![Value::String("x".repeat(ENTRY_BYTES_MAX))],
        };
        assert!(matches!(
            encode(&entry),
            Err(StorageError::EntryTooLarge { .. })
        ));
    }
}
