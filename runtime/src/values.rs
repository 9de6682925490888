//! Conversion between the oplog's [`Value`] and wasmtime's `Val`. Both are self-describing, so
//! no type is needed; types are checked before a call by [`crate::ValueType::check`].

use revenant_storage::Value;
use wasmtime::component::Val;

pub(crate) fn to_val(v: &Value) -> Val {
    let boxed = |o: &Option<Box<Value>>| o.as_ref().map(|v| Box::new(to_val(v)));
    match v {
        Value::Bool(x) => Val::Bool(*x),
        Value::S8(x) => Val::S8(*x),
        Value::U8(x) => Val::U8(*x),
        Value::S16(x) => Val::S16(*x),
        Value::U16(x) => Val::U16(*x),
        Value::S32(x) => Val::S32(*x),
        Value::U32(x) => Val::U32(*x),
        Value::S64(x) => Val::S64(*x),
        Value::U64(x) => Val::U64(*x),
        Value::F32(x) => Val::Float32(*x),
        Value::F64(x) => Val::Float64(*x),
        Value::Char(x) => Val::Char(*x),
        Value::String(x) => Val::String(x.clone()),
        Value::List(xs) => Val::List(xs.iter().map(to_val).collect()),
        Value::Record(fs) => Val::Record(fs.iter().map(|(n, v)| (n.clone(), to_val(v))).collect()),
        Value::Tuple(xs) => Val::Tuple(xs.iter().map(to_val).collect()),
        Value::Variant(n, p) => Val::Variant(n.clone(), boxed(p)),
        Value::Enum(n) => Val::Enum(n.clone()),
        Value::Option(o) => Val::Option(boxed(o)),
        Value::Result(Ok(o)) => Val::Result(Ok(boxed(o))),
        Value::Result(Err(o)) => Val::Result(Err(boxed(o))),
        Value::Flags(fs) => Val::Flags(fs.clone()),
        Value::Bytes(bs) => Val::List(bs.iter().map(|b| Val::U8(*b)).collect()),
    }
}

/// Converts a result of the guest. Resources, futures and streams cannot be recorded: exports
/// returning them are refused when the component loads, so meeting one here is a bug.
pub(crate) fn from_val(v: &Val) -> Result<Value, String> {
    let boxed = |o: &Option<Box<Val>>| -> Result<Option<Box<Value>>, String> {
        o.as_ref().map(|v| from_val(v).map(Box::new)).transpose()
    };
    Ok(match v {
        Val::Bool(x) => Value::Bool(*x),
        Val::S8(x) => Value::S8(*x),
        Val::U8(x) => Value::U8(*x),
        Val::S16(x) => Value::S16(*x),
        Val::U16(x) => Value::U16(*x),
        Val::S32(x) => Value::S32(*x),
        Val::U32(x) => Value::U32(*x),
        Val::S64(x) => Value::S64(*x),
        Val::U64(x) => Value::U64(*x),
        Val::Float32(x) => Value::F32(*x),
        Val::Float64(x) => Value::F64(*x),
        Val::Char(x) => Value::Char(*x),
        Val::String(x) => Value::String(x.clone()),
        Val::List(xs) | Val::FixedLengthList(xs) => {
            Value::List(xs.iter().map(from_val).collect::<Result<_, _>>()?)
        }
        Val::Record(fs) => Value::Record(
            fs.iter()
                .map(|(n, v)| Ok((n.clone(), from_val(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Val::Tuple(xs) => Value::Tuple(xs.iter().map(from_val).collect::<Result<_, _>>()?),
        Val::Variant(n, p) => Value::Variant(n.clone(), boxed(p)?),
        Val::Enum(n) => Value::Enum(n.clone()),
        Val::Option(o) => Value::Option(boxed(o)?),
        Val::Result(Ok(o)) => Value::Result(Ok(boxed(o)?)),
        Val::Result(Err(o)) => Value::Result(Err(boxed(o)?)),
        Val::Flags(fs) => Value::Flags(fs.clone()),
        other => return Err(format!("a {other:?} cannot be recorded")),
    })
}
