//! SIGTERM drains (issue 10): under load, the server stops accepting, answers every request it
//! had accepted, exits 0 within the drain bound, and a restart finds every acknowledged call —
//! and no call that was not acknowledged.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{Http, Server, demo_config, eventually};

const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_what_it_accepted_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&demo_config(), &data);
    let url = server.url.clone();
    let http = Http::new();

    let terminating = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, url, terminating, progress) = (
            http.clone(),
            url.clone(),
            terminating.clone(),
            progress.clone(),
        );
        clients.push(tokio::spawn(async move {
            let (mut acked, mut refused_answers) = (0u64, Vec::new());
            // Bounded: the server is gone within the drain bound, and then every request fails.
            for _ in 0..1_000_000 {
                let answer = http
                    .request(
                        "POST",
                        &format!("{url}/user/drain-{c}/activities"),
                        Some(json!({"kind": "k", "detail": "d"})),
                    )
                    .await;
                match answer {
                    Ok((200, n)) => {
                        acked += 1;
                        assert_eq!(n, json!(acked), "client {c}: the count it was answered");
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    // An answer that is not a success: an accepted request failed.
                    Ok((status, body)) => refused_answers.push(format!("{status} {body}")),
                    // No answer: the connection was refused or closed before the request was
                    // taken, which is only expected once the server is stopping.
                    Err(e) => {
                        assert!(
                            terminating.load(Ordering::SeqCst),
                            "client {c}: {e} before SIGTERM"
                        );
                        break;
                    }
                }
            }
            (acked, refused_answers)
        }));
    }
    eventually("the load to run", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) >= 200
    })
    .await;
    terminating.store(true, Ordering::SeqCst);
    let bound = revenant_gateway::limits::DRAIN_TIMEOUT + Duration::from_secs(10);
    let status = tokio::task::spawn_blocking(move || server.terminate(bound))
        .await
        .unwrap();
    assert!(status.success(), "exit status after SIGTERM: {status}");

    let mut acked = Vec::new();
    for (c, client) in clients.into_iter().enumerate() {
        let (n, refused) = client.await.unwrap();
        assert!(
            refused.is_empty(),
            "client {c}: accepted requests failed: {refused:?}"
        );
        acked.push(n);
    }

    let server = Server::start(&demo_config(), &data);
    for (c, n) in acked.iter().enumerate() {
        let count = http
            .get(&format!("{}/user/drain-{c}/count", server.url))
            .await;
        assert_eq!(
            count,
            json!(n),
            "client {c}: every acknowledged call, and nothing else, survived"
        );
    }
}
