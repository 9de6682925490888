//! Choosing the store: a bad or unreachable one stops the start with one line naming the
//! setting; a shared store that goes away makes calls answer 503 `storage_unavailable`, and the
//! node serves again by itself when it is back.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

#[path = "../../storage/tests/support/postgres.rs"]
mod postgres;
mod support;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Http, Server, demo_config, demo_with};

const SECRET: &str = "the-store-test-secret";

/// `revenant serve` with `args`, expected to stop at start: its exit code and stderr.
fn refused(
    config: &Path,
    data: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("REVENANT_CLUSTER_SECRET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_store_setting_names_itself() {
    let data = tempfile::tempdir().unwrap();
    let (code, stderr) = refused(&demo_config(), data.path(), &["--store", "mysql://x"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--store (or REVENANT_STORE)"), "{stderr}");
    assert!(stderr.contains("`mysql://x` is not a store"), "{stderr}");

    let (_dir, config) = demo_with("store: sqlite");
    let (code, stderr) = refused(&config, data.path(), &[], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("revenant.yaml:1:8: `store`: `sqlite` is not a store"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_store_stops_the_start_with_one_line() {
    let data = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://postgres:hunter2@127.0.0.1:{}/revenant",
        postgres::free_port()
    );
    let (code, stderr) = refused(
        &demo_config(),
        data.path(),
        &["--store", &url],
        &[("REVENANT_CLUSTER_SECRET", SECRET)],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(
        line.contains("store `postgres://postgres@127.0.0.1:") && line.contains("cannot open it"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("hunter2"),
        "the password is not printed: {stderr}"
    );

    // A shared store needs the cluster's secret.
    let (code, stderr) = refused(&demo_config(), data.path(), &["--store", &url], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cluster.secret"), "{stderr}");

    // FoundationDB needs a build with its client.
    if !cfg!(feature = "foundationdb") {
        let (code, stderr) = refused(
            &demo_config(),
            data.path(),
            &["--store", "foundationdb"],
            &[],
        );
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("--features foundationdb"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_answer_503_while_the_store_is_gone_and_resume_when_it_is_back() {
    let Some(pg) = postgres::Postgres::start() else {
        return;
    };
    let (_dir, config) = demo_with("cluster:\n  lease_ms: 1000\n");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_node(
        &config,
        data.path(),
        &[
            "--store",
            &pg.url,
            "--node-id",
            "solo",
            "--cluster-listen",
            "127.0.0.1:0",
        ],
        &[("REVENANT_CLUSTER_SECRET", SECRET)],
    );
    let http = Http::new();
    let add = |n: usize| {
        let (http, url) = (http.clone(), server.url.clone());
        async move {
            http.request_with(
                "POST",
                &format!("{url}/user/s/activities"),
                Some(json!({"kind": "k", "detail": format!("d{n}")})),
                &[("idempotency-key", &format!("call-{n}"))],
            )
            .await
        }
    };
    assert_eq!(add(1).await.unwrap(), (200, json!(1)));

    pg.stop();
    let start = Instant::now();
    let answer = loop {
        match add(2).await {
            Ok((503, body)) => break body,
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "still {other:?} with the store gone"
            ),
        }
    };
    assert_eq!(answer["code"], "storage_unavailable", "{answer}");

    pg.serve();
    let start = Instant::now();
    loop {
        match add(2).await {
            Ok((200, count)) => {
                assert_eq!(count, json!(2));
                break;
            }
            other => assert!(
                start.elapsed() < Duration::from_secs(60),
                "still {other:?} with the store back"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let count = http.get(&format!("{}/user/s/count", server.url)).await;
    assert_eq!(count, json!(2), "each call once");
}
