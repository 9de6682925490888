//! The per-user counter scenario of the crash tests: each user's client sends increments at a
//! fixed pace, each retried with its idempotency key (across restarts) until acknowledged, and
//! [`verify`] checks every invariant a user relies on afterwards.

use super::Http;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Each user's client sends one increment per interval (with 16 users, about 400 calls a second).
pub const INTERVAL: Duration = Duration::from_millis(40);
/// How long one increment may take, retries across restarts included, before the run fails.
pub const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// What one user's client had acknowledged: key → the count the reply carried.
pub type Acked = BTreeMap<String, u64>;

/// The clients of `users` users (`t0`, `t1`, ...), running until [`Load::stop`].
pub struct Load {
    /// The servers to send to: each call goes to one, a retry to the next.
    urls: Arc<RwLock<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acked: Vec<Arc<Mutex<Acked>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(users: usize, url: &str) -> Self {
        Self::start_all(users, &[url.to_string()])
    }

    /// The clients, sending to several servers (the nodes of a cluster).
    pub fn start_all(users: usize, urls: &[String]) -> Self {
        let urls = Arc::new(RwLock::new(urls.to_vec()));
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Vec<Arc<Mutex<Acked>>> = (0..users).map(|_| Default::default()).collect();
        let tasks = (0..users)
            .map(|u| tokio::spawn(client(u, urls.clone(), stop.clone(), acked[u].clone())))
            .collect();
        Self {
            urls,
            stop,
            acked,
            tasks,
        }
    }

    /// Sends the calls (retries included) to the server at `url` from now on.
    pub fn point_at(&self, url: &str) {
        self.point_at_all(&[url.to_string()]);
    }

    /// Sends the calls to these servers from now on.
    pub fn point_at_all(&self, urls: &[String]) {
        *self.urls.write().unwrap() = urls.to_vec();
    }

    /// How many increments have been acknowledged so far, over all users.
    pub fn acknowledged(&self) -> usize {
        self.acked.iter().map(|a| a.lock().unwrap().len()).sum()
    }

    /// Waits (polling, up to `deadline`) until `n` more increments than now are acknowledged.
    pub async fn until_more(&self, n: usize, deadline: Duration) {
        let target = self.acknowledged() + n;
        let began = Instant::now();
        while self.acknowledged() < target {
            assert!(
                began.elapsed() < deadline,
                "{} of {target} increments acknowledged after {deadline:?}",
                self.acknowledged()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the clients once each has its call in hand acknowledged; what they saw acknowledged.
    pub async fn stop(self) -> Vec<Acked> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.acked
            .iter()
            .map(|a| a.lock().unwrap().clone())
            .collect()
    }
}

/// Sends increments for `user` until `stop`, each retried with its key until acknowledged.
async fn client(
    user: usize,
    urls: Arc<RwLock<Vec<String>>>,
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
        let mut attempt = 0;
        let count = loop {
            let base = {
                let urls = urls.read().unwrap();
                urls[(user + attempt) % urls.len()].clone()
            };
            attempt += 1;
            let answer = http
                .request_with(
                    "POST",
                    &format!("{base}/user/t{user}/activities"),
                    Some(json!({"kind": "inc", "detail": key})),
                    &[("idempotency-key", &key)],
                )
                .await;
            let last = match answer {
                Ok((200, count)) => break count.as_u64().expect("a count"),
                // A refused connection, a reset, 503 while starting: the server is restarting.
                Ok((status, body)) if status >= 500 => format!("{status} {body} from {base}"),
                Ok((status, body)) => panic!("{key}: {status} {body}"),
                Err(e) => format!("{e} from {base}"),
            };
            assert!(
                began.elapsed() < CALL_DEADLINE,
                "{key} was not acknowledged within {CALL_DEADLINE:?} ({attempt} attempts; the \
                 last: {last})"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        acked.lock().unwrap().insert(key, count);
        i += 1;
    }
}

/// Every invariant, per user, against the server at `url`: the counts acknowledged are exactly
/// 1..=n (no two keys share one), the counter is n, and each key is in the list once. Returns
/// the number of acknowledged increments.
pub async fn verify(url: &str, acked: &[Acked]) -> usize {
    let http = Http::new();
    let mut total = 0;
    for (user, acked) in acked.iter().enumerate() {
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
