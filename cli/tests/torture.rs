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

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use support::{Http, Server, demo_config};

const USERS: usize = 16;
/// Each user's client sends one increment per interval (about 400 calls a second in all).
const INTERVAL: Duration = Duration::from_millis(40);
/// How long one increment may take, retries across restarts included, before the run fails.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

fn kills() -> usize {
    std::env::var("REVENANT_TORTURE_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// What one user's client had acknowledged: key → the count the reply carried.
type Acked = BTreeMap<String, u64>;

/// Sends increments for `user` until `stop`, each retried with its key until acknowledged.
async fn client(
    user: usize,
    url: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) {
    let http = Http::new();
    let mut pace = tokio::time::interval(INTERVAL);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        pace.tick().await;
        // The `;` ends the key, so that no key is a prefix of another in the list's text.
        let key = format!("u{user}-k{i};");
        let began = Instant::now();
        let count = loop {
            let base = url.read().unwrap().clone();
            let answer = http
                .request_with(
                    "POST",
                    &format!("{base}/user/t{user}/activities"),
                    Some(json!({"kind": "inc", "detail": key})),
                    &[("idempotency-key", &key)],
                )
                .await;
            match answer {
                Ok((200, count)) => break count.as_u64().expect("a count"),
                // A refused connection, a reset, 503 while starting: the server is restarting.
                Ok((status, body)) if status >= 500 => {
                    let _ = body;
                }
                Ok((status, body)) => panic!("{key}: {status} {body}"),
                Err(_) => {}
            }
            assert!(
                began.elapsed() < CALL_DEADLINE,
                "{key} was not acknowledged within {CALL_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        acked.lock().unwrap().insert(key, count);
        i += 1;
    }
}

/// Every invariant, per user, against the server at `url`.
async fn verify(url: &str, acked: &[Arc<Mutex<Acked>>]) -> usize {
    let http = Http::new();
    let mut total = 0;
    for (user, acked) in acked.iter().enumerate() {
        let acked = acked.lock().unwrap().clone();
        let n = acked.len() as u64;
        total += acked.len();
        let mut counts: Vec<u64> = acked.values().copied().collect();
        counts.sort();
        assert_eq!(
            counts,
            (1..=n).collect::<Vec<_>>(),
            "t{user}: each acknowledged increment has a count of its own, 1 to {n}"
        );
        let (status, count) = http
            .request("GET", &format!("{url}/user/t{user}/count"), None)
            .await
            .unwrap();
        assert_eq!((status, count), (200, json!(n)), "t{user}'s counter");
        let (status, list) = http
            .request("GET", &format!("{url}/user/t{user}/activities"), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let text = list.to_string();
        assert_eq!(list.as_array().unwrap().len() as u64, n, "t{user}'s list");
        for key in acked.keys() {
            assert_eq!(text.matches(key.as_str()).count(), 1, "t{user}: {key} once");
        }
    }
    total
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
    let url = Arc::new(RwLock::new(server.url.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<Mutex<Acked>>> = (0..USERS).map(|_| Default::default()).collect();
    let clients: Vec<_> = (0..USERS)
        .map(|u| tokio::spawn(client(u, url.clone(), stop.clone(), acked[u].clone())))
        .collect();

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
        *url.write().unwrap() = next.url.clone();
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
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
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
