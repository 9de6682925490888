//! Time travel and fork: the state at an index of a worker's log is what the worker returned
//! after the invocation completed there, read from a scratch instance that changes nothing;
//! a fork at that index continues from that state on its own.

mod support;

use revenant_runtime::{InvokeError, Runtime, Value, WorkerId, WorkerLimits};
use revenant_storage::memory::MemoryStore;
use revenant_storage::{OplogEntry, OplogStore, SequencedEntry};
use std::sync::Arc;
use support::runtime;

async fn add(rt: &Runtime, worker: &WorkerId, detail: &str) -> u64 {
    match rt
        .invoke(
            worker.clone(),
            "add-activity",
            vec![Value::String("run".into()), Value::String(detail.into())],
            None,
        )
        .await
        .unwrap()[..]
    {
        [Value::U64(n)] => n,
        ref other => panic!("add-activity returned {other:?}"),
    }
}

async fn count_at(rt: &Runtime, worker: &WorkerId, at: u64) -> Result<u64, InvokeError> {
    match rt.state_at(worker, at, "count", vec![]).await?[..] {
        [Value::U64(n)] => Ok(n),
        ref other => panic!("count returned {other:?}"),
    }
}

async fn whole_log(store: &dyn OplogStore, worker: &WorkerId) -> Vec<SequencedEntry> {
    store.read(worker, 1, 100_000).await.unwrap()
}

/// The index of each completed invocation's outcome, in order: `[k - 1]` is the k-th's.
fn completions(log: &[SequencedEntry]) -> Vec<u64> {
    log.iter()
        .filter(|e| {
            matches!(
                e.entry,
                OplogEntry::InvocationCompleted { .. }
                    | OplogEntry::InvocationCompletedDigest { .. }
            )
        })
        .map(|e| e.seq)
        .collect()
}

fn details(activities: &[Value]) -> Vec<String> {
    let [Value::List(items)] = activities else {
        panic!("activities returned {activities:?}");
    };
    items
        .iter()
        .map(|a| match a {
            Value::Record(fields) => match fields.iter().find(|(name, _)| name == "detail") {
                Some((_, Value::String(s))) => s.clone(),
                other => panic!("detail is {other:?}"),
            },
            other => panic!("an activity is {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_at_an_index_is_what_the_worker_returned_there_and_a_fork_continues_from_it() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    // Snapshots every 10 calls: indices after one are rebuilt from it, those before from the
    // start of the log.
    let limits = WorkerLimits {
        snapshot_every: 10,
        ..support::limits()
    };
    let rt = runtime(store.clone(), limits, cache.path());
    let worker = WorkerId::new("user-activity", "traveller");
    for i in 1..=50 {
        assert_eq!(add(&rt, &worker, &format!("d{i}")).await, i);
    }
    // The snapshot due after the 50th call is taken after its reply; a read waits its turn.
    rt.read(worker.clone(), "count", vec![]).await.unwrap();
    let before = whole_log(&*store, &worker).await;
    assert!(
        before
            .iter()
            .any(|e| matches!(e.entry, OplogEntry::Snapshot { .. })),
        "the log has snapshots"
    );
    let done = completions(&before);
    assert_eq!(done.len(), 50);

    for k in [1, 2, 9, 10, 11, 25, 37, 50] {
        let at = done[k - 1];
        assert_eq!(
            count_at(&rt, &worker, at).await.unwrap(),
            k as u64,
            "k = {k}"
        );
        let listed = rt
            .state_at(&worker, at, "activities", vec![])
            .await
            .unwrap();
        let expected: Vec<String> = (1..=k).map(|i| format!("d{i}")).collect();
        assert_eq!(details(&listed), expected, "k = {k}");
    }
    // An index inside an invocation shows the state before it: the open call is not replayed.
    let started_26 = done[24] + 1;
    assert!(matches!(
        before[(started_26 - 1) as usize].entry,
        OplogEntry::InvocationStarted { .. }
    ));
    assert_eq!(count_at(&rt, &worker, started_26).await.unwrap(), 25);
    // Bad indices are refused, naming the log's range.
    let last = before.last().unwrap().seq;
    for bad in [0, last + 1] {
        let e = count_at(&rt, &worker, bad).await.unwrap_err();
        assert_eq!(e.code(), "bad_argument", "{e}");
        assert!(e.to_string().contains(&format!("1 to {last}")), "{e}");
    }
    // Nothing was written: the live worker's log is as it was, and it goes on from 50.
    assert_eq!(whole_log(&*store, &worker).await, before);
    assert_eq!(add(&rt, &worker, "d51").await, 51);

    // A fork at the 20th call continues from 20, on its own.
    let forked = rt
        .fork(&worker, "traveller-fork", Some(done[19]))
        .await
        .unwrap();
    assert_eq!(forked.at, done[19]);
    assert_eq!(forked.last_index, done[19]);
    let fork = WorkerId::new("user-activity", "traveller-fork");
    assert_eq!(add(&rt, &fork, "f21").await, 21);
    assert_eq!(add(&rt, &worker, "d52").await, 52);
    let fork_details = details(
        &rt.invoke(fork.clone(), "activities", vec![], None)
            .await
            .unwrap(),
    );
    let mut expected: Vec<String> = (1..=20).map(|i| format!("d{i}")).collect();
    expected.push("f21".into());
    assert_eq!(fork_details, expected);
    // ... and so does it after both leave memory and are rebuilt from their logs.
    rt.evict_where(|_| true);
    assert_eq!(add(&rt, &fork, "f22").await, 22);
    assert_eq!(add(&rt, &worker, "d53").await, 53);

    // A fork's name must be free, its index inside the log and not inside an invocation.
    let e = rt.fork(&worker, "traveller-fork", None).await.unwrap_err();
    assert_eq!(e.code(), "worker_exists", "{e}");
    let e = rt
        .fork(&worker, "traveller-mid", Some(started_26))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "bad_argument", "{e}");
    assert!(e.to_string().contains("inside the invocation"), "{e}");
    let e = rt
        .fork(&WorkerId::new("user-activity", "nobody"), "x", None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "worker_not_found", "{e}");
    assert!(
        rt.status(&WorkerId::new("user-activity", "traveller-mid"))
            .await
            .unwrap()
            .is_none(),
        "a refused fork creates nothing"
    );
}

/// A log cut at a snapshot can show and fork only what follows the cut: the fork starts with a
/// `Create` of its own and the snapshot the log was cut at, renumbered, and holds the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_shows_and_forks_what_follows_its_snapshot() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    let limits = WorkerLimits {
        snapshot_every: 10,
        truncate_at_snapshot: true,
        ..support::limits()
    };
    let rt = runtime(store.clone(), limits, cache.path());
    let worker = WorkerId::new("user-activity", "cut");
    for i in 1..=25 {
        add(&rt, &worker, &format!("d{i}")).await;
    }
    rt.read(worker.clone(), "count", vec![]).await.unwrap();
    let log = whole_log(&*store, &worker).await;
    let first = log[0].seq;
    assert!(first > 1, "the log was truncated");
    let e = count_at(&rt, &worker, first - 1).await.unwrap_err();
    assert_eq!(e.code(), "bad_argument", "{e}");
    assert!(e.to_string().contains("removed when a snapshot"), "{e}");
    let last = log.last().unwrap().seq;
    assert_eq!(count_at(&rt, &worker, last).await.unwrap(), 25);

    let forked = rt.fork(&worker, "cut-fork", None).await.unwrap();
    assert_eq!(forked.at, last);
    assert_eq!(forked.last_index, last - first + 3);
    let fork = WorkerId::new("user-activity", "cut-fork");
    let copy = whole_log(&*store, &fork).await;
    assert!(matches!(copy[0].entry, OplogEntry::Create { .. }));
    assert!(matches!(
        copy[2].entry,
        OplogEntry::Snapshot { part: 0, .. }
    ));
    // The copy holds the source's two latest snapshots (the log is cut at the one before the
    // latest); the fork's metadata points at its copy of the latest, renumbered.
    let latest = store
        .metadata(&worker)
        .await
        .unwrap()
        .unwrap()
        .snapshot_index;
    assert!(latest > first);
    assert_eq!(
        store.metadata(&fork).await.unwrap().unwrap().snapshot_index,
        latest - first + 3
    );
    assert_eq!(add(&rt, &fork, "f26").await, 26);
    rt.evict_where(|_| true);
    assert_eq!(add(&rt, &fork, "f27").await, 27);
    assert_eq!(add(&rt, &worker, "d26").await, 26);
}

/// A fork refused for its index leaves nothing, also when part of the copy was written
/// before the index was found to be inside an invocation (each keyed outcome is its own
/// append).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fork_leaves_no_partial_copy() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    let rt = runtime(store.clone(), support::limits(), cache.path());
    let worker = WorkerId::new("user-activity", "keyed");
    for i in 1..=5 {
        rt.invoke(
            worker.clone(),
            "add-activity",
            vec![Value::String("run".into()), Value::String(format!("d{i}"))],
            Some(format!("key-{i}")),
        )
        .await
        .unwrap();
    }
    let log = whole_log(&*store, &worker).await;
    let last_start = log
        .iter()
        .rev()
        .find(|e| matches!(e.entry, OplogEntry::InvocationStarted { .. }))
        .unwrap()
        .seq;
    let e = rt
        .fork(&worker, "keyed-fork", Some(last_start + 1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "bad_argument", "{e}");
    let fork = WorkerId::new("user-activity", "keyed-fork");
    assert_eq!(store.metadata(&fork).await.unwrap(), None);
    assert!(rt.status(&fork).await.unwrap().is_none());
    // At the index before it, the fork has the four keyed outcomes: a repeat answers from them.
    rt.fork(&worker, "keyed-fork", Some(last_start - 1))
        .await
        .unwrap();
    let again = rt
        .invoke(
            fork.clone(),
            "add-activity",
            vec![Value::String("run".into()), Value::String("d2".into())],
            Some("key-2".into()),
        )
        .await
        .unwrap();
    assert_eq!(again, vec![Value::U64(2)], "the stored outcome of key-2");
    assert_eq!(add(&rt, &fork, "f5").await, 5);
}
