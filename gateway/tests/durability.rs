//! A reply is never sent before the invocation's entries are durable: with a store that
//! withholds durability until the test releases it, the HTTP response must wait.

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use revenant_api_definitions::{ApiSpec, RouteSpec, parse_yaml};
use revenant_gateway::{Gateway, serve};
use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment, WorkerId};
use revenant_storage::memory::MemoryStore;
use revenant_storage::{Append, OplogStore, SequencedEntry, StorageError, WorkerMetadata};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

/// Passes appends to an in-memory store, but only after the test adds a permit to `gate`;
/// reports each append as it arrives.
struct WithheldDurability {
    inner: MemoryStore,
    arrived: mpsc::UnboundedSender<usize>,
    gate: Semaphore,
}

#[async_trait]
impl OplogStore for WithheldDurability {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        let _ = self.arrived.send(append.entries.len());
        self.gate.acquire().await.expect("gate open").forget();
        self.inner.append(append).await
    }
    async fn read(
        &self,
        w: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        self.inner.read(w, from, limit).await
    }
    async fn metadata(&self, w: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        self.inner.metadata(w).await
    }
    async fn truncate_before(&self, w: &WorkerId, seq: u64) -> Result<(), StorageError> {
        self.inner.truncate_before(w, seq).await
    }
    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        self.inner.list_workers(component, after, limit).await
    }
    async fn delete_worker(&self, w: &WorkerId) -> Result<(), StorageError> {
        self.inner.delete_worker(w).await
    }
    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        self.inner.in_flight_workers().await
    }
    async fn idempotent_outcome(
        &self,
        w: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        self.inner.idempotent_outcome(w, key).await
    }
}

#[derive(serde::Deserialize)]
struct Project {
    routes: Vec<RouteSpec>,
}

impl Project {
    fn api(self) -> ApiSpec {
        ApiSpec {
            auth: Default::default(),
            routes: self.routes,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reply_waits_until_the_entries_are_durable() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = root.join("target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        component.exists(),
        "build the example component first (scripts/test.sh)"
    );
    let config_path = root.join("examples/user-activity/revenant.yaml");
    let project: Project = parse_yaml(
        "revenant.yaml",
        &std::fs::read_to_string(&config_path).unwrap(),
    )
    .unwrap();
    let api =
        revenant_api_definitions::compile("revenant.yaml", &project.api(), |_| true, &|_| None)
            .unwrap();

    let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
    let store = Arc::new(WithheldDurability {
        inner: MemoryStore::default(),
        arrived: arrived_tx,
        gate: Semaphore::new(0),
    });
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(
        RuntimeConfig {
            components: vec![("user-activity".into(), component)],
            cache_dir: cache.path().into(),
            limits: Default::default(),
            outgoing_http: Default::default(),
        },
        store.clone(),
        Arc::new(SystemEnvironment::new()),
    )
    .unwrap();
    let gateway = Arc::new(Gateway::new(runtime, &api).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, gateway, std::future::pending()));

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = http::Request::post(format!("{url}/user/7/activities"))
        .body(Full::new(Bytes::from(r#"{"kind":"run","detail":"5k"}"#)))
        .unwrap();
    let mut reply = tokio::spawn(client.request(request));

    // The invocation ran and its entries reached the store...
    let entries = tokio::time::timeout(Duration::from_secs(30), arrived.recv())
        .await
        .expect("the append reaches the store")
        .unwrap();
    assert!(
        entries >= 3,
        "Create, InvocationStarted, host calls, InvocationCompleted"
    );
    // ...but while they are not durable, no reply may go out. (A bounded wait for something
    // that must not happen; the positive case below waits for nothing but the reply.)
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut reply)
            .await
            .is_err(),
        "the reply went out before the entries were durable"
    );
    assert!(
        store
            .inner
            .read(&WorkerId::new("user-activity", "user-7"), 1, 100)
            .await
            .unwrap()
            .is_empty()
    );

    store.gate.add_permits(1);
    let response = reply.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1");
    let log = store
        .inner
        .read(&WorkerId::new("user-activity", "user-7"), 1, 100)
        .await
        .unwrap();
    assert_eq!(
        log.len(),
        entries,
        "the reply came after exactly those entries were stored"
    );
}
