//! HTTPS out: a worker fetches `https://` from a local TLS server whose certificate is signed by
//! a CA the project names in `outgoing_http.ca_files`; a certificate for another host name fails
//! with a clear error that is recorded (the same after kill -9); a `jwks_url` scheme fetches its
//! keys over HTTPS with the same trust.

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use support::{Http, Server, project_with};

struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn test_ca() -> TestCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Revenant test CA");
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// An HTTPS server on 127.0.0.1 with a certificate for `names`, signed by `ca`: `/item` answers
/// "from tls", `/jwks.json` the JWKS document. Returns its port.
async fn tls_server(ca: &TestCa, names: &[&str], jwks: String) -> u16 {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, jwks) = (acceptor.clone(), jwks.clone());
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake here.
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request: http::Request<_>| {
                    let body = match request.uri().path() {
                        "/jwks.json" => jwks.clone(),
                        _ => "from tls".to_string(),
                    };
                    async move {
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from(body),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    port
}

fn jwt_key() -> EncodingKey {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt/rsa-jwks.key");
    EncodingKey::from_rsa_pem(&std::fs::read(path).unwrap()).unwrap()
}

const ROUTES: &str = "  - method: POST
    path: /user/{user-id}/imports
    component: user-activity
    worker: user-{user-id}
    call: import-activity
    args: [\"{body.url}\"]
    error_status: 502
  - method: GET
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: activities
  - method: GET
    path: /me/count
    component: user-activity
    worker: user-{jwt.sub}
    call: count
    auth: remote
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_and_jwks_fetch_over_https_with_the_configured_ca() {
    let ca = test_ca();
    let mut jwk = Jwk::from_encoding_key(&jwt_key(), Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("tls-1".into());
    let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
    let good = tls_server(&ca, &["localhost"], jwks.clone()).await;
    let wrong_name = tls_server(&ca, &["someone-else.test"], jwks).await;

    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let head = format!(
        "outgoing_http:\n  allow: [\"localhost\"]\n  ca_files: [\"{}\"]\n\
         auth:\n  remote:\n    jwks_url: https://localhost:{good}/jwks.json\n",
        ca_file.display()
    );
    let (dir, config) = project_with(&head, ROUTES);
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let http = Http::new();
    let imports = format!("{}/user/t/imports", server.url);

    let import = |port: u16| {
        let (http, imports) = (http.clone(), imports.clone());
        async move {
            let target = json!({"url": format!("https://localhost:{port}/item")});
            http.request("POST", &imports, Some(target)).await.unwrap()
        }
    };
    let (status, body) = import(good).await;
    assert_eq!((status, body.clone()), (200, json!({"ok": 1})), "{body}");

    let (status, body) = import(wrong_name).await;
    assert_eq!(status, 502, "{body}");
    let error = body["details"].as_str().unwrap().to_string();
    assert!(
        error.contains("certificate") && error.contains("localhost"),
        "the error says the certificate is not for this host: {error}"
    );

    // The JWKS comes over HTTPS: a token signed with its key is accepted.
    let exp = 4_000_000_000u64;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("tls-1".into());
    let token = encode(&header, &json!({"sub": "t", "exp": exp}), &jwt_key()).unwrap();
    let (status, body) = http
        .request_with(
            "GET",
            &format!("{}/me/count", server.url),
            None,
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await
        .unwrap();
    assert_eq!((status, body.clone()), (200, json!(1)), "{body}");

    // Recorded: after kill -9 the worker replays both outcomes as they were.
    server.kill9();
    let server = Server::start(&config, &data);
    let stored = http.get(&format!("{}/user/t/activities", server.url)).await;
    assert_eq!(stored.as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored[0]["detail"], "from tls", "{stored}");
}
