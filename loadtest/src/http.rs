//! The HTTP client side: one pooled hyper client, requests with a deadline, bodies bounded.

use crate::limits;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;
use std::time::Duration;

pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client(pool: usize) -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(pool)
        .build(connector)
}

pub(crate) struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Sends one request; an `Err` is the error's class (`connect`, `timeout`, ...), for reports.
pub(crate) async fn send(
    client: &Client,
    method: &http::Method,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut builder = http::Request::builder().method(method.clone()).uri(url);
    if !body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    for (k, v) in headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            if e.is_connect() {
                "connect".to_string()
            } else {
                "transport".to_string()
            }
        })?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), limits::RESPONSE_BYTES_MAX)
            .collect()
            .await
            .map_err(|_| "response body".to_string())?
            .to_bytes();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// GET `url` and parse its JSON answer; errors are messages naming the URL.
pub(crate) async fn get_json(client: &Client, url: &str) -> Result<Json, String> {
    let answer = send(
        client,
        &http::Method::GET,
        url,
        &[],
        Bytes::new(),
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| format!("GET {url}: {e}"))?;
    if !(200..300).contains(&answer.status) {
        return Err(format!("GET {url}: status {}", answer.status));
    }
    serde_json::from_slice(&answer.body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}
