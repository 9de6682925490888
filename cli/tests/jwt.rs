//! JWT bearer auth against the running server: the refusal matrix of issue 5 (alg `none`,
//! HS256 signed with the RSA public key, a bad signature, expired, not yet valid, wrong `iss`,
//! wrong `aud`, unknown `kid`, a `jku` header, user A's token on user B's path), each refused
//! with 401 or 403 for the right reason; and valid tokens of every configured algorithm, and
//! of a JWKS file, accepted.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value as Json, json};
use std::path::PathBuf;
use support::{Http, Server, project_with};

const HS_SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Json {
    json!({
        "sub": sub,
        "iss": "https://issuer.test",
        "aud": "revenant-tests",
        "exp": now() + 600,
        "iat": now(),
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Json) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, claims, key).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(&pem("rsa.key")).unwrap()
}

struct Fixture {
    server: Server,
    http: Http,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Self {
        let routes = "  - method: POST
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail}\"]
    auth: users
    require: [\"{user-id} == jwt.sub\"]
  - method: GET
    path: /me/count
    component: user-activity
    worker: user-{jwt.sub}
    call: count
    auth: users
";
        let head = format!(
            "auth:
  users:
    issuer: https://issuer.test
    audience: revenant-tests
    jwks_file: jwks.json
    keys:
      - {{kid: rsa-1, alg: RS256, public_key_file: {}}}
      - {{kid: ec-1, alg: ES256, public_key_file: {}}}
      - {{kid: ed-1, alg: EdDSA, public_key_file: {}}}
      - {{kid: hs-1, alg: HS256, secret: \"{HS_SECRET}\"}}
",
            fixture("rsa.pub.pem").display(),
            fixture("ec.pub.pem").display(),
            fixture("ed.pub.pem").display(),
        );
        let (dir, config) = project_with(&head, routes);
        // A JWKS document with the public half of a second RSA key, as an issuer publishes it.
        let jwks_key = EncodingKey::from_rsa_pem(&pem("rsa-jwks.key")).unwrap();
        let mut jwk = Jwk::from_encoding_key(&jwks_key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("jwks-1".into());
        let set = JwkSet { keys: vec![jwk] };
        std::fs::write(
            dir.path().join("jwks.json"),
            serde_json::to_string(&set).unwrap(),
        )
        .unwrap();
        let server = Server::start(&config, &dir.path().join("data"));
        Self {
            server,
            http: Http::new(),
            _dir: dir,
        }
    }

    /// GET /me/count with `token`: the count of the token's user.
    async fn my_count(&self, token: &str) -> Json {
        let (status, body) = self
            .http
            .request_with(
                "GET",
                &format!("{}/me/count", self.server.url),
                None,
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn add(&self, user: &str, token: Option<&str>) -> (u16, Json) {
        let url = format!("{}/user/{user}/activities", self.server.url);
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        self.http
            .request_with(
                "POST",
                &url,
                Some(json!({"kind": "run", "detail": "5k"})),
                &headers,
            )
            .await
            .unwrap()
    }
}

type Refusal = (
    &'static str,
    Option<String>,
    &'static str,
    u16,
    &'static str,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_matrix() {
    let f = Fixture::start();
    let alice = claims("alice");

    // Accepted: every configured algorithm, and the JWKS file's key.
    let valid = [
        ("RS256", sign(Algorithm::RS256, "rsa-1", &rsa(), &alice)),
        (
            "ES256",
            sign(
                Algorithm::ES256,
                "ec-1",
                &EncodingKey::from_ec_pem(&pem("ec.key")).unwrap(),
                &alice,
            ),
        ),
        (
            "EdDSA",
            sign(
                Algorithm::EdDSA,
                "ed-1",
                &EncodingKey::from_ed_pem(&pem("ed.key")).unwrap(),
                &alice,
            ),
        ),
        (
            "HS256",
            sign(
                Algorithm::HS256,
                "hs-1",
                &EncodingKey::from_secret(HS_SECRET.as_bytes()),
                &alice,
            ),
        ),
        (
            "RS256 from the JWKS",
            sign(
                Algorithm::RS256,
                "jwks-1",
                &EncodingKey::from_rsa_pem(&pem("rsa-jwks.key")).unwrap(),
                &alice,
            ),
        ),
    ];
    for (n, (what, token)) in valid.iter().enumerate() {
        let (status, body) = f.add("alice", Some(token)).await;
        assert_eq!(
            (status, body.clone()),
            (200, json!(n + 1)),
            "{what}: {body}"
        );
    }
    // A template may use a claim: /me/count is Alice's worker when Alice calls it.
    assert_eq!(f.my_count(&valid[0].1).await, json!(valid.len()));

    // Refused, each for its own reason.
    let header_none = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#);
    let payload = URL_SAFE_NO_PAD.encode(alice.to_string());
    let alg_none = format!("{header_none}.{payload}.");
    let hs_with_rsa_public = sign(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(&pem("rsa.pub.pem")),
        &alice,
    );
    let other_rsa = EncodingKey::from_rsa_pem(&pem("rsa-jwks.key")).unwrap();
    let bad_signature = sign(Algorithm::RS256, "rsa-1", &other_rsa, &alice);
    let mut expired = alice.clone();
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = alice.clone();
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_iss = alice.clone();
    wrong_iss["iss"] = json!("https://evil.test");
    let mut wrong_aud = alice.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut no_exp = alice.clone();
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut jku_header = Header::new(Algorithm::RS256);
    jku_header.kid = Some("rsa-1".into());
    jku_header.jku = Some("http://127.0.0.1:1/jwks.json".into());
    let with_jku = encode(&jku_header, &alice, &rsa()).unwrap();

    // (what, token, whose path, status, code, a word of the reason)
    let refusals: Vec<Refusal> = vec![
        ("no token", None, "alice", 401, "unauthenticated", "Bearer"),
        (
            "alg none",
            Some(alg_none),
            "alice",
            401,
            "invalid_token",
            "header",
        ),
        (
            "HS256 signed with the RSA public key",
            Some(hs_with_rsa_public),
            "alice",
            401,
            "invalid_token",
            "not accepted",
        ),
        (
            "bad signature",
            Some(bad_signature),
            "alice",
            401,
            "invalid_token",
            "signature",
        ),
        (
            "expired",
            Some(sign(Algorithm::RS256, "rsa-1", &rsa(), &expired)),
            "alice",
            401,
            "invalid_token",
            "expired",
        ),
        (
            "not yet valid",
            Some(sign(Algorithm::RS256, "rsa-1", &rsa(), &not_yet)),
            "alice",
            401,
            "invalid_token",
            "nbf",
        ),
        (
            "wrong iss",
            Some(sign(Algorithm::RS256, "rsa-1", &rsa(), &wrong_iss)),
            "alice",
            401,
            "invalid_token",
            "issuer",
        ),
        (
            "wrong aud",
            Some(sign(Algorithm::RS256, "rsa-1", &rsa(), &wrong_aud)),
            "alice",
            401,
            "invalid_token",
            "audience",
        ),
        (
            "no exp",
            Some(sign(Algorithm::RS256, "rsa-1", &rsa(), &no_exp)),
            "alice",
            401,
            "invalid_token",
            "`exp`",
        ),
        (
            "unknown kid",
            Some(sign(Algorithm::RS256, "nope", &rsa(), &alice)),
            "alice",
            401,
            "invalid_token",
            "unknown key id",
        ),
        (
            "jku header",
            Some(with_jku),
            "alice",
            401,
            "invalid_token",
            "jku",
        ),
        (
            "alice's token on bob's path",
            Some(valid[0].1.clone()),
            "bob",
            403,
            "forbidden",
            "{user-id} == jwt.sub",
        ),
    ];
    for (what, token, user, status, code, reason) in refusals {
        let (got, body) = f.add(user, token.as_deref()).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{what}: {message}");
    }
    // Nothing refused reached a worker: Alice has exactly the accepted calls, Bob has none.
    assert_eq!(f.my_count(&valid[0].1).await, json!(valid.len()));
    let bob = sign(Algorithm::RS256, "rsa-1", &rsa(), &claims("bob"));
    assert_eq!(f.my_count(&bob).await, json!(0));
}

/// A numeric `sub` names the same worker in `{jwt.sub}` and satisfies the same `require`: one
/// rule turns a claim into text everywhere (issue 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_numeric_sub_is_the_same_text_in_worker_names_and_requires() {
    let f = Fixture::start();
    let mut numeric = claims("ignored");
    numeric["sub"] = json!(42);
    let token = sign(Algorithm::RS256, "rsa-1", &rsa(), &numeric);
    let (status, body) = f.add("42", Some(&token)).await;
    assert_eq!(
        (status, body),
        (200, json!(1)),
        "require {{user-id}} == jwt.sub holds for 42"
    );
    assert_eq!(
        f.my_count(&token).await,
        json!(1),
        "{{jwt.sub}} names user-42"
    );
    let (status, body) = f.add("43", Some(&token)).await;
    assert_eq!(status, 403, "{body}");
}
