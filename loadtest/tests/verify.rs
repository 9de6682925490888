//! Per-user verification against servers whose faults are known: an honest one passes; a lost
//! update, a duplicate and a leak into another user's state each fail the run, naming the user.

mod support;

use revenant_loadtest::verify::Problem;
use revenant_loadtest::{RunOptions, Scenario, run};
use support::{Fault, counter_server};

fn scenario(model: &str) -> Scenario {
    let text = format!(
        "name: counters
users: {{count: 20, key: \"u{{index}}\"}}
steps:
  - name: add
    method: POST
    path: /c/{{user}}
    body: '{{\"tag\": \"{{tag}}\"}}'
    counts: true
load: {model}
duration_s: 1
verify:
  count: {{path: \"/c/{{user}}\"}}
  items: {{path: \"/c/{{user}}/items\", tag: /tag}}
"
    );
    Scenario::parse("counters.yaml", &text).unwrap()
}

async fn run_against(fault: Fault, model: &str) -> revenant_loadtest::Report {
    let url = counter_server(fault);
    let options = RunOptions {
        url: Some(url),
        progress: false,
    };
    run(&scenario(model), &options).await.unwrap()
}

const CLOSED: &str = "{model: closed, virtual_users: 8}";
const OPEN: &str = "{model: open, rate: 400}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_server_passes_in_both_models() {
    for model in [CLOSED, OPEN] {
        let report = run_against(Fault::None, model).await;
        assert!(report.passed, "{report}");
        assert!(report.ok > 100, "{report}");
        assert_eq!(report.requests, report.ok, "{report}");
        assert_eq!(report.latency.count, report.ok);
        assert_eq!(report.verification.users_checked, 20);
        assert_eq!(
            report.verification.acknowledged, report.ok,
            "every acknowledged call is in a ledger (no warm-up)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_fails_the_run_and_names_the_user() {
    let report = run_against(Fault::Lose("u7", 3), CLOSED).await;
    assert!(!report.passed);
    let users: Vec<&str> = report
        .verification
        .problems
        .iter()
        .map(Problem::user)
        .collect();
    assert!(users.iter().all(|u| *u == "u7"), "{report}");
    assert!(
        report.verification.problems.iter().any(
            |p| matches!(p, Problem::Lost { detail, .. } if detail.contains("the server counts"))
        ),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_fails_the_run_and_names_the_user() {
    let report = run_against(Fault::Duplicate("u3", 2), CLOSED).await;
    assert!(!report.passed);
    assert!(
        report
            .verification
            .problems
            .iter()
            .all(|p| matches!(p, Problem::Duplicated { user, .. } if user == "u3")),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_another_users_state_is_a_leak_naming_both() {
    let report = run_against(Fault::Leak("u1", "u2"), CLOSED).await;
    assert!(!report.passed);
    let problems = &report.verification.problems;
    assert!(
        problems.iter().any(
            |p| matches!(p, Problem::Leaked { user, from, .. } if user == "u2" && from == "u1")
        ),
        "{report}"
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Lost { user, .. } if user == "u1")),
        "{report}"
    );
}
