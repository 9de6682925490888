//! Finding what a request asks for, once per request: its canonical path, the bindings of the
//! path pattern it matches, and the one for its method. CORS and serving both use that match.

use crate::Gateway;
use crate::binding::Binding;
use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use http::{HeaderValue, Response, header};
use http_body_util::Full;
use revenant_api_definitions::Method;

/// The routes a request's path matched.
pub(crate) struct Found<'g> {
    pub path: String,
    /// The bindings of the matched pattern, by method.
    pub bindings: &'g [(Method, Binding)],
    pub params: Vec<(String, String)>,
}

impl Gateway {
    /// The bindings for `path` (canonical), if any pattern matches it.
    pub(crate) fn find(&self, path: String) -> Result<Found<'_>, String> {
        let Ok(matched) = self.router.at(&path) else {
            return Err(path);
        };
        let params = matched
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let bindings = &self.paths[*matched.value];
        Ok(Found {
            path,
            bindings,
            params,
        })
    }
}

impl<'g> Found<'g> {
    /// The binding for `method`, if the path has one.
    pub fn binding(&self, method: &http::Method) -> Option<&'g Binding> {
        self.bindings
            .iter()
            .find(|(m, _)| m.as_str() == method.as_str())
            .map(|(_, b)| b)
    }

    /// The `405` for `method`, listing the methods the path has.
    pub fn not_allowed(&self, method: &http::Method) -> Response<Full<Bytes>> {
        let allowed: Vec<&str> = self.bindings.iter().map(|(m, _)| m.as_str()).collect();
        let mut response = ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{method} is not allowed on {}; allowed: {}",
                self.path,
                allowed.join(", ")
            ),
        )
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            response.headers_mut().insert(header::ALLOW, v);
        }
        response
    }
}

/// The path routing sees: each segment percent-decoded exactly once. Anything that could make
/// two spellings select different workers, or one spelling mean two paths, is refused: an
/// encoded `/`, `.` or `..` segments, empty segments, and bytes that are not UTF-8. So the key
/// that authorises a request is the key that selects its worker.
pub fn canonical_path(raw: &str) -> Result<String, ApiError> {
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
