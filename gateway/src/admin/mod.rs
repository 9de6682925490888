//! The admin API, served on its own listener (never the public one): worker lifecycle, and
//! deploys (see `deploy`). Every request is checked by `access` first: the admin token, the
//! `Host`, and no `Origin` on requests that change anything.
//!
//! | method and path | does |
//! |---|---|
//! | `GET /components` | loaded components: name, hash, exports |
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
//! | `GET /cluster` | nodes (id, address, last heartbeat) and each shard's holder and epoch |
//! | `GET /metrics` | every series of the process, in Prometheus's text format |
//! | `GET /healthz`, `GET /readyz` | health (`health`); the only requests that need no token |

mod access;

pub use access::{Access, TOKEN_CHARS_MIN};

use crate::ApiError;
use crate::deploy::Deployments;
use crate::error::ErrorCode;
use crate::error::json_response;
use crate::health;
use crate::limits::{COMPONENT_BYTES_MAX, DEFINITION_BYTES_MAX};
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
                    (None, _) => Err(ApiError::new(
                        ErrorCode::WorkerNotFound,
                        format!("worker {worker} does not exist"),
                    )),
                }
            }
            (Route::Logs, &Method::GET, Some(worker)) => {
                let query = crate::parse_query(request.uri().query().unwrap_or(""))?;
                let number = |name: &str, default: u64| -> Result<u64, ApiError> {
                    match query.iter().find(|(k, _)| k == name) {
                        Some((_, v)) => v.parse::<u64>().map_err(|_| {
                            ApiError::bad_argument(format!("{name}: expected a number, got `{v}`"))
                        }),
                        None => Ok(default),
                    }
                };
                let from = number("from", 1)?;
                let limit = number("limit", revenant_runtime::limits::OUTPUT_LINES_MAX as u64)?;
                let Some(page) = self
                    .runtime
                    .guest_output(&worker, from, limit as usize)
                    .await?
                else {
                    return Err(ApiError::new(
                        ErrorCode::WorkerNotFound,
                        format!("worker {worker} does not exist"),
                    ));
                };
                let lines: Vec<_> = page
                    .lines
                    .into_iter()
                    .map(|l| json!({"index": l.index, "stream": l.stream, "line": l.line}))
                    .collect();
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"lines": lines, "next": page.next}),
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
