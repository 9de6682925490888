//! Binding a route to its export, once, when a definition is loaded: every argument's source
//! is checked against the parameter's WIT type, `error_status` and `response` against the
//! result's. A request only looks its binding up.

use crate::auth;
use crate::json;
use revenant_api_definitions::{ArgSource, Diagnostic, Route, Var};
use revenant_runtime::{ComponentInfo, ValueType};
use std::sync::Arc;

/// A route bound to a resolved export whose parameter types are known.
pub(crate) struct Binding {
    pub route: Route,
    pub auth: Option<Arc<auth::Authenticator>>,
    pub export: String,
    pub params: Vec<(String, ValueType)>,
    pub results: Vec<ValueType>,
    pub uses_body: bool,
    /// The route as declared (`POST /user/{user-id}/activities`): its label in `/metrics`.
    pub label: String,
}

pub(crate) fn bind(
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
        label: route.describe(),
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
