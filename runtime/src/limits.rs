//! Every bound the runtime enforces, with its reason.

/// Invocations queued for one worker. A full mailbox refuses the call (HTTP 429) instead of
/// queueing without bound; 128 leaves room for bursts of concurrent calls to one key.
pub const MAILBOX_DEPTH: usize = 128;

/// Workers held in memory at once. Each live instance holds a few memory mappings and Linux's
/// `vm.max_map_count` (65,530) runs out near 9,350 instances (NOTES-wasmtime.md); stay well below.
pub const ACTIVE_WORKERS_MAX: usize = 8_000;

/// Linear memory one guest may grow to.
pub const GUEST_MEMORY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most bytes one `get-random-bytes` call may ask for: the response is recorded in one oplog
/// entry, which must stay under the storage entry limit.
pub const RANDOM_BYTES_MAX: u64 = 16 * 1024;

/// Entries read per page while replaying an oplog.
pub const REPLAY_PAGE_ENTRIES: usize = 1_000;

/// Length of a worker name: it is part of every storage key of the worker.
pub const WORKER_NAME_BYTES_MAX: usize = 256;
