//! Each fuzz target on stable, in every `cargo test`: over its committed seeds (which include
//! the input of every crash found, as its regression test), then over random mutations of
//! them. Coverage-guided runs are `scripts/fuzz.sh`'s (nightly, libFuzzer); this keeps each
//! target exercised in CI without the 9 minutes its instrumented build takes here.
//!
//! `REVENANT_FUZZ_SEED` repeats a run (each run prints its seed); `REVENANT_FUZZ_MUTATIONS`
//! sets the number of mutated inputs per target (2,000 by default).

// Tests read their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "{} has seeds", dir.display());
    seeds.sort();
    seeds
}

/// One random change to `input`, in the ways libFuzzer's mutators make most.
fn mutate(rng: &mut fastrand::Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..rng.usize(1..=4) {
        let at = rng.usize(..=out.len());
        match rng.u8(..6) {
            0 if !out.is_empty() => {
                let i = rng.usize(..out.len());
                out[i] ^= 1 << rng.u8(..8);
            }
            1 => out.insert(at, rng.u8(..)),
            2 if at < out.len() => {
                let end = rng.usize(at..=out.len().min(at + 16));
                out.drain(at..end);
            }
            3 if at < out.len() => {
                let end = rng.usize(at..=out.len());
                let copy = out[at..end].to_vec();
                out.splice(at..at, copy);
            }
            4 if !other.is_empty() => {
                let from = rng.usize(..other.len());
                let end = rng.usize(from..=other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => {
                let interesting = [0u8, 0x7f, 0x80, 0xff, b'{', b'[', b'"', b'%', b'/', b'\n'];
                out.insert(at, interesting[rng.usize(..interesting.len())]);
            }
        }
    }
    out
}

fn smoke(target: &str, run: fn(&[u8])) {
    let seeds = seeds(target);
    for s in &seeds {
        run(s);
    }
    let seed = std::env::var("REVENANT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mutations: usize = std::env::var("REVENANT_FUZZ_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000);
    eprintln!("{target}: REVENANT_FUZZ_SEED={seed}, {mutations} mutations");
    let mut rng = fastrand::Rng::with_seed(seed);
    for _ in 0..mutations {
        let input = &seeds[rng.usize(..seeds.len())];
        let other = &seeds[rng.usize(..seeds.len())];
        run(&mutate(&mut rng, input, other));
    }
}

#[test]
fn routes_yaml() {
    smoke("routes_yaml", revenant_fuzz::routes_yaml);
}

#[test]
fn paths() {
    smoke("paths", revenant_fuzz::paths);
}

#[test]
fn json_to_wit() {
    smoke("json_to_wit", revenant_fuzz::json_to_wit);
}

#[test]
fn jwt() {
    // The target's check is not empty: the seeds signed with the secret pass (with and without
    // a key id), every other seed is refused.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus/jwt");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let accepted = revenant_fuzz::jwt_claims(&std::fs::read(&path).unwrap()).is_some();
        let signed = path.ends_with("valid") || path.ends_with("no-kid");
        assert_eq!(accepted, signed, "{}", path.display());
    }
    smoke("jwt", revenant_fuzz::jwt);
}

#[test]
fn oplog_entry() {
    smoke("oplog_entry", revenant_fuzz::oplog_entry);
}

/// Every target has its seeds and its libFuzzer binary.
#[test]
fn every_target_is_wired() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("libfuzzer/Cargo.toml")).unwrap();
    for target in ["routes_yaml", "paths", "json_to_wit", "jwt", "oplog_entry"] {
        assert!(!seeds(target).is_empty());
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "{target}"
        );
        assert!(
            root.join(format!("libfuzzer/fuzz_targets/{target}.rs"))
                .exists()
        );
    }
}
