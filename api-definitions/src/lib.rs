//! `api-definitions` owns the YAML language in which users declare their REST API: routes that
//! bind a method and a path template to a worker (by a worker-name template) and an export (with
//! the source of each argument). It parses, validates a document whole, and reports every
//! problem with its file, line and column.
//!
//! It does no I/O beyond reading the text it is given (and the environment variables an auth
//! key names), and knows nothing of hyper or wasmtime:
//! checking arguments against a component's WIT types is the gateway's job, with the locations
//! recorded here.

pub mod auth;
mod diagnostic;
pub mod http_options;
mod route;
mod template;

pub use auth::{AuthScheme, AuthSpec, JwksSource, KeyDef, KeyMaterial};
pub use diagnostic::{Diagnostic, Diagnostics, Location, load_error, parse_yaml};
pub use http_options::{Cors, ResponseMap};
pub use route::{
    ApiDefinition, ApiSpec, ArgSource, Method, PathTemplate, Requirement, Route, RouteSpec, compile,
};
pub use template::{Template, TemplatePart, Var};

/// Re-exported so that documents embedding routes can declare `Spanned` fields of their own.
pub use marked_yaml::Spanned;
