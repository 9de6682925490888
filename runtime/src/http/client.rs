//! How a guest's outgoing request is performed: through the egress policy's connector, over
//! TLS when the URL says `https`, with connect, first-byte and total timeouts, and within caps
//! on concurrent requests per worker and in all. Every failure here becomes an outcome the
//! caller records, so a replay sees the same failure without performing anything.

use super::egress::{EgressPolicy, Refusal};
use crate::limits::{
    HTTP_CONNECT_ATTEMPTS, HTTP_IDLE_CONNECTIONS_PER_HOST, HTTP_RESPONSE_BYTES_MAX,
    HTTP_RETRY_BACKOFF,
};
use crate::slots::{Shared, WorkerFlags};
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// The settings of outgoing HTTP (`outgoing_http:` in the project file).
#[derive(Clone, Debug)]
pub struct OutgoingHttpConfig {
    /// What the egress policy lets through besides public addresses.
    pub allow: Vec<super::egress::AllowRule>,
    /// PEM files of certificate authorities trusted besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// One TCP connection attempt (per resolved address).
    pub connect_timeout: Duration,
    /// From the start of the request to its response's status line: a server that accepts and
    /// never answers is given up on here.
    pub first_byte_timeout: Duration,
    /// The whole exchange, the response body's last byte included.
    pub request_timeout: Duration,
    /// Requests one worker may have in flight at once.
    pub per_worker_max: usize,
    /// Requests the node may have in flight at once.
    pub total_max: usize,
}

impl Default for OutgoingHttpConfig {
    fn default() -> Self {
        use crate::limits::*;
        Self {
            allow: Vec::new(),
            ca_files: Vec::new(),
            connect_timeout: HTTP_CONNECT_TIMEOUT,
            first_byte_timeout: HTTP_FIRST_BYTE_TIMEOUT,
            request_timeout: HTTP_REQUEST_TIMEOUT,
            per_worker_max: HTTP_REQUESTS_PER_WORKER_MAX,
            total_max: HTTP_REQUESTS_MAX,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Resolves a URL's host, keeps the addresses the policy allows, and connects to the first that
/// answers. The connection is made to the very address that was checked.
#[derive(Clone)]
struct GuardedConnector {
    policy: Arc<EgressPolicy>,
    connect_timeout: Duration,
}

impl tower::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (policy, timeout) = (self.policy.clone(), self.connect_timeout);
        Box::pin(async move {
            let host = uri.host().ok_or("the URL has no host")?.to_string();
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<SocketAddr> = match literal.parse::<std::net::IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) => tokio::time::timeout(timeout, tokio::net::lookup_host((literal, port)))
                    .await
                    .map_err(|_| format!("resolving {host} timed out after {timeout:?}"))?
                    .map_err(|e| format!("resolving {host}: {e}"))?
                    .collect(),
            };
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| match policy.check(&host, *addr) {
                    Ok(()) => true,
                    Err(r) => {
                        refusal.get_or_insert(r);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refusal {
                    Some(r) => Box::new(r) as BoxError,
                    None => format!("{host} resolves to no address").into(),
                });
            }
            let mut last = None;
            for addr in allowed {
                match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(stream)) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(TokioIo::new(stream));
                    }
                    Ok(Err(e)) => last = Some(format!("connecting to {addr}: {e}")),
                    Err(_) => {
                        last = Some(format!("connecting to {addr} timed out after {timeout:?}"))
                    }
                }
            }
            Err(last.expect("at least one address was tried").into())
        })
    }
}

type HttpClient = Client<HttpsConnector<GuardedConnector>, Full<Bytes>>;

/// Outgoing HTTP for the whole node: one client (its connection pool), the policy and the caps.
pub(crate) struct Outgoing {
    client: HttpClient,
    pub policy: Arc<EgressPolicy>,
    /// Kept for the node's other outgoing connections (JWKS).
    pub tls: rustls::ClientConfig,
    config: OutgoingHttpConfig,
    in_flight: Semaphore,
    /// Workers waiting on a response are not counted against the cap of workers in memory.
    slots: Arc<Shared>,
}

impl Outgoing {
    pub fn new(config: OutgoingHttpConfig, slots: Arc<Shared>) -> Result<Self, String> {
        let tls = super::tls::client_config(&config.ca_files)?;
        let policy = Arc::new(EgressPolicy::new(config.allow.clone()));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(GuardedConnector {
                policy: policy.clone(),
                connect_timeout: config.connect_timeout,
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(HTTP_IDLE_CONNECTIONS_PER_HOST)
            .build(connector);
        Ok(Self {
            client,
            policy,
            tls,
            in_flight: Semaphore::new(config.total_max),
            config,
            slots,
        })
    }

    /// A worker's own cap on requests in flight.
    pub fn worker_permits(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.config.per_worker_max))
    }

    /// Sends the request, retrying failures to connect, and reads the whole response: the
    /// status, headers and body, or why there is none.
    pub async fn perform(
        &self,
        mine: &Semaphore,
        worker: Option<&WorkerFlags>,
        parts: http::request::Parts,
        body: Bytes,
    ) -> Result<(http::response::Parts, Bytes), String> {
        if parts
            .uri
            .authority()
            .is_some_and(|a| a.as_str().contains('@'))
        {
            return Err(format!(
                "refused: the URL {} carries credentials (userinfo); send them in a header",
                redacted(&parts.uri)
            ));
        }
        let Ok(_mine) = mine.try_acquire() else {
            return Err(format!(
                "refused: this worker already has {} outgoing requests in flight \
                 (outgoing_http.concurrent_per_worker)",
                self.config.per_worker_max
            ));
        };
        let Ok(_node) = self.in_flight.try_acquire() else {
            return Err(format!(
                "refused: the node already has {} outgoing requests in flight \
                 (outgoing_http.concurrent_max)",
                self.config.total_max
            ));
        };
        // A durable worker waiting here frees its place under the cap (an ephemeral call has
        // no place).
        let _waiting = worker.map(|flags| self.slots.waiting(flags));
        let c = &self.config;
        let exchange = async {
            let first_byte = tokio::time::timeout(c.first_byte_timeout, async {
                let mut attempt = 1;
                loop {
                    let request = http::Request::from_parts(parts.clone(), Full::new(body.clone()));
                    match self.client.request(request).await {
                        Ok(response) => return Ok(response),
                        // Refused by the policy: trying again gives the same answer.
                        Err(ref e) if let Some(refusal) = cause::<Refusal>(e) => {
                            return Err(refusal.to_string());
                        }
                        // A certificate that does not verify will not verify next time.
                        Err(e) if cause::<rustls::Error>(&e).is_some() => {
                            return Err(format!("TLS: {}", chain(&e)));
                        }
                        // Refused or unreachable: nothing left this process, so trying
                        // again is safe.
                        Err(e) if e.is_connect() && attempt < HTTP_CONNECT_ATTEMPTS => {
                            tokio::time::sleep(HTTP_RETRY_BACKOFF * 2u32.pow(attempt - 1)).await;
                            attempt += 1;
                        }
                        Err(e) => {
                            return Err(format!(
                                "request failed after {attempt} attempt(s): {}",
                                chain(&e)
                            ));
                        }
                    }
                }
            });
            let response = first_byte.await.map_err(|_| {
                format!(
                    "no response within the first-byte timeout of {:?} \
                     (outgoing_http.first_byte_timeout_ms)",
                    c.first_byte_timeout
                )
            })??;
            let (parts, body) = response.into_parts();
            // Status, headers and body are recorded in one entry: they share one bound.
            let head = super::head_bytes(&parts.headers);
            let past = |what: &str| {
                format!(
                    "the response is past the {HTTP_RESPONSE_BYTES_MAX} bytes a call may record \
                     (status, headers and body together): {what}"
                )
            };
            if head > HTTP_RESPONSE_BYTES_MAX {
                return Err(past(&format!("its headers alone are {head} bytes")));
            }
            let body = Limited::new(body, HTTP_RESPONSE_BYTES_MAX - head)
                .collect()
                .await
                .map_err(
                    |e| match e.downcast_ref::<http_body_util::LengthLimitError>() {
                        Some(_) => past(&format!(
                            "{head} bytes of headers, and more body than the remaining {}",
                            HTTP_RESPONSE_BYTES_MAX - head
                        )),
                        None => format!("reading the response body: {e}"),
                    },
                )?
                .to_bytes();
            Ok::<_, String>((parts, body))
        };
        match tokio::time::timeout(c.request_timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!(
                "no complete response within {:?} (outgoing_http.request_timeout_ms)",
                c.request_timeout
            )),
        }
    }
}

/// An error of type `T` among a client error's causes. I/O errors are looked into: the TLS
/// connector wraps rustls' error in an I/O error inside another.
fn cause<T: std::error::Error + 'static>(e: &hyper_util::client::legacy::Error) -> Option<&T> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let mut layer: &(dyn std::error::Error + 'static) = s;
        loop {
            if let Some(found) = layer.downcast_ref::<T>() {
                return Some(found);
            }
            match layer
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
            {
                Some(inner) => layer = inner,
                None => break,
            }
        }
        source = s.source();
    }
    None
}

/// An error with its causes, outermost first: the client's own message ("client error
/// (Connect)") says little; the cause says what happened (a TLS certificate problem, say).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// A URI without its userinfo, for messages and logs.
pub(super) fn redacted(uri: &Uri) -> String {
    let text = uri.to_string();
    match (uri.authority(), uri.host()) {
        (Some(authority), Some(host)) => {
            let kept = match uri.port_u16() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            text.replacen(authority.as_str(), &kept, 1)
        }
        _ => text,
    }
}
