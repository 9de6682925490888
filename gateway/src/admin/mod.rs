//! The admin API, served on its own listener (never the public one): worker lifecycle, and
//! deploys (see `deploy`). Every request is checked by `access` first: the admin token, the
//! `Host`, and no `Origin` on requests that change anything.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /components` | loaded components: name, hash, exports |
//! | `GET /components/{name}` | one component: its hash and exports with their WIT signatures |
//! | `PUT /components/{name}` | body: a `.wasm` component; stored as its next version and served |
//! | `GET /api-definitions` | deployed definitions: name, version, routes |
//! | `PUT /api-definitions/{name}` | body: YAML (`auth:`, `routes:`); checked whole, stored, served |
//! | `GET /api-definitions/{name}` | the deployed YAML |
//! | `DELETE /api-definitions/{name}` | stops serving it |
//! | `GET /workers/{component}?status=&after=&limit=` | lists workers, by name, with status |
//! | `GET /workers/{component}/{worker}` | one worker's status, log position and `log_bytes` |
//! | `POST /workers/{component}/{worker}/interrupt` | stops its running call; it refuses calls |
//! | `POST /workers/{component}/{worker}/resume` | lets an interrupted worker take calls again |
//! | `DELETE /workers/{component}/{worker}` | removes its oplog and metadata |
//! | `GET /workers/{component}/{worker}/logs?from=&limit=` | what its guest wrote to stdout and stderr, line by line, as its log holds it |
//! | `POST /workers/{component}/{worker}/invoke/{function}` | calls an export, durably (as a route would); body: its arguments as a JSON array or object; `Idempotency-Key` honoured |
//! | `GET /workers/{component}/{worker}/oplog?from=&limit=` | its log's entries, decoded (`inspect`) |
//! | `GET /workers/{component}/{worker}/state?at=&function=&args=` | time travel: calls an export on the state after entry `at`, in a scratch instance; `args` is a JSON array |
//! | `POST /workers/{component}/{worker}/fork` | body `{"name": ..., "at": ...}`: a new worker whose log is this one's up to `at` |
//! | `GET /cluster` | nodes (id, address, last heartbeat) and each shard's holder and epoch |
//! | `GET /metrics` | every series of the process, in Prometheus's text format |
//! | `GET /console` | the web console (`console.html`): one static page that reads this API with the token it is given |
//! | `GET /healthz`, `GET /readyz` | health (`health`); with the console's page, the only requests that need no token |

mod access;
pub mod inspect;

pub use access::{Access, TOKEN_CHARS_MIN};

use crate::ApiError;
use crate::deploy::Deployments;
use crate::error::ErrorCode;
use crate::error::json_response;
use crate::health;
use crate::limits::{BODY_BYTES_MAX, COMPONENT_BYTES_MAX, DEFINITION_BYTES_MAX};
use crate::server::Handler;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use revenant_runtime::{Control, Runtime, WorkerId, WorkerStatus};
use revenant_storage::kv::KvStore;
use serde_json::json;
use std::sync::Arc;

pub struct Admin<K: KvStore> {
    access: Access,
    runtime: Arc<Runtime>,
    deployments: Arc<Deployments<K>>,
    router: matchit::Router<Route>,
}

#[derive(Clone, Copy)]
enum Route {
    Workers,
    Worker,
    Interrupt,
    Resume,
    Logs,
    Invoke,
    Oplog,
    State,
    Fork,
    Components,
    Component,
    Definitions,
    Definition,
    Cluster,
    Metrics,
}

impl<K: KvStore> Admin<K> {
    pub fn new(deployments: Arc<Deployments<K>>, access: Access) -> Self {
        let runtime = deployments.runtime().clone();
        let mut router = matchit::Router::new();
        for (path, route) in [
            ("/components", Route::Components),
            ("/components/{name}", Route::Component),
            ("/api-definitions", Route::Definitions),
            ("/api-definitions/{name}", Route::Definition),
            ("/workers/{component}", Route::Workers),
            ("/workers/{component}/{worker}", Route::Worker),
            ("/workers/{component}/{worker}/interrupt", Route::Interrupt),
            ("/workers/{component}/{worker}/resume", Route::Resume),
            ("/workers/{component}/{worker}/logs", Route::Logs),
            (
                "/workers/{component}/{worker}/invoke/{function}",
                Route::Invoke,
            ),
            ("/workers/{component}/{worker}/oplog", Route::Oplog),
            ("/workers/{component}/{worker}/state", Route::State),
            ("/workers/{component}/{worker}/fork", Route::Fork),
            ("/cluster", Route::Cluster),
            ("/metrics", Route::Metrics),
        ] {
            router
                .insert(path, route)
                .expect("admin routes do not overlap");
        }
        Self {
            access,
            runtime,
            deployments,
            router,
        }
    }

    async fn route<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = request.uri().path().to_string();
        if request.method() == Method::GET && (path == health::HEALTHZ || path == health::READYZ) {
            self.access.check_host(&request)?;
            return Ok(if path == health::HEALTHZ {
                health::healthz()
            } else {
                health::readyz(&self.runtime).await
            });
        }
        if request.method() == Method::GET && path == CONSOLE {
            // A static page holding no data: it asks for the token and sends it itself.
            self.access.check_host(&request)?;
            return Ok(console());
        }
        self.access.check(&request)?;
        let matched = self.router.at(&path).map_err(|_| {
            ApiError::new(
                ErrorCode::RouteNotFound,
                format!("no admin route matches {path}"),
            )
        })?;
        // Matched on the raw path, then each parameter percent-decoded once: so a worker whose
        // name has `/`, spaces or non-ASCII (from a JWT claim, say) can be inspected and deleted.
        let param = |name: &str| -> Result<Option<String>, ApiError> {
            matched
                .params
                .get(name)
                .map(|raw| {
                    percent_encoding::percent_decode_str(raw)
                        .decode_utf8()
                        .map(|d| d.into_owned())
                        .map_err(|_| {
                            ApiError::new(
                                ErrorCode::BadPath,
                                format!("`{raw}` is not UTF-8 once percent-decoded"),
                            )
                        })
                })
                .transpose()
        };
        let component = param("component")?.unwrap_or_default();
        let worker = param("worker")?.map(|w| WorkerId::new(component.clone(), w));
        let name = param("name")?.unwrap_or_default();
        let function = param("function")?.unwrap_or_default();
        let method = request.method().clone();
        let not_allowed = || {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!("{method} is not allowed on {path}"),
            )
        };
        match (*matched.value, &method, worker) {
            (Route::Workers, &Method::GET, _) => {
                let query = crate::parse_query(request.uri().query().unwrap_or(""))?;
                let status = match query.iter().find(|(k, _)| k == "status") {
                    Some((_, s)) => Some(parse_status(s)?),
                    None => None,
                };
                let after = query
                    .iter()
                    .find(|(k, _)| k == "after")
                    .map(|(_, v)| v.as_str());
                let limit = match query.iter().find(|(k, _)| k == "limit") {
                    Some((_, l)) => l.parse::<usize>().map_err(|_| {
                        ApiError::bad_argument(format!("limit: expected a number, got `{l}`"))
                    })?,
                    None => 100,
                };
                let workers = self
                    .runtime
                    .list_workers(&component, after, limit, status)
                    .await?;
                let body: Vec<_> = workers
                    .into_iter()
                    .map(|(name, status, last)| json!({"name": name, "status": status.as_str(), "last_index": last}))
                    .collect();
                Ok(json_response(StatusCode::OK, &json!(body)))
            }
            (Route::Worker, &Method::GET, Some(worker)) => {
                match (
                    self.runtime.status(&worker).await?,
                    self.runtime.log(&worker).await?,
                ) {
                    (Some(status), log) => Ok(json_response(
                        StatusCode::OK,
                        &json!({
                            "component": worker.component,
                            "name": worker.name,
                            "status": status.as_str(),
                            "last_index": log.map(|l| l.last_index),
                            "snapshot_index": log.map(|l| l.snapshot_index),
                            "log_bytes": log.map(|l| l.bytes),
                        }),
                    )),
                    (None, _) => Err(not_found(&worker)),
                }
            }
            (Route::Logs, &Method::GET, Some(worker)) => {
                let query = crate::parse_query(request.uri().query().unwrap_or(""))?;
                let from = number(&query, "from")?.unwrap_or(1);
                let limit = number(&query, "limit")?
                    .unwrap_or(revenant_runtime::limits::OUTPUT_LINES_MAX as u64);
                let Some(page) = self
                    .runtime
                    .guest_output(&worker, from, limit as usize)
                    .await?
                else {
                    return Err(not_found(&worker));
                };
                let lines: Vec<_> = page
                    .lines
                    .into_iter()
                    .map(|l| json!({"index": l.index, "stream": l.stream, "line": l.line}))
                    .collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"lines": lines, "next": page.next, "scanned_to": page.scanned_to}),
                ))
            }
            (Route::Invoke, &Method::POST, Some(worker)) => {
                let key = match request.headers().get("idempotency-key") {
                    Some(v) => Some(
                        v.to_str()
                            .map_err(|_| {
                                ApiError::new(
                                    ErrorCode::BadHeader,
                                    "Idempotency-Key is not visible ASCII",
                                )
                            })?
                            .to_string(),
                    ),
                    None => None,
                };
                let export = self.export(&worker.component, &function)?;
                let body = crate::read_body(request.into_body(), BODY_BYTES_MAX).await?;
                let given = json_body(&body)?;
                let args = inspect::args(&export, given.as_ref())?;
                let result = self.runtime.invoke(worker, &export.name, args, key).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"function": export.name, "result": inspect::results(&result, crate::json::from_value)}),
                ))
            }
            (Route::Oplog, &Method::GET, Some(worker)) => {
                let query = crate::parse_query(request.uri().query().unwrap_or(""))?;
                let from = number(&query, "from")?.unwrap_or(1);
                let limit = number(&query, "limit")?.unwrap_or(100) as usize;
                // The last index from the same read of the metadata: `log` would also count the
                // log's bytes, a scan of all of it.
                let Some((entries, last_index)) = self.runtime.oplog(&worker, from, limit).await?
                else {
                    return Err(not_found(&worker));
                };
                let mut shown = Vec::with_capacity(entries.len());
                let mut bytes = 0;
                let mut next = entries.last().map(|e| e.seq + 1);
                for e in &entries {
                    let one = inspect::entry(e);
                    bytes += one.to_string().len();
                    if bytes > inspect::OPLOG_PAGE_BYTES_MAX && !shown.is_empty() {
                        next = Some(e.seq);
                        break;
                    }
                    shown.push(one);
                }
                let next = next.filter(|n| *n <= last_index);
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"entries": shown, "next": next, "last_index": last_index}),
                ))
            }
            (Route::State, &Method::GET, Some(worker)) => {
                let query = crate::parse_query(request.uri().query().unwrap_or(""))?;
                let at = number(&query, "at")?.ok_or_else(|| {
                    ApiError::bad_argument("at: the index to travel to is missing")
                })?;
                let function = query
                    .iter()
                    .find(|(k, _)| k == "function")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| {
                        ApiError::bad_argument("function: the export to call is missing")
                    })?;
                let export = self.export(&worker.component, &function)?;
                let given = match query.iter().find(|(k, _)| k == "args") {
                    Some((_, text)) => Some(
                        serde_json::from_str(text)
                            .map_err(|e| ApiError::new(ErrorCode::BadJson, format!("args: {e}")))?,
                    ),
                    None => None,
                };
                let args = inspect::args(&export, given.as_ref())?;
                let result = self
                    .runtime
                    .state_at(&worker, at, &export.name, args)
                    .await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"at": at, "function": export.name, "result": inspect::results(&result, crate::json::from_value)}),
                ))
            }
            (Route::Fork, &Method::POST, Some(worker)) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct ForkRequest {
                    name: String,
                    at: Option<u64>,
                }
                let body = crate::read_body(request.into_body(), BODY_BYTES_MAX).await?;
                let asked: ForkRequest = serde_json::from_slice(&body).map_err(|e| {
                    ApiError::new(
                        ErrorCode::BadJson,
                        format!("body: {e} (expected {{\"name\": \"new-worker\", \"at\": 12}})"),
                    )
                })?;
                let forked = self.runtime.fork(&worker, &asked.name, asked.at).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({
                        "component": worker.component,
                        "name": asked.name,
                        "from": worker.name,
                        "at": forked.at,
                        "last_index": forked.last_index,
                    }),
                ))
            }
            (Route::Worker, &Method::DELETE, Some(worker)) => {
                self.control(worker, Control::Delete).await
            }
            (Route::Interrupt, &Method::POST, Some(worker)) => {
                self.control(worker, Control::Interrupt).await
            }
            (Route::Resume, &Method::POST, Some(worker)) => {
                self.control(worker, Control::Resume).await
            }
            (Route::Metrics, &Method::GET, _) => {
                self.runtime.refresh_metrics().await;
                Ok(crate::metrics::render())
            }
            (Route::Cluster, &Method::GET, _) => {
                let view = match self.deployments.live().cluster() {
                    Some(cluster) => serde_json::to_value(cluster.locator().view())
                        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?,
                    // One node on its own store: everything is served here.
                    None => json!({"node": null, "shards": 0, "nodes": [], "leases": []}),
                };
                Ok(json_response(StatusCode::OK, &view))
            }
            (Route::Components, &Method::GET, _) => {
                let all: Vec<_> = self
                    .runtime
                    .components()
                    .into_iter()
                    .map(|c| json!({"name": c.name, "hash": c.hash, "exports": c.exports.keys().collect::<Vec<_>>()}))
                    .collect();
                Ok(json_response(StatusCode::OK, &json!(all)))
            }
            (Route::Component, &Method::GET, _) => match self.runtime.component(&name) {
                Some(info) => Ok(json_response(StatusCode::OK, &inspect::component(&info))),
                None => Err(ApiError::new(
                    ErrorCode::RouteNotFound,
                    format!("no component named `{name}` is loaded"),
                )),
            },
            (Route::Component, &Method::PUT, _) => {
                let bytes = crate::read_body(request.into_body(), COMPONENT_BYTES_MAX).await?;
                let (version, info) = self.deployments.upload_component(&name, bytes).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"name": info.name, "version": version, "hash": info.hash, "exports": info.exports.keys().collect::<Vec<_>>()}),
                ))
            }
            (Route::Definitions, &Method::GET, _) => {
                let all: Vec<_> = self
                    .deployments
                    .list()
                    .await
                    .into_iter()
                    .map(|(name, version, routes)| json!({"name": name, "version": version, "routes": routes}))
                    .collect();
                Ok(json_response(StatusCode::OK, &json!(all)))
            }
            (Route::Definition, &Method::PUT, _) => {
                let bytes = crate::read_body(request.into_body(), DEFINITION_BYTES_MAX).await?;
                let source = std::str::from_utf8(&bytes)
                    .map_err(|_| ApiError::bad_argument("the definition is not UTF-8"))?;
                let (version, routes) = self.deployments.deploy(&name, source).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"name": name, "version": version, "routes": routes}),
                ))
            }
            (Route::Definition, &Method::GET, _) => {
                let (version, source) = self.deployments.source(&name).await?;
                let mut response = Response::new(Full::new(Bytes::from(source)));
                let headers = response.headers_mut();
                headers.insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/yaml"),
                );
                headers.insert("revenant-version", http::HeaderValue::from(version));
                Ok(response)
            }
            (Route::Definition, &Method::DELETE, _) => {
                let version = self.deployments.undeploy(&name).await?;
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"name": name, "version": version, "deployed": false}),
                ))
            }
            _ => Err(not_allowed()),
        }
    }

    /// The export `function` names in the newest version of `component`; a name that is not
    /// there is the operator's mistake (`bad_argument`), where a route naming a missing export
    /// is the server's (`unknown_function`, 500).
    fn export(
        &self,
        component: &str,
        function: &str,
    ) -> Result<revenant_runtime::ExportInfo, ApiError> {
        let info = self.runtime.component(component).ok_or_else(|| {
            ApiError::bad_argument(format!("no component named `{component}` is loaded"))
        })?;
        info.resolve(function)
            .cloned()
            .map_err(ApiError::bad_argument)
    }

    async fn control(
        &self,
        worker: WorkerId,
        control: Control,
    ) -> Result<Response<Full<Bytes>>, ApiError> {
        self.runtime.control(worker.clone(), control).await?;
        let status = self
            .runtime
            .status(&worker)
            .await?
            .map(WorkerStatus::as_str);
        Ok(json_response(
            StatusCode::OK,
            &json!({"component": worker.component, "name": worker.name, "status": status}),
        ))
    }
}

/// Where the web console is served.
pub const CONSOLE: &str = "/console";

/// The console's page. Its script is inline (one file, no build step); the policy lets it run
/// and talk to this listener only.
fn console() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(include_bytes!(
        "console.html"
    ))));
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        (
            "content-security-policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
    ] {
        headers.insert(name, http::HeaderValue::from_static(value));
    }
    response
}

fn not_found(worker: &WorkerId) -> ApiError {
    ApiError::new(
        ErrorCode::WorkerNotFound,
        format!("worker {worker} does not exist"),
    )
}

/// A query parameter that must be a number, if present.
fn number(query: &[(String, String)], name: &str) -> Result<Option<u64>, ApiError> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_argument(format!("{name}: expected a number, got `{v}`"))
            })
        })
        .transpose()
}

/// A JSON body, `None` when empty.
fn json_body(body: &[u8]) -> Result<Option<serde_json::Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::new(ErrorCode::BadJson, format!("body: {e}")))
}

fn parse_status(s: &str) -> Result<WorkerStatus, ApiError> {
    Ok(match s {
        "idle" => WorkerStatus::Idle,
        "running" => WorkerStatus::Running,
        "interrupted" => WorkerStatus::Interrupted,
        "failed" => WorkerStatus::Failed,
        "suspended" => WorkerStatus::Suspended,
        "exited" => WorkerStatus::Exited,
        other => {
            return Err(ApiError::bad_argument(format!(
                "status: `{other}` is not one of idle, running, interrupted, failed, suspended, exited"
            )));
        }
    })
}

impl<K: KvStore> Handler for Admin<K> {
    async fn handle(&self, request: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        // Metrics measure real time.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let response = match self.route(request).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        };
        crate::metrics::answered(crate::metrics::ADMIN, response.status(), began.elapsed());
        response
    }
}
