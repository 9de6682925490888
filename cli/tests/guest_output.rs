//! What a guest prints during a call: recorded once in its worker's log, shown by the admin
//! API's `/workers/{component}/{worker}/logs`, written once to the server's log with the
//! worker's id, bounded per call, and neither recorded nor logged again when a restart
//! replays the call.

mod support;

use serde_json::{Value as Json, json};
use support::{Http, Server, stress_project};

/// The lines `say(3, 20)` writes in call `n`: three to stdout, one to stderr.
fn said(n: u64) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = (1..=3)
        .map(|i| {
            let line = format!("call {n} line {i} ");
            let pad = "x".repeat(20 - line.len());
            ("stdout".to_string(), format!("{line}{pad}"))
        })
        .collect();
    lines.push(("stderr".into(), format!("call {n} done")));
    lines
}

async fn logs(http: &Http, admin: &str, worker: &str) -> Vec<(String, String)> {
    let body = http
        .get(&format!("{admin}/workers/stress/{worker}/logs"))
        .await;
    assert_eq!(body["next"], Json::Null, "{body}");
    body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["stream"].as_str().unwrap().to_string(),
                l["line"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// How many lines of the server's log are the guest's `line` of `worker`.
fn logged(log: &std::path::Path, worker: &str, line: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("revenant::guest") && l.contains(worker) && l.contains(line))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guests_output_is_recorded_and_logged_once_and_not_again_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let config = stress_project(dir.path());
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let filter = "warn,revenant::guest=info";
    let server = Server::start_logged(&config, &data, &log, filter);
    let http = Http::new().with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());

    for n in 1..=3u64 {
        let answer = http
            .post(&format!("{url}/stress/a/say/3/20"), json!(null))
            .await;
        assert_eq!(answer, json!(n));
    }
    let expected: Vec<_> = (1..=3).flat_map(said).collect();
    assert_eq!(logs(&http, &admin, "a").await, expected);
    for (_, line) in &expected {
        assert_eq!(
            logged(&log, "stress/a", line),
            1,
            "`{line}` in the server's log"
        );
    }

    // Past the bound (64 KiB a call), the rest is counted, and the call still succeeds.
    let answer = http
        .post(&format!("{url}/stress/b/say/2000/100"), json!(null))
        .await;
    assert_eq!(answer, json!(1));
    let b = logs(&http, &admin, "b").await;
    let kept: usize = b
        .iter()
        .filter(|(s, l)| s == "stdout" && !l.starts_with('['))
        .map(|(_, l)| l.len() + 1)
        .sum();
    // The last kept line may be cut short: its newline was not kept.
    assert!((65_536..=65_537).contains(&kept), "{kept} bytes kept");
    let written = 2000 * 101;
    assert!(
        b.contains(&(
            "stdout".into(),
            format!("[{} bytes past the bound were dropped]", written - 65_536)
        )),
        "{:?}",
        &b[b.len() - 3..]
    );
    assert!(b.contains(&(
        "stderr".into(),
        "[12 bytes past the bound were dropped]".into()
    )));

    // After a kill -9 the worker is rebuilt by replaying its three calls: their output is
    // neither recorded again nor logged again.
    server.kill9();
    let server = Server::start_logged(&config, &data, &log, filter);
    let http = Http::new().with_admin(&server);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    let answer = http
        .post(&format!("{url}/stress/a/ping"), json!(null))
        .await;
    assert_eq!(answer, json!(4), "the three calls were replayed");
    assert_eq!(logs(&http, &admin, "a").await, expected);
    for (_, line) in &expected {
        assert_eq!(
            logged(&log, "stress/a", line),
            1,
            "`{line}` after the replay"
        );
    }
    let (status, body) = http
        .request("GET", &format!("{admin}/workers/stress/nobody/logs"), None)
        .await
        .unwrap();
    assert_eq!((status, &body["code"]), (404, &json!("worker_not_found")));
}
