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

/// `sequential` with `iterations`: each user in turn, from `first`, and the run ends when the
/// iterations are used up (long before its duration): every user exactly as often as the others,
/// in both load models.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_users_from_first_each_get_their_turn_and_the_run_stops_at_its_iterations() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    for load in [
        "{model: closed, virtual_users: 8, iterations: 150}",
        "{model: open, rate: 1000, iterations: 150}",
    ] {
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let seen = hits.clone();
        let url = support::serve(move |method, path, _body| {
            let seen = seen.clone();
            async move {
                let mut hits = seen.lock().unwrap();
                if method == hyper::Method::POST {
                    *hits.entry(path).or_default() += 1;
                    (200, "{}".to_string())
                } else {
                    (200, hits.get(&path).copied().unwrap_or(0).to_string())
                }
            }
        });
        let text = format!(
            "name: sequential
users: {{count: 50, first: 100, key: \"u{{index}}\", distribution: sequential}}
steps:
  - {{name: add, method: POST, path: '/c/{{user}}', counts: true}}
load: {load}
duration_s: 600
verify:
  count: {{path: '/c/{{user}}'}}
"
        );
        let scenario = Scenario::parse("sequential.yaml", &text).unwrap();
        let options = RunOptions {
            url: Some(url),
            progress: false,
        };
        let report = run(&scenario, &options).await.unwrap();
        assert!(report.passed, "{load}: {report}");
        assert_eq!(report.ok, 150, "{load}: {report}");
        assert!(
            report.measured_s < 600.0,
            "{load}: the run ended with its iterations"
        );
        assert_eq!(report.verification.users_checked, 50);
        if load.contains("open") {
            assert_eq!(report.offered, 150, "{report}");
        }
        let hits = hits.lock().unwrap();
        let expected: HashMap<String, u64> = (100..150).map(|i| (format!("/c/u{i}"), 3)).collect();
        assert_eq!(*hits, expected, "{load}");
    }
}
