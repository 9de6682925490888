//! The OpenAPI 3.1 document: generated from the routes and the component's WIT types, printed
//! by `revenant openapi`, served at `GET /openapi.json`, and valid against the OpenAPI 3.1
//! schema according to openapi-spec-validator (installed by scripts/test.sh).

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::{Value as Json, json};
use std::path::PathBuf;
use std::process::Command;
use support::{Http, Server, project_with, workspace};

fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("REVENANT_OPENAPI_VALIDATOR") {
        return path.into();
    }
    let path = workspace().join("target/tools/openapi/bin/openapi-spec-validator");
    assert!(
        path.exists(),
        "{} is missing: run the tests through scripts/test.sh, which installs it",
        path.display()
    );
    path
}

const HEAD: &str = "auth:
  users:
    keys:
      - {kid: hs-1, alg: HS256, secret: \"a-test-secret-of-at-least-32-bytes!!\"}
";

const ROUTES: &str = "  - method: POST
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: add-activity
    args: [\"{body.kind}\", \"{body.detail.text}\"]
    auth: users
    require: [\"{user-id} == jwt.sub\"]
  - method: GET
    path: /user/{user-id}/activities
    component: user-activity
    worker: user-{user-id}
    call: activities
  - method: POST
    path: /files/{*rest}
    component: user-activity
    worker: tenant-{header.x-tenant}
    call: add-activity
    args: [\"{rest}\", \"{query.note}\"]
    cors:
      allow_origins: [\"*\"]
    response:
      status: 201
      headers:
        x-count: \"{result}\"
  - method: GET
    path: /files
    component: user-activity
    worker: tenant-{header.x-tenant}
    call: activities
  - method: POST
    path: /user/{user-id}/imports
    component: user-activity
    worker: user-{user-id}
    call: import-activity
    args: [\"{body.url}\"]
    error_status: 502
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_valid_openapi_31_and_served_as_printed() {
    let (dir, config) = project_with(HEAD, ROUTES);
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .arg("openapi")
        .arg("--config")
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Json = serde_json::from_slice(&output.stdout).unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &output.stdout).unwrap();

    let check = Command::new(validator())
        .args(["--schema", "3.1"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // What the document says, spot-checked against the routes and the WIT types.
    assert_eq!(printed["openapi"], "3.1.0");
    let add = &printed["paths"]["/user/{user-id}/activities"]["post"];
    assert_eq!(add["security"], json!([{"users": []}]));
    let body = &add["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(body["properties"]["kind"]["type"], "string");
    assert_eq!(
        body["properties"]["detail"]["properties"]["text"]["type"],
        "string"
    );
    assert_eq!(
        add["responses"]["200"]["content"]["application/json"]["schema"]["format"],
        "uint64"
    );
    let list = &printed["paths"]["/user/{user-id}/activities"]["get"]["responses"]["200"];
    let item = &list["content"]["application/json"]["schema"]["items"];
    assert_eq!(
        item["required"],
        json!(["id", "kind", "detail", "timestamp-ms"])
    );
    // A path parameter states what the gateway refuses, and the worker name's bound.
    let user_id = &add["parameters"][0];
    assert_eq!(user_id["name"], "user-id");
    let schema = &user_id["schema"];
    assert_eq!(schema["minLength"], 1);
    assert_eq!(schema["maxLength"], 256 - "user-".len(), "{schema}");
    assert_eq!(schema["not"], json!({"enum": [".", ".."]}));
    assert!(
        schema["pattern"].as_str().unwrap().contains('/'),
        "{schema}"
    );
    let files = &printed["paths"]["/files/{rest}"]["post"]["parameters"];
    let names: Vec<(&str, &str)> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["in"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert!(names.contains(&("path", "rest")), "{names:?}");
    assert!(names.contains(&("query", "note")), "{names:?}");
    assert!(names.contains(&("header", "x-tenant")), "{names:?}");
    let created = &printed["paths"]["/files/{rest}"]["post"]["responses"]["201"];
    assert_eq!(created["headers"]["x-count"]["schema"]["type"], "string");
    let import = &printed["paths"]["/user/{user-id}/imports"]["post"]["responses"];
    assert_eq!(
        import["502"]["content"]["application/json"]["schema"]["properties"]["details"]["type"],
        "string"
    );

    // The running server serves the same document, and the catch-all takes the rest of the path.
    let server = Server::start(&config, &dir.path().join("data"));
    let http = Http::new();
    assert_eq!(
        http.get(&format!("{}/openapi.json", server.url)).await,
        printed
    );
    let (status, _) = http
        .request_with(
            "POST",
            &format!("{}/files/a/b%20c/d?note=n", server.url),
            None,
            &[("x-tenant", "t")],
        )
        .await
        .unwrap();
    assert_eq!(status, 201);
    let (_, listed) = http
        .request_with(
            "GET",
            &format!("{}/files", server.url),
            None,
            &[("x-tenant", "t")],
        )
        .await
        .unwrap();
    assert_eq!(listed[0]["kind"], "a/b c/d");
    assert_eq!(listed[0]["detail"], "n");
}
