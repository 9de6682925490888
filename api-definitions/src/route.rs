//! Routes: the YAML shape (`RouteSpec`), and the validated form (`Route`) a router is built from.

use crate::auth::{AuthScheme, AuthSpec, compile_scheme};
use crate::diagnostic::{Diagnostic, Diagnostics, Location};
use crate::http_options::{
    Cors, CorsSpec, ResponseMap, ResponseSpec, compile_cors, compile_response,
};
use crate::template::{Template, Var};
use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// One route as written in YAML. Every field keeps its position for error messages.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub method: Spanned<String>,
    pub path: Spanned<String>,
    pub component: Spanned<String>,
    /// Which worker keeps the state; absent for `durable: false` routes.
    pub worker: Option<Spanned<String>>,
    /// `false` runs the call on a fresh instance and records nothing (default `true`).
    pub durable: Option<Spanned<bool>>,
    /// `true`: the export only reads the worker's state; the call runs on the worker in its
    /// turn and writes nothing to the log (default `false`).
    pub read_only: Option<Spanned<bool>>,
    pub call: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// The status to answer with when the export returns `result::err` (default 200, the
    /// error in the body as `{"err": ...}`).
    pub error_status: Option<Spanned<u16>>,
    /// The auth scheme (under `auth:`) a caller must satisfy with a bearer JWT.
    pub auth: Option<Spanned<String>>,
    /// Conditions on the verified token, each `{placeholder} == jwt.<claim>`.
    #[serde(default)]
    pub require: Vec<Spanned<String>>,
    /// Cross-origin access for browsers.
    pub cors: Option<CorsSpec>,
    /// The answer's status and headers, from the result.
    pub response: Option<ResponseSpec>,
}

/// A whole API definition document: auth schemes and routes.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    #[serde(default)]
    pub auth: BTreeMap<String, Spanned<AuthSpec>>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_uppercase().as_str() {
            "GET" => Self::Get,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "PATCH" => Self::Patch,
            "DELETE" => Self::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A path such as `/user/{user-id}/activities`: literal segments and whole-segment parameters,
/// the last of which may be a catch-all `{*rest}`.
/// The syntax is matchit's, so the template is also the router's pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    pub pattern: String,
    pub params: Vec<String>,
    /// The last parameter is `{*name}`: it takes the rest of the path, slashes included.
    pub catch_all: bool,
}

impl PathTemplate {
    fn parse(text: &str) -> Result<Self, String> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(format!("a path starts with `/`, got `{text}`"));
        };
        let mut params: Vec<String> = Vec::new();
        let mut catch_all = false;
        if !rest.is_empty() {
            let segments: Vec<&str> = rest.split('/').collect();
            for (i, segment) in segments.iter().enumerate() {
                if segment.is_empty() {
                    return Err(format!("`{text}` has an empty segment"));
                }
                if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    let name = match inner.strip_prefix('*') {
                        Some(name) if i + 1 == segments.len() => {
                            catch_all = true;
                            name
                        }
                        Some(_) => {
                            return Err(format!(
                                "`{segment}`: a catch-all parameter must be the last segment"
                            ));
                        }
                        None => inner,
                    };
                    if !valid_param_name(name) {
                        return Err(format!(
                            "parameter `{{{name}}}`: a name is lower-case letters, digits, `-` \
                             and `_`, starting with a letter"
                        ));
                    }
                    if params.iter().any(|p| p == name) {
                        return Err(format!("parameter `{{{name}}}` appears twice"));
                    }
                    params.push(name.to_string());
                } else if segment.contains(['{', '}']) {
                    return Err(format!(
                        "segment `{segment}`: a parameter must be a whole segment, like `{{id}}`"
                    ));
                } else if !segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
                {
                    return Err(format!(
                        "segment `{segment}`: literal segments use letters, digits and `-._~`"
                    ));
                }
            }
        }
        Ok(Self {
            pattern: text.to_string(),
            params,
            catch_all,
        })
    }
}

fn valid_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Where one argument of the call comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgSource {
    /// Exactly one placeholder: the value is converted to the parameter's type.
    Var(Var),
    /// Text, possibly with placeholders: a string (or parsed as the parameter's type).
    Text(Template),
}

/// A validated route.
#[derive(Clone, Debug)]
pub struct Route {
    pub method: Method,
    pub path: PathTemplate,
    pub component: String,
    /// Empty for ephemeral routes.
    pub worker: Template,
    /// False: the call runs on a fresh instance, recording nothing.
    pub durable: bool,
    /// The call reads the worker's state without recording anything (`docs/api-definitions.md`).
    pub read_only: bool,
    pub call: String,
    pub args: Vec<ArgSource>,
    /// Status for `result::err`, if the route sets one; the body is then the error itself.
    pub error_status: Option<u16>,
    pub error_status_location: Option<Location>,
    /// The auth scheme's name, if callers must present a bearer JWT.
    pub auth: Option<String>,
    /// Conditions on the verified token's claims.
    pub requires: Vec<Requirement>,
    pub cors: Option<Cors>,
    pub response: ResponseMap,
    /// Where the route (its `method`), its `call` and each argument are written.
    pub location: Location,
    pub call_location: Location,
    pub arg_locations: Vec<Location>,
}

impl Route {
    /// `POST /user/{user-id}/activities`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.path.pattern)
    }
}

/// `{user-id} == jwt.sub`: the placeholder's value (canonical: path parameters are decoded
/// once) must equal the claim, a string, exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub var: Var,
    pub claim: String,
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}} == jwt.{}", self.var, self.claim)
    }
}

/// A validated set of routes and auth schemes, ready for a router.
#[derive(Clone, Debug, Default)]
pub struct ApiDefinition {
    pub auth: Vec<AuthScheme>,
    pub routes: Vec<Route>,
    /// The folder relative file names (key files, JWKS files) are read from; the caller sets
    /// it (the project file's folder). Empty means the working directory.
    pub base_dir: std::path::PathBuf,
}

fn parse_requirement(text: &str, params: &[String]) -> Result<Requirement, String> {
    let shape = || format!("`{text}`: a requirement reads `{{placeholder}} == jwt.<claim>`");
    let (left, right) = text.split_once("==").ok_or_else(shape)?;
    let template = Template::parse(left.trim(), params)?;
    let var = template.single_var().cloned().ok_or_else(shape)?;
    if matches!(var, Var::Body(_) | Var::Jwt(_) | Var::Result(_)) {
        return Err(format!(
            "`{text}`: the left side is a path, query or header placeholder"
        ));
    }
    let right = Template::parse(&format!("{{{}}}", right.trim()), params).map_err(|_| shape())?;
    match right.single_var() {
        Some(Var::Jwt(claim)) => Ok(Requirement {
            var,
            claim: claim.clone(),
        }),
        _ => Err(shape()),
    }
}

/// Validates a document from `file`. `component_exists` says which component names are known;
/// `env` answers `secret_env` keys (the caller reads the process environment, or passes a map):
/// nothing here reads the environment itself. Returns every problem, not just the first.
pub fn compile(
    file: &str,
    spec: &ApiSpec,
    component_exists: impl Fn(&str) -> bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ApiDefinition, Diagnostics> {
    let mut problems = Vec::new();
    let mut routes = Vec::new();
    let auth: Vec<AuthScheme> = spec
        .auth
        .iter()
        .filter_map(|(name, s)| compile_scheme(file, name, s, env, &mut problems))
        .collect();
    let auth_names: std::collections::BTreeSet<&str> =
        spec.auth.keys().map(String::as_str).collect();
    let specs = &spec.routes;
    // One matchit router per method finds overlapping paths the way the real router would.
    let mut routers: HashMap<Method, matchit::Router<()>> = HashMap::new();
    for spec in specs {
        let at = |span: &marked_yaml::Span| Location::of_span(file, span);
        let before = problems.len();
        let method = Method::parse(&spec.method);
        if method.is_none() {
            problems.push(Diagnostic::new(
                at(spec.method.span()),
                format!(
                    "unknown method `{}`: use GET, POST, PUT, PATCH or DELETE",
                    spec.method.as_str()
                ),
            ));
        }
        let path = PathTemplate::parse(&spec.path)
            .map_err(|m| problems.push(Diagnostic::new(at(spec.path.span()), m)))
            .ok();
        let params = path.as_ref().map(|p| p.params.clone()).unwrap_or_default();
        if !component_exists(&spec.component) {
            problems.push(Diagnostic::new(
                at(spec.component.span()),
                format!("unknown component `{}`", spec.component.as_str()),
            ));
        }
        let durable = spec.durable.as_ref().is_none_or(|d| **d);
        let read_only = spec.read_only.as_ref().is_some_and(|r| **r);
        if let Some(r) = &spec.read_only
            && **r
            && !durable
        {
            problems.push(Diagnostic::new(
                at(r.span()),
                "`read_only` is for durable routes: a `durable: false` call records nothing anyway",
            ));
        }
        let worker = match (&spec.worker, durable) {
            (None, true) => {
                problems.push(Diagnostic::new(
                    at(spec.method.span()),
                    "a durable route needs `worker`: which worker keeps the state",
                ));
                None
            }
            (None, false) => Some(Template { parts: Vec::new() }),
            (Some(w), false) => {
                problems.push(Diagnostic::new(
                    at(w.span()),
                    "a route with `durable: false` runs on a fresh instance: it has no `worker`",
                ));
                None
            }
            (Some(spec_worker), true) => match Template::parse(spec_worker, &params) {
                Ok(t) if t.vars().any(|v| matches!(v, Var::Body(_))) => {
                    problems.push(Diagnostic::new(
                        at(spec_worker.span()),
                        "a worker name cannot come from the body: it must be known before the \
                         body is read",
                    ));
                    None
                }
                Ok(t) if spec.auth.is_none() && t.vars().any(|v| matches!(v, Var::Jwt(_))) => {
                    problems.push(Diagnostic::new(
                        at(spec_worker.span()),
                        "`{jwt.*}` needs the route to have `auth`",
                    ));
                    None
                }
                Ok(t) if t.vars().any(|v| matches!(v, Var::Result(_))) => {
                    problems.push(Diagnostic::new(
                        at(spec_worker.span()),
                        "`{result}` is only for `response`",
                    ));
                    None
                }
                Ok(t) if t.parts.is_empty() => {
                    problems.push(Diagnostic::new(at(spec_worker.span()), "empty worker name"));
                    None
                }
                Ok(t) => Some(t),
                Err(m) => {
                    problems.push(Diagnostic::new(at(spec_worker.span()), m));
                    None
                }
            },
        };
        if spec.call.trim().is_empty() {
            problems.push(Diagnostic::new(at(spec.call.span()), "empty `call`"));
        }
        let mut args = Vec::new();
        for arg in &spec.args {
            match Template::parse(arg, &params) {
                Ok(t) if spec.auth.is_none() && t.vars().any(|v| matches!(v, Var::Jwt(_))) => {
                    problems.push(Diagnostic::new(
                        at(arg.span()),
                        "`{jwt.*}` needs the route to have `auth`",
                    ));
                }
                Ok(t) if t.vars().any(|v| matches!(v, Var::Result(_))) => {
                    problems.push(Diagnostic::new(
                        at(arg.span()),
                        "`{result}` is only for `response`",
                    ));
                }
                Ok(t) => args.push(match t.single_var() {
                    Some(v) => ArgSource::Var(v.clone()),
                    None => ArgSource::Text(t),
                }),
                Err(m) => problems.push(Diagnostic::new(at(arg.span()), m)),
            }
        }
        if let (Some(method), Some(path)) = (method, path.as_ref()) {
            let router = routers.entry(method).or_default();
            if let Err(e) = router.insert(path.pattern.clone(), ()) {
                problems.push(Diagnostic::new(
                    at(spec.path.span()),
                    format!("{method} {} overlaps another route: {e}", path.pattern),
                ));
            }
        }
        if let Some(status) = &spec.error_status
            && !(400..=599).contains(&**status)
        {
            problems.push(Diagnostic::new(
                at(status.span()),
                format!(
                    "`error_status` must be a 4xx or 5xx status, got {}",
                    **status
                ),
            ));
        }
        if let Some(name) = &spec.auth
            && !auth_names.contains(name.as_str())
        {
            problems.push(Diagnostic::new(
                at(name.span()),
                format!(
                    "unknown auth scheme `{}`; `auth:` defines: {}",
                    name.as_str(),
                    auth_names.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let mut requires = Vec::new();
        for r in &spec.require {
            if spec.auth.is_none() {
                problems.push(Diagnostic::new(
                    at(r.span()),
                    "`require` needs the route to have `auth`",
                ));
                continue;
            }
            match parse_requirement(r, &params) {
                Ok(req) => requires.push(req),
                Err(m) => problems.push(Diagnostic::new(at(r.span()), m)),
            }
        }
        let cors = spec
            .cors
            .as_ref()
            .and_then(|c| compile_cors(file, c, &mut problems));
        let response = spec
            .response
            .as_ref()
            .map(|r| compile_response(file, r, &params, &mut problems))
            .unwrap_or_default();
        let response_vars = response
            .headers
            .iter()
            .flat_map(|(_, t, l)| t.vars().map(move |v| (v, l)));
        for (var, location) in response_vars {
            if spec.auth.is_none() && matches!(var, Var::Jwt(_)) {
                problems.push(Diagnostic::new(
                    location.clone(),
                    "`{jwt.*}` needs the route to have `auth`",
                ));
            }
        }
        if problems.len() > before {
            continue;
        }
        if let (Some(method), Some(path), Some(worker)) = (method, path, worker) {
            routes.push(Route {
                method,
                path,
                component: spec.component.to_string(),
                worker,
                durable,
                read_only,
                call: spec.call.trim().to_string(),
                args,
                error_status: spec.error_status.as_ref().map(|s| **s),
                error_status_location: spec.error_status.as_ref().map(|s| at(s.span())),
                auth: spec.auth.as_ref().map(|a| a.to_string()),
                requires,
                cors,
                response,
                location: at(spec.method.span()),
                call_location: at(spec.call.span()),
                arg_locations: spec.args.iter().map(|a| at(a.span())).collect(),
            });
        }
    }
    if problems.is_empty() {
        Ok(ApiDefinition {
            auth,
            routes,
            base_dir: std::path::PathBuf::new(),
        })
    } else {
        Err(Diagnostics(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_yaml;

    fn compile_text(text: &str) -> Result<ApiDefinition, Diagnostics> {
        let doc: ApiSpec = parse_yaml("routes.yaml", text).map_err(|d| Diagnostics(vec![d]))?;
        compile("routes.yaml", &doc, |c| c == "user-activity", &|_| None)
    }

    const GOOD: &str = "\
routes:
  - method: POST
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail}\"]
  - method: GET
    path: /user/{user-id}/count
    component: user-activity
    worker: user-{user-id}
    call: count
";

    #[test]
    fn the_demo_routes_compile() {
        let api = compile_text(GOOD).unwrap();
        assert_eq!(api.routes.len(), 2);
        let r = &api.routes[0];
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path.params, vec!["user-id".to_string()]);
        assert_eq!(r.args[0], ArgSource::Var(Var::Body(vec!["kind".into()])));
        assert_eq!((r.location.line, r.call_location.line), (2, 6));
        assert_eq!(r.location.column, 13);
    }

    #[test]
    fn read_only_is_for_durable_routes() {
        let read = GOOD.replace("call: count", "call: count\n    read_only: true");
        let api = compile_text(&read).unwrap();
        assert_eq!(
            (api.routes[0].read_only, api.routes[1].read_only),
            (false, true)
        );
        let ephemeral = GOOD.replace(
            "worker: user-{user-id}\n    call: count",
            "durable: false\n    call: count\n    read_only: true",
        );
        let err = compile_text(&ephemeral).unwrap_err().to_string();
        assert!(
            err.contains("routes.yaml:13:16: `read_only` is for durable routes"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let bad = GOOD.replace(
            "worker: user-{user-id}\n    call: count",
            "worker: user-{userid}\n    call: count",
        );
        let err = compile_text(&bad).unwrap_err();
        assert_eq!(err.0.len(), 1, "{err}");
        let d = &err.0[0];
        assert_eq!((d.location.line, d.location.column), (11, 13), "{d}");
        assert!(
            d.to_string()
                .starts_with("routes.yaml:11:13: unknown placeholder `{userid}`"),
            "{d}"
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = GOOD.replace("method: POST", "method: FETCH").replace(
            "component: user-activity\n    worker: user-{user-id}\n    call: count",
            "component: nope\n    worker: user-{user-id}\n    call: count",
        );
        let err = compile_text(&bad).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("routes.yaml:2:13: unknown method `FETCH`"),
            "{text}"
        );
        assert!(
            text.contains("routes.yaml:10:16: unknown component `nope`"),
            "{text}"
        );
    }

    #[test]
    fn syntax_and_shape_errors_are_located() {
        let err = compile_text("routes:\n  - method: [GET\n").unwrap_err();
        assert_eq!(err.0[0].location.line, 3, "{err}");
        let err = compile_text(&GOOD.replace("call: count", "call: count\n    colour: blue"))
            .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        assert_eq!(err.0[0].location.line, 13, "{err}");
    }

    #[test]
    fn overlapping_routes_and_bad_paths_are_refused() {
        let dup = format!("{GOOD}{}", &GOOD["routes:\n".len()..]);
        assert!(
            compile_text(&dup)
                .unwrap_err()
                .to_string()
                .contains("overlaps")
        );
        for path in ["user/{id}", "/a//b", "/a/x{id}", "/a/{Id}", "/a/{id}/{id}"] {
            let text = GOOD.replace("/user/{user-id}/count", path);
            assert!(compile_text(&text).is_err(), "{path} should be refused");
        }
    }

    #[test]
    fn the_worker_name_cannot_come_from_the_body() {
        let text = GOOD.replace(
            "worker: user-{user-id}\n    call: count",
            "worker: \"{body.x}\"\n    call: count",
        );
        assert!(
            compile_text(&text)
                .unwrap_err()
                .to_string()
                .contains("body")
        );
    }

    const AUTHED: &str = "\
auth:
  users:
    issuer: https://issuer.test
    keys:
      - kid: k1
        alg: RS256
        public_key_file: keys/rsa.pem
routes:
  - method: GET
    path: /user/{user-id}/count
    component: user-activity
    worker: user-{jwt.sub}
    call: count
    auth: users
    require: [\"{user-id} == jwt.sub\"]
";

    #[test]
    fn auth_schemes_and_requirements_compile() {
        let api = compile_text(AUTHED).unwrap();
        assert_eq!(api.auth.len(), 1);
        assert_eq!(api.auth[0].keys[0].alg, "RS256");
        let r = &api.routes[0];
        assert_eq!(r.auth.as_deref(), Some("users"));
        assert_eq!(r.requires[0].to_string(), "{user-id} == jwt.sub");
    }

    #[test]
    fn auth_mistakes_are_located() {
        for (from, to, expected) in [
            (
                "auth: users",
                "auth: admins",
                "unknown auth scheme `admins`",
            ),
            ("alg: RS256", "alg: none", "unknown algorithm `none`"),
            ("alg: RS256", "alg: HS256", "takes `secret` or `secret_env`"),
            ("== jwt.sub", "== sub", "a requirement reads"),
            ("    auth: users\n", "", "needs the route to have `auth`"),
        ] {
            let text = AUTHED.replace(from, to);
            let err = compile_text(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{from} -> {to}: {err}");
            assert!(err.starts_with("routes.yaml:"), "{err}");
        }
    }

    #[test]
    fn a_catch_all_takes_the_rest_of_the_path_and_only_last() {
        let text = GOOD.replace("/user/{user-id}/count", "/user/{user-id}/files/{*rest}");
        let api = compile_text(&text).unwrap();
        assert!(api.routes[1].path.catch_all);
        assert_eq!(api.routes[1].path.params, ["user-id", "rest"]);
        let text = GOOD.replace("/user/{user-id}/count", "/user/{user-id}/{*rest}/x");
        assert!(
            compile_text(&text)
                .unwrap_err()
                .to_string()
                .contains("last segment")
        );
    }
}
