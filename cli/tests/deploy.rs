//! Deploys without restart (issue 5, item 5): while a load of requests runs, API definitions
//! and a component version are deployed through the admin API; no request of the load fails,
//! requests after each swap see the new routes, a bad definition is refused whole while the
//! old routes keep serving, and everything deployed survives kill -9.

mod support;

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{Http, Server, eventually, project, workspace};

const BASE_ROUTES: &str = "  - method: POST
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
";

fn counts_at(prefix: &str) -> String {
    format!(
        "routes:
  - method: GET
    path: /{prefix}/user/{{user-id}}/count
    component: user-activity
    worker: user-{{user-id}}
    call: count
"
    )
}

const STRESS: &str = "routes:
  - method: POST
    path: /stress/{id}/ping
    component: stress
    worker: s-{id}
    call: ping
";

async fn status(http: &Http, method: &str, url: &str) -> u16 {
    http.raw(method, url, Vec::new()).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_swap_routes_under_load_without_failing_a_request() {
    let (dir, config) = project(BASE_ROUTES);
    let data = dir.path().join("data");
    let server = Server::start_with_admin(&config, &data);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    let http = Arc::new(Http::new().with_admin(&server));

    // The load: 4 clients adding activities to their own user, counting acknowledgements.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (http, url, stop, failures, progress) = (
            http.clone(),
            url.clone(),
            stop.clone(),
            failures.clone(),
            progress.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let answer = http
                    .request(
                        "POST",
                        &format!("{url}/user/load-{c}/activities"),
                        Some(json!({"kind": "k", "detail": "d"})),
                    )
                    .await;
                match answer {
                    Ok((200, _)) => {
                        acked += 1;
                        progress.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        eprintln!("load request failed: {other:?}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            acked
        }));
    }
    eventually("the load to run", Duration::from_secs(30), || {
        progress.load(Ordering::Relaxed) >= 20
    })
    .await;
    let before_deploys = progress.load(Ordering::Relaxed);

    // A bad definition is refused whole, with located problems; nothing changes.
    let bad = format!(
        "{}  - method: GET\n    path: /x\n    component: nope\n    worker: w\n    call: count\n",
        counts_at("v2")
    );
    let (code, body) = http.put(&format!("{admin}/api-definitions/v2"), bad).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_definition")),
        "{body}"
    );
    assert_eq!(body["details"][0]["line"], 9, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("v2.yaml:9:16: unknown component `nope`"),
        "{body}"
    );
    assert_eq!(
        status(&http, "GET", &format!("{url}/v2/user/load-0/count")).await,
        404
    );
    // So is one that overlaps the project file's routes.
    let overlapping = BASE_ROUTES
        .replace("  - method: POST", "  - method: GET")
        .replace(
            "call: add-activity\n    args: [\"{body.kind}\", \"{body.detail}\"]",
            "call: count",
        );
    let (code, body) = http
        .put(
            &format!("{admin}/api-definitions/dup"),
            format!("routes:\n{overlapping}"),
        )
        .await;
    assert_eq!(code, 400, "{body}");

    // A good one serves as soon as the deploy answers.
    let (code, body) = http
        .put(&format!("{admin}/api-definitions/v2"), counts_at("v2"))
        .await;
    assert_eq!((code, body["version"].clone()), (200, json!(1)), "{body}");
    assert_eq!(
        status(&http, "GET", &format!("{url}/v2/user/load-0/count")).await,
        200
    );

    // A component version uploaded, then routed to.
    let wasm = std::fs::read(workspace().join("target/wasm32-wasip2/guest/stress.wasm")).unwrap();
    let (code, body) = http
        .put(&format!("{admin}/components/stress"), wasm.clone())
        .await;
    assert_eq!((code, body["version"].clone()), (200, json!(1)), "{body}");
    let (code, body) = http
        .put(&format!("{admin}/components/stress"), b"not wasm".to_vec())
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("invalid_component")),
        "{body}"
    );
    let (code, body) = http
        .put(&format!("{admin}/api-definitions/stress"), STRESS)
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        http.post(&format!("{url}/stress/a/ping"), json!(null))
            .await,
        json!(1)
    );

    // A new version of a definition replaces its routes.
    let (code, body) = http
        .put(&format!("{admin}/api-definitions/v2"), counts_at("v3"))
        .await;
    assert_eq!((code, body["version"].clone()), (200, json!(2)), "{body}");
    assert_eq!(
        status(&http, "GET", &format!("{url}/v2/user/load-0/count")).await,
        404
    );
    assert_eq!(
        status(&http, "GET", &format!("{url}/v3/user/load-0/count")).await,
        200
    );
    let listed = http.get(&format!("{admin}/api-definitions")).await;
    assert_eq!(
        listed,
        json!([{"name": "stress", "version": 1, "routes": 1}, {"name": "v2", "version": 2, "routes": 1}])
    );
    let openapi = http.get(&format!("{url}/openapi.json")).await;
    assert!(
        openapi["paths"]["/v3/user/{user-id}/count"].is_object(),
        "{openapi}"
    );

    assert!(
        progress.load(Ordering::Relaxed) > before_deploys,
        "the load ran while deploying"
    );
    stop.store(true, Ordering::Relaxed);
    let mut acked = Vec::new();
    for c in clients {
        acked.push(c.await.unwrap());
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "a load request failed during deploys"
    );
    for (c, n) in acked.iter().enumerate() {
        assert!(*n > 0, "client {c} made no request");
        let count = http.get(&format!("{url}/v3/user/load-{c}/count")).await;
        assert_eq!(count, json!(n), "client {c}");
    }

    // Deployed definitions and the uploaded component survive kill -9.
    server.kill9();
    let server = Server::start_with_admin(&config, &data);
    let (url, admin) = (server.url.clone(), server.admin.clone().unwrap());
    let http = http.with_admin(&server);
    assert_eq!(
        http.get(&format!("{url}/v3/user/load-0/count")).await,
        json!(acked[0])
    );
    assert_eq!(
        http.post(&format!("{url}/stress/a/ping"), json!(null))
            .await,
        json!(2)
    );
    let (code, _) = http
        .raw("DELETE", &format!("{admin}/api-definitions/v2"), Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        status(&http, "GET", &format!("{url}/v3/user/load-0/count")).await,
        404
    );
    assert_eq!(
        status(&http, "GET", &format!("{url}/user/load-0/count")).await,
        200
    );
}
