//! The durability chokepoint. Every host call whose result cannot be recomputed passes through
//! [`Durability::host_call`], which either performs it and records the result (live) or returns
//! the recorded result (replay). Host functions only name their request and response; none of
//! them decides between live and replay on its own.
//!
//! The WASI clocks and random interfaces are bound here by shadowing the stock wasmtime-wasi
//! implementations in the linker, so a guest's `SystemTime::now()` and random draws are
//! captured whatever library the guest uses to make them.

use crate::environment::Environment;
use crate::http::HttpClient;
use crate::journal::Journal;
use crate::limits::{GUEST_TABLE_ELEMENTS_MAX, RANDOM_BYTES_MAX};
use revenant_storage::OplogEntry;
use revenant_storage::Value;
use std::collections::VecDeque;
use std::sync::Arc;
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

pub(crate) enum Mode {
    /// Between invocations: no host call may happen, since nothing would record it.
    Idle,
    Live {
        journal: Arc<Journal>,
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
}

pub(crate) struct Durability {
    environment: Arc<dyn Environment>,
    pub(crate) http: HttpClient,
    pub(crate) mode: Mode,
    /// Set when replay met a host call that differs from the log; the trap that follows is
    /// reported as a divergence, with this message. Shared with HTTP tasks, which find out
    /// after the call returned.
    divergence: Arc<std::sync::Mutex<Option<String>>>,
}

impl Durability {
    fn new(environment: Arc<dyn Environment>, http: HttpClient) -> Self {
        Self {
            environment,
            http,
            mode: Mode::Idle,
            divergence: Arc::default(),
        }
    }

    pub fn begin_ephemeral(&mut self) {
        self.mode = Mode::Ephemeral;
    }

    pub fn begin_live(&mut self, journal: Arc<Journal>) {
        self.mode = Mode::Live { journal };
        self.take_divergence();
    }

    pub fn begin_replay(&mut self, expected: Vec<HostCallRecord>, then_live: Option<Arc<Journal>>) {
        self.mode = Mode::Replay {
            expected: expected.into(),
            then_live,
        };
        self.take_divergence();
    }

    pub(crate) fn divergence_slot(&self) -> Arc<std::sync::Mutex<Option<String>>> {
        self.divergence.clone()
    }

    pub fn take_divergence(&mut self) -> Option<String> {
        self.divergence.lock().expect("divergence lock").take()
    }

    /// Ends the invocation. In replay, an error if the log holds calls the guest did not make
    /// this time.
    pub fn finish(&mut self) -> Result<(), String> {
        match std::mem::replace(&mut self.mode, Mode::Idle) {
            Mode::Idle | Mode::Live { .. } | Mode::Ephemeral => Ok(()),
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

    /// The next recorded call in replay, or `None` when the invocation runs live (switching a
    /// resumed invocation to live when its recorded calls run out).
    pub(crate) fn next_recorded(&mut self) -> Result<Option<HostCallRecord>, ()> {
        if let Mode::Replay {
            expected,
            then_live,
        } = &mut self.mode
        {
            if let Some(r) = expected.pop_front() {
                return Ok(Some(r));
            }
            match then_live.take() {
                Some(journal) => self.mode = Mode::Live { journal },
                None => return Err(()),
            }
        }
        Ok(None)
    }

    fn diverge(&self, message: String) -> wasmtime::Error {
        *self.divergence.lock().expect("divergence lock") = Some(message.clone());
        wasmtime::Error::msg(message)
    }

    /// The chokepoint. `live` computes the response from the real world; it runs only live.
    fn host_call(
        &mut self,
        interface: &str,
        function: &str,
        request: Value,
        live: impl FnOnce(&dyn Environment) -> Value,
    ) -> wasmtime::Result<Value> {
        let attempted = || format!("{interface}.{function}({request:?})");
        match self.next_recorded() {
            Ok(Some(r))
                if r.interface == interface && r.function == function && r.request == request =>
            {
                Ok(r.response)
            }
            Ok(Some(r)) => Err(self.diverge(format!(
                "the oplog records host call {}.{}({:?}), but the guest now calls {}",
                r.interface,
                r.function,
                r.request,
                attempted()
            ))),
            Err(()) => Err(self.diverge(format!(
                "the oplog records no further host call in this invocation, but the guest now \
                 calls {}",
                attempted()
            ))),
            Ok(None) => match &self.mode {
                Mode::Live { journal } => {
                    let response = live(self.environment.as_ref());
                    journal.push(OplogEntry::HostCall {
                        interface: interface.to_string(),
                        function: function.to_string(),
                        request,
                        response: response.clone(),
                    });
                    Ok(response)
                }
                Mode::Ephemeral => Ok(live(self.environment.as_ref())),
                _ => Err(wasmtime::Error::msg(format!(
                    "host call {interface}.{function} outside of an invocation cannot be recorded"
                ))),
            },
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
    http_ctx: wasmtime_wasi_http::WasiHttpCtx,
}

impl HostState {
    pub fn new(
        environment: Arc<dyn Environment>,
        http: HttpClient,
        memory_bytes_max: usize,
    ) -> Self {
        // No environment variables, arguments, preopened directories or network: everything a
        // guest can observe is either fixed or recorded.
        let wasi = WasiCtxBuilder::new().inherit_stderr().build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: GuestLimiter {
                memory_bytes_max,
                memory_exceeded: false,
            },
            ticks_left: 0,
            deadline_exceeded: false,
            interrupted: false,
            durability: Durability::new(environment, http),
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
            .host_call(WALL_CLOCK, "now", no_request(), |env| {
                datetime(env.wall_clock_now())
            })?;
        as_datetime("now", v)
    }

    fn resolution(&mut self) -> wasmtime::Result<wall_clock::Datetime> {
        let v = self
            .durability
            .host_call(WALL_CLOCK, "resolution", no_request(), |_| {
                datetime(std::time::Duration::from_nanos(1))
            })?;
        as_datetime("resolution", v)
    }
}

impl monotonic_clock::Host for HostState {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        let v = self
            .durability
            .host_call(MONOTONIC_CLOCK, "now", no_request(), |env| {
                Value::U64(env.monotonic_now_ns())
            })?;
        as_u64(MONOTONIC_CLOCK, "now", v)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        let v = self
            .durability
            .host_call(MONOTONIC_CLOCK, "resolution", no_request(), |_| {
                Value::U64(1)
            })?;
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
            .host_call(RANDOM, "get-random-bytes", Value::U64(len), |env| {
                random_bytes(env, len)
            })?;
        as_bytes(RANDOM, "get-random-bytes", v)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        let v = self
            .durability
            .host_call(RANDOM, "get-random-u64", no_request(), random_u64)?;
        as_u64(RANDOM, "get-random-u64", v)
    }
}

impl insecure::Host for HostState {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        check_len(len)?;
        let v = self.durability.host_call(
            INSECURE,
            "get-insecure-random-bytes",
            Value::U64(len),
            |env| random_bytes(env, len),
        )?;
        as_bytes(INSECURE, "get-insecure-random-bytes", v)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        let v = self.durability.host_call(
            INSECURE,
            "get-insecure-random-u64",
            no_request(),
            random_u64,
        )?;
        as_u64(INSECURE, "get-insecure-random-u64", v)
    }
}

impl insecure_seed::Host for HostState {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        let v = self
            .durability
            .host_call(INSECURE_SEED, "insecure-seed", no_request(), |env| {
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
