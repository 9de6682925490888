//! `runtime` runs durable workers: it compiles and caches components, activates a worker on its
//! first invocation by replaying its oplog, runs each worker's commands (calls, operators'
//! controls, recovery) one at a time from a bounded mailbox (`worker/`), records every
//! nondeterministic host call through one chokepoint (`durability`), and answers an invocation
//! only once its entries are durable.
//!
//! It knows nothing of HTTP, routes or JSON: callers hand it a worker id, an export name and
//! typed [`Value`]s.

mod component;
mod durability;
mod environment;
mod ephemeral;
mod error;
mod guest_output;
mod http;
mod journal;
pub mod limits;
pub mod metrics;
mod slots;
pub mod trace;
mod types;
mod values;
mod worker;

pub use component::{ComponentInfo, ExportInfo};
pub use environment::{Environment, SystemEnvironment};
pub use error::{InvokeError, RuntimeError};
pub use http::egress::AllowRule;
pub use http::tls;
pub use http::{OutgoingHttpConfig, error_chain};
pub use limits::WorkerLimits;
pub use revenant_storage::{Value, WorkerId};
pub use types::{FunctionSignature, ValueType};
pub use worker::{Control, Forked};

/// The engine settings that decide what a guest computes, recorded in every worker's log
/// (`OplogEntry::Engine`): a node whose engine runs other settings refuses to replay the log.
/// The wasmtime version is not part of it: these settings, not the version, pin the results.
pub const ENGINE_SETTINGS: &str = "nan-canonicalization relaxed-simd-deterministic no-threads";

/// Which workers this node serves, in a cluster: the fence appends to a worker's log must
/// carry while this node holds its shard, `None` while it does not. Without one (a single node
/// owning its store) every worker is served here and appends carry no fence.
pub trait Placement: Send + Sync + 'static {
    fn fence(&self, worker: &WorkerId) -> Option<revenant_storage::Fence>;
}

/// A worker's durable log, as the admin API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogInfo {
    pub last_index: u64,
    /// First entry of the latest snapshot; 0 if there is none.
    pub snapshot_index: u64,
    /// Bytes the store holds for the log (`OplogStore::log_bytes`).
    pub bytes: u64,
}

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerStatus {
    /// In memory, waiting for a call.
    Idle,
    /// Running an invocation.
    Running,
    /// Stopped by an operator; refuses calls until resumed.
    Interrupted,
    /// Its state could not be rebuilt (e.g. a divergence); every call tries again and reports
    /// why.
    Failed,
    /// Not in memory: rebuilt from its oplog on its next call.
    Suspended,
    /// The guest ended itself (`wasi:cli/exit`); it takes no more calls.
    Exited,
}

impl WorkerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Running => "running",
            Self::Interrupted => "interrupted",
            Self::Failed => "failed",
            Self::Suspended => "suspended",
            Self::Exited => "exited",
        }
    }
}

use component::LoadedComponent;
use limits::{
    EPOCH_TICK, EVICTION_WAIT, IDEMPOTENCY_KEY_BYTES_MAX, MAILBOX_DEPTH, WORKER_NAME_BYTES_MAX,
};
use revenant_storage::{OplogEntry, OplogStore};
use slots::{Reserve, Shared};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};
use worker::{Call, Command, StoredLifecycle, WorkerContext};

/// What the runtime needs to start.
pub struct RuntimeConfig {
    /// Components by name, from their `.wasm` files.
    pub components: Vec<(String, PathBuf)>,
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    pub limits: WorkerLimits,
    pub outgoing_http: OutgoingHttpConfig,
}

/// A compiled component not yet serving (see [`Runtime::prepare_component`]).
pub struct PreparedComponent(LoadedComponent);

impl PreparedComponent {
    pub fn info(&self) -> &ComponentInfo {
        &self.0.info
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<durability::HostState>,
    cache_dir: PathBuf,
    /// Components by name. Replaced whole by `install_component`; a worker already in memory
    /// keeps the version it was activated with until it is evicted.
    components: std::sync::RwLock<HashMap<String, Arc<LoadedComponent>>>,
    oplog: Arc<dyn OplogStore>,
    environment: Arc<dyn Environment>,
    limits: WorkerLimits,
    http: Arc<http::Outgoing>,
    shared: Arc<Shared>,
    ticker_stop: Arc<AtomicBool>,
    /// Slots for ephemeral calls (`ephemeral.rs`).
    ephemeral: tokio::sync::Semaphore,
    /// Set once, before serving, on a node of a cluster.
    placement: std::sync::OnceLock<Arc<dyn Placement>>,
    /// Whether start-up recovery has finished, for readiness.
    recovery: std::sync::Mutex<Recovery>,
    /// The last count of workers known to the store, and when it was made (`workers_known`).
    known: tokio::sync::Mutex<Option<(std::time::Instant, u64)>>,
    /// Turns for time travel's scratch instances (`TIME_TRAVELS_CONCURRENT_MAX`).
    time_travels: tokio::sync::Semaphore,
}

/// One line a guest wrote, at the index of the entry that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputLine {
    pub index: u64,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub line: String,
}

/// A page of a worker's guest output; `next` is the index to ask from for more, if the log
/// holds more to look through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputPage {
    pub lines: Vec<OutputLine>,
    pub next: Option<u64>,
    /// The last index looked through: a follower asks from the one after it once `next` is
    /// `None`.
    pub scanned_to: u64,
}

/// Where start-up recovery stands (`Runtime::readiness`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Interrupted invocations are still being looked for.
    Pending,
    Done,
    Failed(String),
}

/// What `/readyz` reports: the store answers, and start-up recovery has finished.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// `Err` with why, when a read of the store failed or did not answer within
    /// `READY_PROBE_TIMEOUT`.
    pub store: Result<(), String>,
    /// `Err` with why, when the store would refuse a write now (a full disk).
    pub writes: Result<(), String>,
    pub recovery: Recovery,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.store.is_ok() && self.writes.is_ok() && self.recovery == Recovery::Done
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// The instance pool: every instance the runtime may hold has a slot made at start-up, reset
/// in place when its instance ends instead of being mapped and unmapped again (the kernel's
/// `mmap`, `munmap` and their TLB shootdowns were most of an ephemeral call; docs/performance.md).
fn pool_config(slots: usize, worker: &WorkerLimits) -> PoolingAllocationConfig {
    use limits::*;
    let slots32 = u32::try_from(slots).unwrap_or(u32::MAX);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots32)
        .total_core_instances(slots32.saturating_mul(GUEST_CORE_INSTANCES_PER_COMPONENT_MAX))
        .max_core_instances_per_component(GUEST_CORE_INSTANCES_PER_COMPONENT_MAX)
        .total_memories(slots32)
        .max_memories_per_component(GUEST_MEMORIES_PER_COMPONENT_MAX)
        .max_memory_size(worker.guest_memory_bytes)
        .total_tables(slots32.saturating_mul(GUEST_TABLES_PER_COMPONENT_MAX))
        .max_tables_per_component(GUEST_TABLES_PER_COMPONENT_MAX)
        .table_elements(GUEST_TABLE_ELEMENTS_MAX)
        .total_stacks(slots32)
        .linear_memory_keep_resident(GUEST_MEMORY_KEEP_RESIDENT_BYTES)
        .decommit_batch_size(GUEST_DECOMMIT_BATCH);
    pool
}

impl Runtime {
    pub fn new(
        config: RuntimeConfig,
        oplog: Arc<dyn OplogStore>,
        environment: Arc<dyn Environment>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let slots = limits::pool_instances(
            config.limits.active_workers_max,
            config.outgoing_http.total_max,
        );
        Self::with_pool_slots(config, oplog, environment, slots)
    }

    /// A runtime whose instance pool has `slots` slots (tests fill a small one).
    fn with_pool_slots(
        config: RuntimeConfig,
        oplog: Arc<dyn OplogStore>,
        environment: Arc<dyn Environment>,
        slots: usize,
    ) -> Result<Arc<Self>, RuntimeError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        // Component-model concurrency makes every call about four times slower and is unused.
        wasm.concurrency_support(false);
        // The same computation on every node: replay on another CPU must compute what the
        // first one did (ENGINE_SETTINGS). NaNs get one bit pattern and relaxed SIMD its
        // deterministic lowering; shared-memory threads are left out of the build (wasmtime's
        // `threads` feature is off), so a component that needs them fails validation.
        wasm.cranelift_nan_canonicalization(true);
        wasm.relaxed_simd_deterministic(true);
        wasm.epoch_interruption(true);
        // Each instance reserves its memory cap (not wasmtime's 4 GiB) with a guard on each
        // side, and its memory never moves: 100,000 live workers then take 31 TiB of address
        // space, where 4 GiB each would not fit in a process's 128 TiB past ~31,000 of them
        // (limits::GUEST_ADDRESS_SPACE_BYTES). The cost is a bounds check on accesses the
        // guard cannot cover; the memory's base stays put, so compiled code may keep it in a
        // register.
        wasm.memory_reservation(config.limits.guest_memory_bytes as u64);
        wasm.memory_guard_size(limits::GUEST_MEMORY_GUARD_BYTES);
        wasm.memory_may_move(false);
        limits::check_pool_fits(slots)?;
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool_config(
            slots,
            &config.limits,
        )));
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        // The epoch ticker: deadlines are counted in its ticks. A thread, not a task, so that a
        // guest hogging a tokio worker cannot stop the clock that interrupts it.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop) = (engine.clone(), ticker_stop.clone());
            std::thread::Builder::new()
                .name("revenant-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("epoch ticker: {e}")))?;
        }
        let mut linker = Linker::new(&engine);
        durability::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut components = HashMap::new();
        for (name, path) in &config.components {
            let loaded = component::load(&engine, &linker, name, path, &config.cache_dir)?;
            tracing::info!(component = %name, hash = %loaded.info.hash, exports = loaded.info.exports.len(), "component loaded");
            components.insert(name.clone(), Arc::new(loaded));
        }
        let shared = Arc::new(Shared::new());
        let http = Arc::new(
            http::Outgoing::new(config.outgoing_http, shared.clone())
                .map_err(RuntimeError::Config)?,
        );
        Ok(Arc::new(Self {
            engine,
            linker,
            cache_dir: config.cache_dir,
            components: std::sync::RwLock::new(components),
            oplog,
            environment,
            limits: config.limits,
            http,
            shared,
            ticker_stop,
            ephemeral: ephemeral::slots(),
            placement: std::sync::OnceLock::new(),
            recovery: std::sync::Mutex::new(Recovery::Pending),
            known: tokio::sync::Mutex::new(None),
            time_travels: tokio::sync::Semaphore::new(limits::TIME_TRAVELS_CONCURRENT_MAX),
        }))
    }

    /// Makes this runtime a cluster node's: it serves only the workers `placement` gives it,
    /// and their appends carry its fences. Set once, before serving.
    pub fn set_placement(&self, placement: Arc<dyn Placement>) {
        if self.placement.set(placement).is_err() {
            tracing::warn!("the runtime's placement is set once; ignoring another");
        }
    }

    /// Workers of the shards this node stopped serving leave memory: each answers what is in
    /// its mailbox (with `not_owner`, so callers go to the new holder) and retires.
    pub fn evict_where(&self, leaving: impl Fn(&WorkerId) -> bool) -> usize {
        self.shared.evict_where(leaving)
    }

    /// Refuses guests' outgoing requests to `addr`, one of this node's listeners, unless
    /// `outgoing_http.allow` names it.
    pub fn refuse_egress_to(&self, addr: std::net::SocketAddr) {
        self.http.policy.add_own_listener(addr);
    }

    /// The TLS settings of outgoing connections (system roots plus the configured CA files),
    /// for the node's own fetches (JWKS) to verify servers the same way guests' requests do.
    pub fn tls_client_config(&self) -> rustls::ClientConfig {
        self.http.tls.clone()
    }

    /// A loaded component's name, hash and exports.
    pub fn component(&self, name: &str) -> Option<ComponentInfo> {
        self.loaded(name).map(|c| c.info.clone())
    }

    /// Every loaded component, by name.
    pub fn components(&self) -> Vec<ComponentInfo> {
        let mut all: Vec<ComponentInfo> = self
            .components
            .read()
            .expect("never poisoned")
            .values()
            .map(|c| c.info.clone())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Compiles `bytes` (or finds them in the compile cache) as component `name`, without
    /// serving it yet: its exports can be checked against the routes first. CPU-bound for up
    /// to seconds: call it from a blocking thread.
    pub fn prepare_component(
        &self,
        name: &str,
        origin: &str,
        bytes: &[u8],
    ) -> Result<PreparedComponent, RuntimeError> {
        component::load_bytes(
            &self.engine,
            &self.linker,
            name,
            origin,
            bytes,
            &self.cache_dir,
        )
        .map(PreparedComponent)
    }

    /// Makes a prepared component the one its name runs, for workers activated from now on
    /// (a worker in memory keeps its version until it is evicted).
    pub fn install(&self, prepared: PreparedComponent) -> ComponentInfo {
        let info = prepared.0.info.clone();
        tracing::info!(component = %info.name, hash = %info.hash, exports = info.exports.len(), "component installed");
        self.components
            .write()
            .expect("never poisoned")
            .insert(info.name.clone(), Arc::new(prepared.0));
        info
    }

    /// The component and export a call names, with its arguments checked against the
    /// export's parameter types.
    fn resolve_call(
        &self,
        component: &str,
        function: &str,
        args: &[Value],
    ) -> Result<(Arc<LoadedComponent>, ExportInfo), InvokeError> {
        let loaded = self
            .loaded(component)
            .ok_or_else(|| InvokeError::UnknownComponent(component.to_string()))?;
        let export = resolve_export(&loaded, function, args)?;
        Ok((loaded, export))
    }

    fn loaded(&self, name: &str) -> Option<Arc<LoadedComponent>> {
        self.components
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    /// Invokes `function` (any name [`ComponentInfo::resolve`] accepts) on the worker, creating
    /// the worker on first use. Returns once the invocation's result is durable.
    ///
    /// With an idempotency key, the export runs at most once per key and worker: a repeat gets
    /// the stored outcome, also after a restart, and a repeat that arrives while the first call
    /// runs waits for it (calls to one worker run in arrival order).
    pub async fn invoke(
        &self,
        worker: WorkerId,
        function: &str,
        args: Vec<Value>,
        idempotency_key: Option<String>,
    ) -> Result<Vec<Value>, InvokeError> {
        if let Some(key) = &idempotency_key {
            check_idempotency_key(key)?;
        }
        self.call(worker, function, args, idempotency_key, false)
            .await
    }

    /// Calls `function` on the worker to read its state: in the worker's turn, after every call
    /// queued before it (so it sees their effects), writing nothing to the log and never
    /// replayed. The export must not change the worker's state (`WorkerLimits::check_read_only`
    /// verifies it); a host call that would need recording (outgoing HTTP) is refused, clock and
    /// random reads are answered live.
    pub async fn read(
        &self,
        worker: WorkerId,
        function: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, InvokeError> {
        self.call(worker, function, args, None, true).await
    }

    async fn call(
        &self,
        worker: WorkerId,
        function: &str,
        args: Vec<Value>,
        idempotency_key: Option<String>,
        read_only: bool,
    ) -> Result<Vec<Value>, InvokeError> {
        // Metrics measure real time.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let kind = if read_only {
            metrics::Kind::Read
        } else {
            metrics::Kind::Durable
        };
        let (component, export) = match self.check_call(&worker, function, &args) {
            Ok(resolved) => resolved,
            Err(e) => {
                metrics::invoked("", "", kind, Err(e.code()), began.elapsed());
                return Err(e);
            }
        };
        let (name, export_name) = (component.info.name.clone(), export.name.clone());
        let call = Call {
            function: function.to_string(),
            args,
            idempotency_key,
            latest: component.clone(),
            export,
            read_only,
            trace: trace::current(),
            span: tracing::Span::current(),
        };
        let outcome = self.send_call(worker, &component, call).await;
        let code = outcome.as_ref().map(|_| ()).map_err(InvokeError::code);
        metrics::invoked(&name, &export_name, kind, code, began.elapsed());
        outcome
    }

    /// The worker's name checked, this node's right to serve it, and the call resolved against
    /// the newest version of its component, to refuse a bad call fast; a worker that runs an
    /// older version resolves it again against its own.
    fn check_call(
        &self,
        worker: &WorkerId,
        function: &str,
        args: &[Value],
    ) -> Result<(Arc<LoadedComponent>, ExportInfo), InvokeError> {
        check_worker_name(&worker.name)?;
        if let Some(placement) = self.placement.get()
            && placement.fence(worker).is_none()
        {
            return Err(InvokeError::NotOwner(format!(
                "this node does not serve worker {worker}"
            )));
        }
        self.resolve_call(&worker.component, function, args)
    }

    /// Hands `call` to the worker's mailbox and waits for its answer; a full mailbox refuses it.
    async fn send_call(
        &self,
        worker: WorkerId,
        component: &Arc<LoadedComponent>,
        call: Call,
    ) -> Result<Vec<Value>, InvokeError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Invoke(call, reply);
        match self.send(&worker, component, command, false).await? {
            Some(()) => answer
                .await
                .map_err(|_| InvokeError::Internal("worker dropped the invocation".into()))?,
            None => Err(InvokeError::MailboxFull(worker.to_string())),
        }
    }

    /// Puts `command` in the worker's mailbox, spawning the worker's task if it is not in
    /// memory. With `wait`, waits for room in a full mailbox; without, `None` means full.
    async fn send(
        &self,
        worker: &WorkerId,
        component: &Arc<LoadedComponent>,
        mut command: Command,
        wait: bool,
    ) -> Result<Option<()>, InvokeError> {
        // A worker may retire between finding its mailbox and sending to it; then the command
        // goes to its successor. Bounded: a retiring worker leaves the map before closing its
        // mailbox.
        for _ in 0..3 {
            let mailbox = self.mailbox(worker, component).await?;
            let sent = if wait {
                mailbox.send(command).await.map_err(|e| e.0)
            } else {
                match mailbox.try_send(command) {
                    Err(mpsc::error::TrySendError::Full(_)) => return Ok(None),
                    Err(mpsc::error::TrySendError::Closed(returned)) => Err(returned),
                    Ok(()) => {
                        let queued = mailbox.max_capacity() - mailbox.capacity();
                        metrics::METRICS.mailbox_depth.observe(queued as f64);
                        Ok(())
                    }
                }
            };
            match sent {
                Ok(()) => return Ok(Some(())),
                Err(returned) => command = returned,
            }
        }
        Err(InvokeError::Internal(format!(
            "worker {worker} kept retiring"
        )))
    }

    /// Activates every worker that has an invocation in flight (the process died during it), so
    /// that the invocation resumes now rather than on the worker's next call. Returns how many
    /// were found; they resume in the background. Readiness waits for it.
    pub async fn recover_in_flight(&self) -> Result<usize, InvokeError> {
        let found = self.recover_in_flight_where(|_| true).await;
        self.set_recovery(match &found {
            Ok(_) => Recovery::Done,
            Err(e) => Recovery::Failed(e.to_string()),
        });
        found
    }

    /// Records where start-up recovery stands (a cluster node recovers shard by shard as it
    /// takes them, and is ready once it has joined).
    pub fn set_recovery(&self, recovery: Recovery) {
        *self.recovery.lock().expect("never poisoned") = recovery;
    }

    /// Whether this node can serve: the store answers a read within `READY_PROBE_TIMEOUT`,
    /// and start-up recovery has finished.
    pub async fn readiness(&self) -> Readiness {
        let probe = WorkerId::new("", "readiness-probe");
        let store =
            match tokio::time::timeout(limits::READY_PROBE_TIMEOUT, self.oplog.metadata(&probe))
                .await
            {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer within {} ms",
                    limits::READY_PROBE_TIMEOUT.as_millis()
                )),
            };
        let writes = self.oplog.writable().await.map_err(|e| e.to_string());
        let recovery = self.recovery.lock().expect("never poisoned").clone();
        Readiness {
            store,
            writes,
            recovery,
        }
    }

    /// Workers with a log in the store, over every loaded component: counted page by page, at
    /// most once per `WORKERS_KNOWN_REFRESH` (a scan of a million workers takes a while).
    pub async fn workers_known(&self) -> Result<u64, InvokeError> {
        let mut known = self.known.lock().await;
        if let Some((at, n)) = *known
            && at.elapsed() < limits::WORKERS_KNOWN_REFRESH
        {
            return Ok(n);
        }
        // The cache's age is real time.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let mut total = 0u64;
        for component in self.components() {
            let mut after: Option<String> = None;
            loop {
                let page = self
                    .oplog
                    .list_workers(&component.name, after.as_deref(), limits::LIST_WORKERS_MAX)
                    .await?;
                total += page.len() as u64;
                if page.len() < limits::LIST_WORKERS_MAX {
                    break;
                }
                after = page.last().map(|(w, _)| w.name.clone());
            }
        }
        *known = Some((began, total));
        Ok(total)
    }

    /// Lines the worker's guest wrote to stdout and stderr, as its log holds them
    /// (`OplogEntry::GuestOutput`), from entry `from` on: at most `limit` lines
    /// (`OUTPUT_LINES_MAX`), looking through at most `OUTPUT_SCAN_ENTRIES_MAX` entries. `None`
    /// if the worker does not exist.
    pub async fn guest_output(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Option<OutputPage>, InvokeError> {
        let Some(metadata) = self.oplog.metadata(worker).await? else {
            return Ok(None);
        };
        let limit = limit.clamp(1, limits::OUTPUT_LINES_MAX);
        let from = from.max(1);
        let end = metadata
            .last_index
            .min(from.saturating_add(limits::OUTPUT_SCAN_ENTRIES_MAX - 1));
        let mut lines = Vec::new();
        let mut at = from;
        'pages: while at <= end {
            let want = (end - at + 1).min(limits::REPLAY_PAGE_ENTRIES as u64) as usize;
            let page = self.oplog.read(worker, at, want).await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for e in page {
                if e.seq > end {
                    break 'pages;
                }
                if let OplogEntry::GuestOutput {
                    stream,
                    bytes,
                    dropped,
                } = e.entry
                {
                    if lines.len() >= limit {
                        // This entry starts the next page.
                        at = e.seq;
                        return Ok(Some(OutputPage {
                            lines,
                            next: Some(at),
                            scanned_to: at - 1,
                        }));
                    }
                    let stream = if stream == guest_output::STDERR {
                        "stderr"
                    } else {
                        "stdout"
                    };
                    for line in String::from_utf8_lossy(&bytes).lines() {
                        lines.push(OutputLine {
                            index: e.seq,
                            stream,
                            line: line.to_string(),
                        });
                    }
                    if dropped > 0 {
                        lines.push(OutputLine {
                            index: e.seq,
                            stream,
                            line: format!("[{dropped} bytes past the bound were dropped]"),
                        });
                    }
                }
            }
            at = last + 1;
        }
        let next = (end < metadata.last_index).then_some(end + 1);
        Ok(Some(OutputPage {
            lines,
            next,
            scanned_to: end,
        }))
    }

    /// Up to `limit` (at most `OPLOG_PAGE_ENTRIES_MAX`) entries of the worker's log from index
    /// `from`, as stored, and the log's last index; `None` if the worker does not exist.
    pub async fn oplog(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Option<(Vec<revenant_storage::SequencedEntry>, u64)>, InvokeError> {
        let Some(metadata) = self.oplog.metadata(worker).await? else {
            return Ok(None);
        };
        let limit = limit.min(limits::OPLOG_PAGE_ENTRIES_MAX);
        let entries = self.oplog.read(worker, from.max(1), limit).await?;
        Ok(Some((entries, metadata.last_index)))
    }

    /// Time travel: calls `function` on the worker's state as it was after entry `at` of its
    /// log, rebuilt in a scratch instance that is then dropped (`worker/travel.rs`). Nothing is
    /// recorded, and the live worker is not touched; outgoing HTTP is refused during the call.
    pub async fn state_at(
        &self,
        worker: &WorkerId,
        at: u64,
        function: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, InvokeError> {
        let (component, export) = self.resolve_call(&worker.component, function, &args)?;
        let _turn = self
            .time_travels
            .acquire()
            .await
            .map_err(|_| InvokeError::Internal("time travel is closed".into()))?;
        let ctx = self.context(worker, &component, Arc::default());
        worker::state_at(&ctx, at, &export, &args).await
    }

    /// Fork: makes `new_name` (a worker of the same component, which must not exist) a copy of
    /// `worker`'s log up to entry `at` (default: its last entry outside an invocation in
    /// flight). The new worker then lives on its own; the original is not touched.
    pub async fn fork(
        &self,
        worker: &WorkerId,
        new_name: &str,
        at: Option<u64>,
    ) -> Result<Forked, InvokeError> {
        let target = WorkerId::new(worker.component.clone(), new_name);
        check_worker_name(new_name)?;
        if let Some(placement) = self.placement.get()
            && placement.fence(&target).is_none()
        {
            return Err(InvokeError::NotOwner(format!(
                "this node does not serve worker {target}"
            )));
        }
        let component = self
            .loaded(&worker.component)
            .ok_or_else(|| InvokeError::UnknownComponent(worker.component.clone()))?;
        let (reply, answer) = oneshot::channel();
        let command = Command::Fork {
            source: worker.clone(),
            at,
            reply,
        };
        self.send(&target, &component, command, true).await?;
        answer
            .await
            .map_err(|_| InvokeError::Internal("worker dropped the fork".into()))?
    }

    /// Brings the gauges of `/metrics` up to date: workers in memory and known.
    pub async fn refresh_metrics(&self) {
        metrics::METRICS
            .workers_in_memory
            .set(self.active_workers() as i64);
        match self.workers_known().await {
            Ok(n) => metrics::METRICS.workers_known.set(n as i64),
            Err(e) => tracing::warn!("cannot count the workers known: {e}"),
        }
    }

    /// [`recover_in_flight`](Self::recover_in_flight) for the workers `which` selects: those
    /// of the shards a node just took over.
    pub async fn recover_in_flight_where(
        &self,
        which: impl Fn(&WorkerId) -> bool,
    ) -> Result<usize, InvokeError> {
        let mut workers = self.oplog.in_flight_workers().await?;
        workers.retain(|w| which(w));
        for worker in &workers {
            let Some(component) = self.loaded(&worker.component) else {
                tracing::warn!(%worker, "in flight, but its component is not loaded");
                continue;
            };
            if self
                .send(worker, &component, Command::Activate, false)
                .await?
                .is_none()
            {
                tracing::warn!(%worker, "could not queue its recovery; it resumes on its next call");
            }
        }
        Ok(workers.len())
    }

    /// Interrupts, resumes or deletes a worker. An interrupt stops a running invocation at the
    /// next epoch tick (it is recorded as failed and rolled back) and makes the worker refuse
    /// calls until it is resumed; all three are recorded, so they survive restarts.
    pub async fn control(&self, worker: WorkerId, control: Control) -> Result<(), InvokeError> {
        let component = self
            .loaded(&worker.component)
            .ok_or_else(|| InvokeError::UnknownComponent(worker.component.clone()))?;
        let resident = self.shared.flags(&worker);
        if resident.is_none() && self.oplog.metadata(&worker).await?.is_none() {
            return Err(InvokeError::WorkerNotFound(worker.to_string()));
        }
        if control == Control::Interrupt
            && let Some(flags) = &resident
        {
            flags.interrupt.store(true, Ordering::SeqCst);
        }
        let (reply, answer) = oneshot::channel();
        // A control waits for room rather than failing on a full mailbox: an operator's command
        // must get through to a busy worker.
        self.send(&worker, &component, Command::Control(control, reply), true)
            .await?;
        answer
            .await
            .map_err(|_| InvokeError::Internal("worker dropped the command".into()))?
    }

    /// A worker's status; `None` if it does not exist.
    pub async fn status(&self, worker: &WorkerId) -> Result<Option<WorkerStatus>, InvokeError> {
        if let Some(status) = self.resident_status(worker) {
            return Ok(Some(status));
        }
        let Some(metadata) = self.oplog.metadata(worker).await? else {
            return Ok(None);
        };
        Ok(Some(self.stored_status(worker, metadata.last_index).await?))
    }

    /// Where a worker's durable log stands and what it costs the store, or `None` if the worker
    /// was never created.
    pub async fn log(&self, worker: &WorkerId) -> Result<Option<LogInfo>, InvokeError> {
        let Some(metadata) = self.oplog.metadata(worker).await? else {
            return Ok(None);
        };
        Ok(Some(LogInfo {
            last_index: metadata.last_index,
            snapshot_index: metadata.snapshot_index,
            bytes: self.oplog.log_bytes(worker).await?,
        }))
    }

    /// The status of a worker in memory (not one deleted and leaving).
    fn resident_status(&self, worker: &WorkerId) -> Option<WorkerStatus> {
        *self
            .shared
            .flags(worker)?
            .status
            .lock()
            .expect("status lock")
    }

    /// The status of a worker not in memory, from its last entry.
    async fn stored_status(
        &self,
        worker: &WorkerId,
        last_index: u64,
    ) -> Result<WorkerStatus, InvokeError> {
        let last = self.oplog.read(worker, last_index, 1).await?;
        Ok(StoredLifecycle::of_last_entry(last.first().map(|e| &e.entry)).stored_status())
    }

    /// Up to `limit` workers of `component` named after `after`, with their status and last
    /// oplog index, optionally only those with `status`.
    pub async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
        status: Option<WorkerStatus>,
    ) -> Result<Vec<(String, WorkerStatus, u64)>, InvokeError> {
        let rows = self
            .oplog
            .list_workers(component, after, limit.min(limits::LIST_WORKERS_MAX))
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (worker, metadata) in rows {
            let s = match self.resident_status(&worker) {
                Some(status) => status,
                None => self.stored_status(&worker, metadata.last_index).await?,
            };
            if status.is_none_or(|wanted| wanted == s) {
                out.push((worker.name, s, metadata.last_index));
            }
        }
        Ok(out)
    }

    /// Lets every worker finish its queued calls and leave memory, then returns: after it, the
    /// runtime holds no worker task (and so no handle on the store through them). Calls made
    /// meanwhile are still served, by new workers.
    pub async fn shutdown(&self) {
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if self.shared.evict_all() == 0 {
                return;
            }
            space.await;
        }
    }

    /// Workers in memory now.
    pub fn active_workers(&self) -> usize {
        self.shared.live()
    }

    fn context(
        &self,
        worker: &WorkerId,
        component: &Arc<LoadedComponent>,
        flags: Arc<slots::WorkerFlags>,
    ) -> WorkerContext {
        WorkerContext {
            id: worker.clone(),
            engine: self.engine.clone(),
            component: component.clone(),
            oplog: self.oplog.clone(),
            environment: self.environment.clone(),
            http: self.http.clone(),
            limits: self.limits.clone(),
            flags,
            placement: self.placement.get().cloned(),
            fence: self.placement.get().and_then(|p| p.fence(worker)),
        }
    }

    async fn mailbox(
        &self,
        worker: &WorkerId,
        component: &Arc<LoadedComponent>,
    ) -> Result<mpsc::Sender<Command>, InvokeError> {
        let deadline = tokio::time::Instant::now() + EVICTION_WAIT;
        loop {
            // Registered before looking, so a slot freed in between is not missed.
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            match self
                .shared
                .get_or_reserve(worker, self.limits.active_workers_max, MAILBOX_DEPTH)
            {
                Reserve::Existing(sender) => return Ok(sender),
                Reserve::New {
                    sender,
                    receiver,
                    lifetime,
                    evict,
                    flags,
                } => {
                    let ctx = self.context(worker, component, flags);
                    tokio::spawn(worker::run(
                        ctx,
                        receiver,
                        lifetime,
                        evict,
                        self.shared.clone(),
                    ));
                    return Ok(sender);
                }
                Reserve::Full => {
                    if tokio::time::timeout_at(deadline, space).await.is_err() {
                        return Err(InvokeError::TooManyWorkers(self.limits.active_workers_max));
                    }
                }
            }
        }
    }
}

/// The export `function` names in `component`, with `args` checked against its parameters.
pub(crate) fn resolve_export(
    component: &LoadedComponent,
    function: &str,
    args: &[Value],
) -> Result<ExportInfo, InvokeError> {
    let export = component
        .info
        .resolve(function)
        .map_err(|_| InvokeError::UnknownFunction {
            component: component.info.name.clone(),
            function: function.to_string(),
        })?;
    let params = &export.signature.params;
    if params.len() != args.len() {
        return Err(InvokeError::BadArguments(format!(
            "`{}` takes {} argument(s), got {}",
            export.name,
            params.len(),
            args.len()
        )));
    }
    for ((name, ty), value) in params.iter().zip(args) {
        ty.check(value, name).map_err(InvokeError::BadArguments)?;
    }
    let bytes = revenant_storage::oplog::encoded_len(args);
    if bytes > revenant_storage::limits::VALUE_BYTES_MAX {
        return Err(InvokeError::ValueTooLarge(format!(
            "the arguments of `{}` are {bytes} bytes, past the {} bytes a call may record",
            export.name,
            revenant_storage::limits::VALUE_BYTES_MAX
        )));
    }
    Ok(export.clone())
}

fn check_idempotency_key(key: &str) -> Result<(), InvokeError> {
    if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
        return Err(InvokeError::BadArguments(format!(
            "an idempotency key has 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes, got {}",
            key.len()
        )));
    }
    Ok(())
}

fn check_worker_name(name: &str) -> Result<(), InvokeError> {
    if name.is_empty() || name.len() > WORKER_NAME_BYTES_MAX {
        return Err(InvokeError::InvalidWorkerName(format!(
            "a worker name has 1 to {WORKER_NAME_BYTES_MAX} bytes, got {}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(InvokeError::InvalidWorkerName(
            "a worker name may not contain control characters".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
// Tests read the clock (`clippy.toml`).
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use revenant_storage::memory::MemoryStore;
    use std::time::Duration;

    fn add(rt: &Runtime, user: &str) -> impl Future<Output = Result<Vec<Value>, InvokeError>> {
        rt.invoke(
            WorkerId::new("user-activity", user),
            "add-activity",
            vec![Value::String("k".into()), Value::String("v".into())],
            None,
        )
    }

    /// Retries `call` until it succeeds, for up to ten seconds.
    async fn eventually<F: Future<Output = Result<Vec<Value>, InvokeError>>>(
        mut call: impl FnMut() -> F,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match call().await {
                Ok(v) => return v,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(matches!(e, InvokeError::TooManyWorkers(_)), "{e}");
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("still refused after 10 s: {e}"),
            }
        }
    }

    /// Every instance takes a slot of the pool; one past it is refused as load
    /// (`too_many_workers`, which callers may retry), not reported as a failure of the guest,
    /// and is served once a slot frees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_instance_pool_refuses_with_too_many_workers_and_serves_once_a_slot_frees() {
        let component = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/wasm32-wasip2/guest/user_activity.wasm");
        assert!(
            component.exists(),
            "build the example component first (scripts/test.sh)"
        );
        let cache = tempfile::tempdir().unwrap();
        let rt = Runtime::with_pool_slots(
            RuntimeConfig {
                components: vec![("user-activity".into(), component)],
                cache_dir: cache.path().into(),
                limits: WorkerLimits::default(),
                outgoing_http: OutgoingHttpConfig::default(),
            },
            Arc::new(MemoryStore::default()),
            Arc::new(SystemEnvironment::new()),
            1,
        )
        .unwrap();
        assert_eq!(add(&rt, "a").await.unwrap(), vec![Value::U64(1)]);
        // `a` is live and holds the only slot.
        let refused = add(&rt, "b").await.unwrap_err();
        assert!(
            matches!(refused, InvokeError::TooManyWorkers(_)),
            "{refused}"
        );
        let refused = rt
            .invoke_ephemeral("user-activity", "count", vec![])
            .await
            .unwrap_err();
        assert!(
            matches!(refused, InvokeError::TooManyWorkers(_)),
            "{refused}"
        );
        // `a` leaves; `b` gets its slot, and `a` comes back with its state once `b` leaves.
        rt.evict_where(|w| w.name == "a");
        assert_eq!(eventually(|| add(&rt, "b")).await, vec![Value::U64(1)]);
        rt.evict_where(|w| w.name == "b");
        assert_eq!(eventually(|| add(&rt, "a")).await, vec![Value::U64(2)]);
    }
}
