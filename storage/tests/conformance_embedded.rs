//! The conformance suite on the embedded (fjall) store: its KV transactions and its
//! group-committed oplog share one database.

mod conformance;

use revenant_storage::embedded::EmbeddedStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance::kv_suite(Arc::new(EmbeddedStore::open(dir.path()).unwrap()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    conformance::oplog_suite(&store, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oplog_conformance_through_the_kv_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let oplog = revenant_storage::kv_oplog::KvOplog::new(store.clone());
    conformance::oplog_suite(&store, &oplog).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_chunks_and_rows_leaves_nothing_half_visible_through_the_kv_layer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    conformance::a_crash_between_chunks_and_rows_leaves_nothing_half_visible(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance::catalog_suite(&EmbeddedStore::open(dir.path()).unwrap()).await;
}
