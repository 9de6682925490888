//! What the admin API shows of workers and components as JSON: oplog entries decoded (the
//! CLI's `oplog show` and the console's timeline), exports with their WIT signatures, and an
//! operator's call's arguments and results.

use crate::error::{ApiError, ErrorCode};
use crate::json;
use revenant_runtime::{ComponentInfo, ExportInfo, Value, ValueType};
use revenant_storage::{OplogEntry, SequencedEntry};
use serde_json::{Value as Json, json};

/// Bytes of one string or byte string an entry shows; the rest is cut and counted. Entries may
/// hold values of up to `VALUE_BYTES_MAX` (HTTP bodies, large results): an operator reading a
/// timeline wants their start, and a page of a thousand of them must stay small.
pub const SHOWN_VALUE_BYTES_MAX: usize = 16 * 1024;

/// Bytes of JSON one page of oplog entries may reach; past it the page ends early and `next`
/// points at the first entry left out.
pub const OPLOG_PAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// One oplog entry as JSON: `index`, `kind`, and the entry's own fields.
pub fn entry(e: &SequencedEntry) -> Json {
    let key = |k: &str| (!k.is_empty()).then(|| k.to_string());
    let mut shown = match &e.entry {
        OplogEntry::Create { component_hash } => {
            json!({"kind": "create", "component_hash": component_hash})
        }
        OplogEntry::Engine { settings } => json!({"kind": "engine", "settings": settings}),
        OplogEntry::InvocationStarted {
            idempotency_key,
            function,
            args,
        } => json!({
            "kind": "invocation_started",
            "function": function,
            "args": args.iter().map(value).collect::<Vec<_>>(),
            "idempotency_key": key(idempotency_key),
        }),
        OplogEntry::HostCall {
            interface,
            function,
            request,
            response,
        } => json!({
            "kind": "host_call",
            "interface": interface,
            "function": function,
            "request": value(request),
            "response": value(response),
        }),
        OplogEntry::InvocationCompleted {
            idempotency_key,
            result,
        } => json!({
            "kind": "invocation_completed",
            "result": results(result, value),
            "idempotency_key": key(idempotency_key),
        }),
        OplogEntry::InvocationCompletedDigest { sha256, bytes } => json!({
            "kind": "invocation_completed",
            // A call without an idempotency key keeps only its result's digest.
            "result_digest": {"sha256": hex(sha256), "bytes": bytes},
        }),
        OplogEntry::InvocationFailed {
            idempotency_key,
            error,
        } => json!({
            "kind": "invocation_failed",
            "code": "worker_trap",
            "error": error,
            "idempotency_key": key(idempotency_key),
        }),
        OplogEntry::InvocationFailedWithCode {
            idempotency_key,
            code,
            error,
        } => json!({
            "kind": "invocation_failed",
            "code": code,
            "error": error,
            "idempotency_key": key(idempotency_key),
        }),
        OplogEntry::Snapshot { part, parts, bytes } => {
            json!({"kind": "snapshot", "part": part, "parts": parts, "bytes": bytes.len()})
        }
        OplogEntry::Interrupted => json!({"kind": "interrupted"}),
        OplogEntry::Resumed => json!({"kind": "resumed"}),
        OplogEntry::Exited { code } => json!({"kind": "exited", "code": code}),
        OplogEntry::GuestOutput {
            stream,
            bytes,
            dropped,
        } => json!({
            "kind": "guest_output",
            "stream": if *stream == 2 { "stderr" } else { "stdout" },
            "text": cut(&String::from_utf8_lossy(bytes)),
            "dropped": dropped,
        }),
    };
    shown["index"] = json!(e.seq);
    shown
}

/// A call's results as its caller sees them: one result is the value itself, none is `null`,
/// several are an array.
pub fn results(values: &[Value], each: impl Fn(&Value) -> Json) -> Json {
    match values {
        [] => Json::Null,
        [one] => each(one),
        many => Json::Array(many.iter().map(each).collect()),
    }
}

/// A recorded value as JSON (the gateway's mapping, `json::from_value`), with long strings and
/// byte strings cut at `SHOWN_VALUE_BYTES_MAX`; a byte string shows as text when it is UTF-8
/// (an HTTP body, mostly), else as hex.
pub fn value(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::String(cut(s)),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(text) => json!({"bytes": b.len(), "text": cut(text)}),
            Err(_) => {
                let shown = &b[..b.len().min(SHOWN_VALUE_BYTES_MAX / 2)];
                json!({"bytes": b.len(), "hex": hex(shown)})
            }
        },
        Value::List(xs) | Value::Tuple(xs) => Json::Array(xs.iter().map(value).collect()),
        Value::Record(fs) => Json::Object(fs.iter().map(|(n, v)| (n.clone(), value(v))).collect()),
        Value::Variant(n, Some(p)) => json!({ n.as_str(): value(p) }),
        Value::Option(Some(p)) => value(p),
        Value::Result(Ok(Some(p))) => json!({"ok": value(p)}),
        Value::Result(Err(Some(p))) => json!({"err": value(p)}),
        other => json::from_value(other),
    }
}

fn cut(s: &str) -> String {
    if s.len() <= SHOWN_VALUE_BYTES_MAX {
        return s.to_string();
    }
    let mut end = SHOWN_VALUE_BYTES_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} more bytes]", &s[..end], s.len() - end)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A component: its name, content hash, and every export with its WIT signature.
pub fn component(info: &ComponentInfo) -> Json {
    let exports: Vec<Json> = info.exports.values().map(export).collect();
    json!({"name": info.name, "hash": info.hash, "exports": exports})
}

fn export(e: &ExportInfo) -> Json {
    let params: Vec<Json> = e
        .signature
        .params
        .iter()
        .map(|(name, ty)| json!({"name": name, "type": ty.describe()}))
        .collect();
    let results: Vec<String> = e
        .signature
        .results
        .iter()
        .map(ValueType::describe)
        .collect();
    json!({"name": e.name, "params": params, "results": results})
}

/// An operator's arguments for `export`: a JSON array (in order) or an object (by parameter
/// name); nothing at all for an export without parameters.
pub fn args(export: &ExportInfo, given: Option<&Json>) -> Result<Vec<Value>, ApiError> {
    let params = &export.signature.params;
    let bad = |m: String| ApiError::new(ErrorCode::BadArgument, m);
    let values: Vec<&Json> = match given {
        None => Vec::new(),
        Some(Json::Array(items)) => items.iter().collect(),
        Some(Json::Object(fields)) => {
            if let Some(unknown) = fields.keys().find(|k| !params.iter().any(|(p, _)| p == *k)) {
                return Err(bad(format!(
                    "`{}` has no parameter `{unknown}`; it takes {}",
                    export.name,
                    signature(export)
                )));
            }
            let mut ordered = Vec::with_capacity(params.len());
            for (name, _) in params {
                match fields.get(name) {
                    Some(v) => ordered.push(v),
                    None => {
                        return Err(bad(format!(
                            "`{}` needs its parameter `{name}`; it takes {}",
                            export.name,
                            signature(export)
                        )));
                    }
                }
            }
            ordered
        }
        Some(_) => {
            return Err(bad(format!(
                "the arguments of `{}` are a JSON array or object; it takes {}",
                export.name,
                signature(export)
            )));
        }
    };
    if values.len() != params.len() {
        return Err(bad(format!(
            "`{}` takes {} argument(s), got {}: {}",
            export.name,
            params.len(),
            values.len(),
            signature(export)
        )));
    }
    params
        .iter()
        .zip(values)
        .map(|((name, ty), v)| json::to_value(v, ty, name).map_err(bad))
        .collect()
}

fn signature(export: &ExportInfo) -> String {
    let params: Vec<String> = export
        .signature
        .params
        .iter()
        .map(|(n, t)| format!("{n}: {}", t.describe()))
        .collect();
    format!("({})", params.join(", "))
}
