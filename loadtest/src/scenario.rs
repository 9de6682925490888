//! Scenario files: who the users are, what each does, and how load arrives.
//!
//! ```yaml
//! name: user-activity
//! url: http://127.0.0.1:8080          # or --url
//! users:
//!   count: 1000
//!   key: "u{index}"                   # the user's key, in paths as {user}
//!   distribution: uniform             # or: {zipf: 1.1} (hot keys), or: sequential
//!   # first: 0                        # the first user's {index} (keys first..first+count)
//! steps:
//!   - name: add
//!     method: POST
//!     path: /user/{user}/activities
//!     body: '{"kind": "load", "detail": "{tag}"}'
//!     expect_status: 200
//!     counts: true                    # an acknowledged call adds one to the user's state
//!     extract: {total: ""}            # JSON pointer into the answer -> {total} later
//!   - name: read
//!     method: GET
//!     path: /user/{user}/count
//! load:
//!   model: open                       # constant arrival rate...
//!   rate: 1000                        # iterations per second
//!   # stages: [{target: 5000, duration_s: 10}]  # ...or ramps
//!   # model: closed, virtual_users: 64, think_time_ms: 0
//!   # iterations: 1000000             # stop once this many have started (or at duration_s)
//! duration_s: 10
//! warmup_s: 2
//! verify:
//!   count: {path: /user/{user}/count}            # a number: acknowledged <= n <= + in doubt
//!   items: {path: /user/{user}/activities, tag: /detail}  # each item's {tag}
//! ```
//!
//! Placeholders in paths, bodies and headers: `{user}`, `{index}`, `{n}` (the iteration's
//! number), `{tag}` (`{user}:{n}`, unique per iteration, to find the call in the user's state),
//! `{run}` (this run's id) and any `extract`ed name.

use crate::limits;
use marked_yaml::{LoaderOptions, Spanned};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    url: Option<String>,
    users: UsersFile,
    steps: Vec<StepFile>,
    load: LoadFile,
    duration_s: Option<Spanned<u64>>,
    #[serde(default)]
    warmup_s: u64,
    verify: Option<Verify>,
    retries: Option<Spanned<u32>>,
    timeout_ms: Option<Spanned<u64>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    count: Spanned<usize>,
    #[serde(default = "default_key")]
    key: String,
    #[serde(default)]
    distribution: Option<DistributionFile>,
    #[serde(default)]
    first: usize,
}

fn default_key() -> String {
    "user-{index}".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DistributionFile {
    Uniform,
    Zipf(f64),
    Sequential,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: Option<String>,
    #[serde(default = "default_method")]
    method: Spanned<String>,
    path: Spanned<String>,
    body: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    expect_status: Option<Spanned<u16>>,
    #[serde(default)]
    extract: BTreeMap<String, String>,
    #[serde(default)]
    counts: bool,
}

fn default_method() -> Spanned<String> {
    Spanned::new(marked_yaml::Span::new_blank(), "GET".to_string())
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoadFile {
    model: Spanned<String>,
    rate: Option<Spanned<f64>>,
    start_rate: Option<f64>,
    #[serde(default)]
    stages: Vec<StageFile>,
    max_in_flight: Option<Spanned<usize>>,
    virtual_users: Option<Spanned<usize>>,
    #[serde(default)]
    think_time_ms: u64,
    iterations: Option<Spanned<u64>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageFile {
    target: Spanned<f64>,
    duration_s: Spanned<u64>,
}

/// How users are picked for each iteration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    Uniform,
    /// Hot keys: user `k` (from 1) is picked with weight `1 / k^s`.
    Zipf(f64),
    /// Each user in turn, from the first, then around again: with `iterations` equal to the
    /// count, every user exactly once (how a run creates a given number of workers).
    Sequential,
}

#[derive(Clone, Debug)]
pub struct Users {
    pub count: usize,
    /// The first user's `{index}`: users are `first..first + count`.
    pub first: usize,
    pub key: String,
    pub distribution: Distribution,
}

impl Users {
    /// The `{index}` of the `i`-th user (from 0).
    pub fn index_of(&self, i: usize) -> usize {
        self.first + i
    }

    /// The key of the `i`-th user (from 0).
    pub fn key_of(&self, i: usize) -> String {
        self.key.replace("{index}", &self.index_of(i).to_string())
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub method: http::Method,
    pub path: String,
    pub body: Option<String>,
    pub headers: Vec<(String, String)>,
    pub expect_status: u16,
    /// `(name, JSON pointer)`: values taken from the answer for later steps.
    pub extract: Vec<(String, String)>,
    pub counts: bool,
}

/// A stretch of an open model: the rate moves linearly to `target` over `duration`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stage {
    pub target: f64,
    pub duration: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LoadModel {
    /// Iterations arrive on a schedule whatever the server does; latency is measured from each
    /// one's intended start.
    Open {
        start_rate: f64,
        stages: Vec<Stage>,
        max_in_flight: usize,
    },
    /// `virtual_users` loops, each starting its next iteration when the last one ends.
    Closed {
        virtual_users: usize,
        think_time: Duration,
    },
}

impl LoadModel {
    /// The arrival rate `at` into the run (open model).
    pub fn rate_at(start_rate: f64, stages: &[Stage], at: Duration) -> f64 {
        let mut from = start_rate;
        let mut t = at;
        for s in stages {
            if t < s.duration {
                let f = t.as_secs_f64() / s.duration.as_secs_f64().max(1e-9);
                return from + (s.target - from) * f;
            }
            t -= s.duration;
            from = s.target;
        }
        from
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    pub count: Option<CountCheck>,
    pub items: Option<ItemsCheck>,
}

/// GET `path` per user answers a number (at `pointer`, default the whole body).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountCheck {
    pub path: String,
    #[serde(default)]
    pub pointer: String,
}

/// GET `path` per user answers an array whose items carry the `{tag}` of the call that made
/// them at `tag` (a JSON pointer).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemsCheck {
    pub path: String,
    pub tag: String,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: String,
    pub url: Option<String>,
    pub users: Users,
    pub steps: Vec<Step>,
    pub load: LoadModel,
    /// The run ends once this many iterations have started (and ended), or at `duration`,
    /// whichever comes first.
    pub iterations: Option<u64>,
    pub duration: Duration,
    pub warmup: Duration,
    pub verify: Verify,
    /// Attempts after the first for a call that failed in transport or with a 5xx; the same
    /// idempotency key each time.
    pub retries: u32,
    pub timeout: Duration,
}

impl Scenario {
    /// Parses and checks a scenario; errors name `file:line:column`.
    pub fn parse(file: &str, text: &str) -> Result<Self, String> {
        let options = LoaderOptions::default().error_on_duplicate_keys(true);
        let raw: ScenarioFile =
            marked_yaml::from_yaml_with_options(0, text, options).map_err(|e| located(file, &e))?;
        let mut problems = Vec::new();
        let at = |span: &marked_yaml::Span| {
            let m = span.start();
            format!(
                "{file}:{}:{}",
                m.map_or(1, |m| m.line()),
                m.map_or(1, |m| m.column())
            )
        };
        if *raw.users.count == 0 || *raw.users.count > limits::USERS_MAX {
            problems.push(format!(
                "{}: users.count must be 1 to {}",
                at(raw.users.count.span()),
                limits::USERS_MAX
            ));
        }
        let distribution = match raw.users.distribution {
            None | Some(DistributionFile::Uniform) => Distribution::Uniform,
            Some(DistributionFile::Zipf(s)) if s > 0.0 && s.is_finite() => Distribution::Zipf(s),
            Some(DistributionFile::Zipf(s)) => {
                problems.push(format!("{file}: zipf exponent must be > 0, got {s}"));
                Distribution::Uniform
            }
            Some(DistributionFile::Sequential) => Distribution::Sequential,
        };
        if raw.users.first.checked_add(*raw.users.count).is_none() {
            problems.push(format!("{file}: users.first + users.count overflows"));
        }
        let iterations = match &raw.load.iterations {
            Some(n) if **n == 0 => {
                problems.push(format!(
                    "{}: load.iterations must be at least 1",
                    at(n.span())
                ));
                None
            }
            Some(n) => Some(**n),
            None => None,
        };
        if raw.steps.is_empty() || raw.steps.len() > limits::STEPS_MAX {
            problems.push(format!(
                "{file}: a scenario has 1 to {} steps",
                limits::STEPS_MAX
            ));
        }
        let mut steps = Vec::new();
        for (i, s) in raw.steps.iter().enumerate() {
            let method = match http::Method::from_bytes(s.method.to_ascii_uppercase().as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    problems.push(format!(
                        "{}: `{}` is not an HTTP method",
                        at(s.method.span()),
                        s.method.as_str()
                    ));
                    continue;
                }
            };
            if !s.path.starts_with('/') {
                problems.push(format!("{}: a path starts with `/`", at(s.path.span())));
            }
            let expect_status = match &s.expect_status {
                Some(code) if !(100..=599).contains(&**code) => {
                    problems.push(format!("{}: not an HTTP status", at(code.span())));
                    200
                }
                Some(code) => **code,
                None => 200,
            };
            steps.push(Step {
                name: s.name.clone().unwrap_or_else(|| format!("step-{}", i + 1)),
                method,
                path: s.path.to_string(),
                body: s.body.clone(),
                headers: s.headers.clone().into_iter().collect(),
                expect_status,
                extract: s.extract.clone().into_iter().collect(),
                counts: s.counts,
            });
        }
        let model = raw.load.model.as_str();
        let load = match model {
            "open" => {
                let max_in_flight = raw
                    .load
                    .max_in_flight
                    .as_ref()
                    .map_or(limits::IN_FLIGHT_DEFAULT, |m| **m);
                if max_in_flight == 0 || max_in_flight > limits::IN_FLIGHT_MAX {
                    problems.push(format!(
                        "{file}: load.max_in_flight must be 1 to {}",
                        limits::IN_FLIGHT_MAX
                    ));
                }
                let mut stages: Vec<Stage> = raw
                    .load
                    .stages
                    .iter()
                    .map(|s| Stage {
                        target: *s.target,
                        duration: Duration::from_secs(*s.duration_s),
                    })
                    .collect();
                let start_rate = match (&raw.load.rate, stages.is_empty()) {
                    (Some(r), true) => {
                        let duration = raw.duration_s.as_ref().map_or(0, |d| **d);
                        stages.push(Stage {
                            target: **r,
                            duration: Duration::from_secs(duration + raw.warmup_s),
                        });
                        **r
                    }
                    (None, false) => raw.load.start_rate.unwrap_or(0.0),
                    _ => {
                        problems.push(format!(
                            "{}: an open model takes `rate` or `stages`",
                            at(raw.load.model.span())
                        ));
                        0.0
                    }
                };
                let peak = stages.iter().map(|s| s.target).fold(start_rate, f64::max);
                if !(peak > 0.0 && peak <= limits::RATE_MAX) {
                    problems.push(format!(
                        "{}: the rate must be above 0 and at most {}",
                        at(raw.load.model.span()),
                        limits::RATE_MAX
                    ));
                }
                LoadModel::Open {
                    start_rate,
                    stages,
                    max_in_flight,
                }
            }
            "closed" => {
                let vus = raw.load.virtual_users.as_ref().map_or(0, |v| **v);
                if vus == 0 || vus > limits::CONNECTIONS_MAX {
                    problems.push(format!(
                        "{}: a closed model takes virtual_users, 1 to {}",
                        at(raw.load.model.span()),
                        limits::CONNECTIONS_MAX
                    ));
                }
                LoadModel::Closed {
                    virtual_users: vus,
                    think_time: Duration::from_millis(raw.load.think_time_ms),
                }
            }
            other => {
                problems.push(format!(
                    "{}: load.model is `open` or `closed`, not `{other}`",
                    at(raw.load.model.span())
                ));
                LoadModel::Closed {
                    virtual_users: 1,
                    think_time: Duration::ZERO,
                }
            }
        };
        let duration = match (&load, &raw.duration_s) {
            (LoadModel::Open { stages, .. }, None) if raw.load.rate.is_none() => stages
                .iter()
                .map(|s| s.duration)
                .sum::<Duration>()
                .saturating_sub(Duration::from_secs(raw.warmup_s)),
            (_, Some(d)) => Duration::from_secs(**d),
            (_, None) => {
                problems.push(format!("{file}: `duration_s` is missing"));
                Duration::ZERO
            }
        };
        if (duration + Duration::from_secs(raw.warmup_s)).as_secs() > limits::DURATION_MAX_SECS
            || duration.is_zero()
        {
            problems.push(format!(
                "{file}: a run lasts 1 s to {} s",
                limits::DURATION_MAX_SECS
            ));
        }
        let retries = raw.retries.as_ref().map_or(2, |r| **r);
        if retries > limits::RETRIES_MAX {
            problems.push(format!(
                "{file}: retries is at most {}",
                limits::RETRIES_MAX
            ));
        }
        let timeout = Duration::from_millis(raw.timeout_ms.as_ref().map_or(10_000, |t| **t));
        if let Some(url) = &raw.url
            && !url.starts_with("http://")
        {
            problems.push(format!("{file}: url must be http://host:port"));
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| file.to_string()),
            url: raw.url.map(|u| u.trim_end_matches('/').to_string()),
            users: Users {
                count: *raw.users.count,
                first: raw.users.first,
                key: raw.users.key,
                distribution,
            },
            steps,
            load,
            iterations,
            duration,
            warmup: Duration::from_secs(raw.warmup_s),
            verify: raw.verify.unwrap_or_default(),
            retries,
            timeout,
        })
    }

    /// How the load is described in reports.
    pub fn load_summary(&self) -> String {
        match &self.load {
            LoadModel::Open {
                start_rate, stages, ..
            } if stages.len() == 1 && stages[0].target == *start_rate => {
                format!("open, {start_rate} iterations/s")
            }
            LoadModel::Open {
                start_rate, stages, ..
            } => {
                let parts: Vec<String> = stages
                    .iter()
                    .map(|s| format!("{} /s over {} s", s.target, s.duration.as_secs()))
                    .collect();
                format!("open, from {start_rate} /s: {}", parts.join(", then "))
            }
            LoadModel::Closed {
                virtual_users,
                think_time,
            } => format!(
                "closed, {virtual_users} virtual users, think time {} ms",
                think_time.as_millis()
            ),
        }
    }
}

fn located(file: &str, e: &marked_yaml::FromYamlError) -> String {
    use marked_yaml::{FromYamlError, LoadError};
    let (marker, text) = match e {
        FromYamlError::ParseYaml(load) => {
            let marker = match load {
                LoadError::TopLevelMustBeMapping(m)
                | LoadError::TopLevelMustBeSequence(m)
                | LoadError::UnexpectedAnchor(m)
                | LoadError::MappingKeyMustBeScalar(m)
                | LoadError::UnexpectedTag(m)
                | LoadError::ScanError(m, _) => Some(*m),
                LoadError::DuplicateKey(d) => d.key.span().start().copied(),
            };
            let text = load.to_string();
            let text = text
                .split_once(": ")
                .map_or(text.clone(), |(_, m)| m.to_string());
            (marker, text)
        }
        FromYamlError::FromNode(node) => (node.start_mark(), node.to_string()),
    };
    format!(
        "{file}:{}:{}: {text}",
        marker.map_or(1, |m| m.line()),
        marker.map_or(1, |m| m.column())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: &str = "\
name: t
users: {count: 10, key: \"u{index}\", distribution: {zipf: 1.2}}
steps:
  - {method: POST, path: \"/c/{user}\", counts: true}
load: {model: open, rate: 100}
duration_s: 5
warmup_s: 1
verify: {count: {path: \"/c/{user}\"}}
";

    #[test]
    fn an_open_scenario_parses() {
        let s = Scenario::parse("s.yaml", OPEN).unwrap();
        assert_eq!(s.users.key_of(3), "u3");
        assert_eq!(s.users.distribution, Distribution::Zipf(1.2));
        assert_eq!(s.duration, Duration::from_secs(5));
        let LoadModel::Open {
            start_rate, stages, ..
        } = &s.load
        else {
            panic!("open")
        };
        assert_eq!(*start_rate, 100.0);
        assert_eq!(
            LoadModel::rate_at(*start_rate, stages, Duration::from_secs(3)),
            100.0
        );
        assert!(s.steps[0].counts);
    }

    #[test]
    fn the_demo_scenario_parses() {
        let text = include_str!("../../examples/user-activity/loadtest.yaml");
        let s = Scenario::parse("loadtest.yaml", text).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert!(s.verify.items.is_some());
    }

    #[test]
    fn ramps_interpolate() {
        let stages = [
            Stage {
                target: 100.0,
                duration: Duration::from_secs(10),
            },
            Stage {
                target: 100.0,
                duration: Duration::from_secs(10),
            },
        ];
        assert_eq!(
            LoadModel::rate_at(0.0, &stages, Duration::from_secs(5)),
            50.0
        );
        assert_eq!(
            LoadModel::rate_at(0.0, &stages, Duration::from_secs(15)),
            100.0
        );
    }

    #[test]
    fn mistakes_are_located() {
        let e = Scenario::parse("s.yaml", &OPEN.replace("model: open", "model: fast")).unwrap_err();
        assert!(e.starts_with("s.yaml:5:"), "{e}");
        let e = Scenario::parse("s.yaml", &OPEN.replace("method: POST", "method: \"P O\""))
            .unwrap_err();
        assert!(e.contains("s.yaml:4:"), "{e}");
        let e = Scenario::parse(
            "s.yaml",
            &OPEN.replace("warmup_s: 1", "warmup_s: 1\ncolour: 2"),
        )
        .unwrap_err();
        assert!(e.contains("colour"), "{e}");
    }
}
