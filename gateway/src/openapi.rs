//! OpenAPI 3.1 from the API definition and the components' WIT types: every route becomes an
//! operation whose parameters, body and responses carry JSON Schemas (2020-12, as OpenAPI 3.1
//! uses) derived from the export it calls, spelled the way `json.rs` converts values.
//!
//! Served at `GET /openapi.json` (unless a route claims that path) and printed by
//! `revenant openapi`.

use crate::{Binding, Gateway};
use revenant_api_definitions::{ArgSource, TemplatePart, Var};
use revenant_runtime::ValueType;
use revenant_runtime::limits::WORKER_NAME_BYTES_MAX;
use serde_json::{Map, Value as Json, json};
use std::collections::BTreeMap;

/// The well-known path the document is served at.
pub const PATH: &str = "/openapi.json";

/// The JSON Schema of a WIT type, as the gateway reads and writes it.
pub fn schema(ty: &ValueType) -> Json {
    fn int(min: i128, max: i128, format: &str) -> Json {
        json!({"type": "integer", "format": format, "minimum": min, "maximum": max})
    }
    match ty {
        ValueType::Bool => json!({"type": "boolean"}),
        ValueType::S8 => int(i8::MIN.into(), i8::MAX.into(), "int8"),
        ValueType::U8 => int(0, u8::MAX.into(), "uint8"),
        ValueType::S16 => int(i16::MIN.into(), i16::MAX.into(), "int16"),
        ValueType::U16 => int(0, u16::MAX.into(), "uint16"),
        ValueType::S32 => int(i32::MIN.into(), i32::MAX.into(), "int32"),
        ValueType::U32 => int(0, u32::MAX.into(), "uint32"),
        ValueType::S64 => int(i64::MIN.into(), i64::MAX.into(), "int64"),
        ValueType::U64 => int(0, u64::MAX.into(), "uint64"),
        ValueType::F32 => json!({"type": "number", "format": "float"}),
        ValueType::F64 => json!({"type": "number", "format": "double"}),
        ValueType::Char => json!({"type": "string", "minLength": 1, "maxLength": 1}),
        ValueType::String => json!({"type": "string"}),
        ValueType::List(t) => json!({"type": "array", "items": schema(t)}),
        ValueType::Tuple(ts) => json!({
            "type": "array",
            "prefixItems": ts.iter().map(schema).collect::<Vec<_>>(),
            "items": false,
            "minItems": ts.len(),
            "maxItems": ts.len(),
        }),
        ValueType::Record(fields) => {
            let properties: Map<String, Json> =
                fields.iter().map(|(n, t)| (n.clone(), schema(t))).collect();
            let required: Vec<&String> = fields
                .iter()
                .filter(|(_, t)| !matches!(t, ValueType::Option(_)))
                .map(|(n, _)| n)
                .collect();
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        }
        ValueType::Variant(cases) => json!({
            "oneOf": cases.iter().map(|(name, payload)| match payload {
                None => json!({"const": name}),
                Some(t) => single_key(name, schema(t)),
            }).collect::<Vec<_>>()
        }),
        ValueType::Enum(names) => json!({"type": "string", "enum": names}),
        ValueType::Option(t) => json!({"anyOf": [{"type": "null"}, schema(t)]}),
        ValueType::Result { ok, err } => {
            let payload = |t: &Option<Box<ValueType>>| {
                t.as_deref().map_or_else(|| json!({"type": "null"}), schema)
            };
            json!({"oneOf": [single_key("ok", payload(ok)), single_key("err", payload(err))]})
        }
        ValueType::Flags(names) => json!({
            "type": "array",
            "items": {"type": "string", "enum": names},
            "uniqueItems": true,
        }),
        ValueType::Unsupported(what) => {
            json!({"description": format!("not representable: {what}")})
        }
    }
}

/// `{"name": <schema>}` and nothing else.
fn single_key(name: &str, value: Json) -> Json {
    json!({
        "type": "object",
        "properties": {name: value},
        "required": [name],
        "additionalProperties": false,
    })
}

fn error_schema() -> Json {
    json!({
        "type": "object",
        "properties": {
            "code": {"type": "string", "description": "stable; see docs/errors.md"},
            "message": {"type": "string"},
            "details": {},
        },
        "required": ["code", "message", "details"],
    })
}

/// The OpenAPI 3.1 document of everything `gateway` serves.
pub fn document(gateway: &Gateway, title: &str, version: &str) -> Json {
    let mut paths: BTreeMap<String, Map<String, Json>> = BTreeMap::new();
    let mut schemes = Map::new();
    for bindings in &gateway.paths {
        for (method, binding) in bindings {
            let route = &binding.route;
            let path = route.path.pattern.replace("{*", "{");
            if let Some(scheme) = &route.auth {
                schemes.insert(
                    scheme.clone(),
                    json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
                );
            }
            paths
                .entry(path)
                .or_default()
                .insert(method.as_str().to_ascii_lowercase(), operation(binding));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": {"Error": error_schema()},
            "securitySchemes": schemes,
        },
    })
}

/// What the gateway refuses in a path segment (`route::canonical_path`), as JSON Schema: empty,
/// `.` or `..`, an (encoded) `/`, control characters; and, for a parameter that is part of the
/// worker name, the name's byte bound.
fn path_segment_limits(schema: &mut Json, name_bytes: Option<usize>) {
    schema["minLength"] = json!(1);
    schema["pattern"] = json!("^[^/\\u0000-\\u001f\\u007f-\\u009f]+$");
    schema["not"] = json!({"enum": [".", ".."]});
    let mut description = String::from(
        "One path segment, percent-decoded once: not empty, not `.` or `..`, without `/` or \
         control characters (400 `bad_path`).",
    );
    if let Some(bytes) = name_bytes {
        schema["maxLength"] = json!(bytes);
        description.push_str(&format!(
            " Part of the worker name, which has at most {WORKER_NAME_BYTES_MAX} bytes of \
             UTF-8: at most {bytes} bytes here (400 `invalid_worker_name`)."
        ));
    }
    schema["description"] = json!(description);
}

fn operation(binding: &Binding) -> Json {
    let route = &binding.route;
    // Each placeholder's schema: the parameter's when it is the whole argument, text otherwise.
    let mut typed: BTreeMap<String, Json> = BTreeMap::new();
    let mut body_fields: Vec<(Vec<String>, Json)> = Vec::new();
    let text = json!({"type": "string"});
    let mut note = |var: &Var, schema: Json| match var {
        Var::Body(fields) => body_fields.push((fields.clone(), schema)),
        other => {
            typed.entry(other.to_string()).or_insert(schema);
        }
    };
    for (source, (_, ty)) in route.args.iter().zip(&binding.params) {
        match source {
            ArgSource::Var(v) => note(v, schema(ty)),
            ArgSource::Text(t) => t.vars().for_each(|v| note(v, text.clone())),
        }
    }
    for part in &route.worker.parts {
        if let TemplatePart::Var(v) = part {
            note(v, text.clone());
        }
    }
    for r in &route.requires {
        note(&r.var, text.clone());
    }

    let mut parameters = Vec::new();
    // Bytes of the worker name that are not placeholders: what a path parameter in it may use.
    let literal: usize = route
        .worker
        .parts
        .iter()
        .map(|p| match p {
            TemplatePart::Literal(l) => l.len(),
            TemplatePart::Var(_) => 0,
        })
        .sum();
    for p in &route.path.params {
        let mut schema = typed.get(p).cloned().unwrap_or_else(|| text.clone());
        if schema["type"] == "string" {
            let in_name = route
                .worker
                .parts
                .iter()
                .any(|part| matches!(part, TemplatePart::Var(Var::Path(v)) if v == p));
            path_segment_limits(
                &mut schema,
                in_name.then(|| WORKER_NAME_BYTES_MAX - literal.min(WORKER_NAME_BYTES_MAX)),
            );
        }
        parameters.push(json!({
            "name": p, "in": "path", "required": true,
            "schema": schema,
        }));
    }
    for (key, schema) in &typed {
        let (location, name) = match key.split_once('.') {
            Some(("query", n)) => ("query", n),
            Some(("header", n)) => ("header", n),
            _ => continue,
        };
        parameters.push(json!({"name": name, "in": location, "required": true, "schema": schema}));
    }

    let mut op = Map::new();
    op.insert("operationId".into(), json!(operation_id(route)));
    op.insert(
        "summary".into(),
        json!(format!(
            "calls `{}`{}",
            binding.export,
            if route.read_only { " (read-only)" } else { "" }
        )),
    );
    if route.read_only {
        // Clients and tools may treat it as safe: it changes nothing and records nothing.
        op.insert("x-revenant-read-only".into(), json!(true));
    }
    op.insert("parameters".into(), json!(parameters));
    if let Some(body) = body_schema(&body_fields) {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": body}}}),
        );
    }
    let mut responses = Map::new();
    let ok_schema = match (&route.error_status, binding.results.as_slice()) {
        (Some(status), [ValueType::Result { ok, err }]) => {
            let payload =
                |t: &Option<Box<ValueType>>| t.as_deref().map_or(json!({"type": "null"}), schema);
            responses.insert(
                status.to_string(),
                json!({"description": "the export returned `err`: an error body whose `details` is the export's error", "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": {"const": "export_error"},
                        "message": {"type": "string"},
                        "details": payload(err),
                    },
                }}}}),
            );
            json!({"oneOf": [single_key("ok", payload(ok)), single_key("err", payload(err))]})
        }
        (_, []) => json!({"type": "null"}),
        (_, [one]) => schema(one),
        (_, many) => schema(&ValueType::Tuple(many.to_vec())),
    };
    // A literal `response.status` replaces 200; one taken from the result is documented as 200.
    let ok_status = route
        .response
        .status
        .as_ref()
        .filter(|t| t.vars().next().is_none())
        .and_then(|t| match t.parts.as_slice() {
            [TemplatePart::Literal(l)] => Some(l.trim().to_string()),
            _ => None,
        })
        .unwrap_or_else(|| "200".into());
    let mut ok = json!({"description": "the export's result", "content": {"application/json": {"schema": ok_schema}}});
    if !route.response.headers.is_empty() {
        let headers: Map<String, Json> = route
            .response
            .headers
            .iter()
            .map(|(name, _, _)| (name.clone(), json!({"schema": {"type": "string"}})))
            .collect();
        ok["headers"] = Json::Object(headers);
    }
    responses.insert(ok_status, ok);
    responses.insert(
        "default".into(),
        json!({"description": "an error (docs/errors.md)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
    );
    op.insert("responses".into(), Json::Object(responses));
    if let Some(scheme) = &route.auth {
        op.insert("security".into(), json!([{ scheme: [] }]));
    }
    Json::Object(op)
}

/// The body's schema: the whole parameter's for `{body}`, else an object with the fields the
/// route reads (nested for `{body.a.b}`).
fn body_schema(fields: &[(Vec<String>, Json)]) -> Option<Json> {
    if let Some((_, whole)) = fields.iter().find(|(path, _)| path.is_empty()) {
        return Some(whole.clone());
    }
    if fields.is_empty() {
        return None;
    }
    let mut root = json!({"type": "object", "properties": {}, "required": []});
    for (path, schema) in fields {
        let mut node = &mut root;
        for (i, field) in path.iter().enumerate() {
            let required = node["required"].as_array_mut().expect("an object schema");
            if !required.iter().any(|r| r == field) {
                required.push(json!(field));
            }
            let last = i + 1 == path.len();
            let properties = node["properties"]
                .as_object_mut()
                .expect("an object schema");
            node = properties.entry(field.clone()).or_insert_with(|| {
                if last {
                    schema.clone()
                } else {
                    json!({"type": "object", "properties": {}, "required": []})
                }
            });
            if !last && node.get("properties").is_none() {
                // The same field is read whole elsewhere: keep that schema.
                break;
            }
        }
    }
    Some(root)
}

fn operation_id(route: &revenant_api_definitions::Route) -> String {
    let mut id = route.method.as_str().to_ascii_lowercase();
    for c in route.path.pattern.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_string()
}
