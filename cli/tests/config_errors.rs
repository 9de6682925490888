//! A bad project file stops the server before it starts, naming file, line and column.

mod support;

use std::process::Command;

#[test]
fn a_bad_route_is_reported_with_file_line_and_column_and_nothing_serves() {
    let dir = tempfile::tempdir().unwrap();
    let component = support::workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    let config = dir.path().join("revenant.yaml");
    std::fs::write(
        &config,
        format!(
            "components:\n  user-activity: {}\nroutes:\n  - method: POST\n    path: /user/{{user-id}}/activities\n    component: user-activity\n    worker: user-{{userid}}\n    call: add-activity\n    args: [\"{{body.kind}}\", \"{{body.detail}}\"]\n",
            component.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    let expected = format!(
        "{}:7:13: unknown placeholder `{{userid}}`",
        config.display()
    );
    assert!(
        stderr.contains(&expected),
        "expected `{expected}` in:\n{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    assert!(
        !data.exists(),
        "a project that cannot serve must not touch its data"
    );
}

#[test]
fn a_route_whose_arguments_cannot_type_check_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let component = support::workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    let config = dir.path().join("revenant.yaml");
    std::fs::write(
        &config,
        format!(
            "components:\n  user-activity: {}\nroutes:\n  - method: POST\n    path: /user/{{user-id}}/activities\n    component: user-activity\n    worker: user-{{user-id}}\n    call: add-activity\n    args: [\"{{body.kind}}\"]\n",
            component.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(["check", "--config"])
        .arg(&config)
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("{}:4:13:", config.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("takes 2 argument(s) (kind: string, detail: string), the route gives 1"),
        "{stderr}"
    );
}
