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
pub mod clock;
mod cors;
pub mod deploy;
mod error;
#[cfg(feature = "fault-injection")]
mod faults;
pub mod json;
pub mod limits;
pub mod openapi;
mod server;

pub use error::{ApiError, ErrorCode};
pub use server::{Handler, ServerLimits, serve, serve_with};

use bytes::Bytes;
use error::json_response;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use revenant_api_definitions::{
    ApiDefinition, ArgSource, Diagnostic, Diagnostics, Method, Route, TemplatePart, Var,
};
use revenant_runtime::{ComponentInfo, Runtime, ValueType, WorkerId};
use serde_json::Value as Json;
use std::sync::Arc;

/// A route bound to a resolved export whose parameter types are known.
struct Binding {
    route: Route,
    auth: Option<Arc<auth::Authenticator>>,
    export: String,
    params: Vec<(String, ValueType)>,
    results: Vec<ValueType>,
    uses_body: bool,
}

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
        Self::build(runtime.clone(), &[api], &lookup)
    }

    /// One router over several definitions (each with its own auth schemes), their routes
    /// bound to the components `lookup` finds. Routes of different definitions must not
    /// overlap; any problem rejects the whole set.
    pub fn build(
        runtime: Arc<Runtime>,
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
                match auth::Authenticator::load(scheme, &api.base_dir) {
                    Ok(a) => {
                        schemes.insert(scheme.name.clone(), Arc::new(a));
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

    /// Serves one request. Never fails: every error becomes a JSON response.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some(origin) = request.headers().get(header::ORIGIN).cloned() else {
            return self
                .route(request)
                .await
                .unwrap_or_else(ApiError::into_response);
        };
        // A browser's request: CORS applies per route.
        let bindings = canonical_path(request.uri().path())
            .ok()
            .and_then(|p| self.router.at(&p).ok().map(|m| &self.paths[*m.value]));
        let Some(bindings) = bindings else {
            return self
                .route(request)
                .await
                .unwrap_or_else(ApiError::into_response);
        };
        if request.method() == http::Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return cors::preflight(bindings, &origin, request.headers());
        }
        let policy = bindings
            .iter()
            .find(|(m, _)| m.as_str() == request.method().as_str())
            .and_then(|(_, b)| b.route.cors.clone());
        let mut response = self
            .route(request)
            .await
            .unwrap_or_else(ApiError::into_response);
        if let Some(policy) = policy {
            cors::decorate(&policy, &origin, &mut response);
        }
        response
    }

    async fn route<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, ApiError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let path = canonical_path(request.uri().path())?;
        if path == openapi::PATH
            && request.method() == http::Method::GET
            && self.router.at(&path).is_err()
        {
            let mut response = Response::new(Full::new(self.openapi.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(response);
        }
        let matched = self.router.at(&path).map_err(|_| {
            ApiError::new(ErrorCode::RouteNotFound, format!("no route matches {path}"))
        })?;
        let bindings = &self.paths[*matched.value];
        let Some((_, binding)) = bindings
            .iter()
            .find(|(m, _)| m.as_str() == request.method().as_str())
        else {
            let allowed: Vec<&str> = bindings.iter().map(|(m, _)| m.as_str()).collect();
            let mut response = ApiError::new(
                ErrorCode::MethodNotAllowed,
                format!(
                    "{} is not allowed on {path}; allowed: {}",
                    request.method(),
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, v);
            }
            return Ok(response);
        };
        let claims = match &binding.auth {
            Some(a) => Some(a.verify(request.headers(), clock::Now::read()).await?),
            None => None,
        };
        let params: Vec<(String, String)> = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let query = parse_query(request.uri().query().unwrap_or(""))?;
        #[cfg(feature = "fault-injection")]
        let method = request.method().clone();
        let headers = request.headers().clone();
        let idempotency_key = match request.headers().get("idempotency-key") {
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .filter(|k| !k.is_empty())
                    .ok_or_else(|| {
                        ApiError::bad_argument("Idempotency-Key must be non-empty visible ASCII")
                    })?
                    .to_string(),
            ),
            None => None,
        };

        let route = &binding.route;
        let mut inputs = Inputs {
            params: &params,
            query: &query,
            headers: &headers,
            body: &Json::Null,
            claims: claims.as_ref(),
            result: None,
        };
        for requirement in &route.requires {
            let value = inputs.text(&requirement.var)?;
            let holds = claims
                .as_ref()
                .and_then(|c| c.get(&requirement.claim))
                .and_then(Json::as_str)
                .is_some_and(|claim| claim == value);
            if !holds {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this token may not call {path}: `{requirement}` does not hold"),
                ));
            }
        }
        let body = if binding.uses_body {
            read_json_body(request.into_body()).await?
        } else {
            Json::Null
        };
        inputs.body = &body;
        let worker_name = inputs.expand(&route.worker.parts)?;
        let mut args = Vec::with_capacity(binding.params.len());
        for (source, (name, ty)) in route.args.iter().zip(&binding.params) {
            args.push(match source {
                ArgSource::Var(Var::Body(fields)) => {
                    let (json, at) = body_field(&body, fields)?;
                    json::to_value(json, ty, &at).map_err(ApiError::bad_argument)?
                }
                ArgSource::Var(v) => {
                    let text = inputs.text(v)?;
                    json::text_to_value(&text, ty, &v.to_string())
                        .map_err(ApiError::bad_argument)?
                }
                ArgSource::Text(t) => {
                    let text = inputs.expand(&t.parts)?;
                    json::text_to_value(&text, ty, name).map_err(ApiError::bad_argument)?
                }
            });
        }
        #[cfg(feature = "fault-injection")]
        if faults::lose_update(&worker_name, &method) {
            return Ok(json_response(StatusCode::OK, &Json::Null));
        }
        let results = if route.durable {
            let worker = WorkerId::new(route.component.clone(), worker_name);
            self.runtime
                .invoke(worker, &binding.export, args, idempotency_key)
                .await?
        } else {
            self.runtime
                .invoke_ephemeral(&route.component, &binding.export, args)
                .await?
        };
        if let (Some(status), [revenant_runtime::Value::Result(Err(error))]) =
            (route.error_status, results.as_slice())
        {
            let body = error.as_deref().map_or(Json::Null, json::from_value);
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(json_response(status, &body));
        }
        let json = match results.as_slice() {
            [] => Json::Null,
            [one] => json::from_value(one),
            many => Json::Array(many.iter().map(json::from_value).collect()),
        };
        let mut status = StatusCode::OK;
        let mut extra = Vec::new();
        if route.response != Default::default() {
            inputs.result = Some(&json);
            // A value the result does not have (an `err`, a `none`) leaves the default.
            if let Some(t) = &route.response.status
                && let Ok(text) = inputs.expand(&t.parts)
            {
                status = text
                    .parse::<u16>()
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .filter(|s| (200..=599).contains(&s.as_u16()))
                    .ok_or_else(|| {
                        ApiError::new(
                            ErrorCode::BadResponseStatus,
                            format!("the result gave status `{text}`, not 200 to 599"),
                        )
                    })?;
            }
            for (name, template, _) in &route.response.headers {
                if let Ok(value) = inputs.expand(&template.parts)
                    && let (Ok(n), Ok(v)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    )
                {
                    extra.push((n, v));
                }
            }
        }
        let mut response = json_response(status, &json);
        for (n, v) in extra {
            response.headers_mut().append(n, v);
        }
        Ok(response)
    }
}

fn bind(
    lookup: &dyn Fn(&str) -> Option<ComponentInfo>,
    route: &Route,
    auth: Option<Arc<auth::Authenticator>>,
) -> Result<Binding, Vec<Diagnostic>> {
    let on_route = |message: String| {
        vec![Diagnostic::new(
            route.location.clone(),
            format!("route {}: {message}", route.describe()),
        )]
    };
    let component = lookup(&route.component)
        .ok_or_else(|| on_route(format!("component `{}` is not loaded", route.component)))?;
    let export = component.resolve(&route.call).map_err(|m| {
        vec![Diagnostic::new(
            route.call_location.clone(),
            format!("route {}: {m}", route.describe()),
        )]
    })?;
    let params = &export.signature.params;
    if params.len() != route.args.len() {
        let expected: Vec<String> = params
            .iter()
            .map(|(n, t)| format!("{n}: {}", t.describe()))
            .collect();
        return Err(on_route(format!(
            "`{}` takes {} argument(s) ({}), the route gives {}",
            export.name,
            params.len(),
            expected.join(", "),
            route.args.len()
        )));
    }
    let mut problems = Vec::new();
    for (i, (source, (name, ty))) in route.args.iter().zip(params).enumerate() {
        let from_text = !matches!(source, ArgSource::Var(Var::Body(_)));
        let problem = if let Some(what) = ty.unsupported() {
            Some(format!(
                "parameter `{name}` has type {what}, which HTTP cannot carry"
            ))
        } else if from_text && !json::accepts_text(ty) {
            Some(format!(
                "parameter `{name}` is a {}, which cannot come from text; take it from the body",
                ty.describe()
            ))
        } else {
            None
        };
        if let Some(p) = problem {
            problems.push(Diagnostic::new(
                route.arg_locations[i].clone(),
                format!("route {}: {p}", route.describe()),
            ));
        }
    }
    if route.error_status.is_some()
        && !matches!(
            export.signature.results.as_slice(),
            [ValueType::Result { .. }]
        )
    {
        problems.push(Diagnostic::new(
            route
                .error_status_location
                .clone()
                .unwrap_or_else(|| route.location.clone()),
            format!(
                "route {}: `error_status` needs an export returning a result, and `{}` does not",
                route.describe(),
                export.name
            ),
        ));
    }
    let result_ty = match export.signature.results.as_slice() {
        [one] => Some(one),
        _ => None,
    };
    let status = route
        .response
        .status
        .iter()
        .zip(&route.response.status_location)
        .map(|(t, l)| (t, l, true));
    let headers = route.response.headers.iter().map(|(_, t, l)| (t, l, false));
    for (template, location, is_status) in status.chain(headers) {
        for var in template.vars() {
            let Var::Result(path) = var else { continue };
            let problem = match result_ty.and_then(|t| result_field(t, path)) {
                None => Some(format!(
                    "`{{{var}}}`: `{}` returns {}, which has no such field",
                    export.name,
                    result_ty.map_or_else(|| "no single value".to_string(), ValueType::describe)
                )),
                Some(t) if is_status && !json::is_integer(t) => Some(format!(
                    "`status` from `{{{var}}}` needs an integer, and it is a {}",
                    t.describe()
                )),
                Some(t) if !json::accepts_text(t) => Some(format!(
                    "`{{{var}}}` is a {}, which is not text for a header",
                    t.describe()
                )),
                Some(_) => None,
            };
            if let Some(p) = problem {
                problems.push(Diagnostic::new(
                    location.clone(),
                    format!("route {}: {p}", route.describe()),
                ));
            }
        }
    }
    if let Some(what) = export
        .signature
        .results
        .iter()
        .find_map(ValueType::unsupported)
    {
        problems.extend(on_route(format!(
            "`{}` returns {what}, which HTTP cannot carry",
            export.name
        )));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let uses_body = route.args.iter().any(|a| match a {
        ArgSource::Var(v) => matches!(v, Var::Body(_)),
        ArgSource::Text(t) => t.vars().any(|v| matches!(v, Var::Body(_))),
    }) || route
        .response
        .headers
        .iter()
        .any(|(_, t, _)| t.vars().any(|v| matches!(v, Var::Body(_))));
    Ok(Binding {
        route: route.clone(),
        auth,
        export: export.name.clone(),
        params: params.clone(),
        results: export.signature.results.clone(),
        uses_body,
    })
}

/// The type of a field of a result's JSON form (`ok`/`err` of a result, a record's field, a
/// variant's case; options are looked through). `None` if there is no such field.
fn result_field<'a>(ty: &'a ValueType, path: &[String]) -> Option<&'a ValueType> {
    let Some((first, rest)) = path.split_first() else {
        let mut ty = ty;
        while let ValueType::Option(inner) = ty {
            ty = inner;
        }
        return Some(ty);
    };
    match ty {
        ValueType::Option(t) => result_field(t, path),
        ValueType::Record(fields) => fields
            .iter()
            .find(|(n, _)| n == first)
            .and_then(|(_, t)| result_field(t, rest)),
        ValueType::Result { ok, err } => match first.as_str() {
            "ok" => ok.as_deref(),
            "err" => err.as_deref(),
            _ => None,
        }
        .and_then(|t| result_field(t, rest)),
        ValueType::Variant(cases) => cases
            .iter()
            .find(|(n, _)| n == first)
            .and_then(|(_, t)| t.as_ref())
            .and_then(|t| result_field(t, rest)),
        _ => None,
    }
}

/// The path routing sees: each segment percent-decoded exactly once. Anything that could make
/// two spellings select different workers, or one spelling mean two paths, is refused: an
/// encoded `/`, `.` or `..` segments, empty segments, and bytes that are not UTF-8. So the key
/// that authorises a request is the key that selects its worker.
fn canonical_path(raw: &str) -> Result<String, ApiError> {
    let bad = |why: &str| ApiError::new(ErrorCode::BadPath, format!("path `{raw}`: {why}"));
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(bad("must start with `/`"));
    };
    if rest.is_empty() {
        return Ok("/".into());
    }
    let mut out = String::with_capacity(raw.len());
    for segment in rest.split('/') {
        if segment.is_empty() {
            return Err(bad("empty segment"));
        }
        let decoded = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map_err(|_| bad("a segment is not UTF-8 once decoded"))?;
        if decoded.contains('/') {
            return Err(bad("an encoded `/` inside a segment"));
        }
        if decoded == "." || decoded == ".." {
            return Err(bad("`.` and `..` segments are not allowed"));
        }
        if decoded.chars().any(char::is_control) {
            return Err(bad("control characters"));
        }
        out.push('/');
        out.push_str(&decoded);
    }
    Ok(out)
}

/// Where a request's values come from: path parameters, query, headers, JSON body.
struct Inputs<'a> {
    params: &'a [(String, String)],
    query: &'a [(String, String)],
    headers: &'a http::HeaderMap,
    body: &'a Json,
    claims: Option<&'a auth::Claims>,
    /// The export's result as JSON, once it has one (for `response`).
    result: Option<&'a Json>,
}

impl Inputs<'_> {
    /// A placeholder's value as text (a body field must be a string, number or boolean).
    fn text(&self, var: &Var) -> Result<String, ApiError> {
        let missing = || ApiError::bad_argument(format!("{var}: missing"));
        match var {
            Var::Path(p) => Ok(self
                .params
                .iter()
                .find(|(k, _)| k == p)
                .map_or_else(String::new, |(_, v)| v.clone())),
            Var::Query(q) => self
                .query
                .iter()
                .find(|(k, _)| k == q)
                .map(|(_, v)| v.clone())
                .ok_or_else(missing),
            Var::Header(h) => self
                .headers
                .get(h.as_str())
                .ok_or_else(missing)?
                .to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_argument(format!("{var}: not visible ASCII"))),
            Var::Jwt(claim) => match self.claims.and_then(|c| c.get(claim)) {
                Some(Json::String(s)) => Ok(s.clone()),
                Some(j @ (Json::Number(_) | Json::Bool(_))) => Ok(j.to_string()),
                _ => Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("the token has no string or number claim `{claim}`"),
                )),
            },
            Var::Result(fields) => {
                let mut current = self.result.ok_or_else(missing)?;
                for f in fields {
                    current = current.get(f).ok_or_else(missing)?;
                }
                match current {
                    Json::String(s) => Ok(s.clone()),
                    j @ (Json::Number(_) | Json::Bool(_)) => Ok(j.to_string()),
                    _ => Err(missing()),
                }
            }
            Var::Body(fields) => match body_field(self.body, fields)? {
                (Json::String(s), _) => Ok(s.clone()),
                (j @ (Json::Number(_) | Json::Bool(_)), _) => Ok(j.to_string()),
                (_, at) => Err(ApiError::bad_argument(format!(
                    "{at}: expected a string or number"
                ))),
            },
        }
    }

    fn expand(&self, parts: &[TemplatePart]) -> Result<String, ApiError> {
        let mut out = String::new();
        for part in parts {
            match part {
                TemplatePart::Literal(l) => out.push_str(l),
                TemplatePart::Var(v) => out.push_str(&self.text(v)?),
            }
        }
        Ok(out)
    }
}

/// `a=1&b=x%20y` into decoded pairs (`+` is a space, as in forms).
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, ApiError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| ApiError::bad_argument("the query is not UTF-8 once decoded"))
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .take(limits::QUERY_PARAMS_MAX)
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn body_field<'a>(body: &'a Json, fields: &[String]) -> Result<(&'a Json, String), ApiError> {
    let mut at = String::from("body");
    let mut current = body;
    for f in fields {
        at.push('.');
        at.push_str(f);
        current = current
            .get(f)
            .ok_or_else(|| ApiError::bad_argument(format!("{at}: missing")))?;
    }
    Ok((current, at))
}

/// Reads a whole body of at most `max` bytes (413 past it).
pub(crate) async fn read_body<B>(body: B, max: usize) -> Result<Bytes, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    Ok(Limited::new(body, max)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    ErrorCode::BodyTooLarge,
                    format!("the body exceeds {max} bytes"),
                )
            } else {
                ApiError::new(ErrorCode::BodyUnreadable, e.to_string())
            }
        })?
        .to_bytes())
}

async fn read_json_body<B>(body: B) -> Result<Json, ApiError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let collected = read_body(body, limits::BODY_BYTES_MAX).await?;
    if collected.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(&collected)
        .map_err(|e| ApiError::new(ErrorCode::BadJson, format!("body: {e}")))
}
