//! Traces: a caller's W3C `traceparent` names the request's and the invocation's spans in the
//! server's log (with the worker, the function and the oplog index) and goes on to the
//! upstreams the guest calls, as a child of the caller's span; a call without one starts a
//! trace of its own there; the header is not recorded, so a replay is unchanged.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use std::sync::{Arc, Mutex};
use support::{Http, Server, demo_with};

/// An upstream that answers every request and keeps the `traceparent` each one carried.
async fn recording_upstream(seen: Arc<Mutex<Vec<Option<String>>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/item", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
                    let header = request
                        .headers()
                        .get("traceparent")
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push(header);
                    async move {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"from upstream"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_reaches_the_log_and_the_upstream() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = recording_upstream(seen.clone()).await;
    let (dir, config) = demo_with("outgoing_http:\n  allow: [\"127.0.0.1\"]\n");
    let log = dir.path().join("server.log");
    let data = dir.path().join("data");
    let server = Server::start_logged(
        &config,
        &data,
        &log,
        "warn,revenant_gateway=debug,revenant_runtime=debug",
    );
    let http = Http::new();
    let import = |traceparent: Option<&'static str>| {
        let (http, url, upstream) = (&http, server.url.clone(), upstream.clone());
        async move {
            let headers: Vec<(&str, &str)> = traceparent
                .into_iter()
                .map(|t| ("traceparent", t))
                .collect();
            http.request_with(
                "POST",
                &format!("{url}/user/traced/imports"),
                Some(json!({ "url": upstream })),
                &headers,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(import(Some(CALLER)).await.0, 200);
    // Malformed: ignored, a new trace starts.
    assert_eq!(import(Some("00-nope")).await.0, 200);
    assert_eq!(import(None).await.0, 200);

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let first = seen[0].clone().expect("the upstream got a traceparent");
    assert!(
        first.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && first.ends_with("-01"),
        "the caller's trace, sampled as it came: {first}"
    );
    assert_ne!(first, CALLER, "with a span id of its own");
    for other in &seen[1..] {
        let other = other.clone().expect("a traceparent on every request");
        assert_eq!(other.len(), 55, "{other}");
        assert!(
            !other.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
            "{other}"
        );
    }

    // The log: the invocation's span inside the request's, with the worker, the function,
    // the index its entries start at, and the trace.
    let text = std::fs::read_to_string(&log).unwrap();
    let ended: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("invocation ended"))
        .collect();
    assert_eq!(ended.len(), 3, "{text}");
    let line = ended[0];
    for part in [
        "request{",
        "route=POST /user/{user-id}/imports",
        "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
        "invocation{",
        "worker=user-activity/user-traced",
        "function=revenant:user-activity/api.import-activity",
        "index=1",
        "outcome=ok",
    ] {
        assert!(line.contains(part), "`{part}` in {line}");
    }
    assert!(
        !ended[1].contains("4bf92f3577b34da6a3ce929d0e0e4736"),
        "{}",
        ended[1]
    );

    // The header was added as the request left, not recorded: the worker replays as it was.
    let server = {
        server.kill9();
        Server::start(&config, &data)
    };
    let (status, count) = Http::new()
        .request("GET", &format!("{}/user/traced/count", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, count), (200, json!(3)));
}
