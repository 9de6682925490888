//! Every bound the runtime enforces, with its reason. Those a deployment may tune are defaults
//! of [`WorkerLimits`], set from the project file's `limits:`.

use std::time::Duration;

/// Invocations queued for one worker. A full mailbox refuses the call (HTTP 429) instead of
/// queueing without bound; 128 leaves room for bursts of concurrent calls to one key.
pub const MAILBOX_DEPTH: usize = 128;

/// Default number of workers held in memory at once (where the machine allows it: see
/// [`live_workers_ceiling`]). Past it the least recently used idle worker is evicted, and its
/// next call rebuilds it from its log. More may be configured, up to the ceiling.
pub const ACTIVE_WORKERS_DEFAULT: usize = 8_000;

/// Most workers a project may ask to hold in memory, whatever the machine: a bound on the
/// slot table, far past what memory allows today (about 100 KiB per idle worker,
/// docs/performance.md).
pub const ACTIVE_WORKERS_CEILING: usize = 1_000_000;

/// Memory mappings each slot of the instance pool holds from start-up, used or not: its fiber
/// stack and that stack's guard page (wasmtime's pooling allocator makes every stack up front).
pub const MAPPINGS_PER_POOL_SLOT: usize = 2;

/// Memory mappings a slot adds while an instance lives in it: 4.0 measured with the demo
/// component at 10,000 live workers (its linear memory's accessible part and copy-on-write
/// image split the memory pool's reservation, and its tables split the table pool's).
pub const MAPPINGS_PER_INSTANCE: usize = 4;

/// Mappings left for the rest of the process (threads' stacks, allocator arenas, the store's
/// files, compiled code), out of `vm.max_map_count`.
pub const MAPPINGS_RESERVED: usize = 2_000;

/// Workers that have left the slot table but whose task has not yet dropped its instance (it
/// answers what was already in its mailbox first): the pool keeps this many slots for them.
pub const LEAVING_INSTANCES_MAX: usize = 256;

/// Linear memories one component may define or import: wasmtime's pool keeps one memory slot
/// per instance (`pool_instances`), so a component with two memories holds half as many workers
/// as one with one (every toolchain we know makes components with one).
pub const GUEST_MEMORIES_PER_COMPONENT_MAX: u32 = 2;

/// Tables one component may hold (the demo has 2); the pool keeps this many per instance.
pub const GUEST_TABLES_PER_COMPONENT_MAX: u32 = 8;

/// Core instances one component may be made of (the demo has a handful: its module and the
/// toolchain's shims).
pub const GUEST_CORE_INSTANCES_PER_COMPONENT_MAX: u32 = 32;

/// Linear memory a pool slot keeps resident when its instance ends (reset by copying the
/// component's image back over it) instead of giving it back to the kernel. None: a slot keeps
/// what it keeps for good, and with 100,000 slots reused by 900,000 workers 128 KiB each took
/// the server from 6.6 to 19.4 GiB (0: 6.8 GiB), for 9 % more ephemeral calls per second
/// (18,674 against 16,980; docs/performance.md).
pub const GUEST_MEMORY_KEEP_RESIDENT_BYTES: usize = 0;

/// Pool slots whose memory is given back to the kernel in one batch of `madvise` calls.
pub const GUEST_DECOMMIT_BATCH: usize = 16;

/// Instances that may exist beyond `active_workers_max`: ephemeral calls, workers waiting on an
/// outgoing request (not counted against the cap; `outgoing_requests_max` bounds them),
/// workers leaving memory, and time travel's scratch instances.
pub fn instances_beyond_cap(outgoing_requests_max: usize) -> usize {
    EPHEMERAL_CALLS_MAX
        + outgoing_requests_max
        + LEAVING_INSTANCES_MAX
        + TIME_TRAVELS_CONCURRENT_MAX
}

/// Slots in the instance pool: every instance the runtime may hold at once. One past it is
/// refused (`too_many_workers`) rather than allocated.
pub fn pool_instances(active_workers_max: usize, outgoing_requests_max: usize) -> usize {
    active_workers_max + instances_beyond_cap(outgoing_requests_max)
}

/// Mappings a process needs to fill a pool of `slots`, the rest of the process included.
pub fn mappings_needed(slots: usize) -> usize {
    slots * (MAPPINGS_PER_POOL_SLOT + MAPPINGS_PER_INSTANCE) + MAPPINGS_RESERVED
}

/// Linux's limit on one process's memory mappings (`vm.max_map_count`), 65,530 where it cannot
/// be read.
pub fn max_map_count() -> usize {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65_530)
}

/// Refuses, naming the numbers, an instance pool of `slots` whose start-up mappings would not
/// fit in what this process has left of `vm.max_map_count`: wasmtime would otherwise fail
/// part-way with "failed to protect stack guard page: Cannot allocate memory".
pub(crate) fn check_pool_fits(slots: usize) -> Result<(), crate::RuntimeError> {
    let in_use = std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    pool_fits(slots, in_use, max_map_count()).map_err(crate::RuntimeError::Config)
}

fn pool_fits(slots: usize, in_use: usize, max_map_count: usize) -> Result<(), String> {
    let needed = slots * MAPPINGS_PER_POOL_SLOT;
    if in_use + needed <= max_map_count {
        return Ok(());
    }
    Err(format!(
        "the instance pool for {slots} workers needs {needed} memory mappings at start-up, and \
         this process has {} of vm.max_map_count {max_map_count} left: lower \
         active_workers_max or outgoing_http.total_max, or raise the sysctl",
        max_map_count.saturating_sub(in_use)
    ))
}

/// Guard region before and after each guest's linear memory (wasmtime's default size on 64-bit
/// hosts): a load or store whose constant offset is under it needs no bounds check of its own.
pub const GUEST_MEMORY_GUARD_BYTES: u64 = 32 * 1024 * 1024;

/// Address space the guests' memories may reserve, all of them together: half of the 128 TiB
/// a process has on x86-64 (47-bit addresses), the rest left to the heap, stacks and code.
/// Each instance reserves its memory cap and both guards up front (`guest_reservation_bytes`),
/// so that its memory never moves; wasmtime's default of 4 GiB per memory would allow only
/// ~31,000 live workers in the whole 128 TiB.
pub const GUEST_ADDRESS_SPACE_BYTES: u64 = 64 << 40;

/// Fiber stack one instance runs its calls on (wasmtime's default async stack size).
pub const GUEST_STACK_BYTES: u64 = 2 * 1024 * 1024;

/// Virtual memory one pool slot reserves: its linear memory's cap and the guards around it, its
/// tables at their cap (a pointer-sized element, counted as 16 bytes) and its fiber stack.
/// Reserved, not resident: pages count only once the guest touches them.
pub fn guest_reservation_bytes(guest_memory_bytes: usize) -> u64 {
    guest_memory_bytes as u64
        + 2 * GUEST_MEMORY_GUARD_BYTES
        + GUEST_TABLES_PER_COMPONENT_MAX as u64 * GUEST_TABLE_ELEMENTS_MAX as u64 * 16
        + GUEST_STACK_BYTES
}

/// Why a machine allows no more live workers than [`live_workers_ceiling`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CeilingBound {
    /// `vm.max_map_count`: each pool slot holds [`MAPPINGS_PER_POOL_SLOT`] mappings, and
    /// [`MAPPINGS_PER_INSTANCE`] more while in use.
    Mappings,
    /// [`GUEST_ADDRESS_SPACE_BYTES`]: each live worker reserves [`guest_reservation_bytes`].
    AddressSpace,
    /// [`ACTIVE_WORKERS_CEILING`].
    Table,
}

/// How many workers this machine lets one process hold in memory, and what sets that number.
/// The instance pool has a slot for each live worker and `beyond` more (`instances_beyond_cap`),
/// all made at start-up. Linux refuses a process more than `vm.max_map_count` mappings (65,530
/// by default, which allows 9,562 workers with the default 512 outgoing requests): raising the
/// sysctl raises the ceiling (docs/performance.md). Past that, the address space the slots'
/// reservations take (about 200,000 workers with the default 256 MiB cap).
pub fn live_workers_ceiling(
    max_map_count: usize,
    guest_memory_bytes: usize,
    beyond: usize,
) -> (usize, CeilingBound) {
    let by_maps = (max_map_count.saturating_sub(MAPPINGS_RESERVED)
        / (MAPPINGS_PER_POOL_SLOT + MAPPINGS_PER_INSTANCE))
        .saturating_sub(beyond);
    let by_space = ((GUEST_ADDRESS_SPACE_BYTES / guest_reservation_bytes(guest_memory_bytes))
        as usize)
        .saturating_sub(beyond);
    [
        (by_maps, CeilingBound::Mappings),
        (by_space, CeilingBound::AddressSpace),
        (ACTIVE_WORKERS_CEILING, CeilingBound::Table),
    ]
    .into_iter()
    .min_by_key(|(n, _)| *n)
    .expect("three bounds")
}

/// Default linear memory one guest may grow to. A worker may keep and return a value of up to
/// `VALUE_BYTES_MAX` (16 MiB); building and returning it takes several times that in the
/// guest (the state, the result being built, the allocator's growth), so 256 MiB. Memory is
/// committed as the guest touches it: the cap costs nothing until used.
pub const GUEST_MEMORY_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Table elements one guest may grow to.
pub const GUEST_TABLE_ELEMENTS_MAX: usize = 100_000;

/// Default time one invocation may run before it is interrupted (and recorded as failed).
pub const INVOCATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Replay re-runs invocations that completed within their deadline; on a busier machine they may
/// take longer, so replay allows this many times the deadline before giving up.
pub const REPLAY_TIMEOUT_FACTOR: u32 = 10;

/// Default time an idle worker stays in memory. Its state is rebuilt from the oplog on its next
/// call.
pub const WORKER_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How often the epoch ticker advances: the granularity of deadlines, and how often a running
/// guest yields to other workers on its thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How long a call waits for an evicted worker to leave when all slots are taken.
pub const EVICTION_WAIT: Duration = Duration::from_secs(5);

/// Slots looked at, least recently used first, for one not already asked to leave: past that
/// many pending evictions a call waits for space instead of asking yet another worker.
pub const EVICTION_SCAN: usize = 64;

/// Ephemeral calls running at once, each on its own instance (guest memory up to the cap):
/// past this, a call waits up to `EVICTION_WAIT` for a slot, then is refused.
pub const EPHEMERAL_CALLS_MAX: usize = 256;

/// Most bytes one `get-random-bytes` call may ask for: the response is recorded in one oplog
/// entry, which must stay under the storage entry limit.
pub const RANDOM_BYTES_MAX: u64 = 16 * 1024;

/// Largest outgoing response the log records: its status, headers and body counted together
/// (as they are recorded in one entry), at the storage bound on one value. Past it the request
/// fails, recorded, and the guest sees why. A response is held in memory while it is read, so
/// `HTTP_REQUESTS_MAX` of these bound the memory outgoing HTTP may take.
pub const HTTP_RESPONSE_BYTES_MAX: usize = revenant_storage::limits::VALUE_BYTES_MAX;

/// Largest outgoing request body. Only its SHA-256 is recorded, but it is held in memory
/// until sent.
pub const HTTP_REQUEST_BODY_BYTES_MAX: usize = revenant_storage::limits::VALUE_BYTES_MAX;

/// Largest outgoing request head (method, URL, headers), which is recorded whole; the usual
/// server limit on request headers (hyper's, nginx's) is of this order.
pub const HTTP_REQUEST_HEAD_BYTES_MAX: usize = 64 * 1024;

/// Default time an outgoing HTTP request may take, connection to last byte. The invocation
/// deadline counts guest execution only, so a request that never answers is bounded here.
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time one TCP connection attempt (and a DNS lookup) may take: a host that does not
/// answer SYNs is given up on long before the request's own deadline.
pub const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default time from sending a request to its response's status line. A server that accepts
/// and never answers holds the worker (and its caller) this long, not the whole request bound.
pub const HTTP_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default number of outgoing requests one worker may have in flight (a guest may start several
/// at once): past it a request fails at once, recorded, instead of queueing.
pub const HTTP_REQUESTS_PER_WORKER_MAX: usize = 8;

/// Default number of outgoing requests the node may have in flight. Workers waiting on one are
/// not counted against `active_workers_max` (so slow servers cannot starve other users), so
/// this also bounds how far past that cap the workers in memory may go.
pub const HTTP_REQUESTS_MAX: usize = 512;

/// Idle pooled connections kept per outgoing host.
pub const HTTP_IDLE_CONNECTIONS_PER_HOST: usize = 16;

/// Attempts at an outgoing HTTP request that fails to connect (nothing was sent, so a retry
/// cannot duplicate a side effect), with exponential backoff from `HTTP_RETRY_BACKOFF`. Only the
/// final outcome is recorded, so replay is unaffected by how many attempts it took.
pub const HTTP_CONNECT_ATTEMPTS: u32 = 3;
pub const HTTP_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// Host calls one invocation may record (clock readings, random draws, HTTP requests). Each is
/// an entry held in memory until the invocation's end and replayed on every activation: a guest
/// looping on the clock must trap, not grow the journal without bound. 10,000 is far above what
/// a request handler makes.
pub const HOST_CALLS_PER_INVOCATION_MAX: usize = 10_000;

/// Bytes of stdout and stderr one invocation may leave in its worker's log (and in the
/// server's log); past it the bytes are counted and dropped, and the guest's writes still
/// succeed. 64 KiB is hundreds of lines, and keeps a chatty guest from growing the log faster
/// than its calls do.
pub const GUEST_OUTPUT_BYTES_PER_INVOCATION_MAX: usize = 64 * 1024;

/// Most lines of guest output one request returns; callers page with `from`.
pub const OUTPUT_LINES_MAX: usize = 1_000;

/// Most oplog entries one request for guest output reads looking for them: a long log without
/// output is paged through in steps of this many, not read whole at once.
pub const OUTPUT_SCAN_ENTRIES_MAX: u64 = 10_000;

/// Entries read per page while replaying an oplog.
pub const REPLAY_PAGE_ENTRIES: usize = 1_000;

/// Most oplog entries one request for a worker's log (`oplog show`) returns; callers page
/// with `from`. Each entry is decoded to JSON, and one may hold up to a value's bound.
pub const OPLOG_PAGE_ENTRIES_MAX: usize = 1_000;

/// Entries a fork writes per append, at most (an invocation is never split across appends,
/// so one with many host calls makes a larger one): a fork of a long log is many appends,
/// not one transaction of the whole log, which a store may refuse for its size.
pub const FORK_BATCH_ENTRIES: usize = 1_000;

/// Time-travel requests (`Runtime::state_at`) running at once: each replays a log into a
/// scratch instance, CPU-bound work on a machine whose cores serve the live workers; more wait.
pub const TIME_TRAVELS_CONCURRENT_MAX: usize = 2;

/// Most workers one listing returns; callers page with `after`.
pub const LIST_WORKERS_MAX: usize = 1_000;

/// How long a count of the workers known to the store serves `/metrics` before it is made
/// again: the count reads every worker's metadata.
pub const WORKERS_KNOWN_REFRESH: Duration = Duration::from_secs(30);

/// How long `/readyz` waits for the store to answer a read before reporting it unreachable.
pub const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Length of an idempotency key: it is part of a storage key.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;

/// Length of a worker name: it is part of every storage key of the worker.
pub const WORKER_NAME_BYTES_MAX: usize = 256;

/// Default number of completed invocations between snapshots, for components that export
/// `revenant:durable/snapshot`: recovery then replays at most this many invocations.
pub const SNAPSHOT_EVERY_INVOCATIONS: u64 = 1_000;

/// What replaying one invocation costs, counted in bytes of snapshot: an `add-activity`'s
/// entries take about 250 bytes of log. A worker is snapshotted no sooner than its last
/// snapshot's size divided by this many invocations after it, so saving the state costs about
/// what replaying the log since the last one would: a state of 4 MB is saved every ~16,000
/// calls, not every `SNAPSHOT_EVERY_INVOCATIONS` (which made a hot worker's p99 12 ms).
pub const SNAPSHOT_BYTES_PER_INVOCATION: u64 = 256;

/// Bytes of snapshot per oplog entry: under the storage entry limit with room for the header.
pub const SNAPSHOT_PART_BYTES: usize = 60 * 1024;

/// The bounds a deployment may tune.
#[derive(Clone, Debug)]
pub struct WorkerLimits {
    pub invocation_timeout: Duration,
    pub guest_memory_bytes: usize,
    pub idle_timeout: Duration,
    pub active_workers_max: usize,
    /// Completed invocations between snapshots; 0 turns snapshots off.
    pub snapshot_every: u64,
    /// Whether the oplog before a new snapshot is deleted. Off by default: the history is then
    /// kept in full (and idempotency keys of truncated calls can no longer be answered).
    pub truncate_at_snapshot: bool,
    /// For tests: compare the worker's snapshot (`save-snapshot`) before and after every
    /// read-only call, and fail a call that changed it. Costs two snapshots per read.
    pub check_read_only: bool,
}

impl Default for WorkerLimits {
    fn default() -> Self {
        Self {
            invocation_timeout: INVOCATION_TIMEOUT,
            guest_memory_bytes: GUEST_MEMORY_BYTES_MAX,
            idle_timeout: WORKER_IDLE_TIMEOUT,
            active_workers_max: ACTIVE_WORKERS_DEFAULT,
            snapshot_every: SNAPSHOT_EVERY_INVOCATIONS,
            truncate_at_snapshot: false,
            check_read_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_worker_ceiling_names_the_bound_that_sets_it() {
        let mib = 1024 * 1024;
        let beyond = instances_beyond_cap(HTTP_REQUESTS_MAX);
        assert_eq!(beyond, 1_026);
        // Linux's default mapping limit, the default memory cap: the pool's slots (6 mappings
        // each when full), less those kept for instances beyond the cap.
        assert_eq!(
            live_workers_ceiling(65_530, GUEST_MEMORY_BYTES_MAX, beyond),
            (9_562, CeilingBound::Mappings)
        );
        assert!(mappings_needed(pool_instances(9_562, HTTP_REQUESTS_MAX)) <= 65_530);
        assert!(mappings_needed(pool_instances(9_563, HTTP_REQUESTS_MAX)) > 65_530);
        // Mappings raised far: the slots' reservations (256 MiB, two 32 MiB guards, tables and
        // a stack) bound it.
        assert_eq!(
            live_workers_ceiling(10_000_000, GUEST_MEMORY_BYTES_MAX, beyond),
            (199_774, CeilingBound::AddressSpace)
        );
        // Small guests: the guards, tables and stack of each slot still bind before the slot
        // table does.
        assert_eq!(
            live_workers_ceiling(usize::MAX, mib, beyond),
            (846_232, CeilingBound::AddressSpace)
        );
    }

    #[test]
    fn a_pool_past_the_mappings_left_is_refused_with_the_numbers() {
        assert!(pool_fits(1_000, 500, 65_530).is_ok());
        let e = pool_fits(40_000, 500, 65_530).unwrap_err();
        assert!(
            e.contains("80000 memory mappings") && e.contains("65030 of vm.max_map_count 65530"),
            "{e}"
        );
    }
}
