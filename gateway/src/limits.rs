//! Every bound the gateway enforces, with its reason.

use std::time::Duration;

/// Largest request body read. A route's arguments are small JSON documents; anything larger is
/// refused with 413 before it is buffered.
pub const BODY_BYTES_MAX: usize = 1024 * 1024;

/// Time a client has to send its request headers. Without it a client that sends headers byte
/// by byte holds a connection forever (slowloris).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Most bytes of request headers hyper buffers per connection.
pub const HEADER_BYTES_MAX: usize = 64 * 1024;

/// Time from a request's arrival to its response, body reading and the invocation included.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// After SIGTERM, how long requests already accepted may take to finish before the server stops
/// anyway: above the usual invocation (10 s deadline) with room, below the 30 s a supervisor
/// such as systemd or Kubernetes waits before SIGKILL.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Open connections at once: each costs a task and buffers; past this the listener waits.
pub const CONNECTIONS_MAX: usize = 10_000;

/// Concurrent HTTP/2 streams per connection.
pub const H2_STREAMS_MAX: u32 = 256;

/// Query parameters read from one request; the rest are ignored.
pub const QUERY_PARAMS_MAX: usize = 64;

/// Largest component uploaded through the admin API: the catalog's blob bound.
pub const COMPONENT_BYTES_MAX: usize = revenant_storage::limits::BLOB_BYTES_MAX;

/// Components loaded at once (the project file's and uploaded ones): each holds its compiled
/// code in memory.
pub const COMPONENTS_MAX: usize = 256;

/// API definitions deployed at once: the router is rebuilt from all of them on every deploy.
pub const DEFINITIONS_MAX: usize = 1_000;

/// Largest API definition uploaded through the admin API: hundreds of routes fit in far less.
pub const DEFINITION_BYTES_MAX: usize = 1024 * 1024;

/// Largest JWKS document read from a `jwks_url`: a handful of public keys is a few KiB.
pub const JWKS_BYTES_MAX: usize = 256 * 1024;

/// Time a JWKS fetch may take; requests waiting on it are refused (401) past it.
pub const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Least time between two JWKS fetches: an unknown `kid` refreshes the keys, but a flood of
/// tokens with made-up `kid`s must not become a flood of fetches.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

/// Most bytes of a forwarded call's answer: the largest answer a node gives (a 16 MiB value
/// encoded as JSON, escapes included) with room for its headers.
pub const FORWARD_RESPONSE_BYTES_MAX: usize = 40 * 1024 * 1024;

/// How long a node waits to connect to another: peers are on one network, so a longer wait
/// means the peer is gone and the call should look for the shard's next holder.
pub const FORWARD_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Idle connections kept open to each peer for forwarded calls.
pub const FORWARD_IDLE_CONNECTIONS_MAX: usize = 64;

/// How often a node waiting for a forwarded call's answer checks whether the worker's shard
/// has moved meanwhile (then it stops waiting: see `cluster::Forwarder::forward_watched`). A
/// lookup in memory; the view itself changes at each lease renewal.
pub const FORWARD_WATCH_INTERVAL: Duration = Duration::from_millis(50);
