//! The engine: schedules iterations (open or closed model), runs each iteration's steps for one
//! user, records every request, keeps each user's ledger, then verifies.

use crate::LoadError;
use crate::http::{Client, client, send};
use crate::limits;
use crate::measure::Recorder;
use crate::report::Report;
use crate::scenario::{Distribution, LoadModel, Scenario, Step};
use crate::verify::{Ledgers, verify};
use bytes::Bytes;
use rand::distr::Distribution as _;
use serde_json::Value as Json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a run is started.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The service's base URL (overrides the scenario's `url`); several, comma-separated, for
    /// the nodes of a cluster: iterations go to them in turn, and a retry goes to the next.
    pub url: Option<String>,
    /// Draw a progress bar on the terminal.
    pub progress: bool,
}

struct Shared {
    scenario: Scenario,
    /// The base URLs (one per node of a cluster, or one).
    bases: Vec<String>,
    run: String,
    client: Client,
    recorder: Mutex<Recorder>,
    ledgers: Ledgers,
    /// A user's iterations run one at a time, as a real user's calls would.
    turns: Vec<tokio::sync::Mutex<()>>,
    iterations: AtomicU64,
    /// Iterations started (or about to): the turn of `Sequential` and the `iterations` bound.
    started: AtomicU64,
    zipf: Option<rand_distr::Zipf<f64>>,
}

impl Shared {
    /// Claims the next iteration and picks its user; `None` once the scenario's `iterations`
    /// have all been claimed.
    fn next_iteration(&self) -> Option<usize> {
        let k = self.started.fetch_add(1, Ordering::Relaxed);
        if self.scenario.iterations.is_some_and(|most| k >= most) {
            return None;
        }
        let n = self.scenario.users.count;
        Some(match (&self.scenario.users.distribution, &self.zipf) {
            (Distribution::Sequential, _) => (k % n as u64) as usize,
            (_, Some(z)) => (z.sample(&mut rand::rng()) as usize).clamp(1, n) - 1,
            (_, None) => fastrand::usize(..n),
        })
    }
}

/// Runs `scenario` and returns its report (verification included).
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<Report, LoadError> {
    let base = options
        .url
        .clone()
        .or_else(|| scenario.url.clone())
        .ok_or_else(|| LoadError::Invalid("no URL: give --url or `url:`".into()))?;
    let bases: Vec<String> = base
        .split(',')
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .collect();
    if bases.is_empty() {
        return Err(LoadError::Invalid(format!("no URL in `{base}`")));
    }
    let base = bases.join(",");
    let pool = match &scenario.load {
        LoadModel::Open { max_in_flight, .. } => *max_in_flight,
        LoadModel::Closed { virtual_users, .. } => *virtual_users,
    };
    let zipf = match scenario.users.distribution {
        Distribution::Uniform | Distribution::Sequential => None,
        Distribution::Zipf(s) => Some(
            rand_distr::Zipf::new(scenario.users.count as f64, s)
                .map_err(|e| LoadError::Invalid(format!("zipf: {e}")))?,
        ),
    };
    let start = Instant::now();
    let shared = Arc::new(Shared {
        scenario: scenario.clone(),
        bases,
        run: format!("{:016x}", fastrand::u64(..)),
        client: client(pool.min(limits::CONNECTIONS_MAX)),
        recorder: Mutex::new(Recorder::new(start, scenario.warmup, scenario.steps.len())),
        ledgers: Ledgers::new(scenario.users.count, scenario.verify.items.is_some()),
        turns: (0..scenario.users.count)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect(),
        iterations: AtomicU64::new(0),
        started: AtomicU64::new(0),
        zipf,
    });
    let end = start + scenario.warmup + scenario.duration;
    let progress = options.progress.then(|| progress_bar(&shared, start, end));

    match &scenario.load {
        LoadModel::Open {
            start_rate,
            stages,
            max_in_flight,
        } => open(&shared, start, end, *start_rate, stages, *max_in_flight).await,
        LoadModel::Closed {
            virtual_users,
            think_time,
        } => closed(&shared, end, *virtual_users, *think_time).await,
    }
    let finished = Instant::now();
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    shared
        .recorder
        .lock()
        .expect("never poisoned")
        .finish(finished);
    let verification = verify(
        &shared.client,
        &shared.bases[0],
        &shared.scenario,
        &shared.run,
        &shared.ledgers,
    )
    .await;
    let recorder = shared.recorder.lock().expect("never poisoned");
    // A run that used up its `iterations` before the duration was measured for less.
    let measured = scenario
        .duration
        .min(finished.saturating_duration_since(start + scenario.warmup));
    Ok(Report::new(
        scenario,
        &base,
        &shared.run,
        &recorder,
        measured,
        verification,
    ))
}

/// Iterations start on a schedule, whatever the server does: a slow answer does not delay the
/// next start (up to `max_in_flight` at once; past it, starts are late and counted so).
async fn open(
    shared: &Arc<Shared>,
    start: Instant,
    end: Instant,
    start_rate: f64,
    stages: &[crate::scenario::Stage],
    max_in_flight: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let mut next = start;
    while next < end {
        if next > Instant::now() {
            tokio::time::sleep_until(next.into()).await;
        }
        let rate = LoadModel::rate_at(start_rate, stages, next.duration_since(start));
        if rate < 1e-3 {
            // Nothing arrives at a rate of zero (the start of a ramp from 0).
            next += Duration::from_millis(10);
            continue;
        }
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let Some(user) = shared.next_iteration() else {
            break;
        };
        let now = Instant::now();
        shared
            .recorder
            .lock()
            .expect("never poisoned")
            .scheduled(next, now);
        let (task, intended) = (shared.clone(), next);
        tokio::spawn(async move {
            iteration(&task, user, intended).await;
            drop(permit);
        });
        next += Duration::from_secs_f64(1.0 / rate);
    }
    // Every slot back means every iteration has ended.
    let _ = slots.acquire_many(max_in_flight as u32).await;
}

/// `virtual_users` loops, each starting an iteration when its last one ended (plus think time).
async fn closed(shared: &Arc<Shared>, end: Instant, virtual_users: usize, think: Duration) {
    let mut loops = Vec::with_capacity(virtual_users);
    for _ in 0..virtual_users {
        let task = shared.clone();
        loops.push(tokio::spawn(async move {
            while Instant::now() < end {
                let Some(user) = task.next_iteration() else {
                    break;
                };
                iteration(&task, user, Instant::now()).await;
                if !think.is_zero() {
                    tokio::time::sleep(think).await;
                }
            }
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}

fn fill(text: &str, vars: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// How a step's call ended, for the ledger.
enum Ending {
    Ok(Bytes),
    /// Refused for sure (a 4xx other than 429): it did not happen.
    Refused(String),
    /// Failed in transport, timed out or 5xx after every retry: it may have happened.
    InDoubt(String),
}

/// One step's call, retried; with several base URLs, attempt `a` goes to the base after
/// `first + a - 1`'s (a retry tries another node).
async fn call(
    shared: &Shared,
    step: &Step,
    first: usize,
    path: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Ending {
    let mut last = String::new();
    for attempt in 0..=shared.scenario.retries {
        if attempt > 0 {
            tokio::time::sleep(limits::RETRY_BACKOFF * attempt).await;
        }
        let base = &shared.bases[(first + attempt as usize) % shared.bases.len()];
        let url = format!("{base}{path}");
        match send(
            &shared.client,
            &step.method,
            &url,
            headers,
            body.clone(),
            shared.scenario.timeout,
        )
        .await
        {
            Ok(a) if a.status == step.expect_status => return Ending::Ok(a.body),
            Ok(a) if a.status >= 500 || a.status == 429 => last = format!("http {}", a.status),
            Ok(a) => return Ending::Refused(format!("http {}", a.status)),
            Err(class) => last = class,
        }
    }
    Ending::InDoubt(last)
}

/// One user's pass through the steps. Latency of the first step counts from `intended`; each
/// later step's from the end of the one before.
async fn iteration(shared: &Shared, user: usize, intended: Instant) {
    let _turn = shared.turns[user].lock().await;
    let n = shared.iterations.fetch_add(1, Ordering::Relaxed);
    let key = shared.scenario.users.key_of(user);
    let tag = format!("{key}:{n}");
    let mut vars: Vec<(String, String)> = vec![
        ("user".into(), key.clone()),
        (
            "index".into(),
            shared.scenario.users.index_of(user).to_string(),
        ),
        ("n".into(), n.to_string()),
        ("tag".into(), tag.clone()),
        ("run".into(), shared.run.clone()),
    ];
    let mut started = intended;
    for (i, step) in shared.scenario.steps.iter().enumerate() {
        let path = fill(&step.path, &vars);
        let body = step
            .body
            .as_ref()
            .map(|b| Bytes::from(fill(b, &vars)))
            .unwrap_or_default();
        let mut headers: Vec<(String, String)> = step
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), fill(v, &vars)))
            .collect();
        // Retries carry the same key, so a retried call happens at most once.
        headers.push((
            "idempotency-key".into(),
            format!("{}-{key}-{n}-{i}", shared.run),
        ));
        let ending = call(shared, step, n as usize, &path, &headers, body).await;
        let now = Instant::now();
        let outcome = match &ending {
            Ending::Ok(_) => Ok(()),
            Ending::Refused(c) | Ending::InDoubt(c) => Err(c.clone()),
        };
        shared
            .recorder
            .lock()
            .expect("never poisoned")
            .record(i, started, now, outcome);
        if step.counts {
            match &ending {
                Ending::Ok(_) => shared.ledgers.acknowledged(user, &tag),
                Ending::InDoubt(_) => shared.ledgers.in_doubt(user, &tag),
                Ending::Refused(_) => {}
            }
        }
        let Ending::Ok(answer) = ending else {
            return;
        };
        if !step.extract.is_empty() {
            let json: Json = serde_json::from_slice(&answer).unwrap_or(Json::Null);
            for (name, pointer) in &step.extract {
                let value = match json.pointer(pointer) {
                    Some(Json::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                vars.push((name.clone(), value));
            }
        }
        started = now;
    }
}

fn progress_bar(
    shared: &Arc<Shared>,
    start: Instant,
    end: Instant,
) -> (indicatif::ProgressBar, tokio::task::JoinHandle<()>) {
    let total = end.duration_since(start).as_secs();
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} s  {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    let (b, task) = (bar.clone(), shared.clone());
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            b.set_position(start.elapsed().as_secs().min(total));
            let message = task
                .recorder
                .lock()
                .expect("never poisoned")
                .last_second()
                .map(|s| {
                    format!(
                        "{} ok/s  p99 {:.1} ms  {} errors/s",
                        s.ok, s.p99_ms, s.errors
                    )
                });
            if let Some(m) = message {
                b.set_message(m);
            }
        }
    });
    (bar, ticker)
}
