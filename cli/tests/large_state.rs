//! One user's state grows the way the demo's users' does: 8,000 activities, read back whole
//! (about 930 KB of JSON, more than one backend value), the same after kill -9. Reading that list
//! costs the log almost nothing: through the demo's read-only route nothing at all, and through
//! a recorded route a digest of the result, not the list (the admin API's worker status counts
//! the log's bytes as the store holds them). An idempotent call retried after a restart still
//! answers its first result, and a 100 KB body is a call like any other.

mod support;

use serde_json::{Value as Json, json};
use support::{Http, Server, demo_with};

/// The demo, plus the list on a recorded (not read-only) route.
fn config() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, config) = demo_with("");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "  - method: GET\n    path: /user/{user-id}/activities/recorded\n    \
         component: user-activity\n    worker: user-{user-id}\n    call: activities\n",
    );
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

async fn log_bytes(http: &Http, server: &Server) -> u64 {
    let admin = server.admin.as_ref().unwrap();
    let (status, body) = http
        .request(
            "GET",
            &format!("{admin}/workers/user-activity/user-big"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["log_bytes"]
        .as_u64()
        .expect("the status counts the log's bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_thousand_activities_read_back_whole_cost_the_log_little_and_survive_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let (_dir, config) = config();
    let server = Server::start_with_admin(&config, data.path());
    let http = Http::new().with_admin(&server);
    let url = format!("{}/user/big/activities", server.url);
    for n in 1..=8_000u64 {
        let detail = format!("activity number {n} with a little text to make it realistic");
        let count = http
            .post(&url, json!({"kind": "run", "detail": detail}))
            .await;
        assert_eq!(count, json!(n));
    }
    let (status, _, first) = http.exchange("GET", &url, Vec::new(), &[]).await.unwrap();
    assert_eq!(
        status,
        200,
        "{}",
        String::from_utf8_lossy(&first[..first.len().min(300)])
    );
    let list: Json = serde_json::from_slice(&first).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 8_000);
    assert!(first.len() > 100_000, "the list is larger than one value");

    // 100 reads through the read-only route write nothing; 100 through a recorded route write
    // a small entry each, not the list.
    let before = log_bytes(&http, &server).await;
    for _ in 0..100 {
        let (status, _, again) = http.exchange("GET", &url, Vec::new(), &[]).await.unwrap();
        assert!(status == 200 && again == first);
    }
    assert_eq!(log_bytes(&http, &server).await, before, "read-only");
    let recorded = format!("{url}/recorded");
    for _ in 0..100 {
        let (status, _, again) = http
            .exchange("GET", &recorded, Vec::new(), &[])
            .await
            .unwrap();
        assert!(status == 200 && again == first);
    }
    let after = log_bytes(&http, &server).await;
    eprintln!(
        "log: {before} bytes after 8,000 activities; 100 recorded GETs of the {}-byte list \
         added {} bytes ({} per GET)",
        first.len(),
        after - before,
        (after - before) / 100
    );
    assert!(
        after - before < 100_000,
        "100 recorded GETs added {} bytes",
        after - before
    );

    // An idempotent call, and a body of 100 KB (past one backend value, within the bound).
    let key = [("idempotency-key", "the-last-one")];
    let body = json!({"kind": "note", "detail": "x".repeat(100_000)});
    let (status, answer) = http
        .request_with("POST", &url, Some(body.clone()), &key)
        .await
        .unwrap();
    assert_eq!((status, answer), (200, json!(8_001)));
    let (_, _, listed) = http.exchange("GET", &url, Vec::new(), &[]).await.unwrap();

    server.kill9();
    let server = Server::start_with_admin(&config, data.path());
    let url = format!("{}/user/big/activities", server.url);
    let (status, _, again) = http.exchange("GET", &url, Vec::new(), &[]).await.unwrap();
    assert_eq!(status, 200);
    assert!(again == listed, "byte-identical after kill -9 and recovery");
    // The retry after the restart answers the first call's result and adds nothing.
    let (status, answer) = http
        .request_with("POST", &url, Some(body), &key)
        .await
        .unwrap();
    assert_eq!((status, answer), (200, json!(8_001)));
    let count = http.get(&format!("{}/user/big/count", server.url)).await;
    assert_eq!(count, json!(8_001));

    // A body past the gateway's bound (1 MiB) is a client error, not an outage.
    let huge = json!({"kind": "note", "detail": "x".repeat(2 * 1024 * 1024)});
    let (status, answer) = http.request("POST", &url, Some(huge)).await.unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (413, Some("body_too_large"))
    );
}
