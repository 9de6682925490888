//! Snapshots: a component exporting `revenant:durable/snapshot` is snapshotted every N
//! invocations; recovery loads the latest snapshot and replays only what follows, with the
//! same state as a full replay; with truncation the history before it is gone.

mod support;

use revenant_runtime::{Runtime, Value, WorkerId, WorkerLimits};
use revenant_storage::memory::MemoryStore;
use revenant_storage::{OplogEntry, OplogStore};
use std::sync::Arc;
use support::runtime;

async fn fill(rt: &Runtime, worker: &WorkerId, n: usize) -> Value {
    for i in 0..n {
        rt.invoke(
            worker.clone(),
            "add-activity",
            vec![Value::String("k".into()), Value::String(format!("d{i}"))],
            None,
        )
        .await
        .unwrap();
    }
    rt.invoke(worker.clone(), "activities", vec![], None)
        .await
        .unwrap()
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_from_a_snapshot_equals_a_full_replay() {
    for truncate in [false, true] {
        let cache = tempfile::tempdir().unwrap();
        let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
        let limits = WorkerLimits {
            snapshot_every: 4,
            truncate_at_snapshot: truncate,
            ..support::limits()
        };
        let worker = WorkerId::new("user-activity", "snap");
        let before = fill(
            &runtime(store.clone(), limits.clone(), cache.path()),
            &worker,
            10,
        )
        .await;

        let metadata = store.metadata(&worker).await.unwrap().unwrap();
        assert!(metadata.snapshot_index > 0, "a snapshot was taken");
        let log = store.read(&worker, 1, 1000).await.unwrap();
        assert!(
            log.iter()
                .any(|e| matches!(e.entry, OplogEntry::Snapshot { .. }))
        );
        if truncate {
            assert!(
                matches!(log[0].entry, OplogEntry::Snapshot { part: 0, .. })
                    && log[0].seq > 1
                    && log[0].seq < metadata.snapshot_index,
                "the history before the previous snapshot is gone: {:?}",
                log[0]
            );
        } else {
            assert_eq!(log[0].seq, 1);
        }

        let after = runtime(store.clone(), limits, cache.path())
            .invoke(worker.clone(), "activities", vec![], None)
            .await
            .unwrap()
            .remove(0);
        assert_eq!(before, after, "truncate: {truncate}");
        let Value::List(items) = after else { panic!() };
        assert_eq!(items.len(), 10);
    }
}

/// A keyed call's result is kept whole until truncation deletes it, one snapshot after the
/// call: a retry before answers the first result, a retry after is recognised and refused
/// (`outcome_truncated`), never run again. The call just before the latest snapshot is still
/// answered: its reply may have been lost in a crash right after the snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_call_whose_outcome_was_truncated_is_refused_not_run_again() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    let limits = WorkerLimits {
        snapshot_every: 4,
        truncate_at_snapshot: true,
        ..support::limits()
    };
    let rt = runtime(store.clone(), limits, cache.path());
    let worker = WorkerId::new("user-activity", "truncated");
    let keyed = |key: &'static str| {
        rt.invoke(
            worker.clone(),
            "add-activity",
            vec![Value::String("k".into()), Value::String(key.into())],
            Some(key.into()),
        )
    };
    assert_eq!(keyed("early").await.unwrap(), vec![Value::U64(1)]);
    assert_eq!(
        keyed("early").await.unwrap(),
        vec![Value::U64(1)],
        "kept whole"
    );
    // Calls 2 to 7, then call 8, after which the second snapshot cuts the log at the first.
    fill(&rt, &worker, 6).await;
    assert_eq!(keyed("late").await.unwrap(), vec![Value::U64(8)]);
    let metadata = store.metadata(&worker).await.unwrap().unwrap();
    let first = store.read(&worker, 1, 1).await.unwrap()[0].seq;
    assert!(
        first > 1 && first < metadata.snapshot_index,
        "cut at the first snapshot"
    );

    let err = keyed("early").await.unwrap_err();
    assert_eq!(err.code(), "outcome_truncated", "{err}");
    assert_eq!(
        keyed("late").await.unwrap(),
        vec![Value::U64(8)],
        "the call before the latest snapshot is answered from the log"
    );
    let count = rt
        .invoke(worker.clone(), "count", vec![], None)
        .await
        .unwrap();
    assert_eq!(count, vec![Value::U64(8)], "no retry ran again");
}

/// A snapshot is not taken sooner than its size is worth: with `snapshot_every: 4`, a state
/// that grows by ~1 KB a call is saved less and less often, and recovery still finds it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_state_is_snapshotted_less_often() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    let limits = WorkerLimits {
        snapshot_every: 4,
        ..support::limits()
    };
    let worker = WorkerId::new("user-activity", "large");
    let detail = "x".repeat(1000);
    let rt = runtime(store.clone(), limits.clone(), cache.path());
    for _ in 0..400 {
        rt.invoke(
            worker.clone(),
            "add-activity",
            vec![Value::String("k".into()), Value::String(detail.clone())],
            None,
        )
        .await
        .unwrap();
    }
    let log = store.read(&worker, 1, 100_000).await.unwrap();
    let snapshots = log
        .iter()
        .filter(|e| matches!(e.entry, OplogEntry::Snapshot { part: 0, .. }))
        .count();
    // Every 4 calls would be 100 snapshots. By size, a snapshot of n KB waits 4n calls for the
    // next: at calls 4, 20 and 100, then not before 500.
    assert!(
        (1..10).contains(&snapshots),
        "{snapshots} snapshots in 400 calls"
    );
    let count = runtime(store.clone(), limits, cache.path())
        .invoke(worker.clone(), "count", vec![], None)
        .await
        .unwrap();
    assert_eq!(count, vec![Value::U64(400)]);
}
