//! What a run measures: HDR latency histograms in total and per step, errors by class, and a
//! per-second series, all recorded by completion time.

use crate::limits;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub(crate) fn histogram(significant: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, limits::LATENCY_MAX_US, significant)
        .expect("valid histogram bounds")
}

/// One second of the run, by completion time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Second {
    /// Seconds since the start of the run (warm-up included).
    pub second: u64,
    pub ok: u64,
    pub errors: u64,
    /// Iterations scheduled to start in this second (open model).
    pub offered: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Latency figures of one histogram.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Summary {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Shared by every request of a run, behind a mutex: each record is a few additions.
pub(crate) struct Recorder {
    start: Instant,
    measure_from: Instant,
    pub total: Histogram<u64>,
    pub steps: Vec<Histogram<u64>>,
    pub step_errors: Vec<u64>,
    pub errors: BTreeMap<String, u64>,
    pub ok: u64,
    pub requests: u64,
    /// Iterations the open model could not start within `LATE_SEND` of their intended time.
    pub late: u64,
    pub offered: u64,
    /// When the last request of the measured window ended.
    pub last_completion: Instant,
    pub series: Vec<Second>,
    current: Second,
    current_hist: Histogram<u64>,
    offered_by_second: BTreeMap<u64, u64>,
}

impl Recorder {
    pub fn new(start: Instant, warmup: Duration, steps: usize) -> Self {
        Self {
            start,
            measure_from: start + warmup,
            total: histogram(3),
            steps: (0..steps).map(|_| histogram(3)).collect(),
            step_errors: vec![0; steps],
            errors: BTreeMap::new(),
            ok: 0,
            requests: 0,
            late: 0,
            offered: 0,
            last_completion: start + warmup,
            series: Vec::new(),
            current: Second::default(),
            current_hist: histogram(2),
            offered_by_second: BTreeMap::new(),
        }
    }

    fn roll(&mut self, now: Instant) {
        let second = now.duration_since(self.start).as_secs();
        if second == self.current.second {
            return;
        }
        let mut done = std::mem::take(&mut self.current);
        let h = &self.current_hist;
        if !h.is_empty() {
            done.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
            done.p90_ms = h.value_at_quantile(0.9) as f64 / 1000.0;
            done.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            done.max_ms = h.max() as f64 / 1000.0;
        }
        done.offered = self
            .offered_by_second
            .remove(&done.second)
            .unwrap_or_default();
        if self.series.len() < limits::DURATION_MAX_SECS as usize + 1 {
            self.series.push(done);
        }
        self.current_hist.reset();
        self.current.second = second;
    }

    /// A request of `step` ended at `now`; `started` is when it was meant to start.
    pub fn record(
        &mut self,
        step: usize,
        started: Instant,
        now: Instant,
        outcome: Result<(), String>,
    ) {
        self.roll(now);
        let us = (now.saturating_duration_since(started).as_micros() as u64)
            .clamp(1, limits::LATENCY_MAX_US);
        match &outcome {
            Ok(()) => {
                self.current.ok += 1;
                let _ = self.current_hist.record(us);
            }
            Err(_) => self.current.errors += 1,
        }
        if started < self.measure_from {
            return;
        }
        self.requests += 1;
        self.last_completion = self.last_completion.max(now);
        match outcome {
            Ok(()) => {
                self.ok += 1;
                let _ = self.total.record(us);
                let _ = self.steps[step].record(us);
            }
            Err(class) => {
                self.step_errors[step] += 1;
                if self.errors.len() < limits::ERROR_CLASSES_MAX || self.errors.contains_key(&class)
                {
                    *self.errors.entry(class).or_default() += 1;
                } else {
                    *self.errors.entry("other".into()).or_default() += 1;
                }
            }
        }
    }

    /// An open-model iteration was scheduled for `intended` and started at `now`.
    pub fn scheduled(&mut self, intended: Instant, now: Instant) {
        let second = intended.duration_since(self.start).as_secs();
        *self.offered_by_second.entry(second).or_default() += 1;
        if intended >= self.measure_from {
            self.offered += 1;
            if now.saturating_duration_since(intended) > limits::LATE_SEND {
                self.late += 1;
            }
        }
    }

    /// Closes the last second.
    pub fn finish(&mut self, now: Instant) {
        self.roll(now + Duration::from_secs(1));
    }

    /// Seconds from the start of the measured window to its last answer: longer than the
    /// window when answers queue.
    pub fn answering_seconds(&self) -> f64 {
        self.last_completion
            .saturating_duration_since(self.measure_from)
            .as_secs_f64()
    }

    /// The last complete second, for the progress line.
    pub fn last_second(&self) -> Option<&Second> {
        self.series.last()
    }
}
