//! `recovery-bench`: what recovery costs.
//!
//! 1. A worker with 10,000 invocations of history, restarted: time to its first answer, with
//!    snapshots off (full replay) and on (every 1,000 invocations: load + replay the rest).
//! 2. 10,000 workers touched once with the cap on workers in memory at 1,000: resident memory
//!    and how many stay in memory.
//!
//! `cargo run --release -p revenant-bench --bin recovery-bench -- [--history 10000] [--workers 10000]`

// A benchmark measures real time (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use clap::Parser;
use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment, Value, WorkerId, WorkerLimits};
use revenant_storage::OplogStore;
use revenant_storage::embedded::EmbeddedStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    history: u64,
    #[arg(long, default_value_t = 10_000)]
    workers: u64,
    #[arg(long, default_value_t = 1_000)]
    cap: usize,
}

fn component() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        path.exists(),
        "build the example component first (bench/recovery.sh does)"
    );
    path
}

fn start(dir: &Path, limits: WorkerLimits) -> Arc<Runtime> {
    let store: Arc<dyn OplogStore> =
        Arc::new(EmbeddedStore::open(&dir.join("store")).expect("store opens"));
    Runtime::new(
        RuntimeConfig {
            components: vec![("user-activity".into(), component())],
            cache_dir: dir.join("cache"),
            limits,
            outgoing_http: Default::default(),
        },
        store,
        Arc::new(SystemEnvironment::new()),
    )
    .expect("runtime starts")
}

fn add(n: u64) -> Vec<Value> {
    vec![
        Value::String("bench".into()),
        Value::String(format!("call {n}")),
    ]
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

async fn time_to_first_answer(history: u64, snapshot_every: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let limits = WorkerLimits {
        snapshot_every,
        ..Default::default()
    };
    let worker = WorkerId::new("user-activity", "history");
    let build = Instant::now();
    {
        let rt = start(dir.path(), limits.clone());
        // Concurrent callers keep several invocations in each group commit.
        let mut done = 0;
        while done < history {
            let batch = 64.min(history - done);
            let calls: Vec<_> = (done..done + batch)
                .map(|n| {
                    let (rt, worker) = (rt.clone(), worker.clone());
                    tokio::spawn(
                        async move { rt.invoke(worker, "add-activity", add(n), None).await },
                    )
                })
                .collect();
            for c in calls {
                c.await.expect("task").expect("invocation");
            }
            done += batch;
        }
        rt.shutdown().await;
    }
    let build_s = build.elapsed().as_secs_f64();
    let rt = start(dir.path(), limits);
    let started = Instant::now();
    let count = rt
        .invoke(worker, "count", vec![], None)
        .await
        .expect("count");
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(count, vec![Value::U64(history)]);
    rt.shutdown().await;
    (ms, build_s)
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Warm the compiled-component cache's code paths once, outside the measurements.
    let _ = time_to_first_answer(10, 0).await;
    println!(
        "| worker with {} invocations of history | time to first answer after restart |",
        args.history
    );
    println!("|---|---|");
    let (full, _) = time_to_first_answer(args.history, 0).await;
    println!("| snapshots off (full replay) | {full:.1} ms |");
    let (snap, _) = time_to_first_answer(args.history, 1_000).await;
    println!("| snapshot every 1,000 invocations | {snap:.1} ms |");

    let dir = tempfile::tempdir().expect("temporary folder");
    let limits = WorkerLimits {
        active_workers_max: args.cap,
        ..Default::default()
    };
    let rt = start(dir.path(), limits);
    let before = rss_mib();
    let started = Instant::now();
    let mut n = 0;
    while n < args.workers {
        let batch = 100.min(args.workers - n);
        let calls: Vec<_> = (n..n + batch)
            .map(|w| {
                let rt = rt.clone();
                tokio::spawn(async move {
                    rt.invoke(
                        WorkerId::new("user-activity", format!("w{w}")),
                        "add-activity",
                        add(w),
                        None,
                    )
                    .await
                })
            })
            .collect();
        for c in calls {
            c.await.expect("task").expect("invocation");
        }
        n += batch;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!();
    println!(
        "| {} workers touched once, cap {} in memory | |",
        args.workers, args.cap
    );
    println!("|---|---|");
    println!("| workers in memory after | {} |", rt.active_workers());
    println!(
        "| resident memory before / after | {before:.0} MiB / {:.0} MiB |",
        rss_mib()
    );
    println!(
        "| time to touch them all | {elapsed:.1} s ({:.0} workers/s) |",
        args.workers as f64 / elapsed
    );
}
