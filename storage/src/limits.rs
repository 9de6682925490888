//! Every bound `storage` enforces, with its reason. Nothing in this crate is unbounded.

/// Largest value one oplog entry records: an invocation's arguments, its result, one outgoing
/// HTTP response (headers and body together). Users keep state of this size per worker (a list
/// of tens of thousands of items), so a read of it must be recordable; larger values are refused
/// with an error naming this bound (`value_too_large`), never truncated.
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Largest encoded oplog entry: one value at its bound, plus the entry's other fields (a host
/// call's request, function names, an idempotency key) with room to spare.
pub const ENTRY_BYTES_MAX: usize = VALUE_BYTES_MAX + 1024 * 1024;

/// Largest entry stored inline in its row. FoundationDB refuses values over 100 KB, and every
/// backend keeps the same rows so a log written on one can move to another: a larger entry is
/// split into chunks (`docs/storage.md`, "Large entries").
pub const ENTRY_INLINE_BYTES_MAX: usize = 90_000;

/// Bytes per chunk of a large entry: the blob chunk size, under FoundationDB's 100 KB value limit.
pub const ENTRY_CHUNK_BYTES: usize = BLOB_CHUNK_BYTES;

/// Largest append (its rows and chunks) a KV backend writes in one transaction. A larger one
/// writes its chunks first, in transactions of `BLOB_CHUNKS_PER_TRANSACTION` chunks, then the
/// rows that make them visible: FoundationDB refuses transactions over 10 MB and advises 1 MB.
pub const APPEND_ONE_TRANSACTION_BYTES_MAX: usize = 1024 * 1024;

/// Most bytes of entries one `read` returns (at least one entry, whatever its size): a replay
/// of a log of large entries holds this much at a time, not the whole log.
pub const READ_PAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of appends waiting for the embedded store's committer. `APPEND_QUEUE_DEPTH` bounds
/// their number; with entries up to `ENTRY_BYTES_MAX` it does not bound their memory.
pub const APPEND_QUEUE_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Most entries in one group commit. The notes measured fjall at its best with batches of about
/// a thousand; larger batches only delay the first waiter.
pub const GROUP_COMMIT_ENTRIES_MAX: usize = 1_024;

/// Most bytes in one group commit: keeps one commit well under FoundationDB's 10 MB transaction
/// limit and bounds the memory a batch holds.
pub const GROUP_COMMIT_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Batches of appends the PostgreSQL oplog commits at once (`pg_oplog`): while one waits for
/// its commit's fsync, the next is read and decided. Two keep the disk busy; more only add
/// serialization conflicts between batches.
pub const PG_COMMITTERS: usize = 2;

/// Appends waiting for the committer. When full, appenders wait (backpressure), so memory held by
/// queued appends is bounded by this times the largest append.
pub const APPEND_QUEUE_DEPTH: usize = 4_096;

/// Most entries returned by one `read`: a replay pages through longer logs.
pub const READ_PAGE_ENTRIES_MAX: usize = 1_000;

/// FoundationDB's limits, kept by every backend so that layers written against one run on all
/// (FoundationDB "known limitations"): keys up to 10 KB, values up to 100 KB, a transaction's
/// mutations up to 10 MB.
pub const KV_KEY_BYTES_MAX: usize = 10_000;
pub const KV_VALUE_BYTES_MAX: usize = 100_000;
pub const KV_TRANSACTION_BYTES_MAX: usize = 10_000_000;

/// FoundationDB's transaction lifetime: a transaction older than this cannot commit (1007).
pub const KV_TRANSACTION_DURATION_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Attempts `transact` makes before giving up on retryable errors. FoundationDB's `run` retries
/// forever unless told otherwise; an unbounded retry hides an overloaded or broken store.
pub const KV_ATTEMPTS_MAX: u32 = 100;

/// Most rows one range read returns; longer ranges are read in pages.
pub const KV_RANGE_ROWS_MAX: usize = 10_000;

/// Workers whose log tail (last index) the embedded store's committer keeps in memory, so that
/// an append's checks need not read the worker's metadata and next entry back from fjall (the
/// committer is the only writer, so what it wrote is what is there). About 100 bytes each: at
/// most ~20 MB. Past it the map is emptied and refills as workers append; a worker not in it
/// is checked by reading, as before.
pub const COMMITTER_TAILS_MAX: usize = 200_000;

/// Commits the in-process backends remember for conflict checks. A transaction whose snapshot is
/// older than the oldest remembered commit is too old, as past FoundationDB's 5 s window.
pub const KV_COMMIT_HISTORY_MAX: usize = 100_000;

/// Timeout set on every FoundationDB transaction, in milliseconds: its 5 s lifetime plus
/// margin for the commit, so `run` never hangs on an unreachable cluster.
pub const FDB_TRANSACTION_TIMEOUT_MS: i32 = 6_000;

/// Bytes per blob chunk: below FoundationDB's 100 KB value limit, and under its 10 KB "performs
/// best" advice only at the cost of ten times the keys; 64 KiB is the usual compromise.
pub const BLOB_CHUNK_BYTES: usize = 64 * 1024;

/// Chunks written per transaction: 16 x 64 KiB = 1 MiB, FoundationDB's advice for a commit and a
/// tenth of its 10 MB limit.
pub const BLOB_CHUNKS_PER_TRANSACTION: usize = 16;

/// Largest blob (a component or an API definition) accepted.
pub const BLOB_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Connections one node keeps to PostgreSQL: each transaction holds one from its `BEGIN` to its
/// `COMMIT`, so this bounds the node's concurrent transactions there; more wait for one. Well
/// under PostgreSQL's default `max_connections` (100) with three nodes.
pub const PG_CONNECTIONS_MAX: usize = 16;

/// PostgreSQL's `statement_timeout` on every connection: a statement stuck behind a lock or an
/// overloaded server fails (and its transaction is retried or reported) instead of hanging.
pub const PG_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long opening a connection to PostgreSQL may take: a server that does not answer by then
/// fails the start (or the call) instead of hanging it.
pub const PG_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Free space the embedded store keeps on its disk by default: below it, writes are refused
/// (`storage_full`) before fjall sees them, and accepted again once space is freed. fjall poisons
/// itself at its first failed write until the process restarts, so it must not be let reach the
/// end of the disk: the active journal may still need its 64 MiB preallocation for real, a
/// memtable flush writes a table of up to 64 MiB, and compaction rewrites tables before it
/// deletes the old ones. Configurable: `limits.store_free_min_mb`.
pub const DISK_FREE_MIN_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
