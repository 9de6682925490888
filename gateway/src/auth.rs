//! Bearer JWT verification for routes with `auth:`, through jsonwebtoken.
//!
//! The rules, each a refusal with 401 `invalid_token` unless it holds:
//! - the key decides the algorithm: a token is verified only with a configured key (or one from
//!   the scheme's JWKS), with that key's algorithm, and a token whose `alg` differs is refused
//!   (so `none`, or HS256 "signed" with an RSA public key, never verify);
//! - a token that names where its key lives (`jku`, `x5u`, `jwk`, `x5c`) or asks for extensions
//!   (`crit`) is refused: keys come from the configuration only;
//! - `exp` is required, `nbf` and a future `iat` are checked, `iss` and `aud` when the scheme sets them, with the
//!   scheme's bounded leeway;
//! - an unknown `kid` refreshes a `jwks_url` scheme's keys, at most once a minute.

use crate::ApiError;
use crate::clock::Now;
use crate::error::ErrorCode;
use crate::limits::{JWKS_BYTES_MAX, JWKS_FETCH_TIMEOUT, JWKS_REFRESH_INTERVAL};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use revenant_api_definitions::auth::KEYS_MAX;
use revenant_api_definitions::{AuthScheme, Diagnostic, JwksSource, KeyMaterial};
use serde_json::{Map, Value as Json};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// The verified claims of a caller's token.
pub type Claims = Map<String, Json>;

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Keys fetched from a `jwks_url`, replaced whole on refresh.
struct RemoteJwks {
    url: String,
    client: JwksClient,
    keys: RwLock<Arc<Vec<Arc<Key>>>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

/// One auth scheme, ready to verify tokens.
pub struct Authenticator {
    name: String,
    keys: Vec<Arc<Key>>,
    remote: Option<RemoteJwks>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_seconds: u64,
}

/// Authenticators already built, reused by later builds of the router: a deploy does not read
/// an unchanged scheme's key files again, nor forget the keys it fetched from a JWKS URL.
/// Holds only what some router still uses: an entry nothing else references is dropped at the
/// next lookup, so it is bounded by the live definitions' schemes.
pub struct AuthCache {
    // std's Mutex: held while building one scheme's authenticator, never across an await.
    built: std::sync::Mutex<Vec<(AuthScheme, PathBuf, Arc<Authenticator>)>>,
    client: JwksClient,
}

/// Fetches JWKS documents: `https://` verified with the node's TLS settings (the system's roots
/// and `outgoing_http.ca_files`), or plain `http://`. The operator names these URLs, so the
/// guests' egress policy does not apply to them.
pub type JwksClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

pub fn jwks_client(tls: rustls::ClientConfig) -> JwksClient {
    https_client(tls)
}

/// A client for URLs the operator names (JWKS, an OTLP collector): `https://` verified with
/// `tls`, or plain `http://`; HTTP/1.1 or HTTP/2.
pub fn https_client<B>(
    tls: rustls::ClientConfig,
) -> hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    B,
>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https)
}

impl Default for AuthCache {
    /// With the system's roots only.
    fn default() -> Self {
        Self::new(revenant_runtime::tls::client_config(&[]).expect("no CA file to read"))
    }
}

impl AuthCache {
    pub fn new(tls: rustls::ClientConfig) -> Self {
        Self {
            built: Default::default(),
            client: jwks_client(tls),
        }
    }

    /// The authenticator for `scheme` (with key files relative to `base`), built once.
    pub fn get_or_load(
        &self,
        scheme: &AuthScheme,
        base: &Path,
    ) -> Result<Arc<Authenticator>, Vec<Diagnostic>> {
        let mut built = self.built.lock().expect("never poisoned");
        built.retain(|(_, _, a)| Arc::strong_count(a) > 1);
        if let Some((_, _, a)) = built.iter().find(|(s, b, _)| s == scheme && b == base) {
            return Ok(a.clone());
        }
        let a = Arc::new(Authenticator::load_with(scheme, base, &self.client)?);
        built.push((scheme.clone(), base.to_path_buf(), a.clone()));
        Ok(a)
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, message)
}

impl Authenticator {
    /// Reads the scheme's key files and JWKS file (relative to `base`). A key that does not
    /// parse is a located problem: the definition is refused before it serves.
    pub fn load(scheme: &AuthScheme, base: &Path) -> Result<Self, Vec<Diagnostic>> {
        let tls = revenant_runtime::tls::client_config(&[]).expect("no CA file to read");
        Self::load_with(scheme, base, &jwks_client(tls))
    }

    /// As `load`, fetching any `jwks_url` with `client`.
    pub fn load_with(
        scheme: &AuthScheme,
        base: &Path,
        client: &JwksClient,
    ) -> Result<Self, Vec<Diagnostic>> {
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        for def in &scheme.keys {
            let alg = Algorithm::from_str(&def.alg).expect("validated by api-definitions");
            let pem = match &def.material {
                KeyMaterial::Secret(s) => {
                    keys.push(Arc::new(Key {
                        kid: def.kid.clone(),
                        alg,
                        key: DecodingKey::from_secret(s),
                    }));
                    continue;
                }
                KeyMaterial::Pem(p) => p.clone().into_bytes(),
                KeyMaterial::PemFile(f) => match std::fs::read(base.join(f)) {
                    Ok(bytes) => bytes,
                    Err(e) => {
                        problems.push(Diagnostic::new(
                            def.location.clone(),
                            format!("cannot read {}: {e}", base.join(f).display()),
                        ));
                        continue;
                    }
                },
            };
            let parsed = match alg {
                Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
                Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
                Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                    unreachable!("HMAC keys are secrets")
                }
            };
            match parsed {
                Ok(key) => keys.push(Arc::new(Key {
                    kid: def.kid.clone(),
                    alg,
                    key,
                })),
                Err(e) => problems.push(Diagnostic::new(
                    def.location.clone(),
                    format!("not a PEM public key for {}: {e}", def.alg),
                )),
            }
        }
        let mut remote = None;
        for (source, location) in &scheme.jwks {
            match source {
                JwksSource::File(f) => {
                    let path = base.join(f);
                    match std::fs::read(&path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| jwks_keys(&b))
                    {
                        Ok(mut k) => keys.append(&mut k),
                        Err(e) => problems.push(Diagnostic::new(
                            location.clone(),
                            format!("JWKS {}: {e}", path.display()),
                        )),
                    }
                }
                JwksSource::Url(u) => {
                    remote = Some(RemoteJwks {
                        url: u.clone(),
                        client: client.clone(),
                        keys: RwLock::new(Arc::new(Vec::new())),
                        last_refresh: tokio::sync::Mutex::new(None),
                    });
                }
            }
        }
        if keys.len() > KEYS_MAX {
            problems.push(Diagnostic::new(
                scheme.location.clone(),
                format!(
                    "auth scheme `{}` has {} keys; at most {KEYS_MAX}",
                    scheme.name,
                    keys.len()
                ),
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            name: scheme.name.clone(),
            keys,
            remote,
            issuer: scheme.issuer.clone(),
            audience: scheme.audience.clone(),
            leeway_seconds: scheme.leeway_seconds,
        })
    }

    /// Verifies the request's bearer token and returns its claims.
    /// `now` is the request's reading of the clock: `exp` and `nbf` are checked against it.
    pub async fn verify(&self, headers: &HeaderMap, now: Now) -> Result<Claims, ApiError> {
        let token = bearer(headers)?;
        let head = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("malformed or unsupported token header: {e}")))?;
        for (field, present) in [
            ("jku", head.jku.is_some()),
            ("x5u", head.x5u.is_some()),
            ("jwk", head.jwk.is_some()),
            ("x5c", head.x5c.is_some()),
            ("crit", head.crit.is_some()),
        ] {
            if present {
                return Err(invalid(format!(
                    "the token header has `{field}`: keys come from the configuration only"
                )));
            }
        }
        let mut candidates = self.candidates(head.kid.as_deref());
        if candidates.is_empty()
            && let Some(remote) = &self.remote
        {
            remote.refresh(now.instant).await;
            candidates = self.candidates(head.kid.as_deref());
        }
        if candidates.is_empty() {
            return Err(invalid(match &head.kid {
                Some(kid) => format!("unknown key id `{kid}` for scheme `{}`", self.name),
                None => format!("no key of scheme `{}` can verify this token", self.name),
            }));
        }
        let mut refusal = None;
        for key in candidates.iter().take(KEYS_MAX) {
            if key.alg != head.alg {
                refusal.get_or_insert_with(|| {
                    invalid(format!(
                        "algorithm {:?} is not accepted: the key{} is {:?}",
                        head.alg,
                        key.kid
                            .as_deref()
                            .map_or_else(String::new, |k| format!(" `{k}`")),
                        key.alg
                    ))
                });
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation(key.alg)) {
                Ok(data) => return self.check_times(data.claims, now),
                Err(e) => match e.kind() {
                    // The signature did not verify with this key: another may.
                    ErrorKind::InvalidSignature
                    | ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::Provider(_) => {
                        refusal = Some(invalid("the signature does not verify"));
                    }
                    // The signature verified; the claims are wrong: no other key changes that.
                    kind => return Err(invalid(claims_problem(kind, self))),
                },
            }
        }
        Err(refusal.unwrap_or_else(|| invalid("the signature does not verify")))
    }

    fn candidates(&self, kid: Option<&str>) -> Vec<Arc<Key>> {
        let remote = self
            .remote
            .as_ref()
            .map(|r| r.keys.read().expect("never poisoned").clone())
            .unwrap_or_default();
        self.keys
            .iter()
            .chain(remote.iter())
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .collect()
    }

    /// `exp`, `nbf` and `iat` against the request's time, with the scheme's leeway. jsonwebtoken
    /// would read the system clock itself, so its own checks of them are off.
    fn check_times(&self, claims: Claims, now: Now) -> Result<Claims, ApiError> {
        let seconds = |name: &str| -> Result<Option<u64>, ApiError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| invalid(format!("the token's `{name}` is not a time"))),
            }
        };
        let leeway = self.leeway_seconds;
        match seconds("exp")? {
            None => return Err(invalid("the token has no `exp` claim")),
            Some(exp) if exp.saturating_add(leeway) < now.unix_seconds => {
                return Err(invalid(claims_problem(&ErrorKind::ExpiredSignature, self)));
            }
            Some(_) => {}
        }
        if let Some(nbf) = seconds("nbf")?
            && nbf > now.unix_seconds.saturating_add(leeway)
        {
            return Err(invalid(claims_problem(&ErrorKind::ImmatureSignature, self)));
        }
        // A token issued in the future is forged or from a clock gone wrong: either way it
        // must not be accepted before its time.
        if let Some(iat) = seconds("iat")?
            && iat > now.unix_seconds.saturating_add(leeway)
        {
            return Err(invalid(format!(
                "the token is issued in the future (`iat` {iat}, now {}, leeway {leeway} s)",
                now.unix_seconds
            )));
        }
        Ok(claims)
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        let mut required = vec!["exp"];
        v.validate_exp = false;
        v.validate_nbf = false;
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }
}

fn claims_problem(kind: &ErrorKind, scheme: &Authenticator) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "the token has expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidIssuer => format!(
            "the token's issuer is not `{}`",
            scheme.issuer.as_deref().unwrap_or_default()
        ),
        ErrorKind::InvalidAudience => match &scheme.audience {
            Some(a) => format!("the token's audience is not `{a}`"),
            None => "the token's audience is not accepted".into(),
        },
        ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
        other => format!("the token's claims are invalid: {other:?}"),
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "this route needs `Authorization: Bearer <JWT>`",
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(unauthenticated)?
        .to_str()
        .map_err(|_| unauthenticated())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(unauthenticated());
    }
    Ok(token.trim())
}

/// The signing keys of a JWKS document. A key without `alg` takes the one its type implies
/// (RSA: RS256, P-256: ES256, P-384: ES384, Ed25519: EdDSA); HMAC and encryption keys are
/// skipped.
fn jwks_keys(bytes: &[u8]) -> Result<Vec<Arc<Key>>, String> {
    let set: JwkSet = serde_json::from_slice(bytes).map_err(|e| format!("not a JWKS: {e}"))?;
    if set.keys.len() > KEYS_MAX {
        return Err(format!("{} keys; at most {KEYS_MAX}", set.keys.len()));
    }
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if matches!(
            jwk.common.public_key_use,
            Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
        ) {
            continue;
        }
        let Some(alg) = jwk_algorithm(jwk) else {
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key `{}`: {e}",
                jwk.common.key_id.as_deref().unwrap_or("(no kid)")
            )
        })?;
        keys.push(Arc::new(Key {
            kid: jwk.common.key_id.clone(),
            alg,
            key,
        }));
    }
    Ok(keys)
}

fn jwk_algorithm(jwk: &Jwk) -> Option<Algorithm> {
    if let Some(a) = jwk.common.key_algorithm {
        let alg = Algorithm::from_str(&a.to_string()).ok()?;
        return (!matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
            .then_some(alg);
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(p) => {
            matches!(p.curve, EllipticCurve::Ed25519).then_some(Algorithm::EdDSA)
        }
        AlgorithmParameters::OctetKey(_) => None,
    }
}

impl RemoteJwks {
    /// Fetches the document again unless that was done within the last minute. Concurrent
    /// callers wait for one fetch.
    async fn refresh(&self, now: Instant) {
        let mut last = self.last_refresh.lock().await;
        if last.is_some_and(|t| now.saturating_duration_since(t) < JWKS_REFRESH_INTERVAL) {
            return;
        }
        *last = Some(now);
        match tokio::time::timeout(JWKS_FETCH_TIMEOUT, fetch(&self.client, &self.url)).await {
            Ok(Ok(keys)) => {
                tracing::info!(url = %self.url, keys = keys.len(), "JWKS refreshed");
                *self.keys.write().expect("never poisoned") = Arc::new(keys);
            }
            Ok(Err(e)) => tracing::warn!(url = %self.url, "JWKS refresh failed: {e}"),
            Err(_) => tracing::warn!(url = %self.url, "JWKS refresh timed out"),
        }
    }
}

async fn fetch(client: &JwksClient, url: &str) -> Result<Vec<Arc<Key>>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    // The client's own message says little; the cause (a TLS problem, say) says what.
    let response = client
        .get(uri)
        .await
        .map_err(|e| revenant_runtime::error_chain(&e))?;
    if response.status() != StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    let body = Limited::new(response.into_body(), JWKS_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    jwks_keys(&body)
}
