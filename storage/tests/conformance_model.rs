//! The conformance suite on the in-memory FoundationDB model, with and without injected faults.

mod conformance;

use conformance::{append_of, assert_exact, read_all};
use revenant_storage::kv::model::{Faults, FdbModel};
use revenant_storage::kv_oplog::KvOplog;
use revenant_storage::{OplogStore, WorkerId};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_conformance() {
    conformance::kv_suite(FdbModel::new(Faults::default()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_conformance() {
    let model = FdbModel::new(Faults::default());
    conformance::oplog_suite(&model, &KvOplog::new(model.clone())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_chunks_and_rows_leaves_nothing_half_visible() {
    let model = FdbModel::new(Faults::default());
    conformance::a_crash_between_chunks_and_rows_leaves_nothing_half_visible(&model).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_conformance_under_injected_faults() {
    let model = FdbModel::new(Faults {
        seed: 7,
        retryable_per_mille: 100,
        unknown_result_per_mille: 100,
    });
    conformance::kv_suite(model.clone(), true).await;
    assert!(model.stats().injected() > 0);
}

/// Many workers append concurrently while a third of all commits fail: refused outright, or
/// with an unknown result, half of which did commit. Every log must come out exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_ten_thousand_injected_faults_without_loss_duplication_or_reordering() {
    const WORKERS: u64 = 40;
    const FAULTS_MIN: u64 = 10_000;
    const APPENDS_MAX_PER_WORKER: u64 = 5_000;
    let model = FdbModel::new(Faults {
        seed: 20_261_125,
        retryable_per_mille: 150,
        unknown_result_per_mille: 200,
    });
    let oplog = Arc::new(KvOplog::new(model.clone()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let (oplog, model) = (oplog.clone(), model.clone());
        tasks.push(tokio::spawn(async move {
            let worker = WorkerId::new("faults", format!("w{w}"));
            let mut last = 0;
            while model.stats().injected() < FAULTS_MIN && last < APPENDS_MAX_PER_WORKER {
                let n = last % 3 + 1;
                oplog
                    .append(append_of(&worker, last + 1..=last + n, None))
                    .await
                    .unwrap();
                last += n;
            }
            (worker, last)
        }));
    }
    let mut written = Vec::new();
    for t in tasks {
        written.push(t.await.unwrap());
    }
    let stats = model.stats();
    assert!(
        stats.injected() >= FAULTS_MIN,
        "only {} faults injected",
        stats.injected()
    );
    assert!(
        stats
            .injected_unknown_committed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    model.set_faults(Faults::default());
    for (worker, last) in written {
        assert_exact(&worker, &read_all(oplog.as_ref(), &worker).await, last);
        assert_eq!(
            oplog.metadata(&worker).await.unwrap().unwrap().last_index,
            last
        );
    }
    eprintln!(
        "injected {} faults ({} retryable, {} unknown+committed, {} unknown+not committed)",
        stats.injected(),
        stats
            .injected_retryable
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .injected_unknown_committed
            .load(std::sync::atomic::Ordering::Relaxed),
        stats
            .injected_unknown_not_committed
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// FoundationDB's 5 s transaction lifetime, on tokio's paused clock.
#[tokio::test(start_paused = true)]
async fn a_transaction_older_than_five_seconds_cannot_commit() {
    use revenant_storage::kv::{KvError, KvStore, Transaction};
    let model = FdbModel::new(Faults::default());
    let attempts = std::sync::atomic::AtomicU32::new(0);
    let result = model
        .transact(|tx, _| {
            let first = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            async move {
                tx.set(b"k", b"v");
                if first {
                    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
                }
                Ok(())
            }
        })
        .await;
    assert_eq!(result, Ok(()));
    assert_eq!(
        attempts.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the old attempt failed with TooOld and was retried"
    );
    let _ = KvError::TooOld;
    let v = model
        .transact(|tx, _| async move { tx.get(b"k", false).await })
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(&b"v"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_conformance() {
    conformance::catalog_suite(&FdbModel::new(Faults::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_conformance_under_injected_faults() {
    let model = FdbModel::new(Faults {
        seed: 11,
        retryable_per_mille: 150,
        unknown_result_per_mille: 150,
    });
    conformance::catalog_suite(&model).await;
}
