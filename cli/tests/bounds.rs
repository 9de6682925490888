//! CPU and memory bounds, through the real binary: a guest that loops forever is interrupted at
//! its deadline while other workers keep answering; a guest that grows past its memory cap fails
//! cleanly; both workers stay usable with their earlier state.

mod support;

use serde_json::json;
use support::{Http, Server, workspace};

fn stress_config() -> std::path::PathBuf {
    let component = workspace().join("target/wasm32-wasip2/guest/stress.wasm");
    assert!(
        component.exists(),
        "{} is missing: run scripts/test.sh",
        component.display()
    );
    workspace().join("examples/stress/revenant.yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_is_stopped_at_its_deadline_while_others_answer() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&stress_config(), data.path());
    let http = Http::new();

    let spin = {
        let (http, url) = (http.clone(), server.url.clone());
        tokio::spawn(async move {
            http.request("POST", &format!("{url}/stress/spinner/spin"), None)
                .await
        })
    };
    // While `spin` burns its 500 ms budget, another worker answers, again and again.
    let mut answered_meanwhile = 0;
    while !spin.is_finished() {
        let (status, _) = http
            .request("POST", &format!("{}/stress/other/ping", server.url), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        answered_meanwhile += 1;
    }
    assert!(
        answered_meanwhile > 0,
        "no other call was answered while the guest spun"
    );
    let (status, body) = spin.await.unwrap().unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("invocation_timeout")),
        "{body}"
    );

    // The interrupted worker still answers.
    let (status, body) = http
        .request("POST", &format!("{}/stress/spinner/ping", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, body), (200, json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_growing_past_its_memory_cap_fails_cleanly_and_keeps_its_state() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&stress_config(), data.path());
    let http = Http::new();
    let url = |path: &str| format!("{}/stress/grower/{path}", server.url);

    assert_eq!(http.post(&url("grow/8"), json!(null)).await, json!(8));
    let (status, body) = http.request("POST", &url("grow/64"), None).await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("guest_memory_exceeded")),
        "{body}"
    );
    // The failed call was rolled back: the 8 MiB kept before it are still there, and no more.
    assert_eq!(http.post(&url("grow/1"), json!(null)).await, json!(9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_timed_out_call_answers_invocation_timeout_again() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(&stress_config(), data.path());
    let http = Http::new();
    let key = [("idempotency-key", "spin-1")];
    let mut answers = Vec::new();
    for restart in [false, false, true] {
        if restart {
            server.kill9();
            server = Server::start(&stress_config(), data.path());
        }
        let (status, body) = http
            .request_with(
                "POST",
                &format!("{}/stress/retried/spin", server.url),
                None,
                &key,
            )
            .await
            .unwrap();
        answers.push((status, body["code"].as_str().map(str::to_string)));
    }
    let expected = (504, Some("invocation_timeout".to_string()));
    assert_eq!(
        answers,
        vec![expected.clone(), expected.clone(), expected],
        "the first call, its retry, and its retry after a restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_past_the_recorded_bound_answers_413_and_the_worker_keeps_its_state() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(&stress_config(), data.path());
    let http = Http::new();
    let url = |server: &Server, path: &str| format!("{}/stress/big/{path}", server.url);

    assert_eq!(
        http.post(&url(&server, "ping"), json!(null)).await,
        json!(1)
    );
    let (status, body) = http
        .request("POST", &url(&server, "text/20"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("value_too_large")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("20971") && message.contains("16777216"),
        "the message names the size and the bound: {message}"
    );
    // The worker still answers, with its state: one ping before, none lost.
    assert_eq!(
        http.post(&url(&server, "ping"), json!(null)).await,
        json!(2)
    );
    // Within the bound, a large result is answered (and recorded as a digest).
    let text = http.post(&url(&server, "text/3"), json!(null)).await;
    assert_eq!(text.as_str().map(str::len), Some(3 * 1024 * 1024));

    // After kill -9 the log replays: the refused call is skipped, the large result checked
    // against its digest.
    server.kill9();
    server = Server::start(&stress_config(), data.path());
    assert_eq!(
        http.post(&url(&server, "ping"), json!(null)).await,
        json!(3)
    );
}
