//! The runtime against the real example component: state rebuilt from the oplog alone.

mod support;

use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment, Value, WorkerId};
use revenant_storage::memory::MemoryStore;
use revenant_storage::{OplogEntry, OplogStore};
use std::path::PathBuf;
use std::sync::Arc;

fn example_component() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        path.exists(),
        "{} is missing: build it with `scripts/test.sh` (or `cargo build -p user-activity \
         --target wasm32-wasip2 --profile guest`)",
        path.display()
    );
    path
}

fn runtime(store: Arc<dyn OplogStore>, cache: &std::path::Path) -> Arc<Runtime> {
    Runtime::new(
        RuntimeConfig {
            components: vec![("user-activity".into(), example_component())],
            cache_dir: cache.to_path_buf(),
            limits: support::limits(),
            outgoing_http: Default::default(),
        },
        store,
        Arc::new(SystemEnvironment::new()),
    )
    .expect("runtime starts")
}

fn s(x: &str) -> Value {
    Value::String(x.into())
}

#[tokio::test]
async fn a_new_runtime_rebuilds_state_from_the_oplog_with_recorded_clock_and_random() {
    let cache = tempfile::tempdir().unwrap();
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    let worker = WorkerId::new("user-activity", "user-1");

    let first = runtime(store.clone(), cache.path());
    for (i, kind) in ["run", "swim", "bike"].iter().enumerate() {
        let count = first
            .invoke(
                worker.clone(),
                "add-activity",
                vec![s(kind), s("x")],
                Some(format!("k{i}")),
            )
            .await
            .unwrap();
        assert_eq!(count, vec![Value::U64(i as u64 + 1)]);
    }
    let before = first
        .invoke(worker.clone(), "activities", vec![], Some("k-list".into()))
        .await
        .unwrap();
    drop(first);

    // The log holds the clock reads and random draws of each add-activity.
    let log = store.read(&worker, 1, 1000).await.unwrap();
    assert!(matches!(log[0].entry, OplogEntry::Create { .. }));
    assert!(log.iter().any(|e| matches!(&e.entry, OplogEntry::HostCall { interface, .. } if interface == "wasi:clocks/wall-clock")));
    assert!(log.iter().any(|e| matches!(&e.entry, OplogEntry::HostCall { interface, .. } if interface == "wasi:random/random")));

    let second = runtime(store.clone(), cache.path());
    let after = second
        .invoke(
            worker.clone(),
            "activities",
            vec![],
            Some("k-list-2".into()),
        )
        .await
        .unwrap();
    assert_eq!(
        before, after,
        "replay reproduces ids and timestamps exactly"
    );
    let Value::List(items) = &after[0] else {
        panic!("a list")
    };
    assert_eq!(items.len(), 3);
}

#[tokio::test]
async fn arguments_of_the_wrong_type_are_refused_before_the_guest_runs() {
    let cache = tempfile::tempdir().unwrap();
    let rt = runtime(Arc::new(MemoryStore::default()), cache.path());
    let err = rt
        .invoke(
            WorkerId::new("user-activity", "u"),
            "add-activity",
            vec![s("a"), Value::U64(1)],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_argument", "{err}");
}
