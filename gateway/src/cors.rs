//! CORS, per route: preflight answers and the headers on actual responses. Only routes with a
//! `cors:` policy answer browsers from other origins; the rest are left to the browser's
//! same-origin rule.

use crate::Binding;
use crate::error::ApiError;
use crate::error::ErrorCode;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use revenant_api_definitions::{Cors, Method};

/// Answers an `OPTIONS` preflight for a path: 204 with what the origin may do, or 403.
pub(crate) fn preflight(
    bindings: &[(Method, Binding)],
    origin: &HeaderValue,
    request: &HeaderMap,
) -> Response<Full<Bytes>> {
    let refuse = |why: String| ApiError::new(ErrorCode::CorsRefused, why).into_response();
    let origin_text = origin.to_str().unwrap_or_default();
    let wanted = request
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|m| m.to_str().ok())
        .unwrap_or_default();
    let Some((method, binding)) = bindings.iter().find(|(m, _)| m.as_str() == wanted) else {
        return refuse(format!("no route answers {wanted} here"));
    };
    let Some(policy) = binding.route.cors.as_ref() else {
        return refuse(format!(
            "{method} {} takes no cross-origin calls",
            binding.route.path.pattern
        ));
    };
    if !policy.allows(origin_text) {
        return refuse(format!("origin `{origin_text}` is not allowed"));
    }
    // Every requested header must be allowed (plus the ones CORS always allows).
    let requested = request
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    for h in requested
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
    {
        let h = h.to_ascii_lowercase();
        let simple = matches!(
            h.as_str(),
            "accept" | "accept-language" | "content-language" | "content-type"
        );
        if !simple && !policy.allow_headers.contains(&h) {
            return refuse(format!("header `{h}` is not allowed"));
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    allow_origin(policy, origin, headers);
    let methods: Vec<&str> = bindings
        .iter()
        .filter(|(_, b)| b.route.cors.as_ref().is_some_and(|c| c.allows(origin_text)))
        .map(|(m, _)| m.as_str())
        .collect();
    set(
        headers,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        &methods.join(", "),
    );
    if !policy.allow_headers.is_empty() {
        set(
            headers,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            &policy.allow_headers.join(", "),
        );
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(policy.max_age_seconds),
    );
    response
}

/// Adds the CORS headers to an actual response, if the origin is allowed.
pub(crate) fn decorate(policy: &Cors, origin: &HeaderValue, response: &mut Response<Full<Bytes>>) {
    if !policy.allows(origin.to_str().unwrap_or_default()) {
        return;
    }
    let headers = response.headers_mut();
    allow_origin(policy, origin, headers);
    if !policy.expose_headers.is_empty() {
        set(
            headers,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            &policy.expose_headers.join(", "),
        );
    }
}

fn allow_origin(policy: &Cors, origin: &HeaderValue, headers: &mut HeaderMap) {
    if policy.allow_origins.is_none() {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    } else {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if policy.allow_credentials {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}
