//! The guest's side of a worker: a wasmtime store with its memory cap and deadline, one call
//! into an export, and how a failed call is classified. Durable and ephemeral calls share it.

use crate::component::ExportInfo;
use crate::durability::HostState;
use crate::error::InvokeError;
use crate::limits::{EPOCH_TICK, WorkerLimits};
use crate::values::{from_val, to_val};
use revenant_storage::Value;
use wasmtime::component::{Instance, Val};
use wasmtime::{Engine, Store, UpdateDeadline};

/// An instance of the worker's component, whose memory matches the worker's durable log.
pub(crate) struct Guest {
    pub store: Store<HostState>,
    pub instance: Instance,
}

/// Why a call into the guest did not return.
pub(crate) enum CallFailure {
    Trap(String),
    Timeout,
    Memory,
    Interrupted,
    Exited(i32),
}

impl CallFailure {
    pub fn into_error(self, limits: &WorkerLimits, worker: &str) -> InvokeError {
        match self {
            Self::Trap(m) => InvokeError::Trap(m),
            Self::Timeout => InvokeError::Timeout(limits.invocation_timeout),
            Self::Memory => InvokeError::MemoryLimit(limits.guest_memory_bytes),
            Self::Interrupted => InvokeError::Interrupted(worker.to_string()),
            Self::Exited(code) => InvokeError::Exited {
                worker: worker.to_string(),
                code,
            },
        }
    }
}

/// What a failed instantiation tells the caller. A full instance pool is load, not a fault of
/// the guest: refused as too many workers (`cap` is the bound the caller would have hit), which
/// callers may retry; anything else is the guest's (a trap in its start function, a memory or
/// table past the caps).
pub(crate) fn instantiation_failed(e: wasmtime::Error, cap: usize) -> InvokeError {
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        InvokeError::TooManyWorkers(cap)
    } else {
        InvokeError::Trap(format!("instantiation failed: {e:#}"))
    }
}

/// A store whose guest's memory is capped and which, at every epoch tick, yields to other tasks;
/// it is stopped when `interrupted()` says so or its budget of ticks is spent. The tick is real
/// time: an interruption cannot land at the same point on replay, which is why an interrupted
/// invocation is recorded as failed and skipped.
pub(crate) fn guest_store(
    engine: &Engine,
    state: HostState,
    interrupted: impl Fn() -> bool + Send + Sync + 'static,
) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(move |mut ctx| {
        let state = ctx.data_mut();
        if interrupted() {
            state.interrupted = true;
            return Err(wasmtime::Error::msg("interrupted by an operator"));
        }
        if state.ticks_left == 0 {
            state.deadline_exceeded = true;
            return Err(wasmtime::Error::msg("the invocation's deadline passed"));
        }
        state.ticks_left -= 1;
        Ok(UpdateDeadline::Yield(1))
    });
    store
}

/// Gives the next call into the guest `timeout` of epoch ticks.
pub(crate) fn arm_deadline(store: &mut Store<HostState>, timeout: std::time::Duration) {
    let ticks = (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
    let state = store.data_mut();
    state.ticks_left = ticks;
    state.deadline_exceeded = false;
    state.interrupted = false;
    state.limiter.memory_exceeded = false;
    store.set_epoch_deadline(1);
}

/// Calls an export of `instance` within the deadline armed before. `export` must come from the
/// component `instance` was made from: an index from another version is refused by wasmtime.
pub(crate) async fn call(
    store: &mut Store<HostState>,
    instance: &Instance,
    export: &ExportInfo,
    args: &[Value],
) -> Result<Vec<Value>, CallFailure> {
    let func = instance
        .get_func(&mut *store, export.index)
        .ok_or_else(|| {
            CallFailure::Trap(format!("export `{}` not found in instance", export.name))
        })?;
    let params: Vec<Val> = args.iter().map(to_val).collect();
    let mut results = vec![Val::Bool(false); export.signature.results.len()];
    if let Err(e) = func.call_async(&mut *store, &params, &mut results).await {
        return Err(failure(store, e));
    }
    results
        .iter()
        .map(from_val)
        .collect::<Result<_, _>>()
        .map_err(CallFailure::Trap)
}

/// Why a call into the guest failed, from the error and what the host saw during it.
fn failure(store: &Store<HostState>, e: wasmtime::Error) -> CallFailure {
    let state = store.data();
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return CallFailure::Exited(exit.0);
    }
    if state.interrupted {
        CallFailure::Interrupted
    } else if state.deadline_exceeded {
        CallFailure::Timeout
    } else if state.limiter.memory_exceeded {
        CallFailure::Memory
    } else {
        CallFailure::Trap(format!("{e:#}"))
    }
}

impl Guest {
    pub async fn call(
        &mut self,
        export: &ExportInfo,
        args: &[Value],
    ) -> Result<Vec<Value>, CallFailure> {
        call(&mut self.store, &self.instance, export, args).await
    }

    /// Calls `save-snapshot` (`func() -> list<u8>`) through a typed function, which copies the
    /// bytes out of the guest's memory at once: the dynamic path made a `Val` and then a
    /// `Value` per byte, and a snapshot of a few MB took about 100 ms (docs/performance.md).
    pub async fn save_snapshot(&mut self, export: &ExportInfo) -> Result<Vec<u8>, CallFailure> {
        let func = self
            .instance
            .get_typed_func::<(), (Vec<u8>,)>(&mut self.store, export.index)
            .map_err(|e| CallFailure::Trap(format!("export `{}`: {e:#}", export.name)))?;
        match func.call_async(&mut self.store, ()).await {
            Ok((bytes,)) => Ok(bytes),
            Err(e) => Err(failure(&self.store, e)),
        }
    }

    /// Calls `load-snapshot` (`func(bytes: list<u8>)`) through a typed function, likewise.
    pub async fn load_snapshot(
        &mut self,
        export: &ExportInfo,
        bytes: &[u8],
    ) -> Result<(), CallFailure> {
        let func = self
            .instance
            .get_typed_func::<(&[u8],), ()>(&mut self.store, export.index)
            .map_err(|e| CallFailure::Trap(format!("export `{}`: {e:#}", export.name)))?;
        func.call_async(&mut self.store, (bytes,))
            .await
            .map_err(|e| failure(&self.store, e))
    }
}
