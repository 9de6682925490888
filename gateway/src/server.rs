//! The HTTP server: accepts connections within the bounds in `limits`, serves HTTP/1.1 and
//! HTTP/2 through hyper, and hands each request to the [`Gateway`].

use crate::error::ErrorCode;
use crate::limits::{
    CONNECTIONS_MAX, DRAIN_TIMEOUT, H2_STREAMS_MAX, HEADER_BYTES_MAX, HEADER_READ_TIMEOUT,
    REQUEST_DEADLINE,
};
use crate::{ApiError, Gateway};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::trace::TraceLayer;

/// Something that answers requests: the public gateway, or the admin API.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>> + Send;
}

impl Handler for Gateway {
    fn handle(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> impl Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>> + Send {
        Gateway::handle(self, request)
    }
}

/// Serves `gateway` on `listener` until `shutdown` completes, then drains (see [`serve_with`]). The listener is passed in so that
/// callers (and tests) choose the address, port 0 included.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_with(listener, gateway, ServerLimits::default(), shutdown).await
}

/// The server's bounds a deployment may tune (the others are constants in `limits`).
#[derive(Clone, Copy, Debug)]
pub struct ServerLimits {
    pub header_read_timeout: std::time::Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves any [`Handler`] with the same bounds as the gateway. When `shutdown` completes it
/// stops accepting, lets every request already being served finish and closes idle
/// connections, within `DRAIN_TIMEOUT`; then it returns.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(HEADER_BYTES_MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS_MAX)
        .max_header_list_size(HEADER_BYTES_MAX as u32);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => permit.expect("semaphore never closes"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and similar: the next accept may succeed.
                    tracing::warn!("accept failed: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .service_fn(move |request| {
                let handler = handler.clone();
                async move {
                    if let Some(problem) = edge_problem(&request) {
                        let mut response =
                            ApiError::new(ErrorCode::BadHeader, problem).into_response();
                        // Whatever follows on the connection is not read as another request:
                        // after an ambiguous request, where it ends is not known.
                        if request.version() <= http::Version::HTTP_11 {
                            response.headers_mut().insert(
                                http::header::CONNECTION,
                                http::HeaderValue::from_static("close"),
                            );
                        }
                        return Ok::<_, Infallible>(response);
                    }
                    let response =
                        match tokio::time::timeout(REQUEST_DEADLINE, handler.handle(request)).await
                        {
                            Ok(r) => r,
                            Err(_) => ApiError::new(
                                ErrorCode::DeadlineExceeded,
                                format!("no answer within {REQUEST_DEADLINE:?}"),
                            )
                            .into_response(),
                        };
                    Ok::<_, Infallible>(response)
                }
            });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let io = TokioIo::new(stream);
            let connection = builder.serve_connection(io, TowerToHyperService::new(service));
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!("draining {open} connections");
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
    Ok(())
}

/// What makes a request ambiguous before anything reads it: two `Host` headers, or none on
/// HTTP/1.1 (RFC 9112 §3.2: answer 400), so that which host it is for cannot differ between
/// this server and a proxy in front of it; two `Authorization` headers, of which another
/// component could pick the other one; a body whose end could be read two ways.
fn edge_problem<B>(request: &http::Request<B>) -> Option<String> {
    let count = |name: http::header::HeaderName| request.headers().get_all(name).iter().count();
    if let Some(problem) = framing_problem(request.headers()) {
        return Some(problem);
    }
    match count(http::header::HOST) {
        0 if request.version() == http::Version::HTTP_11 => {
            return Some("an HTTP/1.1 request needs a `Host` header".into());
        }
        n if n > 1 => return Some(format!("{n} `Host` headers; one is allowed")),
        _ => {}
    }
    let authorizations = count(http::header::AUTHORIZATION);
    (authorizations > 1)
        .then(|| format!("{authorizations} `Authorization` headers; one is allowed"))
}

/// Request smuggling (RFC 9112 §6.3, §7). A body framed by both `Content-Length` and
/// `Transfer-Encoding` hyper reads by the latter, drops the former and closes the connection
/// after the answer, as the RFC asks, so nothing after it is read as a request. But hyper
/// accepts `chunked` applied twice (the RFC forbids it) and keeps the connection open; a proxy
/// in front may reject or read such a body otherwise and see a different next request. So any
/// transfer coding but a single `chunked` is refused.
fn framing_problem(headers: &http::HeaderMap) -> Option<String> {
    let codings: Vec<String> = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .split(',')
                .map(|c| c.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    (!codings.is_empty() && codings != ["chunked"]).then(|| {
        format!(
            "`Transfer-Encoding: {}`: only a single `chunked` is accepted",
            codings.join(", ")
        )
    })
}
