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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_and_a_response_status_and_headers_from_the_result() {
    let (dir, config) = project(
        "  - method: POST
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail}\"]
    cors:
      allow_origins: [\"https://app.test\"]
      allow_headers: [authorization, idempotency-key]
      expose_headers: [location, x-count]
      max_age_seconds: 300
    response:
      status: 201
      headers:
        location: /user/{user-id}/activities/{result}
        x-count: \"{result}\"
  - method: GET
    path: /user/{user-id}/count
    component: user-activity
    worker: user-{user-id}
    call: count
",
    );
    let server = Server::start(&config, &dir.path().join("data"));
    let http = Http::new();
    let url = format!("{}/user/ann/activities", server.url);
    let body = json!({"kind": "k", "detail": "d"}).to_string();

    let (status, headers, _) = http
        .exchange(
            "POST",
            &url,
            body.clone(),
            &[("origin", "https://app.test")],
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    assert_eq!(headers["location"], "/user/ann/activities/1");
    assert_eq!(headers["x-count"], "1");
    assert_eq!(headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(
        headers["access-control-expose-headers"],
        "location, x-count"
    );

    // Preflight: allowed origin and headers get 204 with the policy; others 403.
    let preflight = |origin: &'static str, request_headers: &'static str| {
        let (http, url) = (&http, url.clone());
        async move {
            http.exchange(
                "OPTIONS",
                &url,
                Vec::new(),
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", request_headers),
                ],
            )
            .await
            .unwrap()
        }
    };
    let (status, headers, _) = preflight("https://app.test", "Authorization, Content-Type").await;
    assert_eq!(status, 204);
    assert_eq!(headers["access-control-allow-methods"], "POST");
    assert_eq!(headers["access-control-max-age"], "300");
    let (status, _, body) = preflight("https://evil.test", "").await;
    assert_eq!(status, 403, "{body:?}");
    let (status, _, _) = preflight("https://app.test", "x-secret").await;
    assert_eq!(status, 403);
    // Another origin's actual request gets no CORS headers (the browser withholds the answer);
    // a route without `cors` never has them.
    let (_, headers, _) = http
        .exchange("POST", &url, body, &[("origin", "https://evil.test")])
        .await
        .unwrap();
    assert!(!headers.contains_key("access-control-allow-origin"));
    let (_, headers, _) = http
        .exchange(
            "GET",
            &format!("{}/user/ann/count", server.url),
            Vec::new(),
            &[("origin", "https://app.test")],
        )
        .await
        .unwrap();
    assert!(!headers.contains_key("access-control-allow-origin"));
}

#[test]
fn response_mappings_are_checked_against_the_result_type() {
    for (response, expected) in [
        (
            "      headers:\n        x-id: \"{result.id}\"\n",
            "`{result.id}`: `revenant:user-activity/api.add-activity` returns u64, which has no such field",
        ),
        ("      status: \"{result.x}\"\n", "has no such field"),
        ("      status: 99\n", "`status` must be 200 to 599"),
        (
            "      headers:\n        content-type: text/plain\n",
            "cannot set the header `content-type`",
        ),
    ] {
        let (dir, config) = project(&format!(
            "  - method: POST
    path: /user/{{user-id}}/activities
    component: user-activity
    worker: user-{{user-id}}
    call: add-activity
    args: [\"{{body.kind}}\", \"{{body.detail}}\"]
    response:
{response}"
        ));
        let (code, stderr, _) = refused("check", dir.path(), &config);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        assert!(stderr.contains("revenant.yaml:"), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_durable_false_runs_on_a_fresh_instance_and_records_nothing() {
    let (dir, config) = project(
        "  - method: POST
    path: /preview/activities
    component: user-activity
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail}\"]
    durable: false
  - method: GET
    path: /user/{user-id}/count
    component: user-activity
    worker: user-{user-id}
    call: count
",
    );
    let data = dir.path().join("data");
    let server = Server::start(&config, &data);
    let http = Http::new();
    for _ in 0..3 {
        let n = http
            .post(
                &format!("{}/preview/activities", server.url),
                json!({"kind": "k", "detail": "d"}),
            )
            .await;
        assert_eq!(n, json!(1), "each call starts from a fresh instance");
    }
    assert_eq!(
        http.get(&format!("{}/user/x/count", server.url)).await,
        json!(0)
    );

    // A durable route needs a worker; an ephemeral one has none.
    for (routes, expected) in [
        (
            "  - method: GET\n    path: /c\n    component: user-activity\n    call: count\n",
            "a durable route needs `worker`",
        ),
        (
            "  - method: GET\n    path: /c\n    component: user-activity\n    worker: w\n    call: count\n    durable: false\n",
            "has no `worker`",
        ),
    ] {
        let (dir, config) = project(routes);
        let (code, stderr, _) = refused("check", dir.path(), &config);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
}
