//! A reply is never sent before the invocation's entries are durable: with a store that
//! withholds durability until the test releases it, the HTTP response must wait.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use revenant_api_definitions::{ApiSpec, RouteSpec, parse_yaml};
use revenant_gateway::{Gateway, serve};
use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment, WorkerId};
use revenant_storage::OplogStore;
use revenant_storage::intercept::Intercepted;
use revenant_storage::memory::MemoryStore;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

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
    // Appends reach the store only once the test adds a permit to `gate`; each is reported
    // as it arrives.
    let gate = Arc::new(Semaphore::new(0));
    let hook_gate = gate.clone();
    let store = Arc::new(Intercepted::new(MemoryStore::default(), move |append| {
        let _ = arrived_tx.send(append.entries.len());
        let gate = hook_gate.clone();
        Box::pin(async move {
            gate.acquire().await.expect("gate open").forget();
            Ok(())
        })
    }));
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
            .inner()
            .read(&WorkerId::new("user-activity", "user-7"), 1, 100)
            .await
            .unwrap()
            .is_empty()
    );

    gate.add_permits(1);
    let response = reply.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"1");
    let log = store
        .inner()
        .read(&WorkerId::new("user-activity", "user-7"), 1, 100)
        .await
        .unwrap();
    assert_eq!(
        log.len(),
        entries,
        "the reply came after exactly those entries were stored"
    );
}
