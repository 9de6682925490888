//! The egress policy, end to end: a public caller of the demo's `imports` route cannot make a
//! worker fetch the admin API (or this node's public listener) under any spelling of
//! 127.0.0.1; nothing from it is stored; the refusal is a recorded outcome that replays after
//! kill -9; the same URLs are reached once `outgoing_http.allow` opens them. And a server that
//! never answers holds its callers only until the first-byte timeout, while every other user is
//! served (the workers waiting on it do not count against `active_workers_max`).

// Tests read the clock (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{Value as Json, json};
use std::time::{Duration, Instant};
use support::{Http, Server, demo_with};

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

async fn import(http: &Http, url: &str, user: &str, target: &str) -> (u16, Json) {
    http.request(
        "POST",
        &format!("{url}/user/{user}/imports"),
        Some(json!({ "url": target })),
    )
    .await
    .expect("answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_cannot_reach_the_admin_api_or_this_node() {
    let data = tempfile::tempdir().unwrap();
    let (_dir, closed) = demo_with("");
    let server = Server::start_with_admin(&closed, data.path());
    let http = Http::new().with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    let admin_port = port(&admin);
    // The attack: the admin API's definitions (secrets included) stored as an activity.
    let spellings = [
        "127.0.0.1",
        "localhost",
        "127.1",
        "0.0.0.0",
        "2130706433",
        "0x7f000001",
        "[::ffff:127.0.0.1]",
    ];
    for host in spellings {
        let target = format!("http://{host}:{admin_port}/api-definitions");
        let (status, body) = import(&http, &url, "attacker", &target).await;
        assert_eq!(status, 502, "{target}: {body}");
        assert_eq!(body["code"], "export_error", "{target}: {body}");
        let error = body["details"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused by the egress policy") && error.contains("outgoing_http.allow"),
            "{target}: {body}"
        );
    }
    // This node's public listener too, and credentials in a URL are refused outright.
    let own = format!("http://127.0.0.1:{}/user/x/count", port(&url));
    let (status, body) = import(&http, &url, "attacker", &own).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["details"].as_str().unwrap().contains("egress policy"),
        "{body}"
    );
    let with_userinfo = format!("http://user:secret@127.0.0.1:{admin_port}/components");
    let (status, body) = import(&http, &url, "attacker", &with_userinfo).await;
    assert_eq!(status, 502, "{body}");
    let error = body["details"].as_str().unwrap();
    assert!(
        error.contains("userinfo") && !error.contains("secret"),
        "{body}"
    );
    assert_eq!(
        http.get(&format!("{url}/user/attacker/activities")).await,
        json!([]),
        "nothing from the admin API was stored"
    );

    // The refusals are recorded outcomes: after kill -9 the worker replays them as they were,
    // although the policy now lets the same URLs through.
    server.kill9();
    let (_dir2, open) = demo_with("outgoing_http:\n  allow: [\"127.0.0.1\", \"localhost\"]\n");
    let server = Server::start_with_admin(&open, data.path());
    let http = http.with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    assert_eq!(
        http.get(&format!("{url}/user/attacker/activities")).await,
        json!([])
    );
    assert_eq!(
        http.get(&format!("{url}/user/attacker/count")).await,
        json!(0)
    );

    // Allowed: the public listener answers the worker, and the admin listener is reached but
    // asks for its token, which a guest does not have.
    // (Another user's count: a worker calling its own route would wait on itself.)
    let own = format!("http://localhost:{}/user/x/count", port(&url));
    let (status, body) = import(&http, &url, "attacker", &own).await;
    assert_eq!((status, body.clone()), (200, json!({"ok": 1})), "{body}");
    let target = format!("http://127.0.0.1:{}/api-definitions", port(&admin));
    let (status, body) = import(&http, &url, "attacker", &target).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["details"], "status 401", "{body}");
    let stored = http.get(&format!("{url}/user/attacker/activities")).await;
    assert_eq!(stored.as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored[0]["detail"], "0", "{stored}");
}

/// Accepts connections and never answers them.
async fn silent_upstream() -> (String, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let (accepted, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            let _ = accepted.send(());
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_does_not_stop_other_users() {
    let (slow, mut accepted) = silent_upstream().await;
    let data = tempfile::tempdir().unwrap();
    // First byte at 8 s: longer than a call waits for a worker slot (5 s), so before this
    // bound existed the other users' calls were refused while the three imports hung.
    let (_dir, config) = demo_with(
        "limits:\n  active_workers_max: 3\noutgoing_http:\n  allow: [\"127.0.0.1\"]\n  \
         first_byte_timeout_ms: 8000\n",
    );
    let server = Server::start(&config, data.path());
    let http = Http::new();
    let url = server.url.clone();
    let hung: Vec<_> = (0..3)
        .map(|i| {
            let (http, url, slow) = (http.clone(), url.clone(), slow.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let answer = import(&http, &url, &format!("hung-{i}"), &slow).await;
                (answer, started.elapsed())
            })
        })
        .collect();
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), accepted.recv())
            .await
            .expect("the three imports reach the upstream")
            .unwrap();
    }
    // Every slot is held by a worker waiting on the upstream; 60 other users are served.
    let mut latencies = Vec::new();
    for user in 0..60 {
        let started = Instant::now();
        let (status, body) = http
            .request(
                "POST",
                &format!("{url}/user/other-{user}/activities"),
                Some(json!({"kind": "k", "detail": "d"})),
            )
            .await
            .unwrap();
        latencies.push(started.elapsed());
        assert_eq!(
            (status, body.clone()),
            (200, json!(1)),
            "user {user}: {body}"
        );
    }
    latencies.sort();
    eprintln!(
        "other users while three imports hang: p50 {:?}, p99 {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );
    for call in hung {
        let ((status, body), took) = call.await.unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(
            body["details"]
                .as_str()
                .unwrap()
                .contains("first-byte timeout of 8s"),
            "{body}"
        );
        eprintln!("a hung import answered after {took:?}");
    }
}
