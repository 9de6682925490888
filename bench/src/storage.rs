//! `storage-bench`: the embedded store's durable append rate and latency with 1, 64 and 1,024
//! concurrent writers (each a worker appending one entry at a time and waiting until it is
//! durable), and replay read throughput of one worker's log of 10,000 and 100,000 entries.
//!
//! `cargo run --release -p revenant-bench --bin storage-bench -- [--seconds 5] [--dir PATH]`

// A benchmark measures real time (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use clap::Parser;
use hdrhistogram::Histogram;
use revenant_storage::embedded::EmbeddedStore;
use revenant_storage::{
    Append, OplogEntry, OplogStore, SequencedEntry, Value, WorkerId, WorkerMetadata,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Seconds measured per writer count.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where to put the stores (default: a temporary folder on the same disk as /tmp).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// About the size of an `add-activity` invocation's entries.
fn entry(seq: u64) -> OplogEntry {
    OplogEntry::InvocationStarted {
        idempotency_key: format!("gen-{seq:032x}"),
        function: "revenant:user-activity/api.add-activity".into(),
        args: vec![
            Value::String("bench".into()),
            Value::String(format!("call {seq}")),
        ],
    }
}

fn append(worker: &WorkerId, seq: u64) -> Append {
    Append {
        worker: worker.clone(),
        fence: None,
        entries: vec![SequencedEntry {
            seq,
            entry: entry(seq),
        }],
        metadata: WorkerMetadata {
            component_hash: "bench".into(),
            last_index: seq,
            snapshot_index: 0,
        },
        idempotency: None,
        in_flight: None,
    }
}

async fn appends(dir: &std::path::Path, writers: u64, seconds: u64) -> (f64, Histogram<u64>, f64) {
    let store = Arc::new(EmbeddedStore::open(dir).expect("store opens"));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let worker = WorkerId::new("bench", format!("w{w}"));
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let mut seq = 0;
            while Instant::now() < end {
                seq += 1;
                let start = Instant::now();
                store.append(append(&worker, seq)).await.expect("append");
                let _ = histogram.record(start.elapsed().as_micros().max(1) as u64);
            }
            histogram
        }));
    }
    let started = Instant::now();
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for t in tasks {
        total.add(t.await.unwrap()).unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let commits = store.stats().commits.load(Ordering::Relaxed) as f64;
    let per_commit = total.len() as f64 / commits.max(1.0);
    (total.len() as f64 / elapsed, total, per_commit)
}

async fn replay(dir: &std::path::Path, entries: u64) -> (f64, f64) {
    let worker = WorkerId::new("bench", format!("replay-{entries}"));
    {
        let store = EmbeddedStore::open(dir).expect("store opens");
        let mut seq = 0;
        while seq < entries {
            let n = 100.min(entries - seq);
            store
                .append(Append {
                    worker: worker.clone(),
                    fence: None,
                    entries: (seq + 1..=seq + n)
                        .map(|s| SequencedEntry {
                            seq: s,
                            entry: entry(s),
                        })
                        .collect(),
                    metadata: WorkerMetadata {
                        component_hash: "bench".into(),
                        last_index: seq + n,
                        snapshot_index: 0,
                    },
                    idempotency: None,
                    in_flight: None,
                })
                .await
                .expect("append");
            seq += n;
        }
    }
    // Reopened: nothing of the log is in the store's own caches.
    let store = EmbeddedStore::open(dir).expect("store opens");
    let start = Instant::now();
    let mut read = 0u64;
    let mut from = 1;
    loop {
        let page = store.read(&worker, from, 1_000).await.expect("read");
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        read += page.len() as u64;
    }
    assert_eq!(read, entries);
    let elapsed = start.elapsed().as_secs_f64();
    (elapsed * 1000.0, entries as f64 / elapsed)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let base = match &args.dir {
        Some(d) => tempfile::tempdir_in(d).expect("temporary folder"),
        None => tempfile::tempdir().expect("temporary folder"),
    };
    println!("| writers | appends/s | p50 ms | p99 ms | appends per sync |");
    println!("|---|---|---|---|---|");
    for writers in [1u64, 64, 1024] {
        let dir = base.path().join(format!("appends-{writers}"));
        let (rate, h, per_commit) = appends(&dir, writers, args.seconds).await;
        println!(
            "| {writers} | {rate:.0} | {:.2} | {:.2} | {per_commit:.1} |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    println!();
    println!("| replay of one worker | read ms | entries/s |");
    println!("|---|---|---|");
    for entries in [10_000u64, 100_000] {
        let dir = base.path().join(format!("replay-{entries}"));
        let (ms, rate) = replay(&dir, entries).await;
        println!("| {entries} entries | {ms:.1} | {rate:.0} |");
    }
}
