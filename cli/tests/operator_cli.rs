//! The operator's CLI against a real server: component deploy, api deploy, worker invoke,
//! worker list, oplog show, worker logs, interrupt, resume, state, fork and delete, each
//! checked through its `--json` output; refusals print one line and exit with their
//! documented code (docs/cli.md).

mod support;

use serde_json::Value as Json;
use std::process::Command;
use support::{Http, Server, demo_with, workspace};

struct Cli {
    admin: String,
    token: String,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Run {
        let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
            .args(args)
            .env("REVENANT_ADMIN", &self.admin)
            .env("REVENANT_ADMIN_TOKEN", &self.token)
            // No project file is needed when the flags say where the API is.
            .env("REVENANT_CONFIG", "/nonexistent/revenant.yaml")
            .output()
            .expect("revenant runs");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// `args --json`, which must succeed; its parsed output.
    fn json(&self, args: &[&str]) -> Json {
        let mut all = args.to_vec();
        all.push("--json");
        let run = self.run(&all);
        assert_eq!(
            run.code,
            Some(0),
            "revenant {}: {}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            panic!(
                "revenant {}: not JSON ({e}): {}",
                args.join(" "),
                run.stdout
            )
        })
    }

    /// `args`, which must fail with `code` and one line on stderr naming `error_code`.
    fn refused(&self, args: &[&str], code: i32, error_code: &str) -> String {
        let run = self.run(args);
        assert_eq!(
            run.code,
            Some(code),
            "revenant {}: {}{}",
            args.join(" "),
            run.stdout,
            run.stderr
        );
        let line = run.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        assert!(
            line.starts_with(&format!("error: {error_code}")),
            "revenant {}: {line}",
            args.join(" ")
        );
        line.to_string()
    }
}

const STRESS_API: &str = "routes:
  - method: POST
    path: /stress/{id}/say/{lines}/{width}
    component: stress
    worker: \"{id}\"
    call: say
    args: [\"{lines}\", \"{width}\"]
";

fn guest_lines(logs: &Json) -> Vec<String> {
    logs["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["stream"].as_str().unwrap(),
                l["line"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_drives_a_server_through_the_cli() {
    let (dir, config) = demo_with("");
    let server = Server::start_with_admin(&config, &dir.path().join("data"));
    let cli = Cli {
        admin: server.admin.clone().unwrap(),
        token: server.admin_token.clone().unwrap(),
    };
    let stress = workspace().join("target/wasm32-wasip2/guest/stress.wasm");
    let stress = stress.to_str().unwrap();

    // component deploy, list, show
    let deployed = cli.json(&["component", "deploy", "stress", stress]);
    assert_eq!(deployed["name"], "stress", "{deployed}");
    assert_eq!(deployed["version"], 1, "{deployed}");
    let listed = cli.json(&["component", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["stress", "user-activity"], "{listed}");
    let shown = cli.json(&["component", "show", "stress"]);
    let say = shown["exports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str().unwrap().ends_with(".say"))
        .unwrap_or_else(|| panic!("say is exported: {shown}"));
    assert_eq!(say["params"][0]["name"], "lines", "{say}");
    assert_eq!(say["params"][0]["type"], "u32", "{say}");
    assert_eq!(say["results"][0], "u64", "{say}");
    let human = cli.run(&["component", "show", "stress"]);
    assert!(
        human.stdout.contains("(lines: u32, width: u32)"),
        "{}",
        human.stdout
    );

    // api deploy, list, show; the route serves at once
    let routes = dir.path().join("stress-api.yaml");
    std::fs::write(&routes, STRESS_API).unwrap();
    let api = cli.json(&["api", "deploy", "stress-api", routes.to_str().unwrap()]);
    assert_eq!(api["name"], "stress-api", "{api}");
    assert_eq!(api["version"], 1, "{api}");
    let apis = cli.json(&["api", "list"]);
    assert!(
        apis.as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "stress-api"),
        "{apis}"
    );
    assert_eq!(
        cli.json(&["api", "show", "stress-api"])["source"],
        STRESS_API
    );
    let http = Http::new();
    let (status, answer) = http
        .request("POST", &format!("{}/stress/s-1/say/2/16", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, answer.clone()), (200, Json::from(1)), "{answer}");

    // worker invoke: arguments are JSON, the result comes back typed
    let invoked = cli.json(&["worker", "invoke", "stress/s-1", "say", "1", "16"]);
    assert_eq!(invoked["result"], 2, "{invoked}");
    let human = cli.run(&["worker", "invoke", "stress/s-1", "ping"]);
    assert_eq!(
        (human.code, human.stdout.trim()),
        (Some(0), "3"),
        "{}",
        human.stderr
    );
    let keyed = [
        "worker",
        "invoke",
        "stress/s-1",
        "ping",
        "--idempotency-key",
        "k-1",
    ];
    assert_eq!(cli.json(&keyed)["result"], 4);
    assert_eq!(
        cli.json(&keyed)["result"],
        4,
        "a repeated key gets the stored outcome"
    );

    // worker list, show
    let workers = cli.json(&["worker", "list", "--component", "stress"]);
    let s1 = workers
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "s-1")
        .unwrap_or_else(|| panic!("s-1 is listed: {workers}"));
    assert_eq!(s1["component"], "stress");
    let last_index = s1["last_index"].as_u64().unwrap();
    let shown = cli.json(&["worker", "show", "stress/s-1"]);
    assert_eq!(shown["last_index"], last_index, "{shown}");
    let everyone = cli.json(&["worker", "list"]);
    assert!(
        everyone
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["name"] == "s-1"),
        "without --component every component's workers: {everyone}"
    );

    // oplog show: decoded entries, paged
    let oplog = cli.json(&["oplog", "show", "stress/s-1", "--limit", "1000"]);
    let entries = oplog["entries"].as_array().unwrap();
    assert_eq!(entries.len() as u64, last_index, "{oplog}");
    assert_eq!(entries[0]["kind"], "create");
    let started: Vec<&Json> = entries
        .iter()
        .filter(|e| e["kind"] == "invocation_started")
        .collect();
    assert_eq!(started.len(), 4, "{oplog}");
    assert!(started[0]["function"].as_str().unwrap().ends_with(".say"));
    assert_eq!(started[1]["args"], serde_json::json!([1, 16]), "{oplog}");
    assert_eq!(started[3]["idempotency_key"], "k-1");
    let outputs: Vec<&Json> = entries
        .iter()
        .filter(|e| e["kind"] == "guest_output")
        .collect();
    assert!(!outputs.is_empty(), "{oplog}");
    let completed: Vec<u64> = entries
        .iter()
        .filter(|e| e["kind"] == "invocation_completed")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(completed.len(), 4);
    assert_eq!(
        entries
            .iter()
            .find(|e| e["idempotency_key"] == "k-1" && e["kind"] == "invocation_completed")
            .unwrap()["result"],
        4
    );
    let page = cli.json(&["oplog", "show", "stress/s-1", "--from", "2", "--limit", "3"]);
    assert_eq!(page["entries"].as_array().unwrap().len(), 3);
    assert_eq!(page["entries"][0]["index"], 2);
    assert_eq!(page["next"], 5);
    let human = cli.run(&["oplog", "show", "stress/s-1"]);
    assert!(
        human.stdout.contains("invocation_started") && human.stdout.contains("guest_output"),
        "{}",
        human.stdout
    );

    // worker logs: each line once, in order
    let logs = cli.json(&["worker", "logs", "stress/s-1"]);
    assert_eq!(
        guest_lines(&logs),
        [
            "stdout call 1 line 1 xx",
            "stdout call 1 line 2 xx",
            "stderr call 1 done",
            "stdout call 2 line 1 xx",
            "stderr call 2 done",
        ],
        "{logs}"
    );

    // worker logs --follow: the lines so far, then each new one as the worker writes it
    let mut follower = std::process::Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args(["worker", "logs", "stress/s-1", "--follow", "--json"])
        .env("REVENANT_ADMIN", &cli.admin)
        .env("REVENANT_ADMIN_TOKEN", &cli.token)
        .env("REVENANT_CONFIG", "/nonexistent/revenant.yaml")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let next_line = || {
        let line = seen
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a line within 20 s");
        let line: Json = serde_json::from_str(&line).unwrap();
        format!(
            "{} {}",
            line["stream"].as_str().unwrap(),
            line["line"].as_str().unwrap()
        )
    };
    for expected in guest_lines(&logs) {
        assert_eq!(next_line(), expected);
    }
    cli.json(&["worker", "invoke", "stress/s-1", "say", "1", "16"]);
    assert_eq!(next_line(), "stdout call 5 line 1 xx");
    assert_eq!(next_line(), "stderr call 5 done");
    follower.kill().unwrap();
    follower.wait().unwrap();

    // worker state: the state after the first call, in a scratch instance
    let at = completed[0].to_string();
    let then = cli.json(&["worker", "state", "stress/s-1", "--at", &at, "ping"]);
    assert_eq!(then["result"], 2, "ping on the state after call 1: {then}");
    assert_eq!(
        cli.json(&["worker", "show", "stress/s-1"])["last_index"],
        last_index + 4,
        "time travel wrote nothing (the 4 entries are the call made while following)"
    );

    // interrupt, a refused call, resume
    let interrupted = cli.json(&["worker", "interrupt", "stress/s-1"]);
    assert_eq!(interrupted["status"], "interrupted", "{interrupted}");
    cli.refused(
        &["worker", "invoke", "stress/s-1", "ping"],
        3,
        "worker_interrupted",
    );
    let resumed = cli.json(&["worker", "resume", "stress/s-1"]);
    assert_ne!(resumed["status"], "interrupted", "{resumed}");
    assert_eq!(
        cli.json(&["worker", "invoke", "stress/s-1", "ping"])["result"],
        6
    );

    // fork at the second call: it goes on from there, the original from where it is
    let at = completed[1].to_string();
    let forked = cli.json(&["worker", "fork", "stress/s-1", "s-1-fork", "--at", &at]);
    assert_eq!(forked["name"], "s-1-fork", "{forked}");
    assert_eq!(forked["at"], completed[1], "{forked}");
    assert_eq!(
        cli.json(&["worker", "invoke", "stress/s-1-fork", "ping"])["result"],
        3
    );
    assert_eq!(
        cli.json(&["worker", "invoke", "stress/s-1", "ping"])["result"],
        7
    );
    cli.refused(
        &["worker", "fork", "stress/s-1", "s-1-fork"],
        3,
        "worker_exists",
    );

    // delete
    cli.json(&["worker", "delete", "stress/s-1-fork"]);
    cli.refused(
        &["worker", "show", "stress/s-1-fork"],
        3,
        "worker_not_found",
    );

    // api delete
    let deleted = cli.json(&["api", "delete", "stress-api"]);
    assert_eq!(deleted["deployed"], false, "{deleted}");

    // Bad invocations: one line each, with the code an operator can act on.
    let line = cli.refused(
        &["worker", "invoke", "stress/s-1", "say", "many", "12"],
        3,
        "bad_argument",
    );
    assert!(line.contains("lines"), "names the parameter: {line}");
    cli.refused(
        &["worker", "invoke", "stress/s-1", "say", "1"],
        3,
        "bad_argument",
    );
    let line = cli.refused(
        &["worker", "invoke", "stress/s-1", "no-such-export"],
        3,
        "bad_argument",
    );
    assert!(line.contains("it exports"), "lists the exports: {line}");
    cli.refused(
        &["worker", "invoke", "no-such-component/w", "ping"],
        3,
        "bad_argument",
    );
    let run = cli.run(&["worker", "invoke", "s-1", "ping"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("<component>/<worker name>"),
        "{}",
        run.stderr
    );
    let wrong = Cli {
        admin: cli.admin.clone(),
        token: "not-the-token-at-all-not-the-token".into(),
    };
    wrong.refused(&["component", "list"], 3, "invalid_token");
    let nowhere = Cli {
        admin: "http://127.0.0.1:1".into(),
        token: cli.token.clone(),
    };
    let run = nowhere.run(&["component", "list"]);
    assert_eq!(run.code, Some(5), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: cannot reach the admin API"),
        "{}",
        run.stderr
    );
}
