//! What the store counts, for the admin API's `/metrics` (Prometheus text, from the process's
//! default registry): appends and their bytes on every backend, and the size and latency of the
//! group commits of the backends that batch (embedded, PostgreSQL). FoundationDB commits each
//! append in its own transaction: its latency is the append's.

use prometheus::{Histogram, HistogramOpts, IntCounter, exponential_buckets};
use std::sync::LazyLock;
use std::time::Duration;

struct StoreMetrics {
    appends: IntCounter,
    append_bytes: IntCounter,
    batch_appends: Histogram,
    commit_seconds: Histogram,
}

/// Registers `collector` in the process's default registry, which `/metrics` renders; each
/// series is registered once, by the crate that owns it.
pub fn registered<C: prometheus::core::Collector + Clone + 'static>(collector: C) -> C {
    prometheus::default_registry()
        .register(Box::new(collector.clone()))
        .expect("registered once");
    collector
}

/// The buckets of every latency histogram: 50 us doubling to ~3.3 s (a call to a live worker
/// takes tens of microseconds plus the commit's sync; a replay of a long log, seconds).
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, 2.0, 17).expect("valid buckets")
}

static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| {
    let counter =
        |name: &str, help: &str| registered(IntCounter::new(name, help).expect("a valid metric"));
    let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
        registered(
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("a valid metric"),
        )
    };
    StoreMetrics {
        appends: counter(
            "revenant_oplog_appends_total",
            "Appends to workers' oplogs made durable (one per flush of a worker's journal).",
        ),
        append_bytes: counter(
            "revenant_oplog_append_bytes_total",
            "Bytes those appends wrote: keys and values of their entries, metadata and indexes.",
        ),
        // 1 to 4,096 appends: past GROUP_COMMIT_ENTRIES_MAX rows a batch is cut.
        batch_appends: histogram(
            "revenant_commit_batch_appends",
            "Appends and transactions made durable together by one group commit.",
            exponential_buckets(1.0, 2.0, 13).expect("valid buckets"),
        ),
        commit_seconds: histogram(
            "revenant_commit_seconds",
            "Time of one group commit, its checks, write and sync.",
            latency_buckets(),
        ),
    }
});

/// Counts one durable append of `bytes`.
pub(crate) fn appended(bytes: usize) {
    METRICS.appends.inc();
    METRICS.append_bytes.inc_by(bytes as u64);
}

/// Records one group commit of `items` appends and transactions that took `took`.
pub(crate) fn committed(items: usize, took: Duration) {
    METRICS.batch_appends.observe(items as f64);
    METRICS.commit_seconds.observe(took.as_secs_f64());
}

/// Registers the store's series, so that `/metrics` shows them (at zero) before the first
/// append.
pub fn register() {
    LazyLock::force(&METRICS);
}
