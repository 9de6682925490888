//! The admin API is authenticated: the token `revenant serve` generated into
//! `<data>/admin.token` (mode 0600) is required, compared exactly; a `Host` other than the
//! listener's is refused (DNS rebinding), and so is a state-changing request with an `Origin`
//! (a browser's cross-site request). `revenant admin` finds the same token file.

mod support;

use serde_json::Value as Json;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use support::{Http, Server, demo_config};

fn code(body: &[u8]) -> String {
    serde_json::from_slice::<Json>(body).unwrap()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token_its_host_and_no_origin() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with_admin(&demo_config(), data.path());
    let admin = server.admin.clone().unwrap();
    let token = server.admin_token.clone().unwrap();
    let file = data.path().join("admin.token");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "only the owner may read the token");
    assert_eq!(token.len(), 64, "{token}");

    let http = Http::new();
    let components = format!("{admin}/components");
    let exchange = |headers: Vec<(&'static str, String)>, method: &'static str| {
        let (http, url) = (http.clone(), components.clone());
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, _, body) = http
                .exchange(method, &url, Vec::new(), &headers)
                .await
                .unwrap();
            (status, code(&body))
        }
    };
    let bearer = |t: &str| ("authorization", format!("Bearer {t}"));
    assert_eq!(
        exchange(vec![], "GET").await,
        (401, "unauthenticated".into())
    );
    assert_eq!(
        exchange(vec![bearer("not-the-token")], "GET").await,
        (401, "invalid_token".into())
    );
    let (status, _) = exchange(vec![bearer(&token)], "GET").await;
    assert_eq!(status, 200);
    // The token with one character changed is as wrong as any other.
    let mut near = token.clone();
    near.replace_range(63.., if token.ends_with('0') { "1" } else { "0" });
    assert_eq!(exchange(vec![bearer(&near)], "GET").await.0, 401);

    // A page whose name was rebound to 127.0.0.1 sends its own name as the Host.
    let port = admin.rsplit(':').next().unwrap();
    assert_eq!(
        exchange(
            vec![bearer(&token), ("host", format!("evil.example:{port}"))],
            "GET"
        )
        .await,
        (403, "host_refused".into())
    );
    assert_eq!(
        exchange(
            vec![bearer(&token), ("host", format!("localhost:{port}"))],
            "GET"
        )
        .await
        .0,
        200
    );
    // A cross-site POST carries an Origin: refused even with the token.
    let interrupt = format!("{admin}/workers/user-activity/u/interrupt");
    let (status, _, body) = http
        .exchange(
            "POST",
            &interrupt,
            Vec::new(),
            &[
                ("authorization", &format!("Bearer {token}")),
                ("origin", "http://evil.example"),
            ],
        )
        .await
        .unwrap();
    assert_eq!((status, code(&body)), (403, "origin_refused".into()));

    // The CLI reads the same file.
    let cli = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_revenant"))
            .args(["admin", "GET", "/components", "--admin", &admin, "--data"])
            .arg(data.path())
            .args(extra)
            .env_remove("REVENANT_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let listed = cli(&[]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: Json = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "user-activity", "{listed}");
    let refused = cli(&["--token", "wrong"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") && stderr.contains("invalid_token"),
        "{stderr}"
    );

    // The token survives a restart; a token file others may read stops the server.
    server.kill9();
    let server = Server::start_with_admin(&demo_config(), data.path());
    assert_eq!(server.admin_token.as_deref(), Some(token.as_str()));
    server.kill9();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(demo_config())
        .arg("--data")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chmod 600") && stderr.contains("admin.token"),
        "{stderr}"
    );
}
