//! JWT bearer authentication schemes: how a route's caller proves who they are.
//!
//! ```yaml
//! auth:
//!   users:                                 # a scheme, named by routes with `auth: users`
//!     issuer: https://login.example.com    # checked when set
//!     audience: activities                 # checked when set
//!     leeway_seconds: 30                   # for exp/nbf, at most 300
//!     keys:
//!       - kid: rsa-2026                    # optional; tokens name it in their header
//!         alg: RS256                       # the key decides the algorithm, never the token
//!         public_key_file: keys/rsa.pem    # or public_key: "-----BEGIN PUBLIC KEY-----..."
//!       - alg: HS256
//!         secret_env: JWT_SECRET           # or secret: ...
//!     jwks_file: keys/jwks.json            # and/or jwks_url: https://...
//! ```
//!
//! This module only validates the shape; reading key files and fetching JWKS documents is the
//! gateway's job.

use crate::diagnostic::{Diagnostic, Location};
use marked_yaml::Spanned;
use serde::Deserialize;

/// Most clock skew a scheme may tolerate on `exp` and `nbf`: a token expired for longer than
/// this is expired, whatever the configuration says.
pub const LEEWAY_SECONDS_MAX: u64 = 300;
/// The leeway when a scheme sets none.
pub const LEEWAY_SECONDS_DEFAULT: u64 = 30;
/// Keys per scheme, configured ones and JWKS ones alike: a token is checked against at most
/// this many.
pub const KEYS_MAX: usize = 64;

/// Algorithms a key may declare (those jsonwebtoken verifies).
pub const ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    #[serde(default)]
    pub keys: Vec<KeySpec>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub issuer: Option<Spanned<String>>,
    pub audience: Option<Spanned<String>>,
    pub leeway_seconds: Option<Spanned<u64>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    pub kid: Option<Spanned<String>>,
    pub alg: Spanned<String>,
    pub secret: Option<Spanned<String>>,
    pub secret_env: Option<Spanned<String>>,
    pub public_key: Option<Spanned<String>>,
    pub public_key_file: Option<Spanned<String>>,
}

/// Where a key's bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyMaterial {
    /// An HMAC secret, given inline or read from an environment variable at load.
    Secret(Vec<u8>),
    /// A PEM public key, inline.
    Pem(String),
    /// A PEM public key in a file (relative to the definition's folder).
    PemFile(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDef {
    pub kid: Option<String>,
    pub alg: String,
    pub material: KeyMaterial,
    pub location: Location,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    File(String),
    Url(String),
}

/// A validated scheme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthScheme {
    pub name: String,
    pub keys: Vec<KeyDef>,
    pub jwks: Vec<(JwksSource, Location)>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    pub location: Location,
}

pub(crate) fn compile_scheme(
    file: &str,
    name: &str,
    spec: &Spanned<AuthSpec>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<Diagnostic>,
) -> Option<AuthScheme> {
    let at = |span: &marked_yaml::Span| Location::of_span(file, span);
    let location = at(spec.span());
    let before = problems.len();
    let mut keys = Vec::new();
    if spec.keys.is_empty() && spec.jwks_file.is_none() && spec.jwks_url.is_none() {
        problems.push(Diagnostic::new(
            location.clone(),
            format!("auth scheme `{name}` has no keys: give `keys`, `jwks_file` or `jwks_url`"),
        ));
    }
    if spec.keys.len() > KEYS_MAX {
        problems.push(Diagnostic::new(
            location.clone(),
            format!("auth scheme `{name}` has more than {KEYS_MAX} keys"),
        ));
    }
    for key in &spec.keys {
        let key_at = at(key.alg.span());
        if !ALGORITHMS.contains(&key.alg.as_str()) {
            problems.push(Diagnostic::new(
                key_at.clone(),
                format!(
                    "unknown algorithm `{}`: use one of {}",
                    key.alg.as_str(),
                    ALGORITHMS.join(", ")
                ),
            ));
            continue;
        }
        let hmac = key.alg.starts_with("HS");
        let given: Vec<(&str, &Spanned<String>)> = [
            ("secret", &key.secret),
            ("secret_env", &key.secret_env),
            ("public_key", &key.public_key),
            ("public_key_file", &key.public_key_file),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_ref().map(|v| (n, v)))
        .collect();
        let expected = if hmac {
            "`secret` or `secret_env`"
        } else {
            "`public_key` or `public_key_file`"
        };
        let [(field, value)] = given.as_slice() else {
            problems.push(Diagnostic::new(
                key_at,
                format!("a {} key takes exactly one of {expected}", key.alg.as_str()),
            ));
            continue;
        };
        let material = match (*field, hmac) {
            ("secret", true) => KeyMaterial::Secret(value.as_bytes().to_vec()),
            ("secret_env", true) => match env(value.as_str()) {
                Some(s) if !s.is_empty() => KeyMaterial::Secret(s.into_bytes()),
                _ => {
                    problems.push(Diagnostic::new(
                        at(value.span()),
                        format!("environment variable `{}` is not set", value.as_str()),
                    ));
                    continue;
                }
            },
            ("public_key", false) => KeyMaterial::Pem(value.to_string()),
            ("public_key_file", false) => KeyMaterial::PemFile(value.to_string()),
            _ => {
                problems.push(Diagnostic::new(
                    at(value.span()),
                    format!("a {} key takes {expected}, not `{field}`", key.alg.as_str()),
                ));
                continue;
            }
        };
        if let KeyMaterial::Secret(s) = &material
            && s.len() < 32
        {
            problems.push(Diagnostic::new(
                at(value.span()),
                "an HMAC secret must be at least 32 bytes",
            ));
            continue;
        }
        keys.push(KeyDef {
            kid: key.kid.as_ref().map(|k| k.to_string()),
            alg: key.alg.to_string(),
            material,
            location: key_at,
        });
    }
    let mut jwks = Vec::new();
    if let Some(f) = &spec.jwks_file {
        jwks.push((JwksSource::File(f.to_string()), at(f.span())));
    }
    if let Some(u) = &spec.jwks_url {
        if u.starts_with("https://") || u.starts_with("http://") {
            jwks.push((JwksSource::Url(u.to_string()), at(u.span())));
        } else {
            problems.push(Diagnostic::new(
                at(u.span()),
                "`jwks_url` must be an https:// (or http://) URL",
            ));
        }
    }
    let leeway_seconds = match &spec.leeway_seconds {
        Some(l) if **l > LEEWAY_SECONDS_MAX => {
            problems.push(Diagnostic::new(
                at(l.span()),
                format!("`leeway_seconds` is at most {LEEWAY_SECONDS_MAX}"),
            ));
            0
        }
        Some(l) => **l,
        None => LEEWAY_SECONDS_DEFAULT,
    };
    if problems.len() > before {
        return None;
    }
    Some(AuthScheme {
        name: name.to_string(),
        keys,
        jwks,
        issuer: spec.issuer.as_ref().map(|s| s.to_string()),
        audience: spec.audience.as_ref().map(|s| s.to_string()),
        leeway_seconds,
        location,
    })
}
