//! Workers leave memory when idle or when the cap on workers in memory is reached, and come back
//! with their state on their next call.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment, Value, WorkerId, WorkerLimits};
use revenant_storage::OplogStore;
use revenant_storage::memory::MemoryStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn runtime(limits: WorkerLimits, cache: &std::path::Path) -> Arc<Runtime> {
    let component = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        component.exists(),
        "build the example component first (scripts/test.sh)"
    );
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    Runtime::new(
        RuntimeConfig {
            components: vec![("user-activity".into(), component)],
            cache_dir: cache.to_path_buf(),
            limits,
            outgoing_http: Default::default(),
        },
        store,
        Arc::new(SystemEnvironment::new()),
    )
    .unwrap()
}

async fn add(rt: &Runtime, user: &str, n: usize) -> Value {
    rt.invoke(
        WorkerId::new("user-activity", user),
        "add-activity",
        vec![Value::String("k".into()), Value::String(format!("{n}"))],
        Some(format!("{user}-{n}")),
    )
    .await
    .unwrap()
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_on_workers_in_memory_holds_and_evicted_workers_keep_their_state() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(
        WorkerLimits {
            active_workers_max: 2,
            ..support::limits()
        },
        cache.path(),
    );
    for round in 1..=3 {
        for user in ["a", "b", "c", "d", "e"] {
            assert_eq!(
                add(&rt, user, round).await,
                Value::U64(round as u64),
                "{user} round {round}"
            );
            assert!(
                rt.active_workers() <= 2,
                "{} workers in memory",
                rt.active_workers()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_leaves_memory_and_comes_back_with_its_state() {
    let cache = tempfile::tempdir().unwrap();
    let limits = WorkerLimits {
        idle_timeout: Duration::from_millis(50),
        ..support::limits()
    };
    let rt = runtime(limits, cache.path());
    assert_eq!(add(&rt, "idle", 1).await, Value::U64(1));
    assert_eq!(rt.active_workers(), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.active_workers() > 0 {
        assert!(Instant::now() < deadline, "the idle worker never left");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(add(&rt, "idle", 2).await, Value::U64(2));
}
