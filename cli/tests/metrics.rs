//! Health and metrics of a real server: `/healthz` and `/readyz` on both listeners, and after a
//! load `/metrics`, parsed as Prometheus would, with every series the operator relies on and
//! values that agree with the calls made (then again after a kill -9 and replay).

// Tests read the clock (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::json;
use std::time::Duration;
use support::{Http, Server, demo_with};

const USERS: usize = 6;
const CALLS_PER_USER: usize = 10;

/// One sample of a scrape: its name, labels and value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

async fn scrape(http: &Http, admin: &str) -> Vec<Sample> {
    let (status, body) = http
        .raw("GET", &format!("{admin}/metrics"), "")
        .await
        .expect("GET /metrics answered");
    assert_eq!(status, 200, "{body:?}");
    let text = String::from_utf8(body.to_vec()).expect("UTF-8");
    let (rest, families) =
        nom_openmetrics::parser::prometheus(&text).expect("Prometheus text format");
    assert!(rest.trim().is_empty(), "unparsed: {rest}");
    families
        .into_iter()
        .flat_map(|f| f.samples)
        .map(|s| Sample {
            name: s.name().to_string(),
            labels: s
                .labels()
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect(),
            value: s.number(),
        })
        .collect()
}

/// The value of the one sample named `name` whose labels include `labels` (a histogram's
/// `_count`, `_sum` and `_bucket` are samples of their own).
fn value(scrape: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(n, w)| n == k && w == v))
        })
        .map(|s| s.value)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{name} {labels:?}: {} samples; those named so have {:?}",
        found.len(),
        scrape
            .iter()
            .filter(|s| s.name == name)
            .map(|s| &s.labels)
            .collect::<Vec<_>>()
    );
    found[0]
}

fn histogram_count(scrape: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    value(scrape, &format!("{name}_count"), labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_and_metrics_agree_with_the_load() {
    let (dir, config) = demo_with("limits:\n  snapshot_every_invocations: 5\n");
    let data = dir.path().join("data");
    let server = Server::start_with_admin(&config, &data);
    let http = Http::new().with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());

    for base in [&url, &admin] {
        let (status, body) = http
            .request("GET", &format!("{base}/healthz"), None)
            .await
            .unwrap();
        assert_eq!((status, body), (200, json!({"status": "ok"})), "{base}");
    }
    // Ready once start-up recovery has run (it looks for interrupted invocations first).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = http
            .request("GET", &format!("{url}/readyz"), None)
            .await
            .unwrap();
        if status == 200 {
            assert_eq!(body["status"], "ready");
            assert_eq!(body["checks"]["store"], "ok");
            break;
        }
        assert_eq!(
            (status, &body["code"]),
            (503, &json!("not_ready")),
            "{body}"
        );
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        tokio::task::yield_now().await;
    }
    let (status, _) = http
        .request("GET", &format!("{admin}/readyz"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);

    // The load: every user's calls in turn, one connection.
    for n in 1..=CALLS_PER_USER {
        for u in 0..USERS {
            let answer = http
                .post(
                    &format!("{url}/user/{u}/activities"),
                    json!({"kind": "k", "detail": format!("{n}")}),
                )
                .await;
            assert_eq!(answer, json!(n));
        }
    }
    for u in 0..USERS {
        assert_eq!(
            http.get(&format!("{url}/user/{u}/count")).await,
            json!(CALLS_PER_USER)
        );
    }
    let (status, _) = http
        .request("GET", &format!("{url}/no/such/route"), None)
        .await
        .unwrap();
    assert_eq!(status, 404);

    let calls = (USERS * CALLS_PER_USER) as f64;
    let users = USERS as f64;
    let m = scrape(&http, &admin).await;
    let post = [
        ("route", "POST /user/{user-id}/activities"),
        ("status", "200"),
    ];
    assert_eq!(value(&m, "revenant_http_requests_total", &post), calls);
    let count = [("route", "GET /user/{user-id}/count"), ("status", "200")];
    assert_eq!(value(&m, "revenant_http_requests_total", &count), users);
    let missing = [("route", "(no route)"), ("status", "404")];
    assert_eq!(value(&m, "revenant_http_requests_total", &missing), 1.0);
    let route = [("route", "POST /user/{user-id}/activities")];
    assert_eq!(
        histogram_count(&m, "revenant_http_request_seconds", &route),
        calls
    );
    let durable = [
        ("component", "user-activity"),
        ("function", "revenant:user-activity/api.add-activity"),
        ("kind", "durable"),
    ];
    let ok = [durable.as_slice(), &[("outcome", "ok")]].concat();
    assert_eq!(value(&m, "revenant_invocations_total", &ok), calls);
    let read = [
        ("function", "revenant:user-activity/api.count"),
        ("kind", "read"),
        ("outcome", "ok"),
    ];
    assert_eq!(value(&m, "revenant_invocations_total", &read), users);
    assert_eq!(
        histogram_count(&m, "revenant_invocation_seconds", &durable),
        calls
    );
    assert_eq!(value(&m, "revenant_workers_in_memory", &[]), users);
    assert_eq!(value(&m, "revenant_workers_known", &[]), users);
    assert_eq!(value(&m, "revenant_activations_total", &[]), users);
    // New workers: nothing in their logs to replay.
    assert_eq!(value(&m, "revenant_replays_total", &[]), 0.0);
    assert_eq!(
        histogram_count(&m, "revenant_activation_seconds", &[]),
        users
    );
    // Every call, durable or read, joined its worker's mailbox once.
    assert_eq!(
        histogram_count(&m, "revenant_mailbox_depth", &[]),
        calls + users
    );
    // One append per call, one per snapshot; each flushed by some group commit.
    let appends = value(&m, "revenant_oplog_appends_total", &[]);
    let snapshots = value(&m, "revenant_snapshots_total", &[]);
    assert!(
        snapshots >= users,
        "a snapshot after each user's 5th call: {snapshots}"
    );
    assert!(snapshots <= 2.0 * users, "{snapshots}");
    assert!(appends >= calls + snapshots, "{appends} appends");
    assert!(value(&m, "revenant_oplog_append_bytes_total", &[]) > appends * 50.0);
    let commits = histogram_count(&m, "revenant_commit_seconds", &[]);
    assert!(commits >= 1.0 && commits <= appends, "{commits} commits");
    assert!(value(&m, "revenant_commit_batch_appends_sum", &[]) >= appends);

    // After a kill -9 the workers come back from their logs: activations replay them.
    server.kill9();
    let server = Server::start_with_admin(&config, &data);
    let http = Http::new().with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    for u in 0..USERS {
        assert_eq!(
            http.get(&format!("{url}/user/{u}/count")).await,
            json!(CALLS_PER_USER)
        );
    }
    let m = scrape(&http, &admin).await;
    assert_eq!(value(&m, "revenant_activations_total", &[]), users);
    assert_eq!(value(&m, "revenant_replays_total", &[]), users);
    // From each user's latest snapshot on: at least the engine entry written after it.
    let replayed = value(&m, "revenant_replayed_entries_total", &[]);
    assert!(replayed >= users, "{replayed} entries replayed");
    assert_eq!(histogram_count(&m, "revenant_replay_seconds", &[]), users);
    assert_eq!(value(&m, "revenant_workers_known", &[]), users);
    // Series without a sample yet are still listed, at zero.
    assert_eq!(value(&m, "revenant_snapshots_total", &[]), 0.0);
}
