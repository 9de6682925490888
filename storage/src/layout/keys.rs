//! The key layout, encoded with FoundationDB's tuple layer on every backend so that ordering is
//! byte-identical whichever store holds the data (see `docs/storage.md`).
//!
//! ```text
//! ("w", component, worker)        -> worker metadata
//! ("l", component, worker, seq)   -> oplog entry `seq` (tuple integers sort numerically), or
//!                                    a reference to its chunks when it is large
//! ("lc", component, worker, seq, n) -> chunk `n` of large entry `seq`
//! ("i", component, worker, key)   -> seq of the entry that ended the invocation with that
//!                                    idempotency key
//! ("f", component, worker)        -> [1] while the worker has an invocation in flight past a
//!                                    durable side effect, [0] after (recovered at start-up)
//! ("s", shard)                    -> shard lease {node, epoch, expires}
//! ("c", component, version)       -> component record {hash, size}
//! ("api", definition, version)    -> API definition record {hash, size}
//! ("cb", hash, chunk)             -> bytes of a blob (component or definition), chunks < 100 KB
//! ("n", node)                     -> node heartbeat {address, heartbeat_ms}
//! ("live", kind, name)            -> the version of component (kind "c") or definition ("api")
//!                                    `name` that is deployed; absent when none is
//! ("cl", "shards")                -> the cluster's shard count, u32 big-endian, fixed at first use
//! ```

use super::Family;
use crate::WorkerId;
use foundationdb_tuple::{pack, unpack};

const WORKER: &str = Family::Worker.tag();
const OPLOG: &str = Family::Oplog.tag();
const CHUNK: &str = Family::EntryChunk.tag();
const LEASE: &str = Family::Lease.tag();
const IDEMPOTENCY: &str = Family::Idempotency.tag();
const IN_FLIGHT: &str = Family::InFlight.tag();

/// Marks a worker whose log holds an invocation that has not ended: `[1]` while open, `[0]`.
pub fn in_flight(worker: &WorkerId) -> Vec<u8> {
    pack(&(IN_FLIGHT, worker.component.as_str(), worker.name.as_str()))
}

pub fn in_flight_range() -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(IN_FLIGHT,));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn worker_of_in_flight_key(key: &[u8]) -> Option<WorkerId> {
    let (_, component, name): (String, String, String) = unpack(key).ok()?;
    Some(WorkerId { component, name })
}

pub fn idempotency(worker: &WorkerId, key: &str) -> Vec<u8> {
    pack(&(
        IDEMPOTENCY,
        worker.component.as_str(),
        worker.name.as_str(),
        key,
    ))
}

const COMPONENT: &str = Family::Component.tag();
const DEFINITION: &str = Family::Definition.tag();
const BLOB: &str = Family::Blob.tag();
const NODE: &str = Family::Node.tag();

pub fn component(name: &str, version: u64) -> Vec<u8> {
    pack(&(COMPONENT, name, version))
}

pub fn definition(name: &str, version: u64) -> Vec<u8> {
    pack(&(DEFINITION, name, version))
}

/// The range of every version of a component (`kind` "c") or definition ("api") `name`.
pub fn versions_range(kind: &str, name: &str) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(kind, name));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

const LIVE: &str = Family::Live.tag();

pub fn live(kind: &str, name: &str) -> Vec<u8> {
    pack(&(LIVE, kind, name))
}

pub fn live_range(kind: &str) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(LIVE, kind));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn name_of_live_key(key: &[u8]) -> Option<String> {
    let (_, _, name): (String, String, String) = unpack(key).ok()?;
    Some(name)
}

pub fn blob_chunk(hash: &str, chunk: u32) -> Vec<u8> {
    pack(&(BLOB, hash, chunk))
}

pub fn blob_range(hash: &str) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(BLOB, hash));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn node(node: &str) -> Vec<u8> {
    pack(&(NODE, node))
}

pub fn nodes_range() -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(NODE,));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn shard_lease(shard: u32) -> Vec<u8> {
    pack(&(LEASE, shard))
}

pub fn leases_range() -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(LEASE,));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn shard_of_lease_key(key: &[u8]) -> Option<u32> {
    let (_, shard): (String, u32) = unpack(key).ok()?;
    Some(shard)
}

/// The cluster's shard count.
pub fn cluster_shards() -> Vec<u8> {
    pack(&(super::Family::Cluster.tag(), "shards"))
}

pub fn worker_metadata(worker: &WorkerId) -> Vec<u8> {
    pack(&(WORKER, worker.component.as_str(), worker.name.as_str()))
}

/// The metadata keys of `component`'s workers named after `after` (or all).
pub fn workers_range(component: &str, after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let prefix = pack(&(WORKER, component));
    let begin = match after {
        Some(name) => {
            let mut k = pack(&(WORKER, component, name));
            k.push(0);
            k
        }
        None => prefix.clone(),
    };
    let mut end = prefix;
    end.push(0xff);
    (begin, end)
}

pub fn worker_of_metadata_key(key: &[u8]) -> Option<WorkerId> {
    let (_, component, name): (String, String, String) = unpack(key).ok()?;
    Some(WorkerId { component, name })
}

/// Every key of one worker's family `tag` ("l" oplog, "i" idempotency index).
pub fn worker_family_range(tag: &str, worker: &WorkerId) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(tag, worker.component.as_str(), worker.name.as_str()));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

pub fn oplog_entry(worker: &WorkerId, seq: u64) -> Vec<u8> {
    pack(&(OPLOG, worker.component.as_str(), worker.name.as_str(), seq))
}

/// The half-open key range holding `worker`'s entries with sequence numbers `>= from`.
pub fn oplog_range_from(worker: &WorkerId, from: u64) -> (Vec<u8>, Vec<u8>) {
    let start = oplog_entry(worker, from);
    // Every entry key of this worker is the packed prefix followed by an integer element, whose
    // type codes are all below 0xff: the prefix plus 0xff bounds them all (the tuple layer's
    // own `Subspace::range` uses the same end).
    let mut end = pack(&(OPLOG, worker.component.as_str(), worker.name.as_str()));
    end.push(0xff);
    (start, end)
}

pub fn entry_chunk(worker: &WorkerId, seq: u64, chunk: u32) -> Vec<u8> {
    pack(&(
        CHUNK,
        worker.component.as_str(),
        worker.name.as_str(),
        seq,
        chunk,
    ))
}

/// Every chunk of large entry `seq`.
pub fn entry_chunks(worker: &WorkerId, seq: u64) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(CHUNK, worker.component.as_str(), worker.name.as_str(), seq));
    let mut end = begin.clone();
    end.push(0xff);
    (begin, end)
}

/// The chunks of `worker`'s entries with sequence numbers `>= from`.
pub fn chunks_from(worker: &WorkerId, from: u64) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(CHUNK, worker.component.as_str(), worker.name.as_str(), from));
    let mut end = pack(&(CHUNK, worker.component.as_str(), worker.name.as_str()));
    end.push(0xff);
    (begin, end)
}

/// The chunks of `worker`'s entries with sequence numbers `< before`.
pub fn chunks_before(worker: &WorkerId, before: u64) -> (Vec<u8>, Vec<u8>) {
    let begin = pack(&(CHUNK, worker.component.as_str(), worker.name.as_str()));
    let end = pack(&(
        CHUNK,
        worker.component.as_str(),
        worker.name.as_str(),
        before,
    ));
    (begin, end)
}

/// What an append's checks read of a worker's log: its metadata ("w") and its entries ("l").
/// `touched_logs` says which workers' a write to `[begin, end)` (a point: `end` is `None`) may
/// change: `Some(workers)` (none, or one), or `None` when it may change many.
pub fn touched_logs(begin: &[u8], end: Option<&[u8]>) -> Option<Vec<WorkerId>> {
    let mut touched = Vec::new();
    for family in [WORKER, OPLOG] {
        let from = pack(&(family,));
        let mut to = from.clone();
        to.push(0xff);
        let reaches = match end {
            Some(end) => begin < to.as_slice() && from.as_slice() < end,
            None => begin.starts_with(&from),
        };
        if !reaches {
            continue;
        }
        // Within one worker's keys of the family, or possibly many.
        let elements: Vec<foundationdb_tuple::Element> = unpack(begin).ok()?;
        let (Some(component), Some(name)) = (
            elements.get(1).and_then(|e| e.as_str()),
            elements.get(2).and_then(|e| e.as_str()),
        ) else {
            return None;
        };
        let worker = WorkerId::new(component, name);
        if let Some(end) = end {
            let (_, last) = worker_family_range(family, &worker);
            if end > last.as_slice() {
                return None;
            }
        }
        touched.push(worker);
    }
    Some(touched)
}

/// The sequence number in an oplog key, or `None` if the key is not one.
pub fn seq_of_oplog_key(key: &[u8]) -> Option<u64> {
    let (tag, _component, _worker, seq): (String, String, String, u64) = unpack(key).ok()?;
    (tag == OPLOG).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_name_the_logs_they_may_change() {
        let w = WorkerId::new("c", "w");
        let one = Some(vec![w.clone()]);
        assert_eq!(touched_logs(&worker_metadata(&w), None), one);
        assert_eq!(touched_logs(&oplog_entry(&w, 7), None), one);
        let (b, e) = oplog_range_from(&w, 3);
        assert_eq!(touched_logs(&b, Some(&e)), one);
        let (b, e) = worker_family_range(OPLOG, &w);
        assert_eq!(touched_logs(&b, Some(&e)), one);
        // Other families change no log.
        assert_eq!(touched_logs(&idempotency(&w, "k"), None), Some(vec![]));
        let (b, e) = chunks_before(&w, 9);
        assert_eq!(touched_logs(&b, Some(&e)), Some(vec![]));
        assert_eq!(touched_logs(&shard_lease(3), None), Some(vec![]));
        // A range over several workers' logs: any of them.
        let (b, e) = workers_range("c", None);
        assert_eq!(touched_logs(&b, Some(&e)), None);
        assert_eq!(touched_logs(b"", Some(&[0xff])), None);
    }

    #[test]
    fn oplog_keys_sort_by_sequence_number_across_encoding_lengths() {
        let w = WorkerId::new("c", "w");
        let seqs = [
            1u64,
            2,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64 + 1,
            u64::MAX,
        ];
        for pair in seqs.windows(2) {
            assert!(oplog_entry(&w, pair[0]) < oplog_entry(&w, pair[1]));
        }
        let (start, end) = oplog_range_from(&w, 1);
        for s in seqs {
            let k = oplog_entry(&w, s);
            assert!(start <= k && k < end);
            assert_eq!(seq_of_oplog_key(&k), Some(s));
        }
    }

    #[test]
    fn chunk_ranges_split_a_workers_chunks_at_an_entry() {
        let w = WorkerId::new("c", "w");
        let (from_b, from_e) = chunks_from(&w, 256);
        let (before_b, before_e) = chunks_before(&w, 256);
        let (one_b, one_e) = entry_chunks(&w, 255);
        for (seq, chunk) in [(1u64, 0u32), (255, 0), (255, 300), (256, 0), (70_000, 9)] {
            let k = entry_chunk(&w, seq, chunk);
            assert_eq!(from_b <= k && k < from_e, seq >= 256, "{seq}/{chunk}");
            assert_eq!(before_b <= k && k < before_e, seq < 256, "{seq}/{chunk}");
            assert_eq!(one_b <= k && k < one_e, seq == 255, "{seq}/{chunk}");
        }
        let other = entry_chunk(&WorkerId::new("c", "w2"), 300, 0);
        assert!(!(from_b <= other && other < from_e));
    }

    #[test]
    fn one_workers_range_excludes_a_worker_whose_name_extends_it() {
        let a = WorkerId::new("c", "user-1");
        let b = WorkerId::new("c", "user-10");
        let (start, end) = oplog_range_from(&a, 0);
        let k = oplog_entry(&b, 1);
        assert!(!(start <= k && k < end));
    }
}
