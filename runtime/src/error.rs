use revenant_storage::StorageError;

/// Why an invocation did not return a result. Each kind has a stable `code` that the gateway
/// turns into an HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("unknown component `{0}`")]
    UnknownComponent(String),
    #[error("component `{component}` has no export `{function}`")]
    UnknownFunction { component: String, function: String },
    #[error("invalid worker name: {0}")]
    InvalidWorkerName(String),
    #[error("bad arguments: {0}")]
    BadArguments(String),
    #[error("the mailbox of worker {0} is full")]
    MailboxFull(String),
    #[error("too many active workers (limit {0})")]
    TooManyWorkers(usize),
    #[error("the worker trapped: {0}")]
    Trap(String),
    #[error("the invocation ran past its deadline of {0:?} and was interrupted")]
    Timeout(std::time::Duration),
    #[error(
        "the worker's guest memory exceeded its cap of {} MiB (limits.guest_memory_mb); the \
         call's changes are dropped and the worker keeps its state",
        .0 / (1024 * 1024)
    )]
    MemoryLimit(usize),
    /// A value the call would have to record (its arguments, its result, an outgoing HTTP
    /// response) is past `VALUE_BYTES_MAX`: a client error, and the worker keeps its state.
    #[error("{0}")]
    ValueTooLarge(String),
    /// The store refused to record the call's outcome although it is reachable: the call was
    /// recorded as failed instead, and the worker keeps its state.
    #[error("{0}")]
    RecordingFailed(String),
    /// A call repeated with an idempotency key whose outcome was removed with the log before a
    /// snapshot (`truncate_oplog_at_snapshot`): it is not run again, and its result is gone.
    #[error("{0}")]
    OutcomeTruncated(String),
    #[error("worker {0} is interrupted; resume it to call it again")]
    Interrupted(String),
    #[error("worker {0} does not exist")]
    WorkerNotFound(String),
    /// A fork's new name is taken.
    #[error("worker {0} already exists")]
    WorkerExists(String),
    #[error("worker {worker} exited with code {code}; it takes no more calls")]
    Exited { worker: String, code: i32 },
    #[error("replay diverged from the oplog: {0}")]
    Divergence(String),
    /// A read-only call changed the worker's state (caught by `check_read_only`).
    #[error("{0}")]
    ReadOnlyViolation(String),
    #[error("storage failed: {0}")]
    Storage(String),
    /// The worker's stored data is damaged (`StorageError::is_damage`): not served, and a
    /// retry will not help.
    #[error("the worker's stored data is damaged: {0}")]
    StorageDamaged(String),
    /// The store refused a write for want of disk space (`StorageError::Full`): nothing was
    /// written; it may be retried once space is freed.
    #[error("{0}")]
    StorageFull(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// This node does not serve the worker (another node holds its shard, or nobody does
    /// yet), and nothing of the call happened: it may be sent where the worker is served.
    #[error("{0}")]
    NotOwner(String),
    /// The worker's shard moved to another node during the call, after part of it was
    /// recorded: the new holder finishes it. A repeat with the same idempotency key gets its
    /// outcome; without a key the outcome cannot be asked for.
    #[error("{0}")]
    Moved(String),
    /// A call repeated with the idempotency key of one that failed: the first call's outcome,
    /// with the code it had.
    #[error("{message}")]
    Repeated { code: &'static str, message: String },
}

impl InvokeError {
    /// A stable, documented identifier for API clients (`docs/errors.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownComponent(_) => "unknown_component",
            Self::UnknownFunction { .. } => "unknown_function",
            Self::InvalidWorkerName(_) => "invalid_worker_name",
            Self::BadArguments(_) => "bad_argument",
            Self::MailboxFull(_) => "mailbox_full",
            Self::TooManyWorkers(_) => "too_many_workers",
            Self::Trap(_) => "worker_trap",
            Self::Timeout(_) => "invocation_timeout",
            Self::MemoryLimit(_) => "guest_memory_exceeded",
            Self::ValueTooLarge(_) => "value_too_large",
            Self::RecordingFailed(_) => "recording_failed",
            Self::OutcomeTruncated(_) => "outcome_truncated",
            Self::Interrupted(_) => "worker_interrupted",
            Self::WorkerNotFound(_) => "worker_not_found",
            Self::WorkerExists(_) => "worker_exists",
            Self::Exited { .. } => "worker_exited",
            Self::Divergence(_) => "worker_diverged",
            Self::ReadOnlyViolation(_) => "read_only_violation",
            Self::Storage(_) => "storage_unavailable",
            Self::StorageDamaged(_) => "storage_damaged",
            Self::StorageFull(_) => "storage_full",
            Self::Internal(_) => "internal",
            Self::NotOwner(_) => "not_owner",
            Self::Moved(_) => "worker_moved",
            Self::Repeated { code, .. } => code,
        }
    }
}

/// The codes a failed call can be recorded with: those of the failures an invocation can end
/// in once it has started.
const RECORDED_CODES: [&str; 10] = [
    "worker_trap",
    "invocation_timeout",
    "guest_memory_exceeded",
    "value_too_large",
    "recording_failed",
    "worker_interrupted",
    "worker_exited",
    "worker_diverged",
    "storage_unavailable",
    "internal",
];

/// The code a stored failure was recorded with, as one of this build's codes (an unknown one,
/// from a newer build, reads as `worker_trap`).
pub(crate) fn recorded_code(code: &str) -> &'static str {
    // Recorded before the code said which memory.
    if code == "memory_limit" {
        return "guest_memory_exceeded";
    }
    RECORDED_CODES
        .iter()
        .find(|c| **c == code)
        .copied()
        .unwrap_or("worker_trap")
}

impl From<StorageError> for InvokeError {
    fn from(e: StorageError) -> Self {
        if e.is_damage() {
            Self::StorageDamaged(e.to_string())
        } else if matches!(e, StorageError::Full(_)) {
            Self::StorageFull(e.to_string())
        } else {
            Self::Storage(e.to_string())
        }
    }
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot read component `{name}` from {path}: {source}")]
    ReadComponent {
        name: String,
        path: String,
        source: std::io::Error,
    },
    #[error("component `{name}` ({path}) is not a valid component: {reason}")]
    InvalidComponent {
        name: String,
        path: String,
        reason: String,
    },
    #[error("wasmtime engine: {0}")]
    Engine(String),
    /// A setting that cannot be used (e.g. an unreadable CA file).
    #[error("{0}")]
    Config(String),
    #[error("compiled-component cache at {path}: {source}")]
    Cache {
        path: String,
        source: std::io::Error,
    },
}
