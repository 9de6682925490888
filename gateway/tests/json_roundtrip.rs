//! JSON ⇄ WIT, as a property: for generated WIT types and JSON values of those types,
//! JSON → WIT → JSON is the identity; and a value broken at any one node is refused with a 400
//! whose message starts with the path to that node (`body.items[3].qty: ...`).

use proptest::prelude::*;
use revenant_gateway::ApiError;
use revenant_gateway::json::{from_value, to_value};
use revenant_runtime::ValueType;
use serde_json::{Map, Value as Json, json};

/// Distinct lower-case names, as WIT spells record fields and cases.
fn names(max: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9]{0,5}", 1..=max)
        .prop_map(|set| set.into_iter().collect())
}

fn wit_type() -> impl Strategy<Value = ValueType> {
    let leaf = prop_oneof![
        Just(ValueType::Bool),
        Just(ValueType::S8),
        Just(ValueType::U8),
        Just(ValueType::S16),
        Just(ValueType::U16),
        Just(ValueType::S32),
        Just(ValueType::U32),
        Just(ValueType::S64),
        Just(ValueType::U64),
        Just(ValueType::F32),
        Just(ValueType::F64),
        Just(ValueType::Char),
        Just(ValueType::String),
        names(4).prop_map(ValueType::Enum),
        names(4).prop_map(ValueType::Flags),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| ValueType::List(Box::new(t))),
            inner.clone().prop_map(|t| ValueType::Option(Box::new(t))),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(ValueType::Tuple),
            (names(4), proptest::collection::vec(inner.clone(), 4))
                .prop_map(|(ns, ts)| { ValueType::Record(ns.into_iter().zip(ts).collect()) }),
            (
                names(4),
                proptest::collection::vec(proptest::option::of(inner.clone()), 4)
            )
                .prop_map(|(ns, ts)| ValueType::Variant(ns.into_iter().zip(ts).collect())),
            (
                proptest::option::of(inner.clone()),
                proptest::option::of(inner)
            )
                .prop_map(|(ok, err)| ValueType::Result {
                    ok: ok.map(Box::new),
                    err: err.map(Box::new),
                }),
        ]
    })
}

/// A JSON value of type `ty`, in the canonical spelling the gateway answers with.
fn valid(ty: &ValueType) -> BoxedStrategy<Json> {
    fn num<T: Into<Json> + std::fmt::Debug + 'static>(
        s: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<Json> {
        s.prop_map(Into::into).boxed()
    }
    match ty.clone() {
        ValueType::Bool => num(any::<bool>()),
        ValueType::S8 => num(any::<i8>()),
        ValueType::U8 => num(any::<u8>()),
        ValueType::S16 => num(any::<i16>()),
        ValueType::U16 => num(any::<u16>()),
        ValueType::S32 => num(any::<i32>()),
        ValueType::U32 => num(any::<u32>()),
        ValueType::S64 => num(any::<i64>()),
        ValueType::U64 => num(any::<u64>()),
        ValueType::F32 => num(proptest::num::f32::NORMAL.prop_map(f64::from)),
        ValueType::F64 => num(proptest::num::f64::NORMAL | proptest::num::f64::ZERO),
        ValueType::Char => num(any::<char>().prop_map(String::from)),
        ValueType::String => num(any::<String>()),
        ValueType::Enum(ns) => proptest::sample::select(ns).prop_map(Json::String).boxed(),
        ValueType::Flags(ns) => proptest::sample::subsequence(ns.clone(), 0..=ns.len())
            .prop_map(|set| Json::Array(set.into_iter().map(Json::String).collect()))
            .boxed(),
        ValueType::List(t) => proptest::collection::vec(valid(&t), 0..4)
            .prop_map(Json::Array)
            .boxed(),
        ValueType::Option(t) => prop_oneof![Just(Json::Null), valid(&t)].boxed(),
        ValueType::Tuple(ts) => ts
            .iter()
            .map(valid)
            .collect::<Vec<_>>()
            .prop_map(Json::Array)
            .boxed(),
        ValueType::Record(fields) => {
            let keys: Vec<String> = fields.iter().map(|(n, _)| n.clone()).collect();
            fields
                .iter()
                .map(|(_, t)| valid(t))
                .collect::<Vec<_>>()
                .prop_map(move |vs| {
                    Json::Object(keys.iter().cloned().zip(vs).collect::<Map<_, _>>())
                })
                .boxed()
        }
        ValueType::Variant(cases) => proptest::sample::select(cases)
            .prop_flat_map(|(name, payload)| match payload {
                None => Just(Json::String(name)).boxed(),
                Some(t) => valid(&t)
                    .prop_map(move |p| json!({ name.clone(): p }))
                    .boxed(),
            })
            .boxed(),
        ValueType::Result { ok, err } => {
            let side = |case: &'static str, t: Option<Box<ValueType>>| match t {
                None => Just(json!({ case: null })).boxed(),
                Some(t) => valid(&t).prop_map(move |p| json!({ case: p })).boxed(),
            };
            prop_oneof![side("ok", ok), side("err", err)].boxed()
        }
        ValueType::Unsupported(_) => unreachable!("never generated"),
    }
}

/// A value no parameter of type `ty` accepts, and the path prefix its error must name
/// (relative to the node: flags name the offending item).
fn invalid(ty: &ValueType) -> (Json, &'static str) {
    match ty {
        ValueType::Bool => (json!(1), ""),
        ValueType::U8 | ValueType::U16 | ValueType::U32 | ValueType::U64 => (json!(-1), ""),
        ValueType::S8 => (json!(i64::from(i8::MAX) + 1), ""),
        ValueType::S16 => (json!(i64::from(i16::MAX) + 1), ""),
        ValueType::S32 => (json!(i64::from(i32::MAX) + 1), ""),
        ValueType::S64 => (json!(i64::MAX as u64 + 1), ""),
        ValueType::F32 => (json!(1e300), ""),
        ValueType::F64 => (json!("NaN"), ""),
        ValueType::Char => (json!("ab"), ""),
        ValueType::String => (json!(5), ""),
        ValueType::List(_) => (json!({}), ""),
        ValueType::Tuple(ts) => (Json::Array(vec![Json::Null; ts.len() + 1]), ""),
        ValueType::Record(_) => (json!([]), ""),
        ValueType::Variant(_) | ValueType::Enum(_) => (json!("NOT-A-CASE"), ""),
        ValueType::Option(t) => invalid(t),
        ValueType::Result { .. } => (json!({"neither": 1}), ""),
        ValueType::Flags(_) => (json!(["NOT-A-FLAG"]), "[0]"),
        ValueType::Unsupported(_) => unreachable!("never generated"),
    }
}

/// Every node of a valid value: its path, its type, and a pointer to it in the JSON.
fn nodes(ty: &ValueType, json: &Json, path: &str, pointer: &str, out: &mut Vec<Node>) {
    out.push(Node {
        path: path.to_string(),
        pointer: pointer.to_string(),
        ty: ty.clone(),
    });
    match (ty, json) {
        (ValueType::List(t), Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                nodes(
                    t,
                    item,
                    &format!("{path}[{i}]"),
                    &format!("{pointer}/{i}"),
                    out,
                );
            }
        }
        (ValueType::Tuple(ts), Json::Array(items)) => {
            for (i, (t, item)) in ts.iter().zip(items).enumerate() {
                nodes(
                    t,
                    item,
                    &format!("{path}[{i}]"),
                    &format!("{pointer}/{i}"),
                    out,
                );
            }
        }
        (ValueType::Record(fields), Json::Object(map)) => {
            for (name, t) in fields {
                nodes(
                    t,
                    &map[name],
                    &format!("{path}.{name}"),
                    &format!("{pointer}/{name}"),
                    out,
                );
            }
        }
        (ValueType::Option(t), j) if !j.is_null() => {
            // The payload of `some` sits at the option's own place: only its children count.
            out.pop();
            nodes(t, j, path, pointer, out);
        }
        (ValueType::Variant(cases), Json::Object(map)) => {
            let (name, payload) = map.iter().next().expect("one case");
            let t = cases
                .iter()
                .find_map(|(c, t)| if c == name { t.as_ref() } else { None })
                .expect("a case with a payload");
            nodes(
                t,
                payload,
                &format!("{path}.{name}"),
                &format!("{pointer}/{name}"),
                out,
            );
        }
        (ValueType::Result { ok, err }, Json::Object(map)) => {
            let (case, payload) = map.iter().next().expect("ok or err");
            let t = if case == "ok" { ok } else { err };
            if let Some(t) = t {
                nodes(
                    t,
                    payload,
                    &format!("{path}.{case}"),
                    &format!("{pointer}/{case}"),
                    out,
                );
            }
        }
        _ => {}
    }
}

#[derive(Debug)]
struct Node {
    path: String,
    pointer: String,
    ty: ValueType,
}

fn typed_value() -> impl Strategy<Value = (ValueType, Json)> {
    wit_type().prop_flat_map(|ty| valid(&ty).prop_map(move |j| (ty.clone(), j)))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn json_to_wit_to_json_is_the_identity((ty, json) in typed_value()) {
        let value = to_value(&json, &ty, "body")
            .map_err(|e| TestCaseError::fail(format!("valid value refused: {e}")))?;
        prop_assert_eq!(from_value(&value), json);
    }

    #[test]
    fn a_broken_node_is_a_400_naming_its_path((ty, json) in typed_value(), pick in any::<prop::sample::Index>()) {
        let mut all = Vec::new();
        nodes(&ty, &json, "body", "", &mut all);
        let node = pick.get(&all);
        let (bad, suffix) = invalid(&node.ty);
        let mut broken = json.clone();
        *broken.pointer_mut(&node.pointer).expect("the node exists") = bad;
        let error = to_value(&broken, &ty, "body").map_err(ApiError::bad_argument);
        let Err(error) = error else {
            return Err(TestCaseError::fail(format!("{broken} accepted as {ty:?}")));
        };
        prop_assert_eq!(error.code.status(), http::StatusCode::BAD_REQUEST);
        prop_assert_eq!(error.code.name(), "bad_argument");
        let expected = format!("{}{suffix}: ", node.path);
        prop_assert!(error.message.starts_with(&expected), "{} does not start with {}", error.message, expected);
    }
}

#[test]
fn resources_and_non_finite_numbers_are_refused_clearly() {
    let resource = ValueType::Unsupported("own<connection>".into());
    let e = to_value(&json!(1), &resource, "body.conn").unwrap_err();
    assert!(e.starts_with("body.conn: own<connection>"), "{e}");
    // JSON has no NaN or infinity; 1e39 is finite in f64 but not in f32.
    assert!(to_value(&json!(1e39), &ValueType::F32, "x").is_err());
}
