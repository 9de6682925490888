//! What the gateway counts, and `/metrics` itself: requests by route and status, and their
//! latency, in the process's default Prometheus registry with the runtime's and the store's
//! series. The route label is the route as declared (`POST /user/{user-id}/activities`), or
//! one of a few fixed names for what matched no route: bounded, whatever callers send.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use revenant_storage::metrics::{latency_buckets, registered};
use std::sync::LazyLock;
use std::time::Duration;

/// The route label of a request that matched no route.
pub(crate) const NO_ROUTE: &str = "(no route)";
/// The route label of a CORS preflight (answered from the route's policy, no call made).
pub(crate) const PREFLIGHT: &str = "(cors preflight)";
/// The route label of a request whose path matched with a method no route declares.
pub(crate) const NOT_ALLOWED: &str = "(method not allowed)";
/// The route label of requests to the admin API.
pub(crate) const ADMIN: &str = "(admin)";

struct GatewayMetrics {
    requests: IntCounterVec,
    request_seconds: HistogramVec,
}

static METRICS: LazyLock<GatewayMetrics> = LazyLock::new(|| GatewayMetrics {
    requests: registered(
        IntCounterVec::new(
            Opts::new(
                "revenant_http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["route", "status"],
        )
        .expect("a valid metric"),
    ),
    request_seconds: registered(
        HistogramVec::new(
            HistogramOpts::new(
                "revenant_http_request_seconds",
                "Time from a request's head to its response, by route.",
            )
            .buckets(latency_buckets()),
            &["route"],
        )
        .expect("a valid metric"),
    ),
});

/// Counts one answered request.
pub(crate) fn answered(route: &str, status: StatusCode, took: Duration) {
    let m = &*METRICS;
    m.requests
        .with_label_values(&[route, status.as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[route])
        .observe(took.as_secs_f64());
}

/// Every series of the process, in Prometheus's text format (version 0.0.4).
pub(crate) fn render() -> Response<Full<Bytes>> {
    LazyLock::force(&METRICS);
    revenant_runtime::metrics::register();
    revenant_storage::metrics::register();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap_or_else(|e| format!("# the metrics could not be encoded: {e}\n"));
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
