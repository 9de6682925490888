//! The fuzz targets' bodies: each takes the fuzzer's bytes, feeds them to one of Revenant's
//! parsers of untrusted input, and checks what must hold whatever the input. A panic, an abort
//! or a failed check is a finding. The corpora in `corpus/<target>/` seed each target.

use revenant_gateway::json::{from_value, text_to_value, to_value};
use revenant_runtime::ValueType;
use std::sync::OnceLock;

/// A routes document (the YAML a user writes): parsed and validated whole. Every problem must
/// name a line and column inside the text (a CLI message points there), and a document that
/// validates must validate again the same way.
pub fn routes_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // YAML's line breaks: CR LF, LF, and a lone CR (which editors show as a break too).
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
    let exists = |c: &str| c == "user-activity";
    let env = |_: &str| Some("a-secret-of-at-least-thirty-two-bytes".to_string());
    let spec = match revenant_api_definitions::parse_yaml::<revenant_api_definitions::ApiSpec>(
        "fuzz.yaml",
        text,
    ) {
        Ok(spec) => spec,
        Err(d) => {
            check_location(&d.to_string(), lines);
            return;
        }
    };
    match revenant_api_definitions::compile("fuzz.yaml", &spec, exists, &env) {
        Ok(api) => {
            let again = revenant_api_definitions::compile("fuzz.yaml", &spec, exists, &env)
                .expect("a valid document stays valid");
            assert_eq!(api.routes.len(), again.routes.len());
        }
        Err(problems) => {
            for d in &problems.0 {
                check_location(&d.to_string(), lines);
            }
        }
    }
}

/// A diagnostic starts `fuzz.yaml:<line>:<column>: ` with a line inside the document.
fn check_location(message: &str, lines: usize) {
    let rest = message
        .strip_prefix("fuzz.yaml:")
        .unwrap_or_else(|| panic!("a diagnostic names the file: {message}"));
    let line: usize = rest
        .split(':')
        .next()
        .and_then(|l| l.parse().ok())
        .unwrap_or_else(|| panic!("a diagnostic names a line: {message}"));
    assert!(
        line >= 1 && line <= lines + 1,
        "line {line} of a {lines}-line document: {message}"
    );
}

/// The demo's routes in a matchit router, as the gateway builds its own.
fn demo_router() -> &'static matchit::Router<usize> {
    static ROUTER: OnceLock<matchit::Router<usize>> = OnceLock::new();
    ROUTER.get_or_init(|| {
        let project = include_str!("../../examples/user-activity/revenant.yaml");
        let text = &project[project.find("routes:").expect("the demo has routes")..];
        let spec: revenant_api_definitions::ApiSpec =
            revenant_api_definitions::parse_yaml("demo.yaml", text).expect("the demo parses");
        let api = revenant_api_definitions::compile("demo.yaml", &spec, |_| true, &|_| None)
            .expect("the demo validates");
        let mut router = matchit::Router::new();
        for (i, route) in api.routes.iter().enumerate() {
            // The same pattern under two methods is one entry.
            let _ = router.insert(route.path.pattern.clone(), i);
        }
        router
    })
}

/// A request path: canonicalised as the gateway does, then routed. A canonical path has no
/// empty, `.` or `..` segment and no control character; spelling it again with every byte
/// percent-encoded canonicalises to the same path (one worker, however it is spelled); the
/// parameters a route takes from it hold no `/`.
pub fn paths(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(path) = revenant_gateway::canonical_path(raw) else {
        return;
    };
    assert!(path.starts_with('/'), "{path:?}");
    if path != "/" {
        for segment in path[1..].split('/') {
            assert!(!segment.is_empty(), "{raw:?} → {path:?}");
            assert!(segment != "." && segment != "..", "{raw:?} → {path:?}");
        }
    }
    assert!(!path.chars().any(char::is_control), "{raw:?} → {path:?}");
    let respelled: String = path[1..]
        .split('/')
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .fold(String::new(), |acc, s| acc + "/" + &s);
    let respelled = if path == "/" {
        "/".to_string()
    } else {
        respelled
    };
    assert_eq!(
        revenant_gateway::canonical_path(&respelled).ok().as_deref(),
        Some(path.as_str()),
        "{raw:?} respelled as {respelled:?}"
    );
    if let Ok(matched) = demo_router().at(&path) {
        for (name, value) in matched.params.iter() {
            assert!(!value.contains('/'), "{name} = {value:?} from {path:?}");
        }
    }
}

/// The types a request body is converted to: the first input byte picks one.
fn types() -> &'static [ValueType] {
    static TYPES: OnceLock<Vec<ValueType>> = OnceLock::new();
    TYPES.get_or_init(|| {
        use ValueType::*;
        let item = Record(vec![
            ("sku".into(), String),
            ("qty".into(), U32),
            ("price".into(), F64),
            ("tags".into(), Flags(vec!["new".into(), "sale".into()])),
            ("note".into(), Option(Box::new(Char))),
        ]);
        vec![
            Bool,
            S8,
            U64,
            S64,
            F32,
            F64,
            Char,
            String,
            List(Box::new(U8)),
            List(Box::new(item.clone())),
            Tuple(vec![S16, U16, String]),
            Variant(vec![
                ("none".into(), None),
                ("one".into(), Some(item.clone())),
                ("many".into(), Some(List(Box::new(item)))),
            ]),
            Enum(vec!["red".into(), "green".into()]),
            Option(Box::new(Option(Box::new(U32)))),
            Result {
                ok: Some(Box::new(List(Box::new(String)))),
                err: Some(Box::new(S32)),
            },
            Result {
                ok: None,
                err: None,
            },
        ]
    })
}

/// A JSON body converted to a WIT type, as a route's argument: what converts must convert back
/// to JSON that converts to the same value (the reply a caller reads means what it sent).
/// Text converts for path parameters the same way, never panicking.
pub fn json_to_wit(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let ty = &types()[pick as usize % types().len()];
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = text_to_value(text, ty, "path.id");
    let Ok(json) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let Ok(value) = to_value(&json, ty, "body") else {
        return;
    };
    let back = from_value(&value);
    let again = to_value(&back, ty, "body")
        .unwrap_or_else(|e| panic!("{json} → {value:?} → {back} does not convert again: {e}"));
    assert_eq!(value, again, "{json} → {back}");
}

const HS_SECRET: &str = "fuzzing-secret-of-at-least-thirty-two-bytes";

/// What the tokens the corpus signed with `HS_SECRET` (`corpus/jwt/valid`, `no-kid`) say.
fn signed_claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "fuzz-user",
        "iss": "https://issuer.test",
        "aud": "revenant-fuzz",
        "exp": 4_102_444_800u64
    })
}

struct Verifier {
    auth: revenant_gateway::auth::Authenticator,
    runtime: tokio::runtime::Runtime,
}

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let text = format!(
            "auth:\n  users:\n    issuer: https://issuer.test\n    audience: revenant-fuzz\n    \
             keys:\n      - {{kid: hs-1, alg: HS256, secret: \"{HS_SECRET}\"}}\n      \
             - {{kid: ec-1, alg: ES256, public_key: \"{}\"}}\nroutes: []\n",
            include_str!("../../cli/tests/fixtures/jwt/ec.pub.pem")
                .trim()
                .replace('\n', "\\n")
        );
        let spec: revenant_api_definitions::ApiSpec =
            revenant_api_definitions::parse_yaml("auth.yaml", &text).expect("parses");
        let api = revenant_api_definitions::compile("auth.yaml", &spec, |_| true, &|_| None)
            .expect("validates");
        let auth =
            revenant_gateway::auth::Authenticator::load(&api.auth[0], std::path::Path::new("."))
                .expect("the keys load");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        Verifier { auth, runtime }
    })
}

/// A bearer token: verified against an HMAC and an EC key. Only tokens signed with the secret
/// (the corpus's `valid` and `no-kid`) may pass, and only with what was signed: any other
/// accepted token is a forgery.
pub fn jwt(data: &[u8]) {
    if let Some(claims) = jwt_claims(data) {
        assert_eq!(claims, signed_claims(), "accepted {data:?}");
    }
}

/// The claims of `data` as a bearer token, if it verifies.
pub fn jwt_claims(data: &[u8]) -> Option<serde_json::Value> {
    let token = std::str::from_utf8(data).ok()?;
    let value = http::HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value);
    let v = verifier();
    let now = revenant_gateway::clock::Now::read();
    let claims = v.runtime.block_on(v.auth.verify(&headers, now)).ok()?;
    Some(serde_json::Value::Object(claims))
}

/// Oplog entry bytes, as read back from a store. The first input byte chooses: odd, the rest
/// is taken as stored (header, checksum and all); even, the rest is a payload given a correct
/// header, so that the decoder behind the checksum is reached. What decodes re-encodes to bytes
/// that decode and encode to the same bytes again.
pub fn oplog_entry(data: &[u8]) {
    use revenant_storage::oplog::{decode, encode};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 1 {
        rest.to_vec()
    } else {
        let mut b = vec![1, 0, 0, 0, 0];
        b[1..5].copy_from_slice(&crc32fast::hash(rest).to_le_bytes());
        b.extend_from_slice(rest);
        b
    };
    let Ok(entry) = decode(&bytes) else { return };
    let Ok(again) = encode(&entry) else { return };
    // Compared as bytes: a NaN float is a legitimate value and never equal to itself.
    let decoded = decode(&again).unwrap_or_else(|e| panic!("{entry:?} re-encoded: {e}"));
    assert_eq!(encode(&decoded).ok(), Some(again), "{entry:?}");
}
