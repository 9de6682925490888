//! Outgoing HTTP (`wasi:http/outgoing-handler`): how a request and its response are encoded
//! for the log, and how one is performed. Whether it is performed at all, or answered from the
//! log, is the chokepoint's decision (`durability.rs`): `handle` is a remote effect, so
//! everything recorded before it is durable before the request leaves, and a process that dies
//! after it left sends it again on resumption (outgoing HTTP is at least once). In replay a
//! request that differs from the recorded one (method, URI, headers or body hash) is a
//! divergence.
//!
//! Plain `http://` only for now (no TLS client is built in); bodies are bounded by
//! `HTTP_BODY_BYTES_MAX` because each is recorded in one oplog entry.

use crate::durability::{Decision, Durability, Effect, HostFunction};
use crate::limits::{
    HTTP_BODY_BYTES_MAX, HTTP_CONNECT_ATTEMPTS, HTTP_REQUEST_TIMEOUT, HTTP_RETRY_BACKOFF,
};
use bytes::Bytes;
use http::uri::Scheme;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use revenant_storage::Value;
use std::future::Future;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

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

/// What is recorded of a request: enough to detect a guest that now sends another one.
fn request_value(parts: &http::request::Parts, body: &Bytes) -> Value {
    let hash = revenant_storage::catalog::sha256_hex(body);
    Value::Record(vec![
        ("method".into(), Value::String(parts.method.to_string())),
        ("uri".into(), Value::String(parts.uri.to_string())),
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
        Value::Result(Err(Some(message))) => {
            return Err(match message.as_ref() {
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
    let body = Limited::new(body, HTTP_BODY_BYTES_MAX)
        .collect()
        .await
        .map_err(|_| Error::HttpRequestBodySize(None))?
        .to_bytes();
    Ok((parts, body))
}

/// Sends the request, retrying failures to connect, and reads the whole response: the value to
/// record.
async fn perform(client: &HttpClient, parts: http::request::Parts, body: Bytes) -> Value {
    let exchange = async {
        let mut attempt = 1;
        let response = loop {
            let request = http::Request::from_parts(parts.clone(), Full::new(body.clone()));
            match client.request(request).await {
                Ok(response) => break response,
                // Refused or unreachable: nothing left this process, so trying again is safe.
                Err(e) if e.is_connect() && attempt < HTTP_CONNECT_ATTEMPTS => {
                    tokio::time::sleep(HTTP_RETRY_BACKOFF * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
                Err(e) => return Err(format!("request failed after {attempt} attempt(s): {e}")),
            }
        };
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, HTTP_BODY_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| {
                format!("reading the response body (at most {HTTP_BODY_BYTES_MAX} bytes): {e}")
            })?
            .to_bytes();
        Ok::<_, String>((parts, body))
    };
    match tokio::time::timeout(HTTP_REQUEST_TIMEOUT, exchange).await {
        Ok(Ok((parts, body))) => Value::Result(Ok(Some(Box::new(Value::Record(vec![
            ("status".into(), Value::U16(parts.status.as_u16())),
            ("headers".into(), headers_value(&parts.headers)),
            ("body".into(), Value::Bytes(body.to_vec())),
        ]))))),
        Ok(Err(message)) => Value::Result(Err(Some(Box::new(Value::String(message))))),
        Err(_) => Value::Result(Err(Some(Box::new(Value::String(format!(
            "no complete response within {HTTP_REQUEST_TIMEOUT:?}"
        )))))),
    }
}

impl WasiHttpHooks for Durability {
    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        *scheme == Scheme::HTTP
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
        let (chokepoint, client) = (self.chokepoint.clone(), self.http.clone());
        Box::new(async move {
            let (parts, body) = read_request(request).await?;
            match chokepoint
                .decide(&HANDLE, request_value(&parts, &body))
                .map_err(failed)?
            {
                Decision::Recorded(response) => response_from(&response),
                Decision::Perform(pending) => {
                    pending.before_effect().await.map_err(failed)?;
                    let response = perform(&client, parts, body).await;
                    pending.record(&response);
                    response_from(&response)
                }
            }
        })
    }
}
