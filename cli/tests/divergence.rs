//! A component changed so that it makes a different host call cannot silently replay an old
//! log: the worker fails with an error that names the recorded call and the attempted one.

mod support;

use serde_json::json;
use support::{Http, Server, demo_config, workspace};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_host_call_is_a_divergence_naming_both_calls() {
    let data = tempfile::tempdir().unwrap();
    let http = Http::new();
    let server = Server::start(&demo_config(), data.path());
    let count = http
        .post(
            &format!("{}/user/d/activities", server.url),
            json!({"kind": "k", "detail": "x"}),
        )
        .await;
    assert_eq!(count, json!(1));
    server.kill9();

    // The same project, with the component replaced by a version that draws its ids with
    // `get-random-bytes` where the log recorded `get-random-u64`.
    let variant = workspace().join("target/variants/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        variant.exists(),
        "{} is missing: run scripts/test.sh",
        variant.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(demo_config()).unwrap().replace(
        "../../target/wasm32-wasip2/guest/user_activity.wasm",
        variant.to_str().unwrap(),
    );
    let config = dir.path().join("revenant.yaml");
    std::fs::write(&config, text).unwrap();
    let server = Server::start(&config, data.path());

    let (status, body) = http
        .request("GET", &format!("{}/user/d/activities", server.url), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("worker_diverged")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    eprintln!("{message}");
    assert!(
        message.contains("wasi:random/random.get-random-u64"),
        "recorded call missing: {message}"
    );
    assert!(
        message.contains("wasi:random/random.get-random-bytes"),
        "attempted call missing: {message}"
    );
    // Other workers are unaffected.
    let count = http
        .post(
            &format!("{}/user/fresh/activities", server.url),
            json!({"kind": "k", "detail": "y"}),
        )
        .await;
    assert_eq!(count, json!(1));
}
