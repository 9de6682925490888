//! A `jwks_url` scheme: keys are fetched when a token names a `kid` not yet known, and a flood
//! of unknown `kid`s costs at most one fetch a minute.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use revenant_api_definitions::{ApiSpec, compile, parse_yaml};
use revenant_gateway::auth::{AuthCache, Authenticator};
use revenant_gateway::clock::Now;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn key() -> EncodingKey {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cli/tests/fixtures/jwt/rsa.key");
    EncodingKey::from_rsa_pem(&std::fs::read(path).unwrap()).unwrap()
}

fn bearer(kid: &str) -> HeaderMap {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    bearer_with(kid, exp)
}

/// A token signed with the test key as `kid`, expiring at `exp`.
fn bearer_with(kid: &str, exp: u64) -> HeaderMap {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let token = encode(
        &header,
        &serde_json::json!({"sub": "a", "exp": exp}),
        &key(),
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    headers
}

/// Serves a JWKS with the test key as `kid` "k1", counting requests.
async fn jwks_server(fetches: Arc<AtomicUsize>) -> String {
    let mut jwk = Jwk::from_encoding_key(&key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let body = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (fetches, body) = (fetches.clone(), body.clone());
            tokio::spawn(async move {
                let service = service_fn(move |_req| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = body.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

#[tokio::test]
async fn unknown_kids_fetch_the_jwks_at_most_once_a_minute() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(fetches.clone()).await;
    let text = format!("auth:\n  remote:\n    jwks_url: {url}\n");
    let spec: ApiSpec = parse_yaml("api.yaml", &text).unwrap();
    let api = compile("api.yaml", &spec, |_| true, &|_| None).unwrap();
    let auth = Authenticator::load(&api.auth[0], &api.base_dir).unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        0,
        "keys are fetched on demand"
    );

    let claims = auth.verify(&bearer("k1"), Now::read()).await.unwrap();
    assert_eq!(claims["sub"], "a");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    auth.verify(&bearer("k1"), Now::read()).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "known keys are cached");

    for i in 0..50 {
        let e = auth
            .verify(&bearer(&format!("made-up-{i}")), Now::read())
            .await
            .unwrap_err();
        assert_eq!(
            (e.code.status().as_u16(), e.code.name()),
            (401, "invalid_token")
        );
    }
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "50 unknown kids within a minute of the last fetch fetch nothing"
    );
}

#[tokio::test]
async fn a_rebuilt_router_keeps_the_keys_it_fetched_and_time_is_passed_in() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(fetches.clone()).await;
    let text = format!("auth:\n  remote:\n    jwks_url: {url}\n    leeway_seconds: 0\n");
    let spec: ApiSpec = parse_yaml("api.yaml", &text).unwrap();
    let api = compile("api.yaml", &spec, |_| true, &|_| None).unwrap();
    let cache = AuthCache::default();
    let first = cache.get_or_load(&api.auth[0], &api.base_dir).unwrap();
    let now = Now::read();
    first.verify(&bearer("k1"), now).await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A deploy builds the router again: the same scheme is the same authenticator.
    let second = cache.get_or_load(&api.auth[0], &api.base_dir).unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    second.verify(&bearer("k1"), now).await.unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "no fetch after a rebuild"
    );

    // Expiry is judged against the time the request passes in, not the machine's clock.
    let exp = 2_000_000_000;
    let at = |unix_seconds| Now {
        unix_seconds,
        instant: now.instant,
    };
    second
        .verify(&bearer_with("k1", exp), at(exp))
        .await
        .unwrap();
    let e = second
        .verify(&bearer_with("k1", exp), at(exp + 1))
        .await
        .unwrap_err();
    assert!(e.message.contains("expired"), "{}", e.message);
    // And so is the JWKS refresh interval: a minute later, an unknown kid fetches again.
    let later = Now {
        unix_seconds: now.unix_seconds,
        instant: now.instant + std::time::Duration::from_secs(61),
    };
    second.verify(&bearer("made-up"), later).await.unwrap_err();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Once no router uses it, the cache lets it go.
    drop((first, second));
    let third = cache.get_or_load(&api.auth[0], &api.base_dir).unwrap();
    third.verify(&bearer("k1"), now).await.unwrap();
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        3,
        "a new authenticator fetches anew"
    );
}

#[tokio::test]
async fn a_token_issued_in_the_future_is_refused_past_the_leeway() {
    let fetches = Arc::new(AtomicUsize::new(0));
    let url = jwks_server(fetches.clone()).await;
    let text = format!("auth:\n  remote:\n    jwks_url: {url}\n    leeway_seconds: 30\n");
    let spec: ApiSpec = parse_yaml("api.yaml", &text).unwrap();
    let api = compile("api.yaml", &spec, |_| true, &|_| None).unwrap();
    let auth = Authenticator::load(&api.auth[0], &api.base_dir).unwrap();
    let now = Now::read();
    let issued = |iat: u64| {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        let claims = serde_json::json!({"sub": "a", "exp": now.unix_seconds + 3600, "iat": iat});
        let token = encode(&header, &claims, &key()).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
        headers
    };
    // Within the leeway (a clock a little ahead) is accepted; past it is not.
    auth.verify(&issued(now.unix_seconds + 30), now)
        .await
        .unwrap();
    let e = auth
        .verify(&issued(now.unix_seconds + 31), now)
        .await
        .unwrap_err();
    assert_eq!(e.code.name(), "invalid_token");
    assert!(e.message.contains("`iat`"), "{}", e.message);
}
