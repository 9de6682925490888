//! `loadtest` drives HTTP load at per-key services and checks per-key state afterwards. It speaks
//! HTTP only and knows nothing of Revenant's server crates: it can test any service that keeps
//! state per user.
//!
//! Today: a closed model (N connections, each sending its next request when the previous one is
//! answered), HDR latency histograms, and an optional per-user counter check. The open model,
//! scenario files and reports come with the load-test issue.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Bounds, with their reasons.
pub mod limits {
    /// Concurrent connections: each is a task and a socket on this machine.
    pub const CONNECTIONS_MAX: usize = 4_096;
    /// Users tracked for verification: one counter each.
    pub const USERS_MAX: usize = 1_000_000;
    /// Slowest latency the histograms record; slower answers are clamped to it.
    pub const LATENCY_MAX_US: u64 = 60_000_000;
    /// Largest response body read; the rest of a larger one is an error.
    pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
    /// Longest run.
    pub const DURATION_MAX_SECS: u64 = 3_600;
}

/// One kind of request, with `{user}` (the user's key) and `{n}` (a per-run sequence number)
/// substituted in the path and body.
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    pub method: http::Method,
    pub path: String,
    pub body: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ClosedLoad {
    pub base_url: String,
    pub request: RequestTemplate,
    /// Users are `user-0` .. `user-{users-1}` unless `user_prefix` says otherwise.
    pub users: usize,
    pub user_prefix: String,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// After the run, GET this path for each user and check the counter it answers against what
    /// the run acknowledged (`acked <= counter <= attempted`).
    pub verify_count_path: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    Invalid(String),
    #[error("verification could not run: {0}")]
    Verify(String),
}

/// What a run measured.
#[derive(Debug)]
pub struct Report {
    pub requests: u64,
    pub ok: u64,
    pub errors: HashMap<String, u64>,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
    /// Users whose counter disagrees with what was acknowledged: (user, acked, attempted, counter).
    pub verify_failures: Vec<(String, u64, u64, u64)>,
    pub verified_users: usize,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests {} ok {} in {:.1}s: {:.0} ok/s",
            self.requests,
            self.ok,
            self.elapsed.as_secs_f64(),
            self.rate()
        )?;
        writeln!(
            f,
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            self.percentile_ms(0.5),
            self.percentile_ms(0.9),
            self.percentile_ms(0.99),
            self.percentile_ms(0.999),
            self.latency_us.max() as f64 / 1000.0
        )?;
        let mut errors: Vec<_> = self.errors.iter().collect();
        errors.sort();
        for (class, n) in errors {
            writeln!(f, "errors {class}: {n}")?;
        }
        if self.verified_users > 0 {
            writeln!(
                f,
                "verified {} users: {} disagree",
                self.verified_users,
                self.verify_failures.len()
            )?;
            for (user, acked, attempted, counter) in self.verify_failures.iter().take(20) {
                writeln!(
                    f,
                    "  {user}: acknowledged {acked}, attempted {attempted}, server says {counter}"
                )?;
            }
        }
        Ok(())
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct TaskResult {
    requests: u64,
    ok: u64,
    errors: HashMap<String, u64>,
    latency: Histogram<u64>,
    /// Per user index: (acknowledged, attempted).
    counts: Vec<(usize, u64, u64)>,
}

pub async fn run_closed(load: ClosedLoad) -> Result<Report, LoadError> {
    if load.connections == 0 || load.connections > limits::CONNECTIONS_MAX {
        return Err(LoadError::Invalid(format!(
            "connections must be 1..={}",
            limits::CONNECTIONS_MAX
        )));
    }
    if load.users == 0 || load.users > limits::USERS_MAX {
        return Err(LoadError::Invalid(format!(
            "users must be 1..={}",
            limits::USERS_MAX
        )));
    }
    if (load.warmup + load.duration).as_secs() > limits::DURATION_MAX_SECS {
        return Err(LoadError::Invalid(format!(
            "a run lasts at most {} s",
            limits::DURATION_MAX_SECS
        )));
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(load.connections)
        .build(connector);
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.duration;
    let mut tasks = Vec::with_capacity(load.connections);
    for task in 0..load.connections {
        let (client, load) = (client.clone(), load.clone());
        tasks.push(tokio::spawn(async move {
            closed_task(client, load, task, measure_from, end).await
        }));
    }
    let mut report = Report {
        requests: 0,
        ok: 0,
        errors: HashMap::new(),
        elapsed: load.duration,
        latency_us: new_histogram(),
        verify_failures: Vec::new(),
        verified_users: 0,
    };
    let mut per_user = vec![(0u64, 0u64); load.users];
    for t in tasks {
        let r = t
            .await
            .map_err(|e| LoadError::Invalid(format!("a load task failed: {e}")))?;
        report.requests += r.requests;
        report.ok += r.ok;
        for (k, v) in r.errors {
            *report.errors.entry(k).or_default() += v;
        }
        report
            .latency_us
            .add(&r.latency)
            .map_err(|e| LoadError::Invalid(e.to_string()))?;
        for (user, acked, attempted) in r.counts {
            per_user[user].0 += acked;
            per_user[user].1 += attempted;
        }
    }
    if let Some(path) = &load.verify_count_path {
        for (user, (acked, attempted)) in per_user.iter().enumerate() {
            let key = format!("{}{user}", load.user_prefix);
            let url = format!("{}{}", load.base_url, path.replace("{user}", &key));
            let counter = get_number(&client, &url).await?;
            report.verified_users += 1;
            if counter < *acked || counter > *attempted {
                report
                    .verify_failures
                    .push((key, *acked, *attempted, counter));
            }
        }
    }
    Ok(report)
}

async fn closed_task(
    client: HttpClient,
    load: ClosedLoad,
    task: usize,
    measure_from: Instant,
    end: Instant,
) -> TaskResult {
    let mut result = TaskResult {
        requests: 0,
        ok: 0,
        errors: HashMap::new(),
        latency: new_histogram(),
        counts: Vec::new(),
    };
    // Task `t` owns users t, t + connections, ...: each user's calls are sequential, as a real
    // user's would be, and verification knows exactly what each user sent.
    let users: Vec<usize> = (task..load.users).step_by(load.connections).collect();
    if users.is_empty() {
        return result;
    }
    let mut counts: Vec<(u64, u64)> = vec![(0, 0); users.len()];
    let mut n: u64 = 0;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let slot = (n as usize) % users.len();
        let key = format!("{}{}", load.user_prefix, users[slot]);
        let seq = format!("{task}-{n}");
        n += 1;
        let path = load
            .request
            .path
            .replace("{user}", &key)
            .replace("{n}", &seq);
        let body = load
            .request
            .body
            .as_ref()
            .map(|b| Bytes::from(b.replace("{user}", &key).replace("{n}", &seq)))
            .unwrap_or_default();
        let request = match http::Request::builder()
            .method(load.request.method.clone())
            .uri(format!("{}{path}", load.base_url))
            .header("content-type", "application/json")
            .body(Full::new(body))
        {
            Ok(r) => r,
            Err(e) => {
                *result
                    .errors
                    .entry(format!("bad request: {e}"))
                    .or_default() += 1;
                break;
            }
        };
        counts[slot].1 += 1;
        let sent = Instant::now();
        let outcome = match client.request(request).await {
            Ok(response) => {
                let status = response.status();
                match http_body_util::Limited::new(response.into_body(), limits::RESPONSE_BYTES_MAX)
                    .collect()
                    .await
                {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(_) => Err(format!("http {}", status.as_u16())),
                    Err(_) => Err("response body".to_string()),
                }
            }
            Err(e) if e.is_connect() => Err("connect".to_string()),
            Err(_) => Err("transport".to_string()),
        };
        let latency = sent.elapsed();
        if outcome.is_ok() {
            counts[slot].0 += 1;
        }
        if sent < measure_from {
            continue;
        }
        result.requests += 1;
        match outcome {
            Ok(()) => {
                result.ok += 1;
                let us = (latency.as_micros() as u64).clamp(1, limits::LATENCY_MAX_US);
                let _ = result.latency.record(us);
            }
            Err(class) => *result.errors.entry(class).or_default() += 1,
        }
    }
    result.counts = users
        .into_iter()
        .zip(counts)
        .map(|(u, (a, t))| (u, a, t))
        .collect();
    result
}

async fn get_number(client: &HttpClient, url: &str) -> Result<u64, LoadError> {
    let request = http::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| LoadError::Verify(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| LoadError::Verify(format!("GET {url}: {e}")))?;
    let status = response.status();
    let body = http_body_util::Limited::new(response.into_body(), limits::RESPONSE_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| LoadError::Verify(format!("GET {url}: {e}")))?
        .to_bytes();
    if !status.is_success() {
        return Err(LoadError::Verify(format!("GET {url}: status {status}")));
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.as_u64())
        .ok_or_else(|| LoadError::Verify(format!("GET {url}: expected a number, got {body:?}")))
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, limits::LATENCY_MAX_US, 3).expect("valid histogram bounds")
}
