//! The gateway's part of a cluster: sending a call to the node that serves its worker, and the
//! internal listener that takes such calls from the other nodes.
//!
//! A forwarded request is the client's request (method, path and query, headers including
//! `Authorization` and `Idempotency-Key`, body) plus the cluster's shared secret and the count
//! of hops so far. The receiving node checks the secret, then serves it through the same router
//! as its public listener: authentication, inputs and routing again, so that it never trusts
//! the sender for more than being a member.

use crate::error::{ApiError, ErrorCode};
use crate::limits::{FORWARD_RESPONSE_BYTES_MAX, REQUEST_DEADLINE};
use crate::{Handler, deploy::LiveGateway};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use revenant_cluster::{Attempt, Locator};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The shared secret a forwarded request carries.
pub const SECRET_HEADER: &str = "x-revenant-cluster-secret";
/// How many times the request was forwarded before this one.
pub const HOPS_HEADER: &str = "x-revenant-hops";
/// The node that forwarded it (for logs).
pub const FROM_HEADER: &str = "x-revenant-forwarded-by";

/// Set on a request that came in on the internal listener: how many hops it has made.
#[derive(Clone, Copy, Debug)]
pub struct Forwarded {
    pub hops: u32,
}

/// What a node needs to send calls to the others.
pub struct Forwarder {
    node: String,
    locator: Arc<dyn Locator>,
    secret: HeaderValue,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Forwarder {
    pub fn new(node: &str, locator: Arc<dyn Locator>, secret: &str) -> Result<Self, String> {
        let mut secret = HeaderValue::from_str(secret)
            .map_err(|_| "the cluster secret must be visible ASCII".to_string())?;
        secret.set_sensitive(true);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(crate::limits::FORWARD_CONNECT_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(crate::limits::FORWARD_IDLE_CONNECTIONS_MAX)
            .build(connector);
        Ok(Self {
            node: node.to_string(),
            locator,
            secret,
            client,
        })
    }

    pub fn locator(&self) -> &dyn Locator {
        self.locator.as_ref()
    }

    /// Sends the request to the node at `address` and returns its answer. `Moved` when the call
    /// did not happen there and may be sent again: the node could not be reached, or answered
    /// that it does not serve the worker, or failed during a call that has an idempotency key
    /// (a repeat is answered from its outcome).
    pub(crate) async fn forward(
        &self,
        address: &str,
        parts: &http::request::Parts,
        body: Bytes,
        hops: u32,
        idempotent: bool,
    ) -> Attempt<Result<Response<Full<Bytes>>, ApiError>> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = match format!("{address}{path}").parse() {
            Ok(uri) => uri,
            Err(e) => {
                return Attempt::Done(Err(ApiError::new(
                    ErrorCode::Internal,
                    format!("node address {address}: {e}"),
                )));
            }
        };
        let headers = request.headers_mut();
        for (name, value) in &parts.headers {
            if forwardable(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        headers.insert(HeaderName::from_static(SECRET_HEADER), self.secret.clone());
        headers.insert(
            HeaderName::from_static(HOPS_HEADER),
            HeaderValue::from(hops),
        );
        if let Ok(v) = HeaderValue::from_str(&self.node) {
            headers.insert(HeaderName::from_static(FROM_HEADER), v);
        }
        let sent = tokio::time::timeout(REQUEST_DEADLINE, self.client.request(request)).await;
        let response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(e)) if e.is_connect() => {
                tracing::debug!(%address, "cannot reach the node: {e}");
                return Attempt::Moved;
            }
            Ok(Err(e)) => return self.failed(address, idempotent, &e.to_string()),
            Err(_) => return self.failed(address, idempotent, "no answer in time"),
        };
        let (mut head, incoming) = response.into_parts();
        let bytes = match Limited::new(incoming, FORWARD_RESPONSE_BYTES_MAX)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return self.failed(address, idempotent, &e.to_string()),
        };
        if head.status == StatusCode::SERVICE_UNAVAILABLE && answers_not_owner(&bytes) {
            return Attempt::Moved;
        }
        for name in HOP_BY_HOP {
            head.headers.remove(*name);
        }
        Attempt::Done(Ok(Response::from_parts(head, Full::new(bytes))))
    }

    /// [`forward`](Self::forward), given up once this node sees another holder of the
    /// worker's shard: a node that was killed keeps accepting connections until its memory is
    /// torn down (seconds), and one that is paused answers nothing; once the shard has a new
    /// epoch the old holder cannot record the call any more (the store fences it), so waiting
    /// for it is pointless. An idempotent call is then routed again; another's outcome is
    /// unknown (the old holder may have recorded it before it lost the shard).
    pub(crate) async fn forward_watched(
        &self,
        worker: &revenant_runtime::WorkerId,
        address: String,
        parts: &http::request::Parts,
        body: Bytes,
        hops: u32,
        idempotent: bool,
    ) -> Attempt<Result<Response<Full<Bytes>>, ApiError>> {
        let moved = async {
            loop {
                tokio::time::sleep(crate::limits::FORWARD_WATCH_INTERVAL).await;
                match self.locator.locate(worker) {
                    revenant_cluster::Location::Remote { address: a, .. } if a == address => {}
                    _ => return,
                }
            }
        };
        tokio::select! {
            answer = self.forward(&address, parts, body, hops, idempotent) => answer,
            () = moved => self.failed(&address, idempotent, "the worker's shard moved while it had the call"),
        }
    }

    fn failed(
        &self,
        address: &str,
        idempotent: bool,
        why: &str,
    ) -> Attempt<Result<Response<Full<Bytes>>, ApiError>> {
        tracing::warn!(%address, "a forwarded call failed: {why}");
        if idempotent {
            // A repeat with the same key is answered from the first one's outcome.
            return Attempt::Moved;
        }
        Attempt::Done(Err(ApiError::new(
            ErrorCode::ForwardFailed,
            format!(
                "the node serving the worker ({address}) failed during the call ({why}); without \
                 an Idempotency-Key its outcome cannot be known"
            ),
        )))
    }
}

/// Whether an error body is `not_owner`: the node did not serve the call, which did not happen.
fn answers_not_owner(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("code")
                .and_then(|c| c.as_str())
                .map(|c| c == "not_owner")
        })
        .unwrap_or(false)
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1), plus `Host`
/// (the target's own) and the length (recomputed for the buffered body).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn forwardable(name: &HeaderName) -> bool {
    let name = name.as_str();
    name != header::HOST.as_str()
        && name != header::CONTENT_LENGTH.as_str()
        && !HOP_BY_HOP.contains(&name)
        // The cluster's own headers are set by the forwarder, never passed on from a client.
        && !name.starts_with("x-revenant-")
}

/// The internal listener: requests from other nodes, with the cluster secret, served by the
/// same router as the public listener.
pub struct Internal {
    live: Arc<LiveGateway>,
    secret: Vec<u8>,
}

impl Internal {
    pub fn new(live: Arc<LiveGateway>, secret: &str) -> Self {
        Self {
            live,
            secret: secret.as_bytes().to_vec(),
        }
    }
}

impl Handler for Internal {
    async fn handle(&self, mut request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let given = request
            .headers()
            .get(SECRET_HEADER)
            .map(|v| v.as_bytes().to_vec())
            .unwrap_or_default();
        if !bool::from(given.ct_eq(&self.secret)) {
            return ApiError::new(
                ErrorCode::Unauthenticated,
                "the internal listener takes only requests from cluster members (the cluster \
                 secret)",
            )
            .into_response();
        }
        let hops = request
            .headers()
            .get(HOPS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(revenant_cluster::limits::HOPS_MAX);
        // Routes never see the cluster's headers.
        let headers = request.headers_mut();
        for name in [SECRET_HEADER, HOPS_HEADER, FROM_HEADER] {
            headers.remove(name);
        }
        request.extensions_mut().insert(Forwarded { hops });
        self.live.handle(request).await
    }
}
