//! One user's state grows the way the demo's users' does: 8,000 activities, read back whole
//! (about 930 KB of JSON, more than one oplog entry may hold), the same after kill -9. The list
//! is read through a read-only route, so its result is never written to the log.

mod support;

use serde_json::json;
use support::{Http, Server, demo_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_thousand_activities_read_back_whole_before_and_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(&demo_config(), data.path());
    let http = Http::new();
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
    let list: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 8_000);
    assert!(
        first.len() > 90_000,
        "the list is larger than one oplog entry"
    );

    server.kill9();
    let server = Server::start(&demo_config(), data.path());
    let url = format!("{}/user/big/activities", server.url);
    let (status, _, again) = http.exchange("GET", &url, Vec::new(), &[]).await.unwrap();
    assert_eq!(status, 200);
    assert!(again == first, "byte-identical after kill -9 and recovery");
}
