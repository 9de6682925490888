//! `loadtest` drives HTTP load at services that keep state per user, measures it, and checks
//! afterwards that no user's state was lost, duplicated or mixed up. It speaks HTTP only and
//! knows nothing of Revenant's server crates: it can test any such service.
//!
//! - [`scenario`]: the YAML scenario (users, steps, load model, verification).
//! - [`run`]: the open model (arrivals on a schedule, latency from each one's intended start,
//!   so coordinated omission cannot hide queueing) and the closed model (virtual users).
//! - [`measure`]: HDR histograms in total and per step, errors by class, a per-second series.
//! - [`verify`]: per-user ledgers of acknowledged and in-doubt calls against the final state.
//! - [`report`]: terminal, JSON and self-contained HTML (plotly) reports.

// A load generator measures real time: it reads the clock by design (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod http;
pub mod measure;
pub mod report;
pub mod run;
pub mod scenario;
pub mod verify;

pub use report::Report;
pub use run::{RunOptions, run};
pub use scenario::Scenario;

/// Bounds, with their reasons.
pub mod limits {
    use std::time::Duration;

    /// Concurrent connections (closed model) or requests (open model): each is a task and a
    /// socket on this machine.
    pub const CONNECTIONS_MAX: usize = 4_096;
    /// In-flight iterations of the open model: past this, starts wait (and count as late).
    pub const IN_FLIGHT_MAX: usize = 65_536;
    pub const IN_FLIGHT_DEFAULT: usize = 4_096;
    /// Users: one ledger and one lock each.
    pub const USERS_MAX: usize = 1_000_000;
    /// Steps of a scenario.
    pub const STEPS_MAX: usize = 32;
    /// Highest open-model rate: beyond it the scheduler itself is the bottleneck.
    pub const RATE_MAX: f64 = 1_000_000.0;
    /// Slowest latency the histograms record; slower answers are clamped to it.
    pub const LATENCY_MAX_US: u64 = 60_000_000;
    /// Largest response body read; the rest of a larger one is an error.
    pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;
    /// Longest run (warm-up included); also bounds the per-second series.
    pub const DURATION_MAX_SECS: u64 = 3_600;
    /// Retries of a failed call (same idempotency key).
    pub const RETRIES_MAX: u32 = 10;
    /// Pause before retry `k` is `k` times this.
    pub const RETRY_BACKOFF: Duration = Duration::from_millis(20);
    /// An open-model iteration that starts later than this after its intended time is late.
    pub const LATE_SEND: Duration = Duration::from_millis(5);
    /// Distinct error classes kept; the rest count as `other`.
    pub const ERROR_CLASSES_MAX: usize = 64;
    /// Users whose state is read at once during verification.
    pub const VERIFY_CONCURRENCY: usize = 32;
    /// Problems listed in a report; the rest are counted.
    pub const PROBLEMS_MAX: usize = 1_000;
    /// Call tags kept for the items check (~50 bytes each): past this, the check is skipped
    /// and the report says so.
    pub const TAGS_MAX: u64 = 20_000_000;
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("invalid load: {0}")]
    Invalid(String),
}
