//! Commands reach a worker as what they are: an operator's interrupt, resume and delete work on
//! a worker whatever its component exports, and a call is resolved against the version the
//! worker runs, while the outcome of a failed call keeps its code for idempotent retries.

mod support;

use revenant_runtime::{
    Control, InvokeError, Runtime, RuntimeConfig, SystemEnvironment, Value, WorkerId, WorkerLimits,
    WorkerStatus,
};
use revenant_storage::OplogStore;
use revenant_storage::memory::MemoryStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The smallest component: the binary preamble and nothing else, so no exports at all.
const EMPTY_COMPONENT: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

fn stress_runtime(limits: WorkerLimits, cache: &std::path::Path) -> Arc<Runtime> {
    let component =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/guest/stress.wasm");
    assert!(
        component.exists(),
        "build the example components first (scripts/test.sh)"
    );
    let store: Arc<dyn OplogStore> = Arc::new(MemoryStore::default());
    Runtime::new(
        RuntimeConfig {
            components: vec![("stress".into(), component)],
            cache_dir: cache.to_path_buf(),
            limits,
            outgoing_http: Default::default(),
        },
        store,
        Arc::new(SystemEnvironment::new()),
    )
    .unwrap()
}

#[tokio::test]
async fn interrupt_resume_and_delete_work_on_a_component_without_exports() {
    let cache = tempfile::tempdir().unwrap();
    let rt = stress_runtime(support::limits(), cache.path());
    let worker = WorkerId::new("stress", "w-1");
    rt.invoke(worker.clone(), "ping", vec![], None)
        .await
        .unwrap();
    // The component's next version exports nothing; the worker leaves memory, so every
    // command below meets the version without exports.
    let empty = rt
        .prepare_component("stress", "test", &EMPTY_COMPONENT)
        .unwrap();
    assert!(empty.info().exports.is_empty());
    rt.install(empty);
    rt.shutdown().await;
    assert_eq!(rt.active_workers(), 0);

    rt.control(worker.clone(), Control::Interrupt)
        .await
        .unwrap();
    assert_eq!(
        rt.status(&worker).await.unwrap(),
        Some(WorkerStatus::Interrupted)
    );
    // Interrupting twice records nothing more and is no error.
    rt.control(worker.clone(), Control::Interrupt)
        .await
        .unwrap();
    rt.shutdown().await;
    assert_eq!(
        rt.status(&worker).await.unwrap(),
        Some(WorkerStatus::Interrupted),
        "the interrupt is recorded, so it holds for a worker not in memory"
    );

    rt.control(worker.clone(), Control::Resume).await.unwrap();
    let resumed = rt.status(&worker).await.unwrap();
    assert!(
        matches!(resumed, Some(WorkerStatus::Idle | WorkerStatus::Suspended)),
        "{resumed:?}"
    );

    rt.control(worker.clone(), Control::Delete).await.unwrap();
    assert_eq!(rt.status(&worker).await.unwrap(), None);
    assert!(matches!(
        rt.control(worker.clone(), Control::Interrupt).await,
        Err(InvokeError::WorkerNotFound(_))
    ));
}

#[tokio::test]
async fn a_worker_in_memory_keeps_answering_across_an_upload_of_its_own_component() {
    let cache = tempfile::tempdir().unwrap();
    let rt = stress_runtime(support::limits(), cache.path());
    let worker = WorkerId::new("stress", "w-2");
    for n in 1..=3 {
        let got = rt
            .invoke(worker.clone(), "ping", vec![], None)
            .await
            .unwrap();
        assert_eq!(got, vec![Value::U64(n)]);
    }
    // The same bytes again: a new `LoadedComponent`, whose export indices the worker's
    // instance would refuse; the worker resolves the call against its own.
    let bytes = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip2/guest/stress.wasm"),
    )
    .unwrap();
    rt.install(rt.prepare_component("stress", "test", &bytes).unwrap());
    let got = rt
        .invoke(worker.clone(), "ping", vec![], None)
        .await
        .unwrap();
    assert_eq!(got, vec![Value::U64(4)]);
    assert_eq!(rt.active_workers(), 1, "the same worker answered");
}

#[tokio::test]
async fn an_idempotent_retry_of_a_timed_out_call_answers_invocation_timeout() {
    let cache = tempfile::tempdir().unwrap();
    let limits = WorkerLimits {
        invocation_timeout: Duration::from_millis(200),
        ..support::limits()
    };
    let rt = stress_runtime(limits, cache.path());
    let worker = WorkerId::new("stress", "w-3");
    let key = Some("spin-once".to_string());
    let first = rt
        .invoke(worker.clone(), "spin", vec![], key.clone())
        .await
        .unwrap_err();
    assert_eq!(first.code(), "invocation_timeout", "{first}");
    // Retried in memory, then after the worker left it (the outcome is read from the log).
    let again = rt
        .invoke(worker.clone(), "spin", vec![], key.clone())
        .await
        .unwrap_err();
    assert_eq!(again.code(), "invocation_timeout", "{again}");
    rt.shutdown().await;
    let later = rt
        .invoke(worker.clone(), "spin", vec![], key)
        .await
        .unwrap_err();
    assert_eq!(later.code(), "invocation_timeout", "{later}");
    // The worker is still usable.
    assert_eq!(
        rt.invoke(worker, "ping", vec![], None).await.unwrap(),
        vec![Value::U64(1)]
    );
}
