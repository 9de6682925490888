//! WIT types as the rest of Revenant sees them, independent of wasmtime: the gateway converts
//! JSON to values guided by these, and the runtime checks arguments against them.

use revenant_storage::Value;
use wasmtime::component::Type;

/// The type of a WIT value. Resources, futures and streams cannot cross the gateway or be
/// recorded, so they appear as `Unsupported` and a route using them is refused at load.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueType {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    List(Box<ValueType>),
    Record(Vec<(String, ValueType)>),
    Tuple(Vec<ValueType>),
    Variant(Vec<(String, Option<ValueType>)>),
    Enum(Vec<String>),
    Option(Box<ValueType>),
    Result {
        ok: Option<Box<ValueType>>,
        err: Option<Box<ValueType>>,
    },
    Flags(Vec<String>),
    Unsupported(String),
}

/// Parameters and results of an exported function.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionSignature {
    pub params: Vec<(String, ValueType)>,
    pub results: Vec<ValueType>,
}

impl ValueType {
    pub(crate) fn from_wasmtime(ty: &Type) -> Self {
        match ty {
            Type::Bool => Self::Bool,
            Type::S8 => Self::S8,
            Type::U8 => Self::U8,
            Type::S16 => Self::S16,
            Type::U16 => Self::U16,
            Type::S32 => Self::S32,
            Type::U32 => Self::U32,
            Type::S64 => Self::S64,
            Type::U64 => Self::U64,
            Type::Float32 => Self::F32,
            Type::Float64 => Self::F64,
            Type::Char => Self::Char,
            Type::String => Self::String,
            Type::List(l) => Self::List(Box::new(Self::from_wasmtime(&l.ty()))),
            Type::Record(r) => Self::Record(
                r.fields()
                    .map(|f| (f.name.to_string(), Self::from_wasmtime(&f.ty)))
                    .collect(),
            ),
            Type::Tuple(t) => Self::Tuple(t.types().map(|t| Self::from_wasmtime(&t)).collect()),
            Type::Variant(v) => Self::Variant(
                v.cases()
                    .map(|c| (c.name.to_string(), c.ty.as_ref().map(Self::from_wasmtime)))
                    .collect(),
            ),
            Type::Enum(e) => Self::Enum(e.names().map(str::to_string).collect()),
            Type::Option(o) => Self::Option(Box::new(Self::from_wasmtime(&o.ty()))),
            Type::Result(r) => Self::Result {
                ok: r.ok().map(|t| Box::new(Self::from_wasmtime(&t))),
                err: r.err().map(|t| Box::new(Self::from_wasmtime(&t))),
            },
            Type::Flags(f) => Self::Flags(f.names().map(str::to_string).collect()),
            other => Self::Unsupported(format!("{other:?}")),
        }
    }

    /// A short WIT-like spelling, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Bool => "bool".into(),
            Self::S8 => "s8".into(),
            Self::U8 => "u8".into(),
            Self::S16 => "s16".into(),
            Self::U16 => "u16".into(),
            Self::S32 => "s32".into(),
            Self::U32 => "u32".into(),
            Self::S64 => "s64".into(),
            Self::U64 => "u64".into(),
            Self::F32 => "f32".into(),
            Self::F64 => "f64".into(),
            Self::Char => "char".into(),
            Self::String => "string".into(),
            Self::List(t) => format!("list<{}>", t.describe()),
            Self::Record(_) => "record".into(),
            Self::Tuple(ts) => format!(
                "tuple<{}>",
                ts.iter().map(Self::describe).collect::<Vec<_>>().join(", ")
            ),
            Self::Variant(_) => "variant".into(),
            Self::Enum(_) => "enum".into(),
            Self::Option(t) => format!("option<{}>", t.describe()),
            Self::Result { .. } => "result".into(),
            Self::Flags(_) => "flags".into(),
            Self::Unsupported(what) => format!("unsupported type {what}"),
        }
    }

    /// Whether the type contains something that cannot be passed through the gateway.
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            Self::Unsupported(what) => Some(what),
            Self::List(t) | Self::Option(t) => t.unsupported(),
            Self::Record(fs) => fs.iter().find_map(|(_, t)| t.unsupported()),
            Self::Tuple(ts) => ts.iter().find_map(Self::unsupported),
            Self::Variant(cs) => cs.iter().find_map(|(_, t)| t.as_ref()?.unsupported()),
            Self::Result { ok, err } => ok
                .as_ref()
                .and_then(|t| t.unsupported())
                .or_else(|| err.as_ref().and_then(|t| t.unsupported())),
            _ => None,
        }
    }

    /// Checks that `value` has this type; the error names the path to the first mismatch.
    pub fn check(&self, value: &Value, path: &str) -> Result<(), String> {
        let mismatch = || Err(format!("{path}: expected {}", self.describe()));
        match (self, value) {
            (Self::Bool, Value::Bool(_))
            | (Self::S8, Value::S8(_))
            | (Self::U8, Value::U8(_))
            | (Self::S16, Value::S16(_))
            | (Self::U16, Value::U16(_))
            | (Self::S32, Value::S32(_))
            | (Self::U32, Value::U32(_))
            | (Self::S64, Value::S64(_))
            | (Self::U64, Value::U64(_))
            | (Self::F32, Value::F32(_))
            | (Self::F64, Value::F64(_))
            | (Self::Char, Value::Char(_))
            | (Self::String, Value::String(_)) => Ok(()),
            (Self::List(t), Value::List(items)) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| t.check(v, &format!("{path}[{i}]"))),
            (Self::Record(fields), Value::Record(values)) => {
                if fields.len() != values.len() {
                    return mismatch();
                }
                fields
                    .iter()
                    .zip(values)
                    .try_for_each(|((name, t), (vn, v))| {
                        if name != vn {
                            return Err(format!("{path}: expected field `{name}`, got `{vn}`"));
                        }
                        t.check(v, &format!("{path}.{name}"))
                    })
            }
            (Self::Tuple(ts), Value::Tuple(vs)) if ts.len() == vs.len() => ts
                .iter()
                .zip(vs)
                .enumerate()
                .try_for_each(|(i, (t, v))| t.check(v, &format!("{path}.{i}"))),
            (Self::Variant(cases), Value::Variant(name, payload)) => {
                match cases.iter().find(|(c, _)| c == name) {
                    Some((_, None)) if payload.is_none() => Ok(()),
                    Some((_, Some(t))) => match payload {
                        Some(v) => t.check(v, &format!("{path}.{name}")),
                        None => mismatch(),
                    },
                    _ => Err(format!("{path}: unknown case `{name}`")),
                }
            }
            (Self::Enum(names), Value::Enum(name)) if names.contains(name) => Ok(()),
            (Self::Option(_), Value::Option(None)) => Ok(()),
            (Self::Option(t), Value::Option(Some(v))) => t.check(v, path),
            (Self::Result { ok, err }, Value::Result(r)) => {
                let (expected, got, case) = match r {
                    Ok(v) => (ok, v, "ok"),
                    Err(v) => (err, v, "err"),
                };
                match (expected, got) {
                    (None, None) => Ok(()),
                    (Some(t), Some(v)) => t.check(v, &format!("{path}.{case}")),
                    _ => mismatch(),
                }
            }
            (Self::Flags(names), Value::Flags(set)) if set.iter().all(|f| names.contains(f)) => {
                Ok(())
            }
            _ => mismatch(),
        }
    }
}
