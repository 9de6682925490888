//! Oplog entries and their persisted encoding.
//!
//! An encoded entry is `[format version: u8][crc32 of payload: u32 LE][payload]`, the payload
//! being the entry in postcard's stable wire format. The version byte selects the decoder; the
//! checksum turns silent corruption into a loud error. `docs/oplog-format.md` is the reference.

use crate::limits::ENTRY_BYTES_MAX;
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
