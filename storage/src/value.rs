use serde::{Deserialize, Serialize};

/// A self-describing value as the oplog stores it: invocation arguments and results, host-call
/// requests and responses. It mirrors the WebAssembly component model's value kinds without
/// resources, which cannot outlive an instance and so can never be persisted.
///
/// The variant order is part of the persisted format: append new kinds at the end, never
/// reorder (see `docs/oplog-format.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    List(Vec<Value>),
    Record(Vec<(String, Value)>),
    Tuple(Vec<Value>),
    Variant(String, Option<Box<Value>>),
    Enum(String),
    Option(Option<Box<Value>>),
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    Flags(Vec<String>),
    /// Raw bytes, in host-call records only (HTTP bodies): one byte each, where `List` of `U8`
    /// spends two. Never a guest value.
    Bytes(Vec<u8>),
}
