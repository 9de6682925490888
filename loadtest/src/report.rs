//! Reports: a terminal summary, a JSON document, and a self-contained HTML page whose plots are
//! drawn by plotly (plotly.js embedded, so the file opens without a network).

use crate::measure::{Recorder, Second, Summary};
use crate::scenario::Scenario;
use crate::verify::Verification;
use plotly::common::Mode;
use plotly::layout::{Axis, Layout};
use plotly::{Plot, Scatter};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Where and with what the run was made.
#[derive(Clone, Debug, Serialize)]
pub struct Facts {
    pub tool: String,
    pub host: String,
    pub cpus: usize,
    pub memory_mib: u64,
    pub os: String,
    pub started_unix_ms: u128,
}

impl Facts {
    pub fn of_this_machine() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memory_kib = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        let os = read("/proc/version")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        Self {
            tool: format!("revenant loadtest {}", env!("CARGO_PKG_VERSION")),
            host: read("/proc/sys/kernel/hostname").trim().to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib: memory_kib / 1024,
            os: if os.is_empty() {
                std::env::consts::OS.to_string()
            } else {
                os
            },
            started_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub name: String,
    pub latency: Summary,
    pub errors: u64,
}

/// Everything a run measured and found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub load: String,
    pub run: String,
    pub facts: Facts,
    pub measured_s: f64,
    /// From the window's start to its last answer.
    pub answered_s: f64,
    pub warmup_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// Open model: iterations scheduled in the measured window, and the rate that makes.
    pub offered: u64,
    pub offered_rate: f64,
    /// Requests of the measured window answered as expected, per second from the window's
    /// start to its last answer (when answers queue, that is longer than the window).
    pub achieved_rate: f64,
    /// Open model: iterations that started more than `LATE_SEND` after their intended time.
    pub late: u64,
    pub latency: Summary,
    pub steps: Vec<StepReport>,
    /// `(percentile, ms)`, for the distribution plot.
    pub distribution: Vec<(f64, f64)>,
    pub series: Vec<Second>,
    pub verification: Verification,
    /// False when verification found a problem.
    pub passed: bool,
}

impl Report {
    pub(crate) fn new(
        scenario: &Scenario,
        target: &str,
        run: &str,
        recorder: &Recorder,
        measured: Duration,
        verification: Verification,
    ) -> Self {
        let secs = measured.as_secs_f64().max(1e-9);
        let mut distribution = Vec::new();
        if !recorder.total.is_empty() {
            for q in [
                0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0,
            ] {
                let us = recorder.total.value_at_percentile(q);
                distribution.push((q, us as f64 / 1000.0));
            }
        }
        Self {
            scenario: scenario.name.clone(),
            target: target.to_string(),
            load: scenario.load_summary(),
            run: run.to_string(),
            facts: Facts::of_this_machine(),
            measured_s: measured.as_secs_f64(),
            answered_s: recorder.answering_seconds().max(secs),
            warmup_s: scenario.warmup.as_secs_f64(),
            requests: recorder.requests,
            ok: recorder.ok,
            errors: recorder.errors.clone(),
            offered: recorder.offered,
            offered_rate: recorder.offered as f64 / secs,
            achieved_rate: recorder.ok as f64 / recorder.answering_seconds().max(secs),
            late: recorder.late,
            latency: Summary::of(&recorder.total),
            steps: scenario
                .steps
                .iter()
                .zip(&recorder.steps)
                .zip(&recorder.step_errors)
                .map(|((s, h), e)| StepReport {
                    name: s.name.clone(),
                    latency: Summary::of(h),
                    errors: *e,
                })
                .collect(),
            distribution,
            series: recorder.series.clone(),
            passed: verification.problems.is_empty() && verification.problems_not_listed == 0,
            verification,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// A self-contained HTML page: summary tables, and plots of latency percentiles and
    /// throughput over time and of the latency distribution.
    pub fn to_html(&self) -> String {
        let t: Vec<u64> = self.series.iter().map(|s| s.second).collect();
        let line =
            |name: &str, ys: Vec<f64>| Scatter::new(t.clone(), ys).mode(Mode::Lines).name(name);
        let mut latency = Plot::new();
        latency.add_trace(line("p50", self.series.iter().map(|s| s.p50_ms).collect()));
        latency.add_trace(line("p90", self.series.iter().map(|s| s.p90_ms).collect()));
        latency.add_trace(line("p99", self.series.iter().map(|s| s.p99_ms).collect()));
        latency.add_trace(line("max", self.series.iter().map(|s| s.max_ms).collect()));
        latency.set_layout(
            Layout::new()
                .title("Latency by second (ms)")
                .x_axis(Axis::new().title("second of the run"))
                .y_axis(Axis::new().title("ms")),
        );
        let mut throughput = Plot::new();
        throughput.add_trace(line(
            "ok/s",
            self.series.iter().map(|s| s.ok as f64).collect(),
        ));
        throughput.add_trace(line(
            "errors/s",
            self.series.iter().map(|s| s.errors as f64).collect(),
        ));
        if self.offered > 0 {
            throughput.add_trace(line(
                "offered/s",
                self.series.iter().map(|s| s.offered as f64).collect(),
            ));
        }
        throughput.set_layout(
            Layout::new()
                .title("Throughput by second")
                .x_axis(Axis::new().title("second of the run"))
                .y_axis(Axis::new().title("requests / s")),
        );
        let mut distribution = Plot::new();
        distribution.add_trace(
            Scatter::new(
                self.distribution
                    .iter()
                    .map(|(q, _)| *q)
                    .collect::<Vec<_>>(),
                self.distribution
                    .iter()
                    .map(|(_, ms)| *ms)
                    .collect::<Vec<_>>(),
            )
            .mode(Mode::LinesMarkers)
            .name("latency"),
        );
        distribution.set_layout(
            Layout::new()
                .title("Latency distribution (measured window)")
                .x_axis(Axis::new().title("percentile"))
                .y_axis(Axis::new().title("ms")),
        );

        let mut rows = String::new();
        let mut row = |k: &str, v: String| {
            rows.push_str(&format!(
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(&v)
            ));
        };
        row("scenario", self.scenario.clone());
        row("target", self.target.clone());
        row("load", self.load.clone());
        row(
            "measured",
            format!(
                "{:.0} s after {:.0} s warm-up",
                self.measured_s, self.warmup_s
            ),
        );
        row("requests", format!("{} ({} ok)", self.requests, self.ok));
        row(
            "achieved",
            format!(
                "{:.1} ok/s (answers of the window came within {:.1} s)",
                self.achieved_rate, self.answered_s
            ),
        );
        if self.offered > 0 {
            row(
                "offered",
                format!(
                    "{:.1} iterations/s ({} late by more than {} ms)",
                    self.offered_rate,
                    self.late,
                    crate::limits::LATE_SEND.as_millis()
                ),
            );
        }
        let l = &self.latency;
        row(
            "latency",
            format!(
                "p50 {:.2} · p90 {:.2} · p99 {:.2} · p99.9 {:.2} · max {:.2} ms",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
            ),
        );
        for (class, n) in &self.errors {
            row(&format!("errors: {class}"), n.to_string());
        }
        let v = &self.verification;
        row(
            "verification",
            if v.users_checked == 0 {
                "none configured".into()
            } else if self.passed {
                format!(
                    "passed: {} users, {} acknowledged calls, {} in doubt",
                    v.users_checked, v.acknowledged, v.in_doubt
                )
            } else {
                format!(
                    "FAILED: {} problems in {} users",
                    v.problems.len() + v.problems_not_listed,
                    v.users_checked
                )
            },
        );
        let f = &self.facts;
        row(
            "machine",
            format!(
                "{} · {} CPUs · {} MiB · {} · {}",
                f.host, f.cpus, f.memory_mib, f.os, f.tool
            ),
        );
        let mut steps = String::new();
        for s in &self.steps {
            let l = &s.latency;
            steps.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td></tr>",
                escape(&s.name), l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, s.errors
            ));
        }
        let problems: String = v
            .problems
            .iter()
            .map(|p| format!("<li>{}</li>", escape(&p.to_string())))
            .collect();
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Load test: {title}</title>\n\
             <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}\
             .plot{{height:420px;margin:1em 0}}</style>\n{js}</head><body>\n\
             <h1>Load test: {title}</h1>\n<table id=\"summary\">{rows}</table>\n\
             <h2>Steps (ms)</h2><table id=\"steps\"><tr><th>step</th><th>ok</th><th>p50</th><th>p90</th>\
             <th>p99</th><th>p99.9</th><th>max</th><th>errors</th></tr>{steps}</table>\n\
             <h2>Problems</h2><ul id=\"problems\">{problems}</ul>\n\
             <div class=\"plot\">{p1}</div><div class=\"plot\">{p2}</div><div class=\"plot\">{p3}</div>\n\
             </body></html>\n",
            title = escape(&self.scenario),
            js = Plot::offline_js_sources(),
            p1 = latency.to_inline_html(Some("latency")),
            p2 = throughput.to_inline_html(Some("throughput")),
            p3 = distribution.to_inline_html(Some("distribution")),
        )
    }
}

/// For the few strings (names, messages) the page shows as text.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} against {} ({})",
            self.scenario, self.target, self.load
        )?;
        writeln!(
            f,
            "requests {} ok {} started in {:.1}s, answered within {:.1}s: {:.0} ok/s",
            self.requests, self.ok, self.measured_s, self.answered_s, self.achieved_rate
        )?;
        if self.offered > 0 {
            writeln!(
                f,
                "offered {:.0} iterations/s; {} started late (> {} ms)",
                self.offered_rate,
                self.late,
                crate::limits::LATE_SEND.as_millis()
            )?;
        }
        let l = &self.latency;
        writeln!(
            f,
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
        )?;
        if self.steps.len() > 1 {
            for s in &self.steps {
                writeln!(
                    f,
                    "  {}: p50 {:.2}  p99 {:.2}  errors {}",
                    s.name, s.latency.p50_ms, s.latency.p99_ms, s.errors
                )?;
            }
        }
        for (class, n) in &self.errors {
            writeln!(f, "errors {class}: {n}")?;
        }
        let v = &self.verification;
        if v.users_checked > 0 {
            if v.items_skipped {
                writeln!(
                    f,
                    "items check skipped: more than {} calls",
                    crate::limits::TAGS_MAX
                )?;
            }
            writeln!(
                f,
                "verified {} users ({} acknowledged, {} in doubt): {} problems",
                v.users_checked,
                v.acknowledged,
                v.in_doubt,
                v.problems.len() + v.problems_not_listed
            )?;
            for p in v.problems.iter().take(20) {
                writeln!(f, "  {p}")?;
            }
        }
        Ok(())
    }
}
