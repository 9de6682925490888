//! `revenant loadtest` verifying per-user state end to end: against the real server it passes;
//! against a build whose gateway loses every third update of one user (the test-only cargo
//! feature `fault-injection`, built by scripts/test.sh into target/faulty/) it fails the run
//! and names that user.

mod support;

use std::process::Command;
use support::{Server, demo_config, workspace};

const SCENARIO: &str = "name: activities
users: {count: 20, key: \"u{index}\"}
steps:
  - name: add
    method: POST
    path: /user/{user}/activities
    body: '{\"kind\": \"load\", \"detail\": \"{tag}\"}'
    counts: true
load: {model: closed, virtual_users: 8}
duration_s: 2
verify:
  count: {path: \"/user/{user}/count\"}
  items: {path: \"/user/{user}/activities\", tag: /detail}
";

fn loadtest(url: &str, dir: &std::path::Path) -> (Option<i32>, String, String) {
    let scenario = dir.join("scenario.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(["loadtest", "--quiet", "--url", url, "--scenario"])
        .arg(&scenario)
        .arg("--json")
        .arg(dir.join("report.json"))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_real_server_passes_and_a_lost_update_fails_naming_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&demo_config(), &dir.path().join("honest"));
    let (code, stdout, stderr) = loadtest(&server.url, dir.path());
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("verified 20 users"), "{stdout}");
    assert!(stdout.contains(": 0 problems"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], true);
    assert!(report["verification"]["acknowledged"].as_u64().unwrap() > 20);
    drop(server);

    let faulty = workspace().join("target/faulty/revenant");
    assert!(
        faulty.exists(),
        "{} is missing: scripts/test.sh builds it with --features fault-injection",
        faulty.display()
    );
    let server = Server::start_binary(
        &faulty,
        &demo_config(),
        &dir.path().join("faulty"),
        &[("REVENANT_FAULT_LOSE_UPDATE", "user-u7:3")],
    );
    let (code, stdout, stderr) = loadtest(&server.url, dir.path());
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("user u7: lost update"), "{stdout}");
    assert!(stderr.contains("verification failed"), "{stderr}");
    assert!(stderr.contains("users: u7"), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], false);
    let users: Vec<&str> = report["verification"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user"].as_str().unwrap())
        .collect();
    assert!(
        !users.is_empty() && users.iter().all(|u| *u == "u7"),
        "{users:?}"
    );
}
