//! The wall clock leases are judged by. It decides only liveness (when a lease counts as
//! expired), never safety, so skew between nodes delays or hastens a takeover and nothing
//! else. Local deadlines use tokio's monotonic clock, which the simulation controls too.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn wall_ms(&self) -> u64;
}

/// The system's clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    // The one place the cluster reads the system's time; everything else takes a `Clock`.
    #[allow(clippy::disallowed_methods)]
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}
