//! Test-only fault injection, compiled in only with the cargo feature `fault-injection` (never
//! in a default build): lets the load tester's verification be checked against a server that
//! really loses updates.
//!
//! `REVENANT_FAULT_LOSE_UPDATE=<worker>:<n>`: every `n`-th non-GET call to worker `<worker>`
//! (e.g. `user-u7`) is answered `200 null` without running: acknowledged, and lost.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct LoseUpdate {
    worker: String,
    every: u64,
    seen: AtomicU64,
}

// A test-only build (cargo feature `fault-injection`) configured from its environment.
#[allow(clippy::disallowed_methods)]
fn config() -> Option<&'static LoseUpdate> {
    static CONFIG: OnceLock<Option<LoseUpdate>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let value = std::env::var("REVENANT_FAULT_LOSE_UPDATE").ok()?;
            let (worker, every) = value.rsplit_once(':')?;
            let every = every.parse().ok().filter(|n| *n > 0)?;
            tracing::warn!(worker, every, "fault injection: losing updates on purpose");
            Some(LoseUpdate {
                worker: worker.to_string(),
                every,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether this call is to be acknowledged and dropped.
pub(crate) fn lose_update(worker: &str, method: &http::Method) -> bool {
    let Some(c) = config() else { return false };
    if method == http::Method::GET || c.worker != worker {
        return false;
    }
    (c.seen.fetch_add(1, Ordering::Relaxed) + 1) % c.every == 0
}
