//! The load tester's numbers against a server with a known, injected delay: 10 ms per request,
//! and a 1 s stall every 4 s. The median must be the 10 ms; the open model's p99 must show the
//! stalls, which the closed model hides (coordinated omission: its few connections simply
//! wait out each stall and send nothing meanwhile).

mod support;

use revenant_loadtest::{RunOptions, Scenario, run};
use std::time::Duration;
use support::delay_server;

fn scenario(model: &str) -> Scenario {
    Scenario::parse(
        "delay.yaml",
        &format!(
            "name: delay
users: {{count: 100}}
steps: [{{path: /}}]
load: {model}
warmup_s: 1
duration_s: 8
"
        ),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_p99_includes_the_stalls_that_the_closed_model_hides() {
    let url = delay_server(
        Duration::from_millis(10),
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let options = RunOptions {
        url: Some(url),
        progress: false,
    };
    let open = run(&scenario("{model: open, rate: 200}"), &options)
        .await
        .unwrap();
    let closed = run(&scenario("{model: closed, virtual_users: 4}"), &options)
        .await
        .unwrap();
    println!("open:\n{open}\nclosed:\n{closed}");
    for (name, r) in [("open", &open), ("closed", &closed)] {
        assert!(r.errors.is_empty(), "{name}: {r}");
        // The injected delay is a floor; the scheduler and two shared cores add a little.
        assert!(
            (10.0..25.0).contains(&r.latency.p50_ms),
            "{name}: p50 {} ms, expected about 10",
            r.latency.p50_ms
        );
    }
    // 8 measured seconds hold two stalls: a quarter of the open model's arrivals meet one, so
    // its p99 is most of a second.
    assert!(
        open.latency.p99_ms > 500.0,
        "open p99 {} ms",
        open.latency.p99_ms
    );
    // The closed model sent about one request per connection per stall, out of hundreds.
    assert!(
        closed.latency.p99_ms < 100.0,
        "closed p99 {} ms",
        closed.latency.p99_ms
    );
    assert!(
        closed.latency.max_ms > 500.0,
        "the closed model did meet the stalls"
    );
    // The open model kept its schedule: offered ≈ 200/s, and what it could not start on time is
    // reported rather than silently dropped.
    assert!((180.0..220.0).contains(&open.offered_rate), "{open}");
}
