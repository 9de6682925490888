//! The route language end to end: query and header placeholders (in the worker name too), and
//! a route-level status for `result::err`, checked against the export's type at load.

mod support;

use serde_json::json;
use support::{Http, Server, project, refused};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_and_header_placeholders_select_the_worker_and_fill_arguments() {
    let (dir, config) = project(
        "  - method: POST
    path: /activities
    component: user-activity
    worker: tenant-{header.x-tenant}
    call: add-activity
    args: [\"{query.kind}\", \"{body.detail}\"]
  - method: GET
    path: /activities
    component: user-activity
    worker: tenant-{header.x-tenant}
    call: activities
",
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let http = Http::new();
    let url = format!("{}/activities", server.url);
    let (status, body) = http
        .request_with(
            "POST",
            &format!("{url}?kind=walk%20fast"),
            Some(json!({"detail": "d"})),
            &[("x-tenant", "t1")],
        )
        .await
        .unwrap();
    assert_eq!((status, body), (200, json!(1)));
    let (_, list) = http
        .request_with("GET", &url, None, &[("x-tenant", "t1")])
        .await
        .unwrap();
    assert_eq!(list[0]["kind"], "walk fast");
    let (_, other) = http
        .request_with("GET", &url, None, &[("x-tenant", "t2")])
        .await
        .unwrap();
    assert_eq!(other, json!([]), "another header, another worker");

    let (status, body) = http
        .request_with(
            "POST",
            &url,
            Some(json!({"detail": "d"})),
            &[("x-tenant", "t1")],
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("query.kind: missing")),
        "{body}"
    );
    let (status, body) = http
        .request(
            "POST",
            &format!("{url}?kind=k"),
            Some(json!({"detail": "d"})),
        )
        .await
        .unwrap();
    assert_eq!(
        (status, body["message"].as_str()),
        (400, Some("header.x-tenant: missing")),
        "{body}"
    );
}

#[test]
fn error_status_needs_an_export_that_returns_a_result() {
    let (dir, config) = project(
        "  - method: GET
    path: /user/{id}/count
    component: user-activity
    worker: \"{id}\"
    call: count
    error_status: 404
",
    );
    let (code, stderr, _) = refused("check", dir.path(), &config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains(&format!("{}:9:19: route GET /user/{{id}}/count: `error_status` needs an export returning a result", config.display())), "{stderr}");
}
