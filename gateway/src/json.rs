//! JSON ⇄ WIT values, guided by the export's WIT types.
//!
//! | WIT | JSON |
//! |---|---|
//! | bool, integers, floats | booleans and numbers; integers are range-checked, floats must be finite |
//! | char, string | a string (one character for `char`) |
//! | list, tuple | an array |
//! | record | an object with the record's field names |
//! | variant | `{"case": payload}`, or `"case"` for a case without payload |
//! | enum | a string |
//! | option | `null` for none, the value for some |
//! | result | `{"ok": value}` or `{"err": value}` (`null` for a missing payload) |
//! | flags | an array of flag names |
//!
//! Errors name the path to the bad field: `body.items[3].qty: expected u32, got -1`.

use revenant_runtime::{Value, ValueType};
use serde_json::{Map, Number, Value as Json};

pub fn to_value(json: &Json, ty: &ValueType, path: &str) -> Result<Value, String> {
    let wrong = || {
        Err(format!(
            "{path}: expected {}, got {}",
            ty.describe(),
            describe_json(json)
        ))
    };
    macro_rules! int {
        ($variant:ident, $t:ty) => {{
            let Some(n) = as_i128(json) else {
                return wrong();
            };
            match <$t>::try_from(n) {
                Ok(v) => Ok(Value::$variant(v)),
                Err(_) => wrong(),
            }
        }};
    }
    match ty {
        ValueType::Bool => match json {
            Json::Bool(b) => Ok(Value::Bool(*b)),
            _ => wrong(),
        },
        ValueType::S8 => int!(S8, i8),
        ValueType::U8 => int!(U8, u8),
        ValueType::S16 => int!(S16, i16),
        ValueType::U16 => int!(U16, u16),
        ValueType::S32 => int!(S32, i32),
        ValueType::U32 => int!(U32, u32),
        ValueType::S64 => int!(S64, i64),
        ValueType::U64 => int!(U64, u64),
        ValueType::F32 => match json.as_f64() {
            Some(f) if f.is_finite() && (f as f32).is_finite() => Ok(Value::F32(f as f32)),
            _ => wrong(),
        },
        ValueType::F64 => match json.as_f64() {
            Some(f) if f.is_finite() => Ok(Value::F64(f)),
            _ => wrong(),
        },
        ValueType::Char => match json.as_str().map(|s| s.chars().collect::<Vec<_>>()) {
            Some(chars) if chars.len() == 1 => Ok(Value::Char(chars[0])),
            _ => wrong(),
        },
        ValueType::String => match json {
            Json::String(s) => Ok(Value::String(s.clone())),
            _ => wrong(),
        },
        ValueType::List(t) => match json {
            Json::Array(items) => Ok(Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, j)| to_value(j, t, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            _ => wrong(),
        },
        ValueType::Tuple(ts) => match json {
            Json::Array(items) if items.len() == ts.len() => Ok(Value::Tuple(
                items
                    .iter()
                    .zip(ts)
                    .enumerate()
                    .map(|(i, (j, t))| to_value(j, t, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            )),
            _ => wrong(),
        },
        ValueType::Record(fields) => {
            let Json::Object(map) = json else {
                return wrong();
            };
            if let Some(extra) = map.keys().find(|k| !fields.iter().any(|(f, _)| f == *k)) {
                return Err(format!("{path}: unknown field `{extra}`"));
            }
            let mut out = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                let field_path = format!("{path}.{name}");
                let v = match (map.get(name), t) {
                    (Some(j), _) => to_value(j, t, &field_path)?,
                    // An absent optional field is `none`, as a JSON user would expect.
                    (None, ValueType::Option(_)) => Value::Option(None),
                    (None, _) => return Err(format!("{field_path}: missing")),
                };
                out.push((name.clone(), v));
            }
            Ok(Value::Record(out))
        }
        ValueType::Variant(cases) => {
            let (name, payload) = match json {
                Json::String(s) => (s.as_str(), None),
                Json::Object(map) if map.len() == 1 => {
                    let (k, v) = map.iter().next().expect("one entry");
                    (k.as_str(), Some(v))
                }
                _ => return wrong(),
            };
            let Some((_, case_ty)) = cases.iter().find(|(c, _)| c == name) else {
                return Err(format!("{path}: unknown case `{name}`"));
            };
            match (case_ty, payload) {
                (None, None) | (None, Some(Json::Null)) => Ok(Value::Variant(name.into(), None)),
                (Some(t), Some(p)) => Ok(Value::Variant(
                    name.into(),
                    Some(Box::new(to_value(p, t, &format!("{path}.{name}"))?)),
                )),
                (Some(_), None) => Err(format!("{path}: case `{name}` needs a payload")),
                (None, Some(_)) => Err(format!("{path}: case `{name}` has no payload")),
            }
        }
        ValueType::Enum(names) => match json {
            Json::String(s) if names.contains(s) => Ok(Value::Enum(s.clone())),
            Json::String(s) => Err(format!(
                "{path}: unknown case `{s}`, expected one of {}",
                names.join(", ")
            )),
            _ => wrong(),
        },
        ValueType::Option(t) => match json {
            Json::Null => Ok(Value::Option(None)),
            j => Ok(Value::Option(Some(Box::new(to_value(j, t, path)?)))),
        },
        ValueType::Result { ok, err } => {
            let Json::Object(map) = json else {
                return wrong();
            };
            let (case, payload) = match (map.len(), map.iter().next()) {
                (1, Some((k, v))) if k == "ok" || k == "err" => (k.as_str(), v),
                _ => {
                    return Err(format!(
                        "{path}: expected {{\"ok\": ...}} or {{\"err\": ...}}"
                    ));
                }
            };
            let ty = if case == "ok" { ok } else { err };
            let inner = match (ty, payload) {
                (None, Json::Null) => None,
                (None, _) => return Err(format!("{path}.{case}: expected null")),
                (Some(t), p) => Some(Box::new(to_value(p, t, &format!("{path}.{case}"))?)),
            };
            Ok(Value::Result(if case == "ok" {
                Ok(inner)
            } else {
                Err(inner)
            }))
        }
        ValueType::Flags(names) => {
            let Json::Array(items) = json else {
                return wrong();
            };
            let mut set = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(f) if names.iter().any(|n| n == f) => {
                        if !set.iter().any(|s| s == f) {
                            set.push(f.to_string());
                        }
                    }
                    _ => return Err(format!("{path}[{i}]: expected one of {}", names.join(", "))),
                }
            }
            Ok(Value::Flags(set))
        }
        ValueType::Unsupported(what) => Err(format!("{path}: {what} cannot be passed as JSON")),
    }
}

/// Converts text (a path parameter, or a template's expansion) to a parameter's type: strings
/// as they are, other scalars parsed the way JSON spells them.
pub fn text_to_value(text: &str, ty: &ValueType, path: &str) -> Result<Value, String> {
    match ty {
        ValueType::String => Ok(Value::String(text.to_string())),
        ValueType::Char | ValueType::Enum(_) => to_value(&Json::String(text.into()), ty, path),
        _ => match serde_json::from_str::<Json>(text) {
            Ok(json @ (Json::Bool(_) | Json::Number(_))) => to_value(&json, ty, path),
            _ => Err(format!("{path}: expected {}, got `{text}`", ty.describe())),
        },
    }
}

/// Whether a parameter of this type can be given as text (a path segment or a template).
pub fn accepts_text(ty: &ValueType) -> bool {
    is_integer(ty)
        || matches!(
            ty,
            ValueType::Bool
                | ValueType::F32
                | ValueType::F64
                | ValueType::Char
                | ValueType::String
                | ValueType::Enum(_)
        )
}

pub fn is_integer(ty: &ValueType) -> bool {
    matches!(
        ty,
        ValueType::S8
            | ValueType::U8
            | ValueType::S16
            | ValueType::U16
            | ValueType::S32
            | ValueType::U32
            | ValueType::S64
            | ValueType::U64
    )
}

pub fn from_value(v: &Value) -> Json {
    let opt = |o: &Option<Box<Value>>| o.as_ref().map_or(Json::Null, |v| from_value(v));
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::S8(x) => Json::from(*x),
        Value::U8(x) => Json::from(*x),
        Value::S16(x) => Json::from(*x),
        Value::U16(x) => Json::from(*x),
        Value::S32(x) => Json::from(*x),
        Value::U32(x) => Json::from(*x),
        Value::S64(x) => Json::from(*x),
        Value::U64(x) => Json::from(*x),
        // A guest may return NaN or infinity, which JSON cannot spell: they become null.
        Value::F32(x) => Number::from_f64(f64::from(*x)).map_or(Json::Null, Json::Number),
        Value::F64(x) => Number::from_f64(*x).map_or(Json::Null, Json::Number),
        Value::Char(c) => Json::String(c.to_string()),
        Value::String(s) => Json::String(s.clone()),
        Value::List(xs) | Value::Tuple(xs) => Json::Array(xs.iter().map(from_value).collect()),
        Value::Record(fs) => Json::Object(
            fs.iter()
                .map(|(n, v)| (n.clone(), from_value(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Variant(n, None) | Value::Enum(n) => Json::String(n.clone()),
        Value::Variant(n, Some(p)) => Json::Object(Map::from_iter([(n.clone(), from_value(p))])),
        Value::Option(o) => opt(o),
        Value::Result(Ok(o)) => Json::Object(Map::from_iter([("ok".to_string(), opt(o))])),
        Value::Result(Err(o)) => Json::Object(Map::from_iter([("err".to_string(), opt(o))])),
        Value::Flags(fs) => Json::Array(fs.iter().map(|f| Json::String(f.clone())).collect()),
        Value::Bytes(bs) => Json::Array(bs.iter().map(|b| Json::from(*b)).collect()),
    }
}

fn as_i128(json: &Json) -> Option<i128> {
    match json {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    }
}

fn describe_json(json: &Json) -> String {
    match json {
        Json::Null => "null".into(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::String(s) if s.len() <= 40 => format!("\"{s}\""),
        Json::String(_) => "a string".into(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn activity() -> ValueType {
        ValueType::Record(vec![
            ("id".into(), ValueType::U64),
            ("kind".into(), ValueType::String),
            (
                "tags".into(),
                ValueType::List(Box::new(ValueType::Enum(vec!["a".into(), "b".into()]))),
            ),
            (
                "note".into(),
                ValueType::Option(Box::new(ValueType::String)),
            ),
        ])
    }

    #[test]
    fn a_record_round_trips() {
        let j = json!({"id": 7, "kind": "run", "tags": ["a", "b"], "note": null});
        let v = to_value(&j, &activity(), "body").unwrap();
        assert_eq!(from_value(&v), j);
    }

    #[test]
    fn errors_name_the_path() {
        let j = json!({"id": -1, "kind": "run", "tags": []});
        assert_eq!(
            to_value(&j, &activity(), "body").unwrap_err(),
            "body.id: expected u64, got -1"
        );
        let j = json!({"id": 1, "kind": "run", "tags": ["a", "c"]});
        assert!(
            to_value(&j, &activity(), "body")
                .unwrap_err()
                .starts_with("body.tags[1]: unknown case `c`")
        );
        let j = json!({"id": 1, "tags": []});
        assert_eq!(
            to_value(&j, &activity(), "body").unwrap_err(),
            "body.kind: missing"
        );
    }

    #[test]
    fn integer_ranges_are_checked() {
        assert!(to_value(&json!(256), &ValueType::U8, "x").is_err());
        assert!(to_value(&json!(-129), &ValueType::S8, "x").is_err());
        assert!(to_value(&json!(1.5), &ValueType::U32, "x").is_err());
        assert_eq!(
            to_value(&json!(u64::MAX), &ValueType::U64, "x").unwrap(),
            Value::U64(u64::MAX)
        );
    }

    #[test]
    fn results_variants_and_text() {
        let ty = ValueType::Result {
            ok: Some(Box::new(ValueType::U32)),
            err: Some(Box::new(ValueType::String)),
        };
        let v = to_value(&json!({"err": "no"}), &ty, "r").unwrap();
        assert_eq!(from_value(&v), json!({"err": "no"}));
        assert_eq!(
            text_to_value("42", &ValueType::U16, "p").unwrap(),
            Value::U16(42)
        );
        assert!(text_to_value("x42", &ValueType::U16, "p").is_err());
        assert_eq!(
            text_to_value("42", &ValueType::String, "p").unwrap(),
            Value::String("42".into())
        );
    }
}
