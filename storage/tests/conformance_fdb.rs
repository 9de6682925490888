//! The conformance suite on a real FoundationDB cluster. Runs only with the cargo feature
//! `foundationdb` (which links libfdb_c) and when `FDB_CLUSTER_FILE` names a cluster file:
//!
//! ```sh
//! FDB_CLUSTER_FILE=/etc/foundationdb/fdb.cluster cargo test -p revenant-storage \
//!     --features foundationdb --test conformance_fdb
//! ```
//!
//! The suite writes under the tuple prefix `("conformance", ...)` and the worker keys of the
//! `conformance` component; use a test cluster.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]
#![cfg(feature = "foundationdb")]

mod conformance;

use revenant_storage::fdb::{FdbStore, start_network};
use revenant_storage::kv_oplog::KvOplog;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_real_cluster() {
    let Ok(cluster_file) = std::env::var("FDB_CLUSTER_FILE") else {
        eprintln!("FDB_CLUSTER_FILE is not set: no cluster to test against");
        return;
    };
    let _network = start_network();
    let store = FdbStore::open(Some(&cluster_file)).expect("cluster reachable");
    // Start clean: a previous run's keys would break exact-count checks. The suite writes its
    // own prefix, the `conformance` component's workers and logs, and shard 7's lease.
    use foundationdb_tuple::pack;
    use revenant_storage::kv::{KvStore, Transaction};
    let prefixes = [
        pack(&("conformance",)),
        pack(&("w", "conformance")),
        pack(&("l", "conformance")),
        pack(&("lc", "conformance")),
    ];
    for prefix in prefixes {
        let mut end = prefix.clone();
        end.push(0xff);
        store
            .transact(|tx, _| {
                let (begin, end) = (prefix.clone(), end.clone());
                async move {
                    tx.clear_range(&begin, &end);
                    tx.clear(&revenant_storage::keys::shard_lease(7));
                    Ok(())
                }
            })
            .await
            .unwrap();
    }
    conformance::kv_suite(store.clone(), false).await;
    conformance::oplog_suite(&store, &KvOplog::new(store.clone())).await;
    conformance::a_crash_between_chunks_and_rows_leaves_nothing_half_visible(&store).await;
    conformance::catalog_suite(&store).await;
}
