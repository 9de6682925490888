//! The load tester against a server whose behaviour is known: a per-user counter on 127.0.0.1,
//! honest or deliberately losing updates.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use revenant_loadtest::{ClosedLoad, RequestTemplate, run_closed};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// POST /c/{user} increments the user's counter (but every `lose_every`-th increment of user
/// `lossy_user` is acknowledged and dropped); GET /c/{user} answers it.
async fn counter_server(lossy_user: Option<&'static str>, lose_every: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counters: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let counters = counters.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let counters = counters.clone();
                    async move {
                        let user = request.uri().path().trim_start_matches("/c/").to_string();
                        let mut map = counters.lock().unwrap();
                        let (stored, seen) = map.entry(user.clone()).or_default();
                        if request.method() == hyper::Method::POST {
                            *seen += 1;
                            let lose = Some(user.as_str()) == lossy_user && *seen % lose_every == 0;
                            if !lose {
                                *stored += 1;
                            }
                        }
                        let body = stored.to_string();
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

fn load(url: String) -> ClosedLoad {
    ClosedLoad {
        base_url: url,
        request: RequestTemplate {
            method: http::Method::POST,
            path: "/c/{user}".into(),
            body: Some("{}".into()),
        },
        users: 50,
        user_prefix: "u".into(),
        connections: 8,
        warmup: Duration::ZERO,
        duration: Duration::from_millis(500),
        verify_count_path: Some("/c/{user}".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_server_passes_verification_and_requests_are_counted() {
    let report = run_closed(load(counter_server(None, 1).await))
        .await
        .unwrap();
    assert!(report.ok > 50, "{report}");
    assert_eq!(report.requests, report.ok, "{report}");
    assert_eq!(report.latency_us.len(), report.ok);
    assert_eq!(report.verified_users, 50);
    assert!(report.verify_failures.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_fails_verification_and_names_the_user() {
    let report = run_closed(load(counter_server(Some("u7"), 3).await))
        .await
        .unwrap();
    let failing: Vec<&str> = report
        .verify_failures
        .iter()
        .map(|f| f.0.as_str())
        .collect();
    assert_eq!(failing, vec!["u7"], "{report}");
    let (_, acked, _, counter) = &report.verify_failures[0];
    assert!(counter < acked);
}
