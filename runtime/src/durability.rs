//! The durability chokepoint. Every host call whose result cannot be recomputed asks
//! [`Chokepoint::decide`] what to do: answer from the log (replay), or perform it and record the
//! response (live). The decision, and the rule that everything recorded is made durable before
//! an effect leaves the process, live here and nowhere else. A host function only declares what
//! it is ([`HostFunction`]: its name and its [`Effect`]) and encodes its request and response.
//!
//! The WASI clocks and random interfaces are bound here by shadowing the stock wasmtime-wasi
//! implementations in the linker, so a guest's `SystemTime::now()` and random draws are
//! captured whatever library the guest uses to make them. Outgoing HTTP (`http/`) asks the
//! same chokepoint from the task that performs the request.

use crate::environment::Environment;
use crate::guest_output::{self, GuestOutput};
use crate::http::Outgoing;
use crate::journal::Journal;
use crate::limits::{GUEST_TABLE_ELEMENTS_MAX, HOST_CALLS_PER_INVOCATION_MAX, RANDOM_BYTES_MAX};
use crate::slots::WorkerFlags;
use revenant_storage::OplogEntry;
use revenant_storage::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use wasmtime::ResourceLimiter;
use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime_wasi::clocks::WasiClocksView;
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::{monotonic_clock, wall_clock};
use wasmtime_wasi::p2::bindings::random::{insecure, insecure_seed, random};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// One recorded host call, as it appears in a `HostCall` oplog entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HostCallRecord {
    pub interface: String,
    pub function: String,
    pub request: Value,
    pub response: Value,
}

/// What a host call does to the world, which decides when it must be made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Reads something of this process (a clock, entropy): recorded, and made durable with the
    /// invocation's end. A crash before then loses the reading, and nothing outside saw it.
    LocalRead,
    /// Reaches outside the process (an HTTP request): everything recorded before it is made
    /// durable, and the worker marked in flight, before it leaves, so the log never runs behind
    /// the world by more than this one call.
    Remote,
}

/// A host function, as the chokepoint sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HostFunction {
    pub interface: &'static str,
    pub function: &'static str,
    pub effect: Effect,
}

enum Mode {
    /// Between invocations: no host call may happen, since nothing would record it.
    Idle,
    Live {
        journal: Arc<Journal>,
        /// Host calls recorded so far in this invocation.
        calls: usize,
    },
    /// Answers host calls from the log. With `then_live`, the invocation was interrupted by a
    /// crash: once the recorded calls run out it continues live on that journal (resumption).
    Replay {
        expected: VecDeque<HostCallRecord>,
        then_live: Option<Arc<Journal>>,
    },
    /// An ephemeral call: nothing is recorded and nothing will be replayed, so host calls go
    /// straight to the real world.
    Ephemeral,
    /// A read-only call on a durable worker: never replayed, so local reads are answered live
    /// and unrecorded; a remote effect, which the log would have to hold, is refused.
    ReadOnly,
}

struct Core {
    mode: Mode,
    /// Set when replay met a host call that differs from the log; the trap that follows is
    /// reported as a divergence, with this message.
    divergence: Option<String>,
}

/// The chokepoint of one worker's store. Cheap to clone: the tasks that perform outgoing HTTP
/// hold a clone, since they decide after the guest's call into the host has returned.
#[derive(Clone)]
pub(crate) struct Chokepoint {
    // std's Mutex: held for a decision only, never across an await.
    core: Arc<Mutex<Core>>,
}

/// What the chokepoint decided for one host call.
pub(crate) enum Decision {
    /// Replay: the recorded response, returned without touching the world.
    Recorded(Value),
    /// Live: perform the call (after [`Pending::before_effect`]), then [`Pending::record`] it.
    Perform(Pending),
}

/// A host call to perform live.
pub(crate) struct Pending {
    /// `None` for an ephemeral call, which records nothing.
    journal: Option<Arc<Journal>>,
    function: HostFunction,
    request: Value,
}

impl Pending {
    /// Call right before the effect: a remote effect first makes everything recorded durable.
    pub async fn before_effect(&self) -> Result<(), String> {
        match (&self.journal, self.function.effect) {
            (Some(journal), Effect::Remote) => journal
                .flush(true, None)
                .await
                .map_err(|e| format!("the oplog could not be made durable: {e}")),
            _ => Ok(()),
        }
    }

    /// Records the call with its response.
    pub fn record(self, response: &Value) {
        if let Some(journal) = self.journal {
            journal.push(OplogEntry::HostCall {
                interface: self.function.interface.to_string(),
                function: self.function.function.to_string(),
                request: self.request,
                response: response.clone(),
            });
        }
    }
}

impl Chokepoint {
    fn new() -> Self {
        Self {
            core: Arc::new(Mutex::new(Core {
                mode: Mode::Idle,
                divergence: None,
            })),
        }
    }

    fn core(&self) -> std::sync::MutexGuard<'_, Core> {
        self.core.lock().expect("chokepoint lock")
    }

    fn set(&self, mode: Mode) {
        let mut core = self.core();
        core.mode = mode;
        core.divergence = None;
    }

    pub fn begin_ephemeral(&self) {
        self.set(Mode::Ephemeral);
    }

    pub fn begin_read_only(&self) {
        self.set(Mode::ReadOnly);
    }

    pub fn begin_live(&self, journal: Arc<Journal>) {
        self.set(Mode::Live { journal, calls: 0 });
    }

    pub fn begin_replay(&self, expected: Vec<HostCallRecord>, then_live: Option<Arc<Journal>>) {
        self.set(Mode::Replay {
            expected: expected.into(),
            then_live,
        });
    }

    /// Whether an invocation is being replayed (its output is discarded: it was recorded).
    pub fn replaying(&self) -> bool {
        matches!(self.core().mode, Mode::Replay { .. })
    }

    pub fn take_divergence(&self) -> Option<String> {
        self.core().divergence.take()
    }

    /// Ends the invocation. In replay, an error if the log holds calls the guest did not make
    /// this time.
    pub fn finish(&self) -> Result<(), String> {
        match std::mem::replace(&mut self.core().mode, Mode::Idle) {
            Mode::Idle | Mode::Live { .. } | Mode::Ephemeral | Mode::ReadOnly => Ok(()),
            Mode::Replay { expected, .. } => match expected.front() {
                None => Ok(()),
                Some(next) => Err(format!(
                    "the oplog records host call {}.{}({:?}) -> {:?}, but the guest returned \
                     without making it",
                    next.interface, next.function, next.request, next.response
                )),
            },
        }
    }

    /// The decision for one host call with `request`. An error traps the guest: a divergence
    /// (also kept for [`Self::take_divergence`]), a call outside an invocation, or one past
    /// `HOST_CALLS_PER_INVOCATION_MAX`.
    pub fn decide(&self, f: &HostFunction, request: Value) -> Result<Decision, String> {
        let mut core = self.core();
        let attempted = || format!("{}.{}({request:?})", f.interface, f.function);
        if let Mode::Replay {
            expected,
            then_live,
        } = &mut core.mode
        {
            match expected.pop_front() {
                Some(r)
                    if r.interface == f.interface
                        && r.function == f.function
                        && r.request == request =>
                {
                    return Ok(Decision::Recorded(r.response));
                }
                Some(r) => {
                    let message = format!(
                        "the oplog records host call {}.{}({:?}), but the guest now calls {}",
                        r.interface,
                        r.function,
                        r.request,
                        attempted()
                    );
                    core.divergence = Some(message.clone());
                    return Err(message);
                }
                None => match then_live.take() {
                    // A resumed invocation past its last recorded call: live from here on.
                    Some(journal) => core.mode = Mode::Live { journal, calls: 0 },
                    None => {
                        let message = format!(
                            "the oplog records no further host call in this invocation, but the \
                             guest now calls {}",
                            attempted()
                        );
                        core.divergence = Some(message.clone());
                        return Err(message);
                    }
                },
            }
        }
        match &mut core.mode {
            Mode::Live { journal, calls } => {
                if *calls >= HOST_CALLS_PER_INVOCATION_MAX {
                    return Err(format!(
                        "{} refused: one invocation may make at most \
                         {HOST_CALLS_PER_INVOCATION_MAX} recorded host calls",
                        attempted()
                    ));
                }
                *calls += 1;
                Ok(Decision::Perform(Pending {
                    journal: Some(journal.clone()),
                    function: *f,
                    request,
                }))
            }
            Mode::Ephemeral => Ok(Decision::Perform(Pending {
                journal: None,
                function: *f,
                request,
            })),
            Mode::ReadOnly if f.effect == Effect::LocalRead => Ok(Decision::Perform(Pending {
                journal: None,
                function: *f,
                request,
            })),
            Mode::ReadOnly => Err(format!(
                "{} refused: a read-only call records nothing, and this host call would have \
                 to be recorded (declare the route without `read_only`)",
                attempted()
            )),
            Mode::Idle | Mode::Replay { .. } => Err(format!(
                "host call {} outside of an invocation cannot be recorded",
                attempted()
            )),
        }
    }
}

/// The host's side of the chokepoint for one store: what live calls reach.
pub(crate) struct Durability {
    environment: Arc<dyn Environment>,
    pub(crate) http: Arc<Outgoing>,
    /// This worker's cap on outgoing requests in flight.
    pub(crate) http_permits: Arc<tokio::sync::Semaphore>,
    /// The durable worker this store runs (`None`: an ephemeral call).
    pub(crate) worker: Option<Arc<WorkerFlags>>,
    pub(crate) chokepoint: Chokepoint,
    /// The trace of the call running, if its caller sent one: each outgoing request carries a
    /// child of it (`trace.rs`).
    pub(crate) trace: Option<crate::trace::TraceContext>,
}

impl Durability {
    fn new(
        environment: Arc<dyn Environment>,
        http: Arc<Outgoing>,
        worker: Option<Arc<WorkerFlags>>,
    ) -> Self {
        Self {
            environment,
            worker,
            http_permits: http.worker_permits(),
            http,
            chokepoint: Chokepoint::new(),
            trace: None,
        }
    }

    /// A host call whose live response is computed in place (no await): only local reads.
    fn host_call(
        &mut self,
        f: &HostFunction,
        request: Value,
        live: impl FnOnce(&dyn Environment) -> Value,
    ) -> wasmtime::Result<Value> {
        debug_assert_eq!(f.effect, Effect::LocalRead, "a remote effect must await");
        match self
            .chokepoint
            .decide(f, request)
            .map_err(wasmtime::Error::msg)?
        {
            Decision::Recorded(response) => Ok(response),
            Decision::Perform(pending) => {
                let response = live(self.environment.as_ref());
                pending.record(&response);
                Ok(response)
            }
        }
    }
}

/// Caps a guest's memory and tables, and remembers whether it refused a growth, so that the
/// failure is reported as the limit it is rather than as whatever trap follows.
pub(crate) struct GuestLimiter {
    memory_bytes_max: usize,
    pub memory_exceeded: bool,
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.memory_exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes exceeded",
                self.memory_bytes_max
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= GUEST_TABLE_ELEMENTS_MAX)
    }
}

/// The data of one worker's wasmtime store.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: GuestLimiter,
    /// Epoch ticks the running invocation may still use; see `worker::call`.
    pub ticks_left: u64,
    pub deadline_exceeded: bool,
    /// Set when an operator's interrupt stopped the running invocation.
    pub interrupted: bool,
    pub durability: Durability,
    /// What the guest writes to stdout and stderr.
    pub output: GuestOutput,
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
}

impl HostState {
    pub fn new(
        environment: Arc<dyn Environment>,
        http: Arc<Outgoing>,
        worker: Option<Arc<WorkerFlags>>,
        memory_bytes_max: usize,
    ) -> Self {
        let durability = Durability::new(environment, http, worker);
        let output = GuestOutput::new(durability.chokepoint.clone());
        // No environment variables, arguments, preopened directories or network: everything a
        // guest can observe is either fixed or recorded. What it writes is captured.
        let wasi = WasiCtxBuilder::new()
            .stdout(output.stream(guest_output::STDOUT))
            .stderr(output.stream(guest_output::STDERR))
            .build();
        Self {
            wasi,
            output,
            table: ResourceTable::new(),
            limiter: GuestLimiter {
                memory_bytes_max,
                memory_exceeded: false,
            },
            ticks_left: 0,
            deadline_exceeded: false,
            interrupted: false,
            durability,
            http_ctx: wasmtime_wasi_http::WasiHttpCtx::new(),
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for HostState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.durability,
        }
    }
}

/// Adds WASI p2, with clocks and random replaced by their durable versions, and
/// `wasi:http/outgoing-handler`, whose requests go through the chokepoint.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    wall_clock::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    monotonic_clock::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    random::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    insecure::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    insecure_seed::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

const WALL_CLOCK: &str = "wasi:clocks/wall-clock";
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock";
const RANDOM: &str = "wasi:random/random";
const INSECURE: &str = "wasi:random/insecure";
const INSECURE_SEED: &str = "wasi:random/insecure-seed";

const fn local_read(interface: &'static str, function: &'static str) -> HostFunction {
    HostFunction {
        interface,
        function,
        effect: Effect::LocalRead,
    }
}

const WALL_CLOCK_NOW: HostFunction = local_read(WALL_CLOCK, "now");
const WALL_CLOCK_RESOLUTION: HostFunction = local_read(WALL_CLOCK, "resolution");
const MONOTONIC_NOW: HostFunction = local_read(MONOTONIC_CLOCK, "now");
const MONOTONIC_RESOLUTION: HostFunction = local_read(MONOTONIC_CLOCK, "resolution");
const RANDOM_BYTES: HostFunction = local_read(RANDOM, "get-random-bytes");
const RANDOM_U64: HostFunction = local_read(RANDOM, "get-random-u64");
const INSECURE_BYTES: HostFunction = local_read(INSECURE, "get-insecure-random-bytes");
const INSECURE_U64: HostFunction = local_read(INSECURE, "get-insecure-random-u64");
const INSECURE_SEED_CALL: HostFunction = local_read(INSECURE_SEED, "insecure-seed");

fn no_request() -> Value {
    Value::Tuple(Vec::new())
}

fn unexpected(interface: &str, function: &str, v: &Value) -> wasmtime::Error {
    wasmtime::Error::msg(format!(
        "recorded response of {interface}.{function} has the wrong shape: {v:?}"
    ))
}

fn as_u64(interface: &str, function: &str, v: Value) -> wasmtime::Result<u64> {
    match v {
        Value::U64(x) => Ok(x),
        other => Err(unexpected(interface, function, &other)),
    }
}

fn as_bytes(interface: &str, function: &str, v: Value) -> wasmtime::Result<Vec<u8>> {
    match v {
        Value::List(items) => items
            .into_iter()
            .map(|i| match i {
                Value::U8(b) => Ok(b),
                other => Err(unexpected(interface, function, &other)),
            })
            .collect(),
        other => Err(unexpected(interface, function, &other)),
    }
}

fn datetime(d: std::time::Duration) -> Value {
    Value::Tuple(vec![Value::U64(d.as_secs()), Value::U32(d.subsec_nanos())])
}

fn as_datetime(function: &str, v: Value) -> wasmtime::Result<wall_clock::Datetime> {
    match v {
        Value::Tuple(parts) => match parts.as_slice() {
            [Value::U64(seconds), Value::U32(nanoseconds)] => Ok(wall_clock::Datetime {
                seconds: *seconds,
                nanoseconds: *nanoseconds,
            }),
            _ => Err(unexpected(WALL_CLOCK, function, &Value::Tuple(parts))),
        },
        other => Err(unexpected(WALL_CLOCK, function, &other)),
    }
}

fn random_bytes(env: &dyn Environment, len: u64) -> Value {
    let mut buf = vec![0u8; len as usize];
    env.fill_random(&mut buf);
    Value::List(buf.into_iter().map(Value::U8).collect())
}

fn random_u64(env: &dyn Environment) -> Value {
    let mut buf = [0u8; 8];
    env.fill_random(&mut buf);
    Value::U64(u64::from_le_bytes(buf))
}

fn check_len(len: u64) -> wasmtime::Result<()> {
    if len > RANDOM_BYTES_MAX {
        return Err(wasmtime::Error::msg(format!(
            "requested {len} random bytes, more than the limit of {RANDOM_BYTES_MAX}"
        )));
    }
    Ok(())
}

impl wall_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let v = self
            .durability
            .host_call(&WALL_CLOCK_NOW, no_request(), |env| {
                datetime(env.wall_clock_now())
            })?;
        as_datetime("now", v)
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let v = self
            .durability
            .host_call(&WALL_CLOCK_RESOLUTION, no_request(), |_| {
                datetime(std::time::Duration::from_nanos(1))
            })?;
        as_datetime("resolution", v)
    }
}

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        let v = self
            .durability
            .host_call(&MONOTONIC_NOW, no_request(), |env| {
                Value::U64(env.monotonic_now_ns())
            })?;
        as_u64(MONOTONIC_CLOCK, "now", v)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        let v = self
            .durability
            .host_call(&MONOTONIC_RESOLUTION, no_request(), |_| Value::U64(1))?;
        as_u64(MONOTONIC_CLOCK, "resolution", v)
    }

    // Timers wait in real time and are not recorded: waiting has no result to replay. A guest
    // that compares `now()` readings sees the recorded ones.
    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        monotonic_clock::Host::subscribe_instant(&mut self.clocks(), when)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        monotonic_clock::Host::subscribe_duration(&mut self.clocks(), duration)
    }
}

impl random::Host for HostState {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        check_len(len)?;
        let v = self
            .durability
            .host_call(&RANDOM_BYTES, Value::U64(len), |env| random_bytes(env, len))?;
        as_bytes(RANDOM, "get-random-bytes", v)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        let v = self
            .durability
            .host_call(&RANDOM_U64, no_request(), random_u64)?;
        as_u64(RANDOM, "get-random-u64", v)
    }
}

impl insecure::Host for HostState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        check_len(len)?;
        let v = self
            .durability
            .host_call(&INSECURE_BYTES, Value::U64(len), |env| {
                random_bytes(env, len)
            })?;
        as_bytes(INSECURE, "get-insecure-random-bytes", v)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        let v = self
            .durability
            .host_call(&INSECURE_U64, no_request(), random_u64)?;
        as_u64(INSECURE, "get-insecure-random-u64", v)
    }
}

impl insecure_seed::Host for HostState {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        let v = self
            .durability
            .host_call(&INSECURE_SEED_CALL, no_request(), |env| {
                Value::Tuple(vec![random_u64(env), random_u64(env)])
            })?;
        match v {
            Value::Tuple(parts) => match parts.as_slice() {
                [Value::U64(a), Value::U64(b)] => Ok((*a, *b)),
                _ => Err(unexpected(
                    INSECURE_SEED,
                    "insecure-seed",
                    &Value::Tuple(parts),
                )),
            },
            other => Err(unexpected(INSECURE_SEED, "insecure-seed", &other)),
        }
    }
}
