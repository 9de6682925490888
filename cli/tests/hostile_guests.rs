//! Hostile guests, through the real binary: a component written to misbehave (in WAT, built
//! here with the `wat` crate: Rust cannot emit `table.grow`) loops forever, grows its memory
//! and its table until refused, recurses without end, and traps on every call, each on workers
//! of its own, while well-behaved workers of the same component count their calls. Each attack
//! is answered with its own error, the attacked workers answer again afterwards, and every
//! normal call is answered 200 with its exact count. The normal traffic's p99 is printed with
//! and without the attacks (a benchmark figure, not asserted).

// Tests read the clock (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use revenant_runtime::limits::GUEST_TABLE_ELEMENTS_MAX;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Http, Server};

const HOSTILE: &str = r#"
(component
  (core module $m
    (memory 1)
    (table $t 1 funcref)
    (global $calls (mut i64) (i64.const 0))
    (func (export "ping") (result i64)
      (global.set $calls (i64.add (global.get $calls) (i64.const 1)))
      (global.get $calls))
    (func (export "spin") (loop $l (br $l)))
    (func (export "bomb") (result i32)
      (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
      (memory.size))
    (func (export "tables") (result i32)
      (loop $l
        (br_if $l (i32.ne (table.grow $t (ref.null func) (i32.const 1000)) (i32.const -1))))
      (table.size $t))
    (func $deeper (param i32) (result i32)
      (i32.add (call $deeper (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
    (func (export "deep") (result i32) (call $deeper (i32.const 0)))
    (func (export "trap") (unreachable)))
  (core instance $i (instantiate $m))
  (func (export "ping") (result u64) (canon lift (core func $i "ping")))
  (func (export "spin") (canon lift (core func $i "spin")))
  (func (export "bomb") (result u32) (canon lift (core func $i "bomb")))
  (func (export "tables") (result u32) (canon lift (core func $i "tables")))
  (func (export "deep") (result u32) (canon lift (core func $i "deep")))
  (func (export "trap") (canon lift (core func $i "trap"))))
"#;

/// The project: the hostile component, one durable route per export, tight bounds.
fn project(dir: &std::path::Path) -> std::path::PathBuf {
    let component = dir.join("hostile.wasm");
    std::fs::write(
        &component,
        wat::parse_str(HOSTILE).expect("the WAT is valid"),
    )
    .unwrap();
    let routes: String = ["ping", "spin", "bomb", "tables", "deep", "trap"]
        .iter()
        .map(|f| {
            format!(
                "  - method: POST\n    path: /h/{{id}}/{f}\n    component: hostile\n    \
                 worker: \"{{id}}\"\n    call: {f}\n"
            )
        })
        .collect();
    let config = dir.join("revenant.yaml");
    std::fs::write(
        &config,
        format!(
            "components:\n  hostile: {}\nlimits:\n  invocation_timeout_ms: 500\n  \
             guest_memory_mb: 32\nroutes:\n{routes}",
            component.display()
        ),
    )
    .unwrap();
    config
}

const NORMAL_WORKERS: usize = 4;
const NORMAL_CALLS: usize = 150;

/// `NORMAL_CALLS` pings on each normal worker, one after another per worker; their latencies.
async fn normal_traffic(url: &str, round: u64) -> Vec<Duration> {
    support::counted_calls(
        url,
        NORMAL_WORKERS,
        NORMAL_CALLS,
        round,
        |w| format!("/h/normal-{w}/ping"),
        None,
    )
    .await
}

/// Each attack, and the status and code it must be answered with (`tables` is answered with
/// the size its table reached when growth was refused).
const ATTACKS: [(&str, u16, &str); 5] = [
    ("spin", 504, "invocation_timeout"),
    ("bomb", 500, "guest_memory_exceeded"),
    ("tables", 200, ""),
    ("deep", 500, "worker_trap"),
    ("trap", 500, "worker_trap"),
];

/// Checks an attack's answer.
fn answered_as_expected(attack: &str, status: u16, code: &str, answer: (u16, serde_json::Value)) {
    let (s, body) = answer;
    if status == 200 {
        let size = body.as_u64().unwrap_or(u64::MAX);
        assert!(
            s == 200 && size <= GUEST_TABLE_ELEMENTS_MAX as u64,
            "{attack}: {s} {body}: a table no larger than the cap"
        );
    } else {
        assert_eq!(
            (s, body["code"].as_str()),
            (status, Some(code)),
            "{attack}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_guests_are_contained_to_their_own_workers() {
    let dir = tempfile::tempdir().unwrap();
    let config = project(dir.path());
    let server = Server::start(&config, &dir.path().join("data"));
    let http = Http::new();

    // Each attack once on its own, to see its answer.
    for (attack, status, code) in ATTACKS {
        let answer = http
            .request(
                "POST",
                &format!("{}/h/{attack}-0/{attack}", server.url),
                None,
            )
            .await
            .unwrap();
        answered_as_expected(attack, status, code, answer);
    }

    let quiet = normal_traffic(&server.url, 0).await;

    // The same traffic while every attack repeats on workers of its own.
    let stop = Arc::new(AtomicBool::new(false));
    let attackers: Vec<_> = ATTACKS
        .iter()
        .map(|&(attack, status, code)| {
            let (http, url, stop) = (http.clone(), server.url.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let answer = http
                        .request(
                            "POST",
                            &format!("{url}/h/{attack}-{}/{attack}", n % 3),
                            None,
                        )
                        .await
                        .unwrap();
                    answered_as_expected(attack, status, code, answer);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let attacked = normal_traffic(&server.url, 1).await;
    stop.store(true, Ordering::Relaxed);
    let mut attacks = 0;
    for a in attackers {
        attacks += a.await.unwrap();
    }

    // The attacked workers still answer a well-behaved call; a trap kept none of its effects.
    for (attack, _, _) in ATTACKS {
        let (s, body) = http
            .request("POST", &format!("{}/h/{attack}-0/ping", server.url), None)
            .await
            .unwrap();
        assert_eq!(
            (s, body),
            (200, json!(1)),
            "{attack}-0 answers after its attacks"
        );
    }
    eprintln!(
        "HOSTILE GUESTS normal p99 without attack {:.2} ms, during {attacks} attacks {:.2} ms \
         ({} calls each)",
        support::p99_ms(&quiet),
        support::p99_ms(&attacked),
        quiet.len()
    );
}
