//! Servers whose behaviour is known, on 127.0.0.1, each on its own thread and runtime so the
//! load generator's tasks do not share its scheduler.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Serves `answer(method, path, body)` -> (status, body) on a free port; returns the base URL.
pub fn serve<F, Fut>(answer: F) -> String
where
    F: Fn(hyper::Method, String, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (u16, String)> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap()))
                .unwrap();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let _ = stream.set_nodelay(true);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let answer = answer.clone();
                            async move {
                                let method = request.method().clone();
                                let path = request.uri().path().to_string();
                                let body = request.into_body().collect().await.unwrap().to_bytes();
                                let (status, text) = answer(method, path, body).await;
                                let mut response =
                                    hyper::Response::new(Full::new(Bytes::from(text)));
                                *response.status_mut() =
                                    hyper::StatusCode::from_u16(status).unwrap();
                                Ok::<_, Infallible>(response)
                            }
                        });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// Answers every request after `delay`; and from `stall_every` on, once per period, stalls
/// for `stall`: requests that arrive during a stall wait until it ends (like a GC pause).
pub fn delay_server(delay: Duration, stall_every: Duration, stall: Duration) -> String {
    let start = Instant::now();
    serve(move |_, _, _| async move {
        let since = start.elapsed();
        let phase = since.as_nanos() % stall_every.as_nanos();
        // The stall occupies the last `stall` of each period.
        let into_stall = phase as i128 - (stall_every - stall).as_nanos() as i128;
        if into_stall >= 0 {
            tokio::time::sleep(stall - Duration::from_nanos(into_stall as u64)).await;
        }
        tokio::time::sleep(delay).await;
        (200, "1".to_string())
    })
}

/// What a counter server does wrong, if anything.
#[derive(Clone, Copy)]
pub enum Fault {
    None,
    /// Every `n`-th update of `user` is acknowledged and dropped.
    Lose(&'static str, u64),
    /// Every `n`-th update of `user` is applied twice.
    Duplicate(&'static str, u64),
    /// `user`'s first update lands in `other`'s state.
    Leak(&'static str, &'static str),
}

type Counter = (u64, Vec<String>);

/// POST /c/{user} with `{"tag": ...}` appends the tag to the user's items; GET /c/{user} is
/// how many there are, GET /c/{user}/items the items.
pub fn counter_server(fault: Fault) -> String {
    // Per user: updates seen, and the tags held.
    let state: Arc<Mutex<HashMap<String, Counter>>> = Arc::default();
    serve(move |method, path, body| {
        let state = state.clone();
        async move {
            let rest = path.trim_start_matches("/c/");
            let mut map = state.lock().unwrap();
            if method == hyper::Method::POST {
                let user = rest.to_string();
                let tag = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|j| j["tag"].as_str().map(str::to_string))
                    .unwrap_or_default();
                let seen = {
                    let entry = map.entry(user.clone()).or_default();
                    entry.0 += 1;
                    entry.0
                };
                let mut target = user.clone();
                let mut copies = 1;
                match fault {
                    Fault::Lose(u, n) if u == user && seen % n == 0 => copies = 0,
                    Fault::Duplicate(u, n) if u == user && seen % n == 0 => copies = 2,
                    Fault::Leak(u, other) if u == user && seen == 1 => target = other.to_string(),
                    _ => {}
                }
                let items = &mut map.entry(target).or_default().1;
                for _ in 0..copies {
                    items.push(tag.clone());
                }
                return (200, "null".to_string());
            }
            if let Some(user) = rest.strip_suffix("/items") {
                let items = map.get(user).map(|e| e.1.clone()).unwrap_or_default();
                let json: Vec<_> = items
                    .iter()
                    .map(|t| serde_json::json!({"tag": t}))
                    .collect();
                return (200, serde_json::Value::from(json).to_string());
            }
            let n = map.get(rest).map_or(0, |e| e.1.len());
            (200, n.to_string())
        }
    })
}
