//! A request's inputs: path parameters, query, headers, JWT claims and JSON body, read within
//! their bounds, and the export's arguments made from them by the route's templates.

use crate::auth;
use crate::binding::Binding;
use crate::error::{ApiError, ErrorCode};
use crate::json;
use crate::limits;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use revenant_api_definitions::{ArgSource, Route, TemplatePart, Var};
use revenant_runtime::Value;
use serde_json::Value as Json;

/// Where a request's values come from: path parameters, query, headers, JSON body.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    pub params: &'a [(String, String)],
    pub query: &'a [(String, String)],
    pub headers: &'a http::HeaderMap,
    pub body: &'a Json,
    pub claims: Option<&'a auth::Claims>,
    /// The export's result as JSON, once it has one (for `response`).
    pub result: Option<&'a Json>,
}

impl Inputs<'_> {
    /// A placeholder's value as text (a body field must be a string, number or boolean).
    pub fn text(&self, var: &Var) -> Result<String, ApiError> {
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
            Var::Jwt(claim) => match self.claims.and_then(|c| c.get(claim)).and_then(claim_text) {
                Some(text) => Ok(text),
                None => Err(ApiError::new(
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

    /// The route's `require`s (`{user-id} == jwt.sub`): each must hold for the token.
    pub fn check_requirements(&self, route: &Route, path: &str) -> Result<(), ApiError> {
        for requirement in &route.requires {
            let value = self.text(&requirement.var)?;
            let holds = self
                .claims
                .and_then(|c| c.get(&requirement.claim))
                .and_then(claim_text)
                .is_some_and(|claim| claim == value);
            if !holds {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("this token may not call {path}: `{requirement}` does not hold"),
                ));
            }
        }
        Ok(())
    }

    /// The export's arguments, each converted to its parameter's WIT type.
    pub fn arguments(&self, binding: &Binding) -> Result<Vec<Value>, ApiError> {
        let mut args = Vec::with_capacity(binding.params.len());
        for (source, (name, ty)) in binding.route.args.iter().zip(&binding.params) {
            args.push(match source {
                ArgSource::Var(Var::Body(fields)) => {
                    let (json, at) = body_field(self.body, fields)?;
                    json::to_value(json, ty, &at).map_err(ApiError::bad_argument)?
                }
                ArgSource::Var(v) => {
                    let text = self.text(v)?;
                    json::text_to_value(&text, ty, &v.to_string())
                        .map_err(ApiError::bad_argument)?
                }
                ArgSource::Text(t) => {
                    let text = self.expand(&t.parts)?;
                    json::text_to_value(&text, ty, name).map_err(ApiError::bad_argument)?
                }
            });
        }
        Ok(args)
    }

    pub fn expand(&self, parts: &[TemplatePart]) -> Result<String, ApiError> {
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

/// A request body as JSON; empty is `null`.
pub(crate) fn parse_json_body(bytes: &[u8]) -> Result<Json, ApiError> {
    if bytes.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::BadJson, format!("body: {e}")))
}

/// The request's `Idempotency-Key`, if it has one.
pub(crate) fn idempotency_key(headers: &http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .filter(|k| !k.is_empty())
        .map(|k| Some(k.to_string()))
        .ok_or_else(|| ApiError::bad_argument("Idempotency-Key must be non-empty visible ASCII"))
}

/// A route that reads a JSON body takes it only as JSON (or without a `Content-Type`): a
/// browser sends `text/plain` and form bodies cross-site without a CORS preflight, so accepting
/// them would let any page call the route with a visitor's cookies or network position.
pub(crate) fn require_json(headers: &http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!(
                "this route reads a JSON body; `Content-Type: {}` is not JSON",
                value.to_str().unwrap_or("(not text)")
            ),
        ))
    }
}

/// A claim as the text it stands for in a worker name, an argument or a `require`: strings as
/// they are, numbers and booleans as their JSON text; anything else has none. One rule, so a
/// claim compares the same everywhere.
pub(crate) fn claim_text(claim: &Json) -> Option<String> {
    match claim {
        Json::String(s) => Some(s.clone()),
        j @ (Json::Number(_) | Json::Bool(_)) => Some(j.to_string()),
        _ => None,
    }
}
