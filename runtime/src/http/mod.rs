//! Outgoing HTTP (`wasi:http/outgoing-handler`): how a request and its response are encoded
//! for the log, and how one is performed. Whether it is performed at all, or answered from the
//! log, is the chokepoint's decision (`durability.rs`): `handle` is a remote effect, so
//! everything recorded before it is durable before the request leaves, and a process that dies
//! after it left sends it again on resumption (outgoing HTTP is at least once). In replay a
//! request that differs from the recorded one (method, URI, headers or body hash) is a
//! divergence.
//!
//! What is recorded is bounded: a request's head by `HTTP_REQUEST_HEAD_BYTES_MAX`, a response
//! (status, headers and body together) by `HTTP_RESPONSE_BYTES_MAX`, the storage bound on one
//! value; the log stores entries that large in chunks.
//! How a request is performed (egress policy, TLS, timeouts, caps) is `client.rs`; whatever
//! it answers, a response or a failure, is what is recorded and what the guest sees.

mod client;
pub mod egress;
pub mod tls;

pub(crate) use client::Outgoing;
pub use client::{OutgoingHttpConfig, chain as error_chain};

use crate::durability::{Decision, Durability, Effect, HostFunction};
use crate::limits::{HTTP_REQUEST_BODY_BYTES_MAX, HTTP_REQUEST_HEAD_BYTES_MAX};
use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::{BodyExt, Full, Limited};
use revenant_storage::Value;
use std::future::Future;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// `wasi:http/outgoing-handler.handle`: the request leaves the process.
const HANDLE: HostFunction = HostFunction {
    interface: "wasi:http/outgoing-handler",
    function: "handle",
    effect: Effect::Remote,
};

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), Error>> + Send>,
    ),
    Error,
>;

fn failed(message: impl Into<String>) -> Error {
    Error::Connect(std::io::Error::other(message.into()))
}

/// A failure the guest sees with its message (`internal-error(some(message))`): the egress
/// policy's refusal, a TLS or timeout problem. Logs written before this form answer as before.
const FAILURE_FIELD: &str = "error";

fn headers_value(headers: &http::HeaderMap) -> Value {
    Value::List(
        headers
            .iter()
            .map(|(n, v)| {
                Value::Tuple(vec![
                    Value::String(n.to_string()),
                    Value::Bytes(v.as_bytes().to_vec()),
                ])
            })
            .collect(),
    )
}

/// Bytes of a head's headers as they are recorded (names and values), plus a little per header.
pub(crate) fn head_bytes(headers: &http::HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + 16
}

/// What is recorded of a request: enough to detect a guest that now sends another one.
fn request_value(parts: &http::request::Parts, body: &Bytes) -> Value {
    let hash = revenant_storage::catalog::sha256_hex(body);
    Value::Record(vec![
        ("method".into(), Value::String(parts.method.to_string())),
        ("uri".into(), Value::String(client::redacted(&parts.uri))),
        ("headers".into(), headers_value(&parts.headers)),
        ("body-sha256".into(), Value::String(hash)),
    ])
}

/// Rebuilds the guest's response from a recorded one, live or in replay alike, so that the
/// guest sees exactly the same thing both times.
fn response_from(recorded: &Value) -> SendResult {
    let fields = match recorded {
        Value::Result(Ok(Some(r))) => match r.as_ref() {
            Value::Record(fields) => fields,
            _ => return Err(failed("malformed recorded response")),
        },
        Value::Result(Err(Some(failure))) => {
            return Err(match failure.as_ref() {
                Value::Record(fields) => match fields.as_slice() {
                    [(name, Value::String(m))] if name == FAILURE_FIELD => {
                        Error::InternalError(Some(m.clone()))
                    }
                    _ => failed("malformed recorded failure"),
                },
                // Recorded before failures carried their message to the guest.
                Value::String(m) => failed(m.clone()),
                _ => failed("malformed recorded failure"),
            });
        }
        _ => return Err(failed("malformed recorded response")),
    };
    let mut builder = http::Response::builder();
    let mut body = Bytes::new();
    for (name, value) in fields {
        match (name.as_str(), value) {
            ("status", Value::U16(status)) => builder = builder.status(*status),
            ("headers", Value::List(headers)) => {
                for h in headers {
                    if let Value::Tuple(pair) = h
                        && let [Value::String(n), Value::Bytes(v)] = pair.as_slice()
                    {
                        builder = builder.header(n.as_str(), v.as_slice());
                    }
                }
            }
            ("body", Value::Bytes(b)) => body = Bytes::from(b.clone()),
            _ => {}
        }
    }
    let body = Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    let response = builder
        .body(body)
        .map_err(|e| failed(format!("recorded response: {e}")))?;
    Ok((response, Box::new(async { Ok(()) })))
}

async fn read_request(
    request: http::Request<WasiBody>,
) -> Result<(http::request::Parts, Bytes), Error> {
    let (parts, body) = request.into_parts();
    let head = head_bytes(&parts.headers) + parts.uri.to_string().len();
    if head > HTTP_REQUEST_HEAD_BYTES_MAX {
        return Err(Error::InternalError(Some(format!(
            "the request's URL and headers are {head} bytes, past the \
             {HTTP_REQUEST_HEAD_BYTES_MAX} bytes a call may record"
        ))));
    }
    let body = Limited::new(body, HTTP_REQUEST_BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|_| Error::HttpRequestBodySize(None))?
        .to_bytes();
    Ok((parts, body))
}

/// What is recorded of a performed request: the response, or why there is none.
fn outcome_value(outcome: Result<(http::response::Parts, Bytes), String>) -> Value {
    match outcome {
        Ok((parts, body)) => Value::Result(Ok(Some(Box::new(Value::Record(vec![
            ("status".into(), Value::U16(parts.status.as_u16())),
            ("headers".into(), headers_value(&parts.headers)),
            ("body".into(), Value::Bytes(body.to_vec())),
        ]))))),
        Err(message) => Value::Result(Err(Some(Box::new(Value::Record(vec![(
            FAILURE_FIELD.into(),
            Value::String(message),
        )]))))),
    }
}

/// The request as it leaves: with a `traceparent` that makes the upstream's work part of the
/// caller's trace (a new trace when the call came with none), unless the guest set its own.
/// Added after the request was recorded, not to it: a replay compares the guest's own request,
/// and the span id is new each time the request is sent.
fn with_trace(
    headers: &mut http::HeaderMap,
    trace: Option<crate::trace::TraceContext>,
    exported: Option<crate::trace::TraceContext>,
) {
    if headers.contains_key("traceparent") {
        return;
    }
    let child = exported
        .unwrap_or_else(|| trace.map_or_else(crate::trace::TraceContext::new_root, |t| t.child()));
    if let Ok(value) = http::HeaderValue::from_str(&child.header()) {
        headers.insert("traceparent", value);
    }
}

impl WasiHttpHooks for Durability {
    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS
    }

    fn default_scheme(&mut self) -> Option<Scheme> {
        Some(Scheme::HTTP)
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let (chokepoint, outgoing, mine, worker, trace) = (
            self.chokepoint.clone(),
            self.http.clone(),
            self.http_permits.clone(),
            self.worker.clone(),
            self.trace,
        );
        // Taken here, inside the guest's call and so inside its invocation's span: the future
        // below may be polled elsewhere.
        let exported = crate::trace::exported();
        Box::new(async move {
            let (parts, body) = read_request(request).await?;
            // Refused before anything was recorded (a read-only call, too many host calls, a
            // divergence in replay): the guest sees why.
            match chokepoint
                .decide(&HANDLE, request_value(&parts, &body))
                .map_err(|why| Error::InternalError(Some(why)))?
            {
                Decision::Recorded(response) => response_from(&response),
                Decision::Perform(pending) => {
                    pending.before_effect().await.map_err(failed)?;
                    let mut parts = parts;
                    with_trace(&mut parts.headers, trace, exported);
                    let outcome = outgoing
                        .perform(&mine, worker.as_deref(), parts, body)
                        .await;
                    if let Err(why) = &outcome {
                        tracing::warn!("outgoing request failed: {why}");
                    }
                    let response = outcome_value(outcome);
                    pending.record(&response);
                    response_from(&response)
                }
            }
        })
    }
}
