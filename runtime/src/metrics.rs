//! What the runtime counts, for the admin API's `/metrics` (Prometheus text, from the process's
//! default registry). Labels are bounded: components and functions are those deployed (a call
//! naming anything else is counted under empty labels), outcomes are the stable error codes.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    exponential_buckets,
};
use revenant_storage::metrics::{latency_buckets, registered};
use std::sync::LazyLock;
use std::time::Duration;

pub(crate) struct RuntimeMetrics {
    invocations: IntCounterVec,
    invocation_seconds: HistogramVec,
    pub activations: IntCounter,
    pub activation_seconds: Histogram,
    pub replays: IntCounter,
    pub replayed_entries: IntCounter,
    pub replay_seconds: Histogram,
    pub mailbox_depth: Histogram,
    pub snapshots: IntCounter,
    pub workers_in_memory: IntGauge,
    pub workers_known: IntGauge,
}

pub(crate) static METRICS: LazyLock<RuntimeMetrics> = LazyLock::new(|| {
    let counter =
        |name: &str, help: &str| registered(IntCounter::new(name, help).expect("a valid metric"));
    let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
        registered(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("a valid metric"),
        )
    };
    let gauge =
        |name: &str, help: &str| registered(IntGauge::new(name, help).expect("a valid metric"));
    RuntimeMetrics {
        invocations: registered(
            IntCounterVec::new(
                Opts::new(
                    "revenant_invocations_total",
                    "Invocations answered, by component, function, kind (durable, read, \
                     ephemeral) and outcome (ok, or the error's code).",
                ),
                &["component", "function", "kind", "outcome"],
            )
            .expect("a valid metric"),
        ),
        invocation_seconds: registered(
            HistogramVec::new(
                HistogramOpts::new(
                    "revenant_invocation_seconds",
                    "Time from a call reaching the runtime to its answer (durable: once its \
                     entries are durable).",
                )
                .buckets(latency_buckets()),
                &["component", "function", "kind"],
            )
            .expect("a valid metric"),
        ),
        activations: counter(
            "revenant_activations_total",
            "Workers brought into memory: instantiated and their state rebuilt from the log.",
        ),
        activation_seconds: histogram(
            "revenant_activation_seconds",
            "Time of one activation, its replay included.",
            latency_buckets(),
        ),
        replays: counter(
            "revenant_replays_total",
            "Activations that replayed at least one entry of the log.",
        ),
        replayed_entries: counter(
            "revenant_replayed_entries_total",
            "Oplog entries replayed by activations (after the snapshot they started from).",
        ),
        replay_seconds: histogram(
            "revenant_replay_seconds",
            "Time of one activation's replay.",
            latency_buckets(),
        ),
        // 0 to MAILBOX_DEPTH (128).
        mailbox_depth: histogram(
            "revenant_mailbox_depth",
            "Calls waiting in a worker's mailbox when a call joins them (itself included).",
            exponential_buckets(1.0, 2.0, 8).expect("valid buckets"),
        ),
        snapshots: counter(
            "revenant_snapshots_total",
            "Snapshots of workers' state saved to their logs.",
        ),
        workers_in_memory: gauge("revenant_workers_in_memory", "Workers held in memory now."),
        workers_known: gauge(
            "revenant_workers_known",
            "Workers with a log in the store, of the components deployed (counted at most \
             WORKERS_KNOWN_REFRESH ago).",
        ),
    }
});

/// Which door a call came in by.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Durable,
    Read,
    Ephemeral,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Durable => "durable",
            Self::Read => "read",
            Self::Ephemeral => "ephemeral",
        }
    }
}

/// Counts one answered call. `component` and `function` are empty when the call named none
/// that is deployed.
pub(crate) fn invoked(
    component: &str,
    function: &str,
    kind: Kind,
    outcome: Result<(), &'static str>,
    took: Duration,
) {
    let m = &*METRICS;
    m.invocations
        .with_label_values(&[
            component,
            function,
            kind.label(),
            outcome.err().unwrap_or("ok"),
        ])
        .inc();
    m.invocation_seconds
        .with_label_values(&[component, function, kind.label()])
        .observe(took.as_secs_f64());
}

/// Registers the runtime's series, so that `/metrics` shows them before anything happens.
pub fn register() {
    LazyLock::force(&METRICS);
}
