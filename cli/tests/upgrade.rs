//! Uploading a component version while its workers are in memory (issue 10): workers keep
//! answering with their state across (a) a re-upload of the same bytes, (b) a compatible new
//! version — new workers run it; a worker in memory keeps its version until it leaves memory or
//! a call needs an export only the new version has — and (c) a version without a route's export
//! is refused whole, changing nothing.

mod support;

use serde_json::json;
use support::{Http, Server, project, workspace};

const ROUTES: &str = "  - method: POST
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail}\"]
  - method: GET
    path: /user/{user-id}/count
    component: user-activity
    worker: user-{user-id}
    call: count
  - method: GET
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: activities
";

const VERSION_ROUTE: &str = "routes:
  - method: GET
    path: /user/{user-id}/version
    component: user-activity
    worker: user-{user-id}
    call: version
";

async fn add(http: &Http, url: &str, user: &str, n: u64) {
    let got = http
        .post(
            &format!("{url}/user/{user}/activities"),
            json!({"kind": "k", "detail": format!("{n}")}),
        )
        .await;
    assert_eq!(got, json!(n), "{user}: activity {n}");
}

fn wasm(path: &str) -> Vec<u8> {
    let file = workspace().join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/test.sh builds the example variants)",
            file.display()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_in_memory_keep_answering_across_component_uploads() {
    let (dir, config) = project(ROUTES);
    let data = dir.path().join("data");
    let server = Server::start_with_admin(&config, &data);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    let http = Http::new().with_admin(&server);
    for n in 1..=3 {
        add(&http, &url, "warm", n).await;
    }
    let before = http.get(&format!("{url}/user/warm/activities")).await;

    // (a) The very same component again.
    let v1 = wasm("target/wasm32-wasip2/guest/user_activity.wasm");
    let (code, body) = http
        .put(&format!("{admin}/components/user-activity"), v1)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(http.get(&format!("{url}/user/warm/count")).await, json!(3));
    add(&http, &url, "warm", 4).await;

    // (b) A compatible new version, with one more export and a route to it.
    let v2 = wasm("target/variants-v2/wasm32-wasip2/guest/user_activity.wasm");
    let (code, body) = http
        .put(&format!("{admin}/components/user-activity"), v2)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(http.get(&format!("{url}/user/warm/count")).await, json!(4));
    add(&http, &url, "warm", 5).await;
    add(&http, &url, "new", 1).await;
    let (code, body) = http
        .put(&format!("{admin}/api-definitions/about"), VERSION_ROUTE)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http.get(&format!("{url}/user/new/version")).await,
        json!("2")
    );
    // The warm worker's version lacks `version`: it moves to the new one, state and all.
    assert_eq!(
        http.get(&format!("{url}/user/warm/version")).await,
        json!("2")
    );
    let after = http.get(&format!("{url}/user/warm/activities")).await;
    assert_eq!(
        after.as_array().unwrap()[..3],
        before.as_array().unwrap()[..3],
        "the first activities, ids and all"
    );
    assert_eq!(http.get(&format!("{url}/user/warm/count")).await, json!(5));

    // (c) A version without the routes' exports is refused, and nothing changes.
    let stress = wasm("target/wasm32-wasip2/guest/stress.wasm");
    let (code, body) = http
        .put(&format!("{admin}/components/user-activity"), stress)
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("incompatible_component")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("add-activity")
            || body.to_string().contains("add-activity"),
        "the refusal names the missing export: {body}"
    );
    assert_eq!(http.get(&format!("{url}/user/warm/count")).await, json!(5));
    add(&http, &url, "warm", 6).await;
    add(&http, &url, "other", 1).await;
    assert_eq!(
        http.get(&format!("{url}/user/other/version")).await,
        json!("2")
    );

    // Everything survives a restart: the log replays on the newest version.
    server.kill9();
    let server = Server::start(&config, &data);
    assert_eq!(
        http.get(&format!("{}/user/warm/count", server.url)).await,
        json!(6)
    );
}
