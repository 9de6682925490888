//! Which shard a worker belongs to. The function decides where every worker of every cluster
//! lives, so it is specified here, byte for byte, and must never change between releases (a
//! golden test pins it):
//!
//! ```text
//! shard(component, name, S) = u64_be(SHA-256(pack((component, name)))[0..8]) mod S
//! ```
//!
//! `pack` is FoundationDB's tuple encoding, as in every storage key, so a component name and a
//! worker name can never run into each other (`("a", "bc")` and `("ab", "c")` differ). SHA-256
//! because its output is fixed by a standard, not by a library version, and spreads any names
//! evenly; it is computed once per routed call, which costs well under a microsecond.

use crate::WorkerId;
use sha2::{Digest, Sha256};

/// The shard of `worker` among `shards` (at least 1).
pub fn shard_of(worker: &WorkerId, shards: u32) -> u32 {
    assert!(shards > 0, "a cluster has at least one shard");
    let key = foundationdb_tuple::pack(&(worker.component.as_str(), worker.name.as_str()));
    let digest = Sha256::digest(&key);
    let head = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (head % u64::from(shards)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: NEVER change them. A different answer here means every existing
    /// cluster's workers would be looked for on the wrong shard.
    #[test]
    fn the_shard_function_is_pinned() {
        let cases = [
            ("user-activity", "user-42", 64, GOLDEN[0]),
            ("user-activity", "user-43", 64, GOLDEN[1]),
            ("user-activity", "user-42", 1024, GOLDEN[2]),
            ("billing", "acct-7", 64, GOLDEN[3]),
            ("a", "bc", 1 << 31, GOLDEN[4]),
            ("ab", "c", 1 << 31, GOLDEN[5]),
            ("user-activity", "", 7, GOLDEN[6]),
        ];
        for (component, name, shards, expected) in cases {
            assert_eq!(
                shard_of(&WorkerId::new(component, name), shards),
                expected,
                "{component}/{name} of {shards}"
            );
        }
    }

    /// Computed independently of this code, from the specification above (Python: `hashlib`
    /// and a hand-written tuple packing of two strings).
    const GOLDEN: [u32; 7] = [19, 39, 211, 59, 1_158_076_323, 664_842_393, 6];

    #[test]
    fn workers_spread_evenly_over_shards() {
        let shards = 16;
        let mut counts = [0u32; 16];
        for n in 0..16_000 {
            counts[shard_of(&WorkerId::new("user-activity", format!("user-{n}")), shards)
                as usize] += 1;
        }
        // 1,000 expected per shard; a uniform hash stays within a few standard deviations (~31).
        assert!(
            counts.iter().all(|c| (850..1_150).contains(c)),
            "{counts:?}"
        );
    }
}
