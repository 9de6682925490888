//! Read-only calls: they see every call made before them, write nothing to the store (no
//! append, no commit, no sync: the embedded store's own counters say so), are not replayed,
//! and `check_read_only` catches an export that is declared read-only but changes the state.

mod support;

use revenant_runtime::{InvokeError, Runtime, Value, WorkerId, WorkerLimits};
use revenant_storage::embedded::EmbeddedStore;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn runtime(store: Arc<EmbeddedStore>, limits: WorkerLimits, cache: &Path) -> Arc<Runtime> {
    support::runtime(store, limits, cache)
}

fn written(store: &EmbeddedStore) -> (u64, u64, u64) {
    let s = store.stats();
    (
        s.appends.load(Ordering::SeqCst),
        s.commits.load(Ordering::SeqCst),
        s.transactions.load(Ordering::SeqCst),
    )
}

async fn add(rt: &Runtime, worker: &WorkerId, detail: &str) -> Value {
    rt.invoke(
        worker.clone(),
        "add-activity",
        vec![Value::String("k".into()), Value::String(detail.into())],
        None,
    )
    .await
    .unwrap()
    .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_reads_write_nothing_and_see_every_earlier_call() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store")).unwrap());
    let rt = runtime(store.clone(), support::limits(), dir.path());
    let worker = WorkerId::new("user-activity", "reader");
    for i in 0..3 {
        add(&rt, &worker, &format!("d{i}")).await;
    }
    let before = written(&store);
    for _ in 0..1_000 {
        let count = rt.read(worker.clone(), "count", vec![]).await.unwrap();
        assert_eq!(count, vec![Value::U64(3)]);
    }
    let listed = rt.read(worker.clone(), "activities", vec![]).await.unwrap();
    assert!(
        matches!(&listed[..], [Value::List(items)] if items.len() == 3),
        "{listed:?}"
    );
    assert_eq!(
        written(&store),
        before,
        "reads append, commit and sync nothing"
    );

    // A read queued behind a write sees it (read-your-writes), whichever comes first.
    let (w, r) = tokio::join!(add(&rt, &worker, "d3"), async {
        tokio::task::yield_now().await;
        rt.read(worker.clone(), "count", vec![]).await.unwrap()
    });
    assert_eq!(w, Value::U64(4));
    assert!(matches!(r[..], [Value::U64(3 | 4)]), "{r:?}");
    assert_eq!(
        rt.read(worker.clone(), "count", vec![]).await.unwrap(),
        vec![Value::U64(4)]
    );

    // Nothing of the reads is replayed: a fresh runtime on the same store has the 4 activities.
    drop(rt);
    let rt = runtime(store.clone(), support::limits(), dir.path());
    assert_eq!(
        rt.read(worker.clone(), "count", vec![]).await.unwrap(),
        vec![Value::U64(4)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_export_that_changes_the_state_is_caught_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("store")).unwrap());
    let checked = WorkerLimits {
        check_read_only: true,
        ..support::limits()
    };
    let rt = runtime(store.clone(), checked, dir.path());
    let worker = WorkerId::new("user-activity", "liar");
    add(&rt, &worker, "real").await;
    let before = written(&store);
    // `add-activity` called as a read: it changes the list, which the check sees.
    let e = rt
        .read(
            worker.clone(),
            "add-activity",
            vec![Value::String("k".into()), Value::String("sneaky".into())],
        )
        .await
        .unwrap_err();
    assert!(matches!(e, InvokeError::ReadOnlyViolation(_)), "{e}");
    assert_eq!(e.code(), "read_only_violation");
    // The change never reached the log, and the instance that held it was dropped.
    assert_eq!(written(&store), before);
    assert_eq!(
        rt.read(worker.clone(), "count", vec![]).await.unwrap(),
        vec![Value::U64(1)]
    );
}
