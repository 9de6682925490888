//! A call blocked inside an outgoing HTTP request when the process is SIGKILLed resumes after
//! restart — without waiting for a client — sends the request again (at least once), completes,
//! and its result is there for a retry with the same idempotency key. The final state is exact.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Http, Server, demo_with, eventually, held_upstream};

/// An upstream on 127.0.0.1 that never answers its first request and answers the others.
async fn upstream(seen: Arc<AtomicUsize>) -> String {
    // Nobody ever notifies: the first request waits forever.
    held_upstream(seen, Arc::new(tokio::sync::Notify::new())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_blocked_in_outgoing_http_resumes_after_kill_9() {
    let seen = Arc::new(AtomicUsize::new(0));
    let item = upstream(seen.clone()).await;
    let data = tempfile::tempdir().unwrap();
    // The upstream is on 127.0.0.1, which the egress policy refuses unless allowed.
    let (_dir, config) = demo_with("outgoing_http:\n  allow: [\"127.0.0.1\"]\n");
    let http = Http::new();
    let server = Server::start(&config, data.path());

    let blocked = {
        let (http, url, item) = (http.clone(), server.url.clone(), item.clone());
        tokio::spawn(async move {
            http.request_with(
                "POST",
                &format!("{url}/user/r/imports"),
                Some(json!({"url": item})),
                &[("idempotency-key", "import-1")],
            )
            .await
        })
    };
    eventually(
        "the request to reach the upstream",
        Duration::from_secs(30),
        || seen.load(Ordering::SeqCst) == 1,
    )
    .await;
    server.kill9();
    assert!(
        blocked.await.unwrap().is_err(),
        "the first caller got no answer"
    );

    let server = Server::start(&config, data.path());
    // Resumed at start-up, with no client asking: the upstream sees the request again.
    eventually(
        "the resumed invocation to send its request again",
        Duration::from_secs(30),
        || seen.load(Ordering::SeqCst) >= 2,
    )
    .await;
    let (status, body) = http
        .request_with(
            "POST",
            &format!("{}/user/r/imports", server.url),
            Some(json!({"url": item})),
            &[("idempotency-key", "import-1")],
        )
        .await
        .unwrap();
    assert_eq!((status, body), (200, json!({"ok": 1})));
    let list = http.get(&format!("{}/user/r/activities", server.url)).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "exactly one activity: {list:?}");
    assert_eq!(list[0]["kind"], "import");
    assert_eq!(list[0]["detail"], "from upstream");
    let requests = seen.load(Ordering::SeqCst);

    // Restarted again, the worker replays the recorded response: the upstream sees nothing new.
    server.kill9();
    let server = Server::start(&config, data.path());
    let again = http.get(&format!("{}/user/r/activities", server.url)).await;
    assert_eq!(again.as_array().unwrap(), list);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        requests,
        "replay sent a request"
    );
}

/// A request that cannot connect is retried a bounded number of times, then its failure is
/// recorded: the guest sees the same error after a restart, and nothing is sent on replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_is_recorded_as_failed_and_replays_identically() {
    // A port that nothing listens on: bind, note it, close.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let data = tempfile::tempdir().unwrap();
    // The upstream is on 127.0.0.1, which the egress policy refuses unless allowed.
    let (_dir, config) = demo_with("outgoing_http:\n  allow: [\"127.0.0.1\"]\n");
    let http = Http::new();
    let server = Server::start(&config, data.path());
    let body = json!({"url": format!("http://{closed}/x")});
    let (status, answer) = http
        .request(
            "POST",
            &format!("{}/user/f/imports", server.url),
            Some(body),
        )
        .await
        .unwrap();
    // The route maps the export's `result::err` to 502: an error body with the export's error
    // as its `details`.
    assert_eq!(status, 502, "{answer}");
    assert_eq!(answer["code"], "export_error", "{answer}");
    assert!(
        answer["details"]
            .as_str()
            .unwrap_or_default()
            .contains("after 3 attempt(s)"),
        "{answer}"
    );
    server.kill9();

    // Replayed: same history, so the same count afterwards; the guest's own `add` still works.
    let server = Server::start(&config, data.path());
    let count = http.get(&format!("{}/user/f/count", server.url)).await;
    assert_eq!(count, json!(0));
    let n = http
        .post(
            &format!("{}/user/f/activities", server.url),
            json!({"kind": "k", "detail": "d"}),
        )
        .await;
    assert_eq!(n, json!(1));
}
