//! What runtime tests share: a runtime running the demo component on a given store.

#![allow(dead_code)]

use revenant_runtime::{
    OutgoingHttpConfig, Runtime, RuntimeConfig, SystemEnvironment, WorkerLimits,
};
use revenant_storage::OplogStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Workers a test runtime holds in memory. Each runtime's instance pool makes its slots' stacks
/// at start-up (`limits::MAPPINGS_PER_POOL_SLOT` mappings each), and a test process runs several
/// runtimes at once: at the default cap a few of them would pass the default vm.max_map_count.
pub const TEST_ACTIVE_WORKERS_MAX: usize = 64;

/// The default limits, with the test cap on workers in memory.
pub fn limits() -> WorkerLimits {
    WorkerLimits {
        active_workers_max: TEST_ACTIVE_WORKERS_MAX,
        ..WorkerLimits::default()
    }
}

pub fn runtime(store: Arc<dyn OplogStore>, limits: WorkerLimits, cache: &Path) -> Arc<Runtime> {
    runtime_with(store, limits, cache, OutgoingHttpConfig::default())
}

/// A runtime whose outgoing HTTP is configured (e.g. to allow a test's upstream on 127.0.0.1).
pub fn runtime_with(
    store: Arc<dyn OplogStore>,
    limits: WorkerLimits,
    cache: &Path,
    outgoing_http: OutgoingHttpConfig,
) -> Arc<Runtime> {
    let component = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        component.exists(),
        "build the example component first (scripts/test.sh)"
    );
    Runtime::new(
        RuntimeConfig {
            components: vec![("user-activity".into(), component)],
            cache_dir: cache.into(),
            limits,
            outgoing_http,
        },
        store,
        Arc::new(SystemEnvironment::new()),
    )
    .unwrap()
}
