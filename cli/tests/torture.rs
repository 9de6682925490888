//! Crash torture: the per-user counter through the real server at a fixed rate while the server
//! is SIGKILLed at random moments and restarted, clients retrying each increment with its
//! idempotency key until it is acknowledged. Afterwards, per user: every acknowledged increment
//! is in the worker's list, the counter equals the increments sent, no two increments with
//! different keys were acknowledged with the same count, and the counts acknowledged are
//! exactly 1..=n. The same after one more kill. Recovery time per restart (exec to the first
//! answer) is printed.
//!
//! `REVENANT_TORTURE_KILLS` sets the number of kills (20 by default, what CI runs);
//! `bench/torture.sh` runs it longer and reports recovery p50/p99.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use std::time::{Duration, Instant};
use support::counter::{CALL_DEADLINE, Load, verify};
use support::{Http, Server, demo_config};

const USERS: usize = 16;

fn kills() -> usize {
    std::env::var("REVENANT_TORTURE_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_increments_survive_random_kills() {
    let data = tempfile::tempdir().unwrap();
    let config = demo_config();
    let (c, d) = (config.clone(), data.path().to_path_buf());
    let server = tokio::task::spawn_blocking(move || Server::start(&c, &d))
        .await
        .unwrap();
    let load = Load::start(USERS, &server.url);

    let mut server = Some(server);
    let mut recoveries = Vec::new();
    let http = Http::new();
    for _ in 0..kills() {
        // A random moment: somewhere in the next 0.1 to 0.6 s of load.
        tokio::time::sleep(Duration::from_millis(100 + fastrand::u64(0..500))).await;
        server.take().unwrap().kill9();
        let began = Instant::now();
        let (c, d) = (config.clone(), data.path().to_path_buf());
        let next = tokio::task::spawn_blocking(move || Server::start(&c, &d))
            .await
            .unwrap();
        load.point_at(&next.url);
        // Recovered: the first durable call answered.
        loop {
            let answer = http
                .request("GET", &format!("{}/user/t0/count", next.url), None)
                .await;
            if matches!(answer, Ok((200, _))) {
                break;
            }
            assert!(began.elapsed() < CALL_DEADLINE, "no answer after restart");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        recoveries.push(began.elapsed());
        server = Some(next);
    }
    let acked = load.stop().await;
    let current = server.take().unwrap();
    let calls = verify(&current.url, &acked).await;
    // And once more after a last kill, from the log alone.
    current.kill9();
    let last = Server::start(&config, data.path());
    assert_eq!(verify(&last.url, &acked).await, calls);

    recoveries.sort();
    eprintln!(
        "TORTURE kills={} calls={calls} recovery_p50_ms={} recovery_p99_ms={} recovery_max_ms={}",
        recoveries.len(),
        percentile(&recoveries, 0.5).as_millis(),
        percentile(&recoveries, 0.99).as_millis(),
        recoveries.last().unwrap().as_millis(),
    );
    assert!(
        calls > kills(),
        "the load ran between the kills: {calls} calls"
    );
}
