//! The conformance suite on PostgreSQL: a private server started for the test (see
//! `support/postgres.rs`), the KV interface's semantics, the oplog over it (chunked entries and
//! a crash between chunks and rows included), and the catalog.

mod conformance;
#[path = "support/postgres.rs"]
mod postgres;

use revenant_storage::kv_oplog::KvOplog;
use revenant_storage::pg_oplog::PgOplog;
use revenant_storage::postgres::PgStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_private_postgresql() {
    let Some(server) = postgres::Postgres::start() else {
        return;
    };
    let store = PgStore::open(&server.url)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    // Serializable snapshot isolation makes every read of a transaction part of its conflict
    // checks, snapshot reads included, and concurrent atomic adds to one key retry: the checks
    // that count attempts exactly are FoundationDB's, not PostgreSQL's (`postgres.rs`).
    conformance::kv_suite(store.clone(), true).await;
    conformance::oplog_suite(&store, &KvOplog::new(store.clone())).await;
    // The group-committing oplog the server runs on PostgreSQL passes the same suite (on a
    // database of its own: the suite's workers have fixed names).
    let other = PgStore::open(&server.database("grouped")).await.unwrap();
    conformance::oplog_suite(&other, &PgOplog::new(other.clone())).await;
    conformance::a_crash_between_chunks_and_rows_leaves_nothing_half_visible(&store).await;
    conformance::catalog_suite(&store).await;
}
