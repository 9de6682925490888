//! The CLI's side of the admin API: where it is, the token it takes (found the way the server
//! finds it, `admin_token.rs`), one request and its answer. A refusal becomes a [`Refused`]
//! with the API's stable `code`, which `main` prints as one line with its exit code.

use crate::{Failure, admin_token, config};
use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;
use std::path::PathBuf;

/// Largest answer read: admin answers are pages (1,000 workers, entries up to
/// `OPLOG_PAGE_BYTES_MAX` of JSON) or a deployed definition.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

/// How long a request to the admin API may take: a call to a worker runs up to its
/// invocation timeout (30 s by default), a time travel replays a log.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Where the admin API is and how to authenticate to it; every admin command takes these.
#[derive(clap::Args, Clone)]
pub struct Connection {
    /// The admin API's URL, e.g. http://127.0.0.1:9090 (default: the project file's
    /// `admin_listen`).
    #[arg(long, env = "REVENANT_ADMIN", global = true)]
    admin: Option<String>,
    /// The admin token (default: the project's `admin.token`, else <data>/admin.token).
    #[arg(
        long,
        env = "REVENANT_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// The project file, for its `data`, `admin_listen` and `admin.token`.
    #[arg(
        long,
        short,
        env = "REVENANT_CONFIG",
        default_value = "revenant.yaml",
        global = true
    )]
    config: PathBuf,
    /// The data directory holding admin.token, overriding the file's `data`.
    #[arg(long, env = "REVENANT_DATA", global = true)]
    data: Option<PathBuf>,
}

/// The admin API's answer to a request it refused or failed: its status, stable code and
/// message (`docs/errors.md`).
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

pub struct Client {
    base: String,
    token: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
}

impl Connection {
    pub fn client(&self) -> Result<Client, Failure> {
        let project =
            || config::admin_view(&self.config).map_err(|d| Failure::Invalid(d.to_string()));
        let token = match (&self.token, &self.data) {
            (Some(t), _) => t.clone(),
            (None, Some(data)) => admin_token::read(&admin_token::file_in(data))?,
            (None, None) => {
                let view = project()?;
                match view.token {
                    Some(t) => t,
                    None => admin_token::read(&admin_token::file_in(&view.data))?,
                }
            }
        };
        let base = match &self.admin {
            Some(url) => url.clone(),
            None => {
                let listen = project()?.admin_listen.ok_or_else(|| {
                    anyhow!(
                        "no admin URL: pass --admin, set REVENANT_ADMIN, or set admin_listen in {}",
                        self.config.display()
                    )
                })?;
                format!("http://{listen}")
            }
        };
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token,
            http: HttpClient::builder(TokioExecutor::new()).build_http(),
        })
    }
}

impl Client {
    /// One request; any answer, successful or not, with its status.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, Bytes), Failure> {
        let url = format!("{}{path}", self.base);
        let mut request = http::Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(Full::new(body))
            .with_context(|| format!("building a request to {url}"))?;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.http.request(request))
            .await
            .map_err(|_| {
                Failure::Unreachable(format!(
                    "{method} {url}: no answer within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                Failure::Unreachable(format!(
                    "{method} {url}: {}",
                    revenant_runtime::error_chain(&e)
                ))
            })?;
        let status = response.status();
        let answer = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
            .collect()
            .await
            .map_err(|e| Failure::Unreachable(format!("{method} {url}: reading the answer: {e}")))?
            .to_bytes();
        Ok((status, answer))
    }

    /// One request whose answer is JSON; a refusal becomes `Failure::Refused`.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<Json>,
        headers: &[(&str, String)],
    ) -> Result<Json, Failure> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let (status, answer) = self.raw(method, path, body, headers).await?;
        ok_or_refused(status, &answer)?;
        serde_json::from_slice(&answer).map_err(|e| {
            Failure::Other(anyhow!(
                "{path} answered {status} with something that is not JSON: {e}"
            ))
        })
    }

    /// One request with a body of bytes (a component, a definition).
    pub async fn upload(&self, path: &str, body: Vec<u8>) -> Result<Json, Failure> {
        let (status, answer) = self.raw(Method::PUT, path, Bytes::from(body), &[]).await?;
        ok_or_refused(status, &answer)?;
        serde_json::from_slice(&answer)
            .map_err(|e| Failure::Other(anyhow!("{path} answered with something not JSON: {e}")))
    }
}

/// `Ok` for a success; a refusal's code and message, from its JSON body when it has one.
pub fn ok_or_refused(status: StatusCode, answer: &[u8]) -> Result<(), Failure> {
    if status.is_success() {
        return Ok(());
    }
    let body: Option<Json> = serde_json::from_slice(answer).ok();
    let field = |name: &str| {
        body.as_ref()
            .and_then(|b| b.get(name))
            .and_then(Json::as_str)
            .map(str::to_string)
    };
    Err(Failure::Refused(Refused {
        status,
        code: field("code").unwrap_or_else(|| format!("http_{}", status.as_u16())),
        message: field("message")
            .unwrap_or_else(|| String::from_utf8_lossy(answer).trim().to_string()),
    }))
}

/// What a path segment or query value keeps unencoded: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment, percent-encoded: worker names may hold `/`, spaces, anything.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// A query value, percent-encoded.
pub fn query_value(s: &str) -> String {
    segment(s)
}
