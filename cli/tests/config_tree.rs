//! The configuration tree through the binary: `revenant config default` read back as a project
//! file is the tree of a file that sets nothing; a variable overrides the file and a flag
//! overrides both; an unknown key is refused where it was set.

mod support;

use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;
use support::workspace;

fn revenant(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn show(config: &Path, flags: &[&str], env: &[(&str, &str)]) -> Json {
    let mut args = vec!["config", "show", "--config", config.to_str().unwrap()];
    args.extend(flags);
    let (code, stdout, stderr) = revenant(&args, env);
    assert_eq!(code, Some(0), "{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn the_default_tree_round_trips_and_layers_override_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let component = workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    let components = format!("components:\n  user-activity: {}\n", component.display());

    let (code, printed, stderr) = revenant(&["config", "default"], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let from_default = dir.path().join("default.yaml");
    std::fs::write(
        &from_default,
        printed.replace("components: {}\n", &components),
    )
    .unwrap();
    let minimal = dir.path().join("minimal.yaml");
    std::fs::write(&minimal, &components).unwrap();
    assert_eq!(show(&from_default, &[], &[]), show(&minimal, &[], &[]));
    // And it is a project that checks.
    let (code, _, stderr) = revenant(&["check", "--config", from_default.to_str().unwrap()], &[]);
    assert_eq!(code, Some(0), "{stderr}");

    let project = dir.path().join("revenant.yaml");
    std::fs::write(
        &project,
        format!("{components}listen: 127.0.0.1:9000\nlimits:\n  invocation_timeout_ms: 1000\n"),
    )
    .unwrap();
    let tree = show(&project, &[], &[]);
    assert_eq!(tree["limits"]["invocation_timeout_ms"], 1000);
    assert_eq!(
        tree["limits"]["guest_memory_mb"], 256,
        "the default under the file"
    );
    let env = [
        ("REVENANT_LIMITS__INVOCATION_TIMEOUT_MS", "2000"),
        ("REVENANT_LISTEN", "127.0.0.1:9001"),
    ];
    let tree = show(&project, &[], &env);
    assert_eq!(tree["limits"]["invocation_timeout_ms"], 2000);
    assert_eq!(tree["listen"], "127.0.0.1:9001");
    let flags = [
        "--set",
        "limits.invocation_timeout_ms=3000",
        "--listen",
        "127.0.0.1:9002",
    ];
    let tree = show(&project, &flags, &env);
    assert_eq!(tree["limits"]["invocation_timeout_ms"], 3000);
    assert_eq!(tree["listen"], "127.0.0.1:9002");

    // The server reads the same tree: a variable's bad value stops it, naming the variable,
    // and a flag over it lets it through.
    let bad = [("REVENANT_LIMITS__GUEST_MEMORY_MB", "99999")];
    let path = project.to_str().unwrap();
    let (code, _, stderr) = revenant(&["check", "--config", path], &bad);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable REVENANT_LIMITS__GUEST_MEMORY_MB")
            && stderr.contains("guest_memory_mb"),
        "{stderr}"
    );
    let (code, _, stderr) = revenant(
        &[
            "check",
            "--config",
            path,
            "--set",
            "limits.guest_memory_mb=64",
        ],
        &bad,
    );
    assert_eq!(code, Some(0), "{stderr}");

    // Unknown keys, where they were set.
    std::fs::write(
        &project,
        format!("{components}limits:\n  invocation_timeout: 1000\n"),
    )
    .unwrap();
    let (code, _, stderr) = revenant(&["check", "--config", path], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:4:3:")) && stderr.contains("invocation_timeout"),
        "{stderr}"
    );
    std::fs::write(&project, &components).unwrap();
    let (code, _, stderr) = revenant(
        &["check", "--config", path],
        &[("REVENANT_CLUSTER__SHARD", "4")],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("environment variable REVENANT_CLUSTER__SHARD") && stderr.contains("shard"),
        "{stderr}"
    );
}

/// `telemetry:`: a bad endpoint, header or ratio is refused where it was written; export
/// headers (credentials, as often as not) are shown only as set.
#[test]
fn telemetry_settings_are_checked_and_their_headers_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let component = workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    let project = dir.path().join("revenant.yaml");
    let path = project.to_str().unwrap();
    let write = |telemetry: &str| {
        std::fs::write(
            &project,
            format!(
                "components:\n  user-activity: {}\ntelemetry:\n{telemetry}",
                component.display()
            ),
        )
        .unwrap()
    };
    write("  otlp_endpoint: http://127.0.0.1:4318\n  headers:\n    authorization: Bearer s3cret\n");
    let (code, _, stderr) = revenant(&["check", "--config", path], &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let tree = show(&project, &[], &[]);
    assert_eq!(tree["telemetry"]["headers"]["authorization"], "(set)");
    assert_eq!(tree["telemetry"]["otlp_endpoint"], "http://127.0.0.1:4318");
    assert!(!tree.to_string().contains("s3cret"));
    for (telemetry, at, what) in [
        (
            "  otlp_endpoint: ftp://collector\n",
            "4:18:",
            "otlp_endpoint",
        ),
        (
            "  otlp_endpoint: http://c:4318\n  sample_ratio: 1.5\n",
            "5:17:",
            "sample_ratio",
        ),
        (
            "  otlp_endpoint: http://c:4318\n  headers:\n    \"bad name\": x\n",
            "6:17:",
            "telemetry.headers",
        ),
    ] {
        write(telemetry);
        let (code, _, stderr) = revenant(&["check", "--config", path], &[]);
        assert_eq!(code, Some(2), "{telemetry}: {stderr}");
        assert!(
            stderr.contains(&format!("{path}:{at}")) && stderr.contains(what),
            "{telemetry}: {stderr}"
        );
    }
}
