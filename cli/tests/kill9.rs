//! The real binary, SIGKILLed and restarted on the same data directory.

mod support;

use serde_json::{Value as Json, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::{Http, Server, demo_config, eventually};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activities_come_back_exactly_after_kill_9() {
    let data = tempfile::tempdir().unwrap();
    let config = demo_config();
    let http = Http::new();
    let server = Server::start(&config, data.path());
    let users = [("alice", 3), ("bob", 1), ("carol", 4)];
    let mut before = HashMap::new();
    for (user, n) in users {
        for i in 0..n {
            let count = http
                .post(
                    &format!("{}/user/{user}/activities", server.url),
                    json!({"kind": format!("kind-{i}"), "detail": format!("{user} did {i}")}),
                )
                .await;
            assert_eq!(count, json!(i + 1));
        }
        let list = http
            .get(&format!("{}/user/{user}/activities", server.url))
            .await;
        assert_eq!(list.as_array().unwrap().len(), n);
        before.insert(user, list);
    }
    server.kill9();

    let server = Server::start(&config, data.path());
    for (user, n) in users {
        let after = http
            .get(&format!("{}/user/{user}/activities", server.url))
            .await;
        // Same order, same recorded timestamps and random ids: the state was replayed from the
        // oplog, not recomputed (recomputing would draw new ids and read a later clock).
        assert_eq!(after, before[user], "activities of {user} after restart");
        let count = http.get(&format!("{}/user/{user}/count", server.url)).await;
        assert_eq!(count, json!(n));
    }
    // And the workers carry on from there.
    let count = http
        .post(
            &format!("{}/user/bob/activities", server.url),
            json!({"kind": "k", "detail": "d"}),
        )
        .await;
    assert_eq!(count, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_call_survives_kill_9_under_load() {
    const USERS: usize = 100;
    const CALLS_PER_USER: usize = 20;
    const KILL_AFTER_ACKS: usize = USERS * CALLS_PER_USER / 2;
    let data = tempfile::tempdir().unwrap();
    let config = demo_config();
    let http = Http::new();
    let server = Server::start(&config, data.path());
    let url = server.url.clone();

    // Bounds the client's open connections; every call is still in flight at once per user.
    let limit = Arc::new(Semaphore::new(256));
    let acked = Arc::new(AtomicUsize::new(0));
    let mut calls = Vec::new();
    for user in 0..USERS {
        for call in 0..CALLS_PER_USER {
            let (http, url, limit, acked) =
                (http.clone(), url.clone(), limit.clone(), acked.clone());
            calls.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await.unwrap();
                let detail = format!("u{user}-c{call}");
                let answer = http
                    .request(
                        "POST",
                        &format!("{url}/user/u{user}/activities"),
                        Some(json!({"kind": "load", "detail": detail})),
                    )
                    .await;
                match answer {
                    Ok((200, _)) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        Some((user, detail))
                    }
                    _ => None,
                }
            }));
        }
    }
    eventually(
        "half the calls to be acknowledged",
        Duration::from_secs(120),
        || acked.load(Ordering::SeqCst) >= KILL_AFTER_ACKS,
    )
    .await;
    server.kill9();

    let mut acknowledged: HashMap<usize, HashSet<String>> = HashMap::new();
    for call in calls {
        if let Some((user, detail)) = call.await.unwrap() {
            acknowledged.entry(user).or_default().insert(detail);
        }
    }
    let total_acked: usize = acknowledged.values().map(HashSet::len).sum();
    eprintln!(
        "acknowledged before the kill: {total_acked} of {}",
        USERS * CALLS_PER_USER
    );
    assert!(total_acked >= KILL_AFTER_ACKS);
    assert!(
        total_acked < USERS * CALLS_PER_USER,
        "the kill should land while calls are in flight"
    );

    let server = Server::start(&config, data.path());
    for user in 0..USERS {
        let list = http
            .get(&format!("{}/user/u{user}/activities", server.url))
            .await;
        let details: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["detail"].as_str().unwrap().to_string())
            .collect();
        let unique: HashSet<&String> = details.iter().collect();
        assert_eq!(
            unique.len(),
            details.len(),
            "user {user} has a duplicated activity"
        );
        for d in acknowledged.get(&user).into_iter().flatten() {
            assert!(
                unique.contains(d),
                "user {user}: acknowledged call {d} was lost"
            );
        }
        let count = http
            .get(&format!("{}/user/u{user}/count", server.url))
            .await;
        assert_eq!(
            count,
            Json::from(details.len()),
            "user {user}: count disagrees with the list"
        );
    }
}
