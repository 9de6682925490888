//! The gateway's one reading of the real clock. A request that needs the time (a JWT's `exp`
//! and `nbf`, the JWKS refresh interval) reads it once here and passes it down; nothing deeper
//! reads a clock, so tests can pass any time they like.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A moment, as wall-clock seconds (for token claims) and as a monotonic instant (for
/// intervals).
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub unix_seconds: u64,
    pub instant: Instant,
}

impl Now {
    /// The real clock. `clippy.toml` forbids reading it anywhere else in the gateway.
    #[allow(clippy::disallowed_methods)]
    pub fn read() -> Self {
        Self {
            unix_seconds: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs(),
            instant: Instant::now(),
        }
    }
}
