//! `Idempotency-Key`: a repeated call returns the first call's result and the export runs once:
//! for sequential repeats, for concurrent ones, and after kill -9 and restart.

mod support;

use serde_json::{Value as Json, json};
use support::{Http, Server, demo_config};

async fn add(http: &Http, url: &str, key: &str, detail: &str) -> (u16, Json) {
    http.request_with(
        "POST",
        &format!("{url}/user/idem/activities"),
        Some(json!({"kind": "k", "detail": detail})),
        &[("idempotency-key", key)],
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_key_returns_the_stored_result_and_runs_once() {
    let data = tempfile::tempdir().unwrap();
    let config = demo_config();
    let http = Http::new();
    let server = Server::start(&config, data.path());
    let url = server.url.clone();

    assert_eq!(add(&http, &url, "k1", "first").await, (200, json!(1)));
    assert_eq!(add(&http, &url, "k1", "first again").await, (200, json!(1)));
    assert_eq!(add(&http, &url, "k2", "second").await, (200, json!(2)));

    // Ten concurrent calls with one key: the first runs, the others wait for it and get its result.
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move { add(&http, &url, "k3", &format!("concurrent {i}")).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), (200, json!(3)));
    }
    assert_eq!(http.get(&format!("{url}/user/idem/count")).await, json!(3));

    server.kill9();
    let server = Server::start(&config, data.path());
    let url = server.url.clone();
    assert_eq!(
        add(&http, &url, "k1", "after restart").await,
        (200, json!(1))
    );
    assert_eq!(
        add(&http, &url, "k3", "after restart").await,
        (200, json!(3))
    );
    let list = http.get(&format!("{url}/user/idem/activities")).await;
    let details: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["detail"].as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 3, "{details:?}");
    assert_eq!(&details[..2], &["first", "second"]);
    assert_eq!(add(&http, &url, "k4", "new").await, (200, json!(4)));

    let (status, body) = add(&http, &url, "", "empty key").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_argument")),
        "{body}"
    );
}
