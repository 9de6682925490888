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

/// One entry, `seq`, appended to `worker`'s log.
fn one(worker: &WorkerId, seq: u64) -> Append {
    Append {
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
                    store.append(one(&worker, seq)).await.unwrap();
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

/// A store of `workers` workers with `appends` appends each, closed; its newest journal.
async fn written_store(dir: &std::path::Path, workers: u64, appends: u64) -> std::path::PathBuf {
    let store = EmbeddedStore::open(dir).unwrap();
    for seq in 1..=appends {
        for w in 0..workers {
            let worker = WorkerId::new("c", format!("w{w}"));
            store.append(one(&worker, seq)).await.unwrap();
        }
    }
    drop(store);
    let mut journals: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    journals.sort();
    journals.pop().expect("the store has a journal")
}

/// Where a journal's written bytes end (the rest is preallocated zeros).
fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).unwrap() + 1
}

async fn last_index(store: &EmbeddedStore, w: u64) -> u64 {
    store
        .metadata(&WorkerId::new("c", format!("w{w}")))
        .await
        .unwrap()
        .map_or(0, |m| m.last_index)
}

/// The journal as fjall writes it is read whole by the audit: if an upgrade of fjall changes
/// the format, this fails before a store is refused for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_format_is_the_one_fjall_writes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = written_store(dir.path(), 50, 20).await;
    assert_eq!(
        revenant_storage::journal_audit::audit(dir.path()).unwrap(),
        None
    );
    assert!(data_end(&std::fs::read(&journal).unwrap()) > 10_000);
}

/// The reproduction: a zeroed 4 KiB block inside the journal used to be taken for a torn tail,
/// the file cut there and the older prefix served (47 of 50 workers lost their writes). Now
/// the store refuses to open, names the file and the offset, and leaves the file as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_middle_of_the_journal_refuses_to_open_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = written_store(dir.path(), 50, 20).await;
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[4096..8192].fill(0);
    std::fs::write(&journal, &bytes).unwrap();
    for _ in 0..2 {
        let refused = EmbeddedStore::open(dir.path()).err().expect("refused");
        let text = refused.to_string();
        assert!(
            text.contains(&journal.display().to_string()) && text.contains("damaged at byte"),
            "{text}"
        );
        let offset: usize = text
            .split("damaged at byte ")
            .nth(1)
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!((4096 - 200..=4096).contains(&offset), "{text}");
        assert!(
            std::fs::read(&journal).unwrap() == bytes,
            "the damaged file is left as it was"
        );
    }
    // A bit flipped in an entry's length, far from the end: the same.
    let dir = tempfile::tempdir().unwrap();
    let journal = written_store(dir.path(), 50, 20).await;
    let mut bytes = std::fs::read(&journal).unwrap();
    let at = data_end(&bytes) / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&journal, &bytes).unwrap();
    let refused = EmbeddedStore::open(dir.path()).err().expect("refused");
    assert!(refused.to_string().contains("damaged at byte"), "{refused}");
    assert!(std::fs::read(&journal).unwrap() == bytes);
}

/// A torn last batch (a crash mid-write: never synced, never acknowledged) still recovers:
/// every batch before it is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_batch_still_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let journal = written_store(dir.path(), 50, 20).await;
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = data_end(&bytes);
    // The last batch's end marker and a few bytes before it, as if the write stopped there.
    bytes[end - 20..end].fill(0);
    std::fs::write(&journal, &bytes).unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    // The last append was worker 49's 20th; every other one is whole.
    assert_eq!(last_index(&store, 49).await, 19);
    for w in 0..49 {
        assert_eq!(last_index(&store, w).await, 20, "worker {w}");
    }
}
