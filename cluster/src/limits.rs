//! The cluster's bounds, each with its reason, in one place.

use std::time::Duration;

/// Shards a new store is given unless configured otherwise: enough to spread over a few dozen
/// nodes evenly, few enough that a node renews all of its leases in one small transaction.
pub const SHARDS_DEFAULT: u32 = 64;

/// Most shards a store may have: every node reads every lease at each renewal, in one range
/// read under the KV layer's page bound.
pub const SHARDS_MAX: u32 = 1_024;

/// How long a lease lasts unless configured otherwise. A dead node's workers are unavailable
/// this long (plus one renewal interval), so it is short; it must outlast a store's slow
/// moments, or nodes lose shards needlessly.
pub const LEASE_DEFAULT: Duration = Duration::from_secs(5);

/// The shortest lease accepted: renewals every fifth of it must still be a few round trips
/// apart on a loaded store.
pub const LEASE_MIN: Duration = Duration::from_millis(500);

/// The longest lease accepted: past this a dead node's workers would wait too long.
pub const LEASE_MAX: Duration = Duration::from_secs(120);

/// A node renews its leases this many times per lease, so that one or two failed renewals
/// (a store hiccup) do not lose a shard.
pub const RENEWALS_PER_LEASE: u32 = 5;

/// A node stops serving a shard this fraction of a lease before the lease it holds expires by
/// its own clock: the margin for clock skew between it and the node that would take over.
pub const SAFETY_MARGIN_FRACTION: u32 = 5;

/// Forwards a request may make between nodes: one, to the holder. A node that gets a forwarded
/// call it does not serve answers `not_owner` at once, and the node that forwarded it (which
/// has the client, and the whole routing deadline) routes it again: so nodes with disagreeing
/// views never pass a request around, nor wait inside one another's retries.
pub const HOPS_MAX: u32 = 1;

/// Attempts to find and reach a worker's holder for one request (routing, forwarding, retries
/// after a move), within [`ROUTE_SLACK`] past one lease.
pub const ROUTE_ATTEMPTS_MAX: u32 = 64;

/// How long past a lease a request waits for its shard to get a holder, from its first attempt
/// that did not reach one: a takeover needs the lease to expire and the taker's next renewal.
pub const ROUTE_SLACK: Duration = Duration::from_secs(2);

/// The first pause between routing attempts; it doubles up to [`ROUTE_BACKOFF_MAX`].
pub const ROUTE_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const ROUTE_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// The shortest time between two re-reads of the lease table prompted by failed routing (each
/// is one range read of every lease): many requests failing at once share one.
pub const REFRESH_INTERVAL_MIN: Duration = Duration::from_millis(50);
