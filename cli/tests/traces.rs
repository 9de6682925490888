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

/// Spans a fake OpenTelemetry collector received: each with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>;

/// A collector's OTLP/HTTP traces endpoint: decodes each export (protobuf) and keeps its spans.
async fn collector(received: Received) -> String {
    use http_body_util::BodyExt;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let received = received.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let received = received.clone();
                        async move {
                            assert_eq!(request.uri().path(), "/v1/traces");
                            assert_eq!(request.headers()["content-type"], "application/x-protobuf");
                            assert_eq!(request.headers()["x-collector-key"], "k-123");
                            let body = request.into_body().collect().await.unwrap().to_bytes();
                            let export = ExportTraceServiceRequest::decode(body).unwrap();
                            for resource in export.resource_spans {
                                let service = resource
                                    .resource
                                    .iter()
                                    .flat_map(|r| &r.attributes)
                                    .find(|a| a.key == "service.name")
                                    .map(|a| format!("{:?}", a.value))
                                    .unwrap_or_default();
                                for scope in resource.scope_spans {
                                    for span in scope.spans {
                                        received.lock().unwrap().push((service.clone(), span));
                                    }
                                }
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    base
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match span
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
    {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        other => panic!("attribute `{key}` of {span:?}: {other:?}"),
    }
}

/// With `telemetry.otlp_endpoint` set, the request and invocation spans reach a collector as
/// OTLP: the caller's span is the request's parent, the invocation is the request's child, and
/// the upstream the guest calls names the invocation's exported span as its parent. The stderr
/// log keeps its own level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_as_one_tree() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let upstream = recording_upstream(seen.clone()).await;
    let received: Received = Default::default();
    let endpoint = collector(received.clone()).await;
    let (dir, config) = demo_with(&format!(
        "outgoing_http:\n  allow: [\"127.0.0.1\"]\ntelemetry:\n  otlp_endpoint: {endpoint}\n  \
         service_name: revenant-test\n  headers:\n    x-collector-key: k-123\n"
    ));
    let log = dir.path().join("server.log");
    let server = Server::start_logged(&config, &dir.path().join("data"), &log, "warn");
    let http = Http::new();
    for (user, traceparent) in [("traced", Some(CALLER)), ("rooted", None)] {
        let headers: Vec<(&str, &str)> = traceparent
            .into_iter()
            .map(|t| ("traceparent", t))
            .collect();
        let (status, _) = http
            .request_with(
                "POST",
                &format!("{}/user/{user}/imports", server.url),
                Some(json!({ "url": upstream })),
                &headers,
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    support::eventually(
        "the collector receives two requests' and two invocations' spans",
        std::time::Duration::from_secs(30),
        || received.lock().unwrap().len() >= 4,
    )
    .await;
    let spans = received.lock().unwrap().clone();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert!(
        spans
            .iter()
            .all(|(service, _)| service.contains("revenant-test")),
        "{spans:#?}"
    );
    let named = |name: &str| -> Vec<&opentelemetry_proto::tonic::trace::v1::Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    let (requests, invocations) = (named("request"), named("invocation"));
    assert_eq!((requests.len(), invocations.len()), (2, 2), "{spans:#?}");
    let upstream_saw = seen.lock().unwrap().clone();
    assert_eq!(upstream_saw.len(), 2);

    // The call that came with the caller's trace.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let request = requests
        .iter()
        .find(|s| hex(&s.trace_id) == caller_trace)
        .expect("the request span is in the caller's trace");
    assert_eq!(hex(&request.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(attribute(request, "route"), "POST /user/{user-id}/imports");
    let invocation = invocations
        .iter()
        .find(|s| s.parent_span_id == request.span_id)
        .expect("the invocation span is the request's child");
    assert_eq!(hex(&invocation.trace_id), caller_trace);
    assert_eq!(attribute(invocation, "worker"), "user-activity/user-traced");
    assert_eq!(
        attribute(invocation, "function"),
        "revenant:user-activity/api.import-activity"
    );
    assert_eq!(attribute(invocation, "index"), "1");
    assert_eq!(
        upstream_saw[0].as_deref(),
        Some(format!("00-{caller_trace}-{}-01", hex(&invocation.span_id)).as_str()),
        "the upstream's parent is the exported invocation span"
    );

    // The call without one: a trace of this node's own, the same shape.
    let root = requests
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("a request without a traceparent starts a trace");
    assert_ne!(hex(&root.trace_id), caller_trace);
    let child = invocations
        .iter()
        .find(|s| s.parent_span_id == root.span_id)
        .expect("its invocation is its child");
    assert_eq!(attribute(child, "worker"), "user-activity/user-rooted");
    assert_eq!(attribute(child, "index"), "1");
    assert_eq!(
        upstream_saw[1].as_deref(),
        Some(format!("00-{}-{}-01", hex(&root.trace_id), hex(&child.span_id)).as_str())
    );

    // The stderr log stayed at `warn`: the spans went to the collector only.
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains("invocation{"), "{text}");
}
