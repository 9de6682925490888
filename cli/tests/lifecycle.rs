//! Worker lifecycle through the admin API: interrupt a running call, refuse calls while
//! interrupted (also after kill -9 and restart), resume, list by status, delete.

mod support;

use serde_json::{Value as Json, json};
use std::time::Duration;
use support::{Http, Server, eventually, workspace};

fn stress_config() -> std::path::PathBuf {
    let component = workspace().join("target/wasm32-wasip2/guest/stress.wasm");
    assert!(
        component.exists(),
        "{} is missing: run scripts/test.sh",
        component.display()
    );
    // A long deadline, so that only the interrupt can stop `spin`.
    let dir = std::env::temp_dir().join(format!("revenant-lifecycle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(workspace().join("examples/stress/revenant.yaml"))
        .unwrap()
        .replace(
            "../../target/wasm32-wasip2/guest/stress.wasm",
            component.to_str().unwrap(),
        )
        .replace(
            "invocation_timeout_ms: 500",
            "invocation_timeout_ms: 600000",
        );
    let path = dir.join("revenant.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn admin(http: &Http, method: &str, url: &str) -> (u16, Json) {
    http.request(method, url, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_resume_list_and_delete() {
    let config = stress_config();
    let data = tempfile::tempdir().unwrap();
    let http = Http::new();
    let server = Server::start_with_admin(&config, data.path());
    let http = http.with_admin(&server);
    let (url, adm) = (server.url.clone(), server.admin.clone().unwrap());

    assert_eq!(
        http.post(&format!("{url}/stress/a/ping"), json!(null))
            .await,
        json!(1)
    );
    let spin = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            http.request("POST", &format!("{url}/stress/a/spin"), None)
                .await
        })
    };
    let status_url = format!("{adm}/workers/stress/a");
    let mut running = false;
    eventually("worker a to be running", Duration::from_secs(30), || {
        let (http, status_url) = (http.clone(), status_url.clone());
        running = futures_running(http, status_url);
        running
    })
    .await;
    let (status, body) = admin(&http, "POST", &format!("{adm}/workers/stress/a/interrupt")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("interrupted")),
        "{body}"
    );
    let (status, body) = spin.await.unwrap().unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("worker_interrupted")),
        "{body}"
    );
    let (status, body) = http
        .request("POST", &format!("{url}/stress/a/ping"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("worker_interrupted")),
        "{body}"
    );

    // Interrupted survives kill -9.
    server.kill9();
    let server = Server::start_with_admin(&config, data.path());
    let http = http.with_admin(&server);
    let (url, adm) = (server.url.clone(), server.admin.clone().unwrap());
    let (_, body) = admin(&http, "GET", &format!("{adm}/workers/stress/a")).await;
    assert_eq!(body["status"], "interrupted", "{body}");
    assert_eq!(
        http.post(&format!("{url}/stress/b/ping"), json!(null))
            .await,
        json!(1)
    );
    let (_, listed) = admin(
        &http,
        "GET",
        &format!("{adm}/workers/stress?status=interrupted"),
    )
    .await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a"], "{listed}");

    let (status, body) = admin(&http, "POST", &format!("{adm}/workers/stress/a/resume")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("idle")),
        "{body}"
    );
    // The interrupted call was rolled back: this is the worker's second ping.
    assert_eq!(
        http.post(&format!("{url}/stress/a/ping"), json!(null))
            .await,
        json!(2)
    );

    let (status, _) = admin(&http, "DELETE", &format!("{adm}/workers/stress/a")).await;
    assert_eq!(status, 200);
    let (status, body) = admin(&http, "GET", &format!("{adm}/workers/stress/a")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("worker_not_found")),
        "{body}"
    );
    assert_eq!(
        http.post(&format!("{url}/stress/a/ping"), json!(null))
            .await,
        json!(1),
        "a new worker"
    );
    let (status, body) = admin(&http, "GET", &format!("{adm}/workers/stress?status=bogus")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_argument")),
        "{body}"
    );
}

/// Blocks on one status request (the poll loop's check must be synchronous).
fn futures_running(http: Http, url: String) -> bool {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        handle.block_on(async move {
            let (_, body) = http.request("GET", &url, None).await.unwrap();
            body["status"] == "running"
        })
    })
}

/// A guest that calls `wasi:cli/exit` has exited for good: recorded, refused after, also after
/// a restart; other workers carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_that_exits_stays_exited() {
    let config = stress_config();
    let data = tempfile::tempdir().unwrap();
    let http = Http::new();
    let server = Server::start_with_admin(&config, data.path());
    let http = http.with_admin(&server);
    let url = server.url.clone();
    assert_eq!(
        http.post(&format!("{url}/stress/q/ping"), json!(null))
            .await,
        json!(1)
    );
    let (status, body) = http
        .request("POST", &format!("{url}/stress/q/quit/0"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("worker_exited")),
        "{body}"
    );
    let (status, body) = http
        .request("POST", &format!("{url}/stress/q/ping"), None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (410, Some("worker_exited")),
        "{body}"
    );

    server.kill9();
    let server = Server::start_with_admin(&config, data.path());
    let http = http.with_admin(&server);
    let (_, body) = admin(
        &http,
        "GET",
        &format!("{}/workers/stress/q", server.admin.clone().unwrap()),
    )
    .await;
    assert_eq!(body["status"], "exited", "{body}");
    let (status, _) = http
        .request("POST", &format!("{}/stress/q/ping", server.url), None)
        .await
        .unwrap();
    assert_eq!(status, 410);
    assert_eq!(
        http.post(&format!("{}/stress/other/ping", server.url), json!(null))
            .await,
        json!(1)
    );
}
