//! `gateway` turns HTTP requests into invocations: a hyper server with bounded headers, bodies,
//! connections and time; a router compiled from validated API definitions, with every route's
//! arguments type-checked against the component's WIT exports before it serves, and swapped
//! whole by deploys (`deploy`); JWT auth (`auth`), CORS (`cors`), OpenAPI (`openapi`); JSON ⇄
//! WIT value conversion; and one mapping from failures to JSON error responses.
//!
//! It knows routes and HTTP. It does not know how workers run or where oplogs live: that is the
//! runtime's business, reached through `Runtime::invoke`. Of storage it uses only the catalog,
//! where deploys keep component versions and definitions.

pub mod admin;
pub mod auth;
mod binding;
pub mod clock;
pub mod cluster;
mod cors;
pub mod deploy;
mod dispatch;
mod error;
#[cfg(feature = "fault-injection")]
mod faults;
pub mod health;
mod inputs;
pub mod json;
pub mod limits;
mod metrics;
pub mod openapi;
mod response;
mod route;
mod server;

pub(crate) use binding::Binding;
pub use error::{ApiError, ErrorCode};
pub(crate) use inputs::{parse_query, read_body};
pub use route::canonical_path;
pub use server::{Handler, ServerLimits, serve, serve_with};

use binding::bind;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use inputs::Inputs;
use revenant_api_definitions::{ApiDefinition, Diagnostic, Diagnostics, Method};
use revenant_runtime::{ComponentInfo, Runtime};
use serde_json::Value as Json;
use std::sync::Arc;
use tracing::Instrument;

/// The routes of one API definition, ready to serve.
pub struct Gateway {
    runtime: Arc<Runtime>,
    router: matchit::Router<usize>,
    /// For each distinct path pattern, its bindings by method.
    paths: Vec<Vec<(Method, Binding)>>,
    /// The OpenAPI document, served at `openapi::PATH` unless a route claims it.
    openapi: Bytes,
}

impl Gateway {
    /// Binds every route to its export and checks each argument's source against the
    /// parameter's WIT type. A definition with any problem is rejected whole.
    pub fn new(runtime: Arc<Runtime>, api: &ApiDefinition) -> Result<Self, Diagnostics> {
        let lookup = |name: &str| runtime.component(name);
        Self::build(
            runtime.clone(),
            &auth::AuthCache::new(runtime.tls_client_config()),
            &[api],
            &lookup,
        )
    }

    /// One router over several definitions (each with its own auth schemes), their routes
    /// bound to the components `lookup` finds. Routes of different definitions must not
    /// overlap; any problem rejects the whole set.
    pub fn build(
        runtime: Arc<Runtime>,
        authenticators: &auth::AuthCache,
        apis: &[&ApiDefinition],
        lookup: &dyn Fn(&str) -> Option<ComponentInfo>,
    ) -> Result<Self, Diagnostics> {
        let mut problems = Vec::new();
        let mut router = matchit::Router::new();
        let mut paths: Vec<Vec<(Method, Binding)>> = Vec::new();
        let mut index_of_pattern = std::collections::HashMap::new();
        for api in apis {
            let mut schemes = std::collections::HashMap::new();
            for scheme in &api.auth {
                match authenticators.get_or_load(scheme, &api.base_dir) {
                    Ok(a) => {
                        schemes.insert(scheme.name.clone(), a);
                    }
                    Err(mut ds) => problems.append(&mut ds),
                }
            }
            for route in &api.routes {
                let scheme = route
                    .auth
                    .as_ref()
                    .and_then(|name| schemes.get(name).cloned());
                if route.auth.is_some() && scheme.is_none() {
                    // The scheme failed to load; its problems are already reported.
                    continue;
                }
                let binding = match bind(lookup, route, scheme) {
                    Ok(b) => b,
                    Err(mut ds) => {
                        problems.append(&mut ds);
                        continue;
                    }
                };
                let idx = *index_of_pattern
                    .entry(route.path.pattern.clone())
                    .or_insert_with(|| {
                        paths.push(Vec::new());
                        paths.len() - 1
                    });
                if paths[idx].is_empty()
                    && let Err(e) = router.insert(route.path.pattern.clone(), idx)
                {
                    problems.push(Diagnostic::new(route.location.clone(), e.to_string()));
                }
                if paths[idx].iter().any(|(m, _)| *m == route.method) {
                    problems.push(Diagnostic::new(
                        route.location.clone(),
                        format!("route {} is defined twice", route.describe()),
                    ));
                    continue;
                }
                paths[idx].push((route.method, binding));
            }
        }
        if !problems.is_empty() {
            return Err(Diagnostics(problems));
        }
        let mut gateway = Self {
            runtime,
            router,
            paths,
            openapi: Bytes::new(),
        };
        gateway.openapi = Bytes::from(
            openapi::document(&gateway, "Revenant", env!("CARGO_PKG_VERSION")).to_string(),
        );
        Ok(gateway)
    }

    /// The OpenAPI 3.1 document of these routes.
    pub fn openapi(&self) -> Json {
        serde_json::from_slice(&self.openapi).expect("generated JSON")
    }

    /// Serves one request. Never fails: every error becomes a JSON response. The request is
    /// matched once; CORS and serving share the match.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.handle_in(request, None).await
    }

    /// [`handle`](Self::handle) on a node of a cluster: a call to a durable worker is served
    /// where its shard is held, here or forwarded.
    pub async fn handle_in<B>(
        &self,
        request: Request<B>,
        cluster: Option<&cluster::Forwarder>,
    ) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // Metrics measure real time.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let (response, route) = self.answer(request, cluster).await;
        metrics::answered(route, response.status(), began.elapsed());
        response
    }

    /// The answer to one request, and the route label it is counted under.
    async fn answer<B>(
        &self,
        request: Request<B>,
        cluster: Option<&cluster::Forwarder>,
    ) -> (Response<Full<Bytes>>, &str)
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = match route::canonical_path(request.uri().path()) {
            Ok(path) => path,
            Err(e) => return (e.into_response(), metrics::NO_ROUTE),
        };
        let found = match self.find(path) {
            Ok(found) => found,
            Err(path) if path == openapi::PATH && request.method() == http::Method::GET => {
                let mut response = Response::new(Full::new(self.openapi.clone()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return (response, "GET /openapi.json");
            }
            Err(path) if path == health::HEALTHZ && request.method() == http::Method::GET => {
                return (health::healthz(), "GET /healthz");
            }
            Err(path) if path == health::READYZ && request.method() == http::Method::GET => {
                return (health::readyz(&self.runtime).await, "GET /readyz");
            }
            Err(path) => {
                let e = ApiError::new(ErrorCode::RouteNotFound, format!("no route matches {path}"));
                return (e.into_response(), metrics::NO_ROUTE);
            }
        };
        // A browser's request carries its origin; CORS applies per route.
        let origin = request.headers().get(header::ORIGIN).cloned();
        if let Some(origin) = &origin
            && request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return (
                cors::preflight(found.bindings, origin, request.headers()),
                metrics::PREFLIGHT,
            );
        }
        let Some(binding) = found.binding(request.method()) else {
            return (found.not_allowed(request.method()), metrics::NOT_ALLOWED);
        };
        // A malformed `traceparent` is ignored, as the specification asks: a new trace starts.
        let trace = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(revenant_runtime::trace::TraceContext::parse);
        // At debug level, off by default: REVENANT_LOG=debug shows a request's span around its
        // invocation's (docs/operations.md).
        let span = tracing::debug_span!(
            "request",
            method = %request.method(),
            route = %binding.label,
            trace_id = tracing::field::Empty,
        );
        if let Some(t) = &trace {
            span.record("trace_id", tracing::field::display(t.trace_id_hex()));
            // Before the span is entered: an exporter takes its parent from here.
            revenant_runtime::trace::adopt(&span, t);
        }
        let mut response = self
            .serve(binding, &found, request, cluster, trace)
            .instrument(span)
            .await
            .unwrap_or_else(ApiError::into_response);
        if let (Some(origin), Some(policy)) = (&origin, &binding.route.cors) {
            cors::decorate(policy, origin, &mut response);
        }
        (response, &binding.label)
    }

    /// The path of a matched request: auth, inputs, the call, the answer.
    async fn serve<B>(
        &self,
        binding: &Binding,
        found: &route::Found<'_>,
        request: Request<B>,
        cluster: Option<&cluster::Forwarder>,
        trace: Option<revenant_runtime::trace::TraceContext>,
    ) -> Result<Response<Full<Bytes>>, ApiError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let claims = match &binding.auth {
            Some(a) => Some(a.verify(request.headers(), clock::Now::read()).await?),
            None => None,
        };
        let query = inputs::parse_query(request.uri().query().unwrap_or(""))?;
        let idempotency_key = inputs::idempotency_key(request.headers())?;
        let forwarded = request.extensions().get::<cluster::Forwarded>().copied();
        let (parts, body) = request.into_parts();
        let mut inputs = Inputs {
            params: &found.params,
            query: &query,
            headers: &parts.headers,
            body: &Json::Null,
            claims: claims.as_ref(),
            result: None,
        };
        inputs.check_requirements(&binding.route, &found.path)?;
        // Kept as bytes too: a call served elsewhere is forwarded with the body it came with.
        let raw = if binding.uses_body {
            inputs::require_json(&parts.headers)?;
            read_body(body, limits::BODY_BYTES_MAX).await?
        } else {
            Bytes::new()
        };
        let body = inputs::parse_json_body(&raw)?;
        inputs.body = &body;
        let worker_name = inputs.expand(&binding.route.worker.parts)?;
        let args = inputs.arguments(binding)?;
        let route = &binding.route;
        let Some(cluster) = cluster.filter(|_| route.durable || route.read_only) else {
            let results = dispatch::call(
                &self.runtime,
                binding,
                worker_name,
                args,
                idempotency_key,
                &parts.method,
                trace,
            )
            .await?;
            return response::respond(binding, &inputs, results);
        };
        let worker = revenant_runtime::WorkerId::new(route.component.clone(), worker_name);
        let hops = forwarded.map_or(0, |f| f.hops);
        let idempotent = idempotency_key.is_some() || route.read_only;
        let routed = revenant_cluster::route(
            cluster.locator(),
            &worker,
            revenant_cluster::Hops(hops),
            |_fence| {
                let (args, key) = (args.clone(), idempotency_key.clone());
                let (name, inputs, method) = (worker.name.clone(), &inputs, &parts.method);
                async move {
                    let called =
                        dispatch::call(&self.runtime, binding, name, args, key, method, trace)
                            .await;
                    match called {
                        Err(e) if e.code == ErrorCode::NotOwner => revenant_cluster::Attempt::Moved,
                        Err(e) => revenant_cluster::Attempt::Done(Err(e)),
                        Ok(results) => revenant_cluster::Attempt::Done(response::respond(
                            binding, inputs, results,
                        )),
                    }
                }
            },
            |address| {
                cluster.forward_watched(&worker, address, &parts, raw.clone(), hops + 1, idempotent)
            },
        )
        .await;
        match routed {
            Ok(answer) => answer,
            Err(revenant_cluster::RouteError::TooManyHops) => Err(ApiError::new(
                ErrorCode::NotOwner,
                format!("this node does not serve worker {worker} and the call has made its hops"),
            )),
            Err(revenant_cluster::RouteError::NoHolder { .. })
                if let Some(e) = cluster.locator().store_error() =>
            {
                Err(ApiError::new(
                    ErrorCode::StorageUnavailable,
                    format!("the store does not answer ({e}); no node can serve worker {worker}"),
                ))
            }
            Err(revenant_cluster::RouteError::NoHolder { shard, attempts }) => Err(ApiError::new(
                ErrorCode::ShardUnavailable,
                format!(
                    "no node serves shard {shard} of worker {worker} (tried {attempts} times \
                     within a lease)"
                ),
            )),
        }
    }
}
