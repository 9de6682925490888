//! An export's result as the HTTP answer: an error status for a `result::err` when the route
//! has `error_status`, otherwise `200` (or the route's `response.status`) with the result as
//! JSON and the route's `response.headers`.

use crate::binding::Binding;
use crate::error::{ApiError, ErrorCode, json_response};
use crate::inputs::Inputs;
use crate::json;
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use revenant_runtime::Value;
use serde_json::Value as Json;

pub(crate) fn respond(
    binding: &Binding,
    inputs: &Inputs<'_>,
    results: Vec<Value>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let route = &binding.route;
    if let (Some(status), [Value::Result(Err(error))]) = (route.error_status, results.as_slice()) {
        // Like every error body: `{code, message, details}`, the guest's value in `details`.
        let details = error.as_deref().map_or(Json::Null, json::from_value);
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(ApiError::new(
            ErrorCode::ExportError,
            format!("`{}` returned an error", binding.export),
        )
        .with_details(details)
        .into_response_with(status));
    }
    let json = match results.as_slice() {
        [] => Json::Null,
        [one] => json::from_value(one),
        many => Json::Array(many.iter().map(json::from_value).collect()),
    };
    let mut status = StatusCode::OK;
    let mut extra = Vec::new();
    if route.response != Default::default() {
        let inputs = Inputs {
            result: Some(&json),
            ..*inputs
        };
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
