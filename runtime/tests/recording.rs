//! A recording failure never wedges a worker. An outgoing response with ~40 large headers and a
//! 60,000-byte body (past one backend value: it used to leave the invocation in flight, sent
//! again at every call and restart) is recorded and the call completes; a response past the
//! recorded bound, and a store that refuses the entry, each fail the call cleanly. In every case
//! the worker's next call succeeds with its state, and a restart sends nothing again.

mod support;

use revenant_runtime::{AllowRule, InvokeError, OutgoingHttpConfig, Runtime, Value, WorkerId};
use revenant_storage::intercept::Intercepted;
use revenant_storage::kv::model::FdbModel;
use revenant_storage::kv_oplog::KvOplog;
use revenant_storage::memory::MemoryStore;
use revenant_storage::{OplogEntry, OplogStore, StorageError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests received, by path.
type Seen = Arc<Mutex<HashMap<String, usize>>>;

/// An HTTP/1.1 upstream on 127.0.0.1: `/headers` answers 40 headers of 900 bytes and a
/// 60,000-byte body; `/huge` a body of 17 MiB; anything else `fine`.
async fn upstream() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let counted = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && head.len() < 65_536 {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                *counted.lock().unwrap().entry(path.clone()).or_default() += 1;
                let (headers, body) = match path.as_str() {
                    "/headers" => (
                        (0..40)
                            .map(|i| format!("x-pad-{i}: {}\r\n", "h".repeat(900)))
                            .collect::<String>(),
                        "b".repeat(60_000),
                    ),
                    "/huge" => (String::new(), "x".repeat(17 * 1024 * 1024)),
                    _ => (String::new(), "fine".to_string()),
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.write_all(body.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, seen)
}

fn runtime(store: Arc<dyn OplogStore>, cache: &Path) -> Arc<Runtime> {
    let outgoing = OutgoingHttpConfig {
        allow: vec![AllowRule::parse("127.0.0.1").unwrap()],
        ..OutgoingHttpConfig::default()
    };
    support::runtime_with(store, support::limits(), cache, outgoing)
}

async fn import(rt: &Runtime, worker: &WorkerId, url: &str) -> Result<Vec<Value>, InvokeError> {
    rt.invoke(
        worker.clone(),
        "import-activity",
        vec![Value::String(url.into())],
        None,
    )
    .await
}

async fn count(rt: &Runtime, worker: &WorkerId) -> u64 {
    match rt.read(worker.clone(), "count", vec![]).await.unwrap()[..] {
        [Value::U64(n)] => n,
        ref other => panic!("count answered {other:?}"),
    }
}

async fn add(rt: &Runtime, worker: &WorkerId) -> Value {
    rt.invoke(
        worker.clone(),
        "add-activity",
        vec![Value::String("k".into()), Value::String("d".into())],
        None,
    )
    .await
    .unwrap()
    .remove(0)
}

fn seen(seen: &Seen, path: &str) -> usize {
    seen.lock().unwrap().get(path).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_with_forty_large_headers_is_recorded_and_the_call_completes() {
    let (url, requests) = upstream().await;
    let cache = tempfile::tempdir().unwrap();
    let model = FdbModel::new(Default::default());
    let rt = runtime(Arc::new(KvOplog::new(model.clone())), cache.path());
    let worker = WorkerId::new("user-activity", "headers");

    let answer = import(&rt, &worker, &format!("{url}/headers"))
        .await
        .unwrap();
    assert_eq!(
        answer,
        vec![Value::Result(Ok(Some(Box::new(Value::U64(1)))))]
    );
    assert_eq!(add(&rt, &worker).await, Value::U64(2));
    assert_eq!(seen(&requests, "/headers"), 1);

    // A restart answers the request from the log: nothing is sent again.
    drop(rt);
    let store = Arc::new(KvOplog::new(model));
    assert!(store.in_flight_workers().await.unwrap().is_empty());
    let rt = runtime(store, cache.path());
    assert_eq!(count(&rt, &worker).await, 2);
    let listed = rt.read(worker.clone(), "activities", vec![]).await.unwrap();
    let detail = match &listed[..] {
        [Value::List(items)] => match &items[0] {
            Value::Record(fields) => fields.iter().find(|(n, _)| n == "detail").cloned(),
            _ => None,
        },
        _ => None,
    };
    assert_eq!(
        detail.map(|(_, v)| v),
        Some(Value::String("b".repeat(60_000)))
    );
    assert_eq!(seen(&requests, "/headers"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_past_the_recorded_bound_fails_the_request_and_nothing_is_sent_again() {
    let (url, requests) = upstream().await;
    let cache = tempfile::tempdir().unwrap();
    let model = FdbModel::new(Default::default());
    let rt = runtime(Arc::new(KvOplog::new(model.clone())), cache.path());
    let worker = WorkerId::new("user-activity", "huge");

    assert_eq!(add(&rt, &worker).await, Value::U64(1));
    let answer = import(&rt, &worker, &format!("{url}/huge")).await.unwrap();
    match &answer[..] {
        [Value::Result(Err(Some(message)))] => assert!(
            matches!(message.as_ref(), Value::String(m) if m.contains("16777216 bytes a call may record")),
            "{message:?}"
        ),
        other => panic!("the import should fail: {other:?}"),
    }
    assert_eq!(add(&rt, &worker).await, Value::U64(2));

    drop(rt);
    let rt = runtime(Arc::new(KvOplog::new(model)), cache.path());
    assert_eq!(count(&rt, &worker).await, 2);
    assert_eq!(seen(&requests, "/huge"), 1, "a restart sends nothing again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_refuses_the_recorded_response_fails_the_call_and_the_worker_goes_on() {
    let (url, requests) = upstream().await;
    let cache = tempfile::tempdir().unwrap();
    let store = MemoryStore::default();
    let model = store.kv().clone();
    // Refuses every append that records an outgoing request's response.
    let refusing = Intercepted::new(store, |append| {
        let http = append.entries.iter().any(|e| {
            matches!(&e.entry, OplogEntry::HostCall { interface, .. }
                if interface == "wasi:http/outgoing-handler")
        });
        Box::pin(async move {
            match http {
                true => Err(StorageError::Rejected("refused by the test".into())),
                false => Ok(()),
            }
        })
    });
    let rt = runtime(Arc::new(refusing), cache.path());
    let worker = WorkerId::new("user-activity", "refused");

    assert_eq!(add(&rt, &worker).await, Value::U64(1));
    let err = import(&rt, &worker, &format!("{url}/fine"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "recording_failed", "{err}");
    assert!(err.to_string().contains("refused by the test"), "{err}");
    assert_eq!(seen(&requests, "/fine"), 1);
    // The worker answers at once, with its state without the failed call.
    assert_eq!(count(&rt, &worker).await, 1);
    assert_eq!(add(&rt, &worker).await, Value::U64(2));

    // Nothing is left in flight, and a restart sends nothing again.
    drop(rt);
    let store = Arc::new(KvOplog::new(model));
    assert!(store.in_flight_workers().await.unwrap().is_empty());
    let rt = runtime(store, cache.path());
    assert_eq!(count(&rt, &worker).await, 2);
    assert_eq!(add(&rt, &worker).await, Value::U64(3));
    assert_eq!(seen(&requests, "/fine"), 1);
}
