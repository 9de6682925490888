//! Every bound `storage` enforces, with its reason. Nothing in this crate is unbounded.

/// Largest encoded oplog entry. FoundationDB refuses values over 100 KB; every backend keeps the
/// same limit so a log written on one can move to another. Larger payloads must be chunked.
pub const ENTRY_BYTES_MAX: usize = 90_000;

/// Most entries in one group commit. The notes measured fjall at its best with batches of about
/// a thousand; larger batches only delay the first waiter.
pub const GROUP_COMMIT_ENTRIES_MAX: usize = 1_024;

/// Most bytes in one group commit: keeps one commit well under FoundationDB's 10 MB transaction
/// limit and bounds the memory a batch holds.
pub const GROUP_COMMIT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Appends waiting for the committer. When full, appenders wait (backpressure), so memory held by
/// queued appends is bounded by this times the largest append.
pub const APPEND_QUEUE_DEPTH: usize = 4_096;

/// Most entries returned by one `read`: a replay pages through longer logs.
pub const READ_PAGE_ENTRIES_MAX: usize = 1_000;
