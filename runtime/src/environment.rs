//! The one place that reads the real world's nondeterminism: clocks and entropy. The runtime
//! reaches it only through the durability chokepoint, and only when running live; tests pass
//! their own.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub trait Environment: Send + Sync + 'static {
    /// Time since the Unix epoch.
    fn wall_clock_now(&self) -> Duration;
    /// Nanoseconds on a clock that never goes backwards within this process.
    fn monotonic_now_ns(&self) -> u64;
    /// Fills `buf` with cryptographically secure random bytes.
    fn fill_random(&self, buf: &mut [u8]);
}

/// The operating system's clocks and entropy.
pub struct SystemEnvironment {
    start: Instant,
}

// The one place the runtime reads the real clock (`clippy.toml`).
#[allow(clippy::disallowed_methods)]
impl SystemEnvironment {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemEnvironment {
    fn default() -> Self {
        Self::new()
    }
}

#[allow(clippy::disallowed_methods)]
impl Environment for SystemEnvironment {
    fn wall_clock_now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
    }

    fn monotonic_now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        getrandom::fill(buf).expect("the operating system's entropy source failed");
    }
}
