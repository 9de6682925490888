//! Per-route HTTP options beyond the call: CORS, and a response's status and headers taken
//! from the export's result.
//!
//! ```yaml
//! cors:
//!   allow_origins: ["https://app.example.com"]   # or ["*"]
//!   allow_headers: [authorization, content-type]
//!   expose_headers: [location]
//!   max_age_seconds: 600
//! response:
//!   status: 201                                 # or "{result.status}"
//!   headers:
//!     location: /user/{user-id}/activities/{result}
//! ```

use crate::diagnostic::{Diagnostic, Location};
use crate::template::{Template, Var};
use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest time a browser may cache a preflight answer (a day, as browsers cap it anyway).
pub const CORS_MAX_AGE_SECONDS_MAX: u64 = 86_400;
/// Response headers a route may set: each is computed on every answer.
pub const RESPONSE_HEADERS_MAX: usize = 16;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    pub allow_origins: Vec<Spanned<String>>,
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub expose_headers: Vec<Spanned<String>>,
    pub max_age_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub allow_credentials: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseSpec {
    pub status: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

/// A validated CORS policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cors {
    /// `None` is any origin (`*`).
    pub allow_origins: Option<Vec<String>>,
    pub allow_headers: Vec<String>,
    pub expose_headers: Vec<String>,
    pub max_age_seconds: u64,
    pub allow_credentials: bool,
}

impl Cors {
    pub fn allows(&self, origin: &str) -> bool {
        self.allow_origins
            .as_ref()
            .is_none_or(|list| list.iter().any(|o| o == origin))
    }
}

/// Where a response's status and headers come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseMap {
    pub status: Option<Template>,
    pub status_location: Option<Location>,
    /// `(lower-case name, value template, where it is written)`.
    pub headers: Vec<(String, Template, Location)>,
}

fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Headers the gateway owns: a route may not set them.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "trailer",
    "te",
];

pub(crate) fn compile_cors(
    file: &str,
    spec: &CorsSpec,
    problems: &mut Vec<Diagnostic>,
) -> Option<Cors> {
    let at = |span: &marked_yaml::Span| Location::of_span(file, span);
    let before = problems.len();
    let any = spec.allow_origins.iter().any(|o| o.as_str() == "*");
    for origin in &spec.allow_origins {
        let o = origin.as_str();
        let valid = o == "*"
            || ((o.starts_with("http://") || o.starts_with("https://"))
                && !o
                    .split_once("://")
                    .is_some_and(|(_, rest)| rest.is_empty() || rest.contains('/')));
        if !valid {
            problems.push(Diagnostic::new(
                at(origin.span()),
                format!("origin `{o}`: write `*` or `scheme://host[:port]`, without a path"),
            ));
        }
    }
    if spec.allow_origins.is_empty() {
        problems.push(Diagnostic::new(
            Location {
                file: file.to_string(),
                line: 1,
                column: 1,
            },
            "`cors.allow_origins` is empty",
        ));
    }
    if any && spec.allow_credentials {
        problems.push(Diagnostic::new(
            at(spec.allow_origins[0].span()),
            "`allow_credentials` needs explicit origins, not `*`",
        ));
    }
    for h in spec.allow_headers.iter().chain(&spec.expose_headers) {
        if !header_name_ok(&h.to_ascii_lowercase()) {
            problems.push(Diagnostic::new(
                at(h.span()),
                format!("`{}` is not a header name", h.as_str()),
            ));
        }
    }
    let max_age_seconds = match &spec.max_age_seconds {
        Some(m) if **m > CORS_MAX_AGE_SECONDS_MAX => {
            problems.push(Diagnostic::new(
                at(m.span()),
                format!("`max_age_seconds` is at most {CORS_MAX_AGE_SECONDS_MAX}"),
            ));
            0
        }
        Some(m) => **m,
        None => 600,
    };
    if problems.len() > before {
        return None;
    }
    Some(Cors {
        allow_origins: (!any).then(|| spec.allow_origins.iter().map(|o| o.to_string()).collect()),
        allow_headers: spec
            .allow_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        expose_headers: spec
            .expose_headers
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        max_age_seconds,
        allow_credentials: spec.allow_credentials,
    })
}

pub(crate) fn compile_response(
    file: &str,
    spec: &ResponseSpec,
    path_params: &[String],
    problems: &mut Vec<Diagnostic>,
) -> ResponseMap {
    let at = |span: &marked_yaml::Span| Location::of_span(file, span);
    let mut map = ResponseMap::default();
    if let Some(status) = &spec.status {
        let location = at(status.span());
        match Template::parse(status, path_params) {
            Ok(t) if t.single_var().is_some_and(|v| matches!(v, Var::Result(_))) => {
                map.status = Some(t);
                map.status_location = Some(location);
            }
            Ok(t) if t.vars().next().is_none() => match status.trim().parse::<u16>() {
                Ok(code) if (200..=599).contains(&code) => {
                    map.status = Some(t);
                    map.status_location = Some(location);
                }
                _ => problems.push(Diagnostic::new(
                    location,
                    format!(
                        "`status` must be 200 to 599 or `{{result...}}`, got `{}`",
                        status.as_str()
                    ),
                )),
            },
            Ok(_) => problems.push(Diagnostic::new(
                location,
                "`status` is a number or exactly one `{result...}` placeholder",
            )),
            Err(m) => problems.push(Diagnostic::new(location, m)),
        }
    }
    if spec.headers.len() > RESPONSE_HEADERS_MAX {
        problems.push(Diagnostic::new(
            Location {
                file: file.to_string(),
                line: 1,
                column: 1,
            },
            format!("at most {RESPONSE_HEADERS_MAX} response headers"),
        ));
    }
    for (name, value) in &spec.headers {
        let lower = name.to_ascii_lowercase();
        let location = at(value.span());
        if !header_name_ok(&lower)
            || RESERVED.contains(&lower.as_str())
            || lower.starts_with("access-control-")
        {
            problems.push(Diagnostic::new(
                location,
                format!("a route cannot set the header `{name}`"),
            ));
            continue;
        }
        match Template::parse(value, path_params) {
            Ok(t) => map.headers.push((lower, t, location)),
            Err(m) => problems.push(Diagnostic::new(location, m)),
        }
    }
    map
}
