//! The gateway's edges, over raw TCP so that the server sees exactly these bytes: canonical
//! paths, oversized headers and bodies.

mod support;

use serde_json::json;
use support::{Http, Server, demo_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `request` as is and returns the status code and the body of the answer.
async fn raw(url: &str, request: &[u8]) -> (u16, String) {
    // The server closes the connection (`Connection: close`), which ends the read.
    let answer = support::tcp_exchange(url, request, std::time::Duration::from_secs(30)).await;
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_canonical_and_oversized_requests_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&demo_config(), data.path());
    let http = Http::new();
    http.post(
        &format!("{}/user/alice/activities", server.url),
        json!({"kind": "k", "detail": "d"}),
    )
    .await;

    // One worker, however its name is spelled.
    let (status, body) = raw(&server.url, &get("/user/%61lice/count")).await;
    assert_eq!((status, body.as_str()), (200, "1"));
    for path in [
        "/user/a%2Fb/count",
        "/user/../count",
        "/user/%2E%2E/count",
        "/user//count",
        "/user/%FF/count",
    ] {
        let (status, body) = raw(&server.url, &get(path)).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("\"bad_path\""), "{path}: {body}");
    }

    // Headers past the bound: 431, before any route runs.
    let big = format!(
        "GET /user/alice/count HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let (status, _) = raw(&server.url, big.as_bytes()).await;
    assert_eq!(status, 431);

    // A body past the bound: 413, with the error's code.
    let body = format!(
        "{{\"kind\": \"k\", \"detail\": \"{}\"}}",
        "d".repeat(2 * 1024 * 1024)
    );
    let request = format!(
        "POST /user/alice/activities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = raw(&server.url, request.as_bytes()).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("\"body_too_large\""), "{answer}");
    // Nothing of it reached the worker.
    assert_eq!(
        http.get(&format!("{}/user/alice/count", server.url)).await,
        json!(1)
    );
}

/// A client that sends its headers a byte at a time is cut off at the header read timeout,
/// while other clients are answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_disconnected_at_the_header_timeout_while_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(demo_config()).unwrap().replace(
        "../../target/",
        &format!("{}/", support::workspace().join("target").display()),
    ) + "limits:\n  header_read_timeout_ms: 300\n";
    let config = dir.path().join("revenant.yaml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, &dir.path().join("data"));
    let http = Http::new();

    let addr = server.url.trim_start_matches("http://").to_string();
    let slow = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Never finishes: one byte of a header, then the next, until the server hangs up.
        for byte in b"GET /user/slow/count HTTP/1.1\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'a'))
        {
            if stream.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let mut probe = [0u8; 1];
            // A closed connection reads as end of stream (or an error once written to).
            if let Ok(Ok(0)) =
                tokio::time::timeout(std::time::Duration::from_millis(1), stream.read(&mut probe))
                    .await
            {
                return true;
            }
        }
        false
    });
    // Meanwhile the server answers others, again and again, until the slow client is cut off.
    let mut served = 0;
    while !slow.is_finished() {
        let count = http.get(&format!("{}/user/fast/count", server.url)).await;
        assert_eq!(count, json!(0));
        served += 1;
    }
    assert!(slow.await.unwrap(), "the slow client was disconnected");
    assert!(served > 0);
}

/// A POST of `body` with `headers` (each a full `Name: value` line) to `path`.
fn post_with(path: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut head = format!("POST {path} HTTP/1.1\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    format!("{head}Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_headers_and_non_json_bodies_are_refused() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with_admin(&demo_config(), data.path());
    let url = server.url.clone();
    let body = r#"{"kind":"k","detail":"d"}"#;
    let path = "/user/edge/activities";
    let json = "Content-Type: application/json";
    let code = |answer: &str| -> Option<String> {
        serde_json::from_str::<serde_json::Value>(answer)
            .ok()
            .and_then(|j| j["code"].as_str().map(str::to_string))
    };

    // Host: exactly one on HTTP/1.1.
    let (status, answer) = raw(&url, &post_with(path, &["Host: a", "Host: b", json], body)).await;
    assert_eq!(
        (status, code(&answer).as_deref()),
        (400, Some("bad_header")),
        "{answer}"
    );
    let (status, answer) = raw(&url, &post_with(path, &[json], body)).await;
    assert_eq!(
        (status, code(&answer).as_deref()),
        (400, Some("bad_header")),
        "{answer}"
    );
    let (status, answer) = raw(&url, b"GET /user/edge/count HTTP/1.0\r\n\r\n").await;
    assert_eq!(status, 200, "HTTP/1.0 has no Host requirement: {answer}");

    // Authorization: at most one.
    let (status, answer) = raw(
        &url,
        &post_with(
            path,
            &[
                "Host: x",
                json,
                "Authorization: Bearer a",
                "Authorization: Bearer b",
            ],
            body,
        ),
    )
    .await;
    assert_eq!(
        (status, code(&answer).as_deref()),
        (400, Some("bad_header")),
        "{answer}"
    );

    // A JSON route takes JSON: a browser's cross-site `text/plain` or form post is refused.
    for refused in [
        "Content-Type: text/plain",
        "Content-Type: application/x-www-form-urlencoded",
    ] {
        let (status, answer) = raw(&url, &post_with(path, &["Host: x", refused], body)).await;
        assert_eq!(
            (status, code(&answer).as_deref()),
            (415, Some("unsupported_media_type")),
            "{refused}: {answer}"
        );
    }
    let mut count = 0;
    for accepted in [
        vec!["Host: x", json],
        vec!["Host: x", "Content-Type: application/json; charset=utf-8"],
        vec!["Host: x"],
    ] {
        let (status, answer) = raw(&url, &post_with(path, &accepted, body)).await;
        count += 1;
        assert_eq!(
            (status, answer.trim()),
            (200, count.to_string().as_str()),
            "{accepted:?}"
        );
    }
    // Nothing refused reached the worker.
    let (status, answer) = raw(&url, &get("/user/edge/count")).await;
    assert_eq!((status, answer.trim()), (200, "3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_paths_are_percent_decoded() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with_admin(&demo_config(), data.path());
    let admin = server.admin.clone().unwrap();
    let http = Http::new().with_admin(&server);
    // `é` in the public path: the worker is `user-été`.
    http.post(
        &format!("{}/user/%C3%A9t%C3%A9/activities", server.url),
        json!({"kind": "k", "detail": "d"}),
    )
    .await;
    let worker = format!("{admin}/workers/user-activity/user-%C3%A9t%C3%A9");
    let shown = http.get(&worker).await;
    assert_eq!(shown["name"], "user-été", "{shown}");
    let (status, _) = http
        .raw("POST", &format!("{worker}/interrupt"), Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(http.get(&worker).await["status"], "interrupted");
    let (status, _) = http.raw("DELETE", &worker, Vec::new()).await.unwrap();
    assert_eq!(status, 200);
    let (status, _) = http.raw("GET", &worker, Vec::new()).await.unwrap();
    assert_eq!(status, 404);
}
