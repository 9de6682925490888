//! The embedded backend: concurrent appends of many workers share syncs, and everything
//! acknowledged is there, in order, after the store is reopened.

use revenant_storage::embedded::EmbeddedStore;
use revenant_storage::{
    Append, OplogEntry, OplogStore, SequencedEntry, Value, WorkerId, WorkerMetadata,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn entry(n: u64) -> OplogEntry {
    OplogEntry::InvocationStarted {
        idempotency_key: format!("k{n}"),
        function: "f".into(),
        args: vec![Value::U64(n)],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_commits_and_survive_reopen() {
    const WORKERS: u64 = 64;
    const APPENDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let worker = WorkerId::new("c", format!("w{w}"));
                for seq in 1..=APPENDS {
                    store
                        .append(Append {
                            worker: worker.clone(),
                            fence: None,
                            entries: vec![SequencedEntry {
                                seq,
                                entry: entry(seq),
                            }],
                            metadata: WorkerMetadata {
                                component_hash: "h".into(),
                                last_index: seq,
                                snapshot_index: 0,
                            },
                            idempotency: None,
                            in_flight: None,
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let commits = store.stats().commits.load(Ordering::Relaxed);
        let appends = store.stats().appends.load(Ordering::Relaxed);
        assert_eq!(appends, WORKERS * APPENDS);
        assert!(
            commits < appends,
            "group commit should batch: {commits} commits for {appends} appends"
        );
    }
    let store = EmbeddedStore::open(dir.path()).unwrap();
    for w in 0..WORKERS {
        let worker = WorkerId::new("c", format!("w{w}"));
        let log = store.read(&worker, 1, 1000).await.unwrap();
        let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=APPENDS).collect::<Vec<_>>());
        assert_eq!(log[4].entry, entry(5));
        assert_eq!(
            store.metadata(&worker).await.unwrap().unwrap().last_index,
            APPENDS
        );
        // Reading from the middle pages correctly.
        let tail = store.read(&worker, 15, 3).await.unwrap();
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![15, 16, 17]
        );
    }
    assert!(
        store
            .metadata(&WorkerId::new("c", "nobody"))
            .await
            .unwrap()
            .is_none()
    );
}
