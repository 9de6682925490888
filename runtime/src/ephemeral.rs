//! Ephemeral calls: an export run on a fresh instance that is dropped afterwards. Nothing is
//! recorded, so there is nothing to replay and no worker to keep: the cost of a call is an
//! instantiation (microseconds from the `InstancePre`) and the call itself. For routes that
//! compute rather than remember (`durable: false`).

use crate::Runtime;
use crate::component::{ExportInfo, LoadedComponent};
use crate::durability::HostState;
use crate::error::InvokeError;
use crate::limits::{EPHEMERAL_CALLS_MAX, EPOCH_TICK, EVICTION_WAIT};
use crate::values::{from_val, to_val};
use revenant_storage::Value;
use std::sync::Arc;
use tokio::sync::Semaphore;
use wasmtime::component::Val;
use wasmtime::{Store, UpdateDeadline};

/// Bounds how many ephemeral instances exist at once.
pub(crate) fn slots() -> Semaphore {
    Semaphore::new(EPHEMERAL_CALLS_MAX)
}

impl Runtime {
    /// Runs `function` of `component` on a fresh instance, recording nothing. A trap, the
    /// deadline or the memory cap fail the call and leave no trace.
    pub async fn invoke_ephemeral(
        &self,
        component: &str,
        function: &str,
        args: Vec<Value>,
    ) -> Result<Vec<Value>, InvokeError> {
        let loaded = self
            .loaded(component)
            .ok_or_else(|| InvokeError::UnknownComponent(component.to_string()))?;
        let export = loaded
            .info
            .resolve(function)
            .map_err(|_| InvokeError::UnknownFunction {
                component: component.to_string(),
                function: function.to_string(),
            })?
            .clone();
        let params = &export.signature.params;
        if params.len() != args.len() {
            return Err(InvokeError::BadArguments(format!(
                "`{}` takes {} argument(s), got {}",
                export.name,
                params.len(),
                args.len()
            )));
        }
        for ((name, ty), value) in params.iter().zip(&args) {
            ty.check(value, name).map_err(InvokeError::BadArguments)?;
        }
        let _slot = tokio::time::timeout(EVICTION_WAIT, self.ephemeral.acquire())
            .await
            .map_err(|_| InvokeError::TooManyWorkers(EPHEMERAL_CALLS_MAX))?
            .expect("the semaphore is never closed");
        self.run_ephemeral(&loaded, &export, &args).await
    }

    async fn run_ephemeral(
        &self,
        loaded: &Arc<LoadedComponent>,
        export: &ExportInfo,
        args: &[Value],
    ) -> Result<Vec<Value>, InvokeError> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                self.environment.clone(),
                self.http.clone(),
                self.limits.guest_memory_bytes,
            ),
        );
        store.limiter(|s| &mut s.limiter);
        store.data_mut().ticks_left =
            (self.limits.invocation_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.ticks_left == 0 {
                state.deadline_exceeded = true;
                return Err(wasmtime::Error::msg("the invocation's deadline passed"));
            }
            state.ticks_left -= 1;
            Ok(UpdateDeadline::Yield(1))
        });
        store.set_epoch_deadline(1);
        store.data_mut().durability.begin_ephemeral();
        let instance = loaded
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| InvokeError::Trap(format!("instantiation failed: {e:#}")))?;
        let func = instance
            .get_func(&mut store, export.index)
            .ok_or_else(|| InvokeError::Internal(format!("export `{}` not found", export.name)))?;
        let params: Vec<Val> = args.iter().map(to_val).collect();
        let mut results = vec![Val::Bool(false); export.signature.results.len()];
        if let Err(e) = func.call_async(&mut store, &params, &mut results).await {
            let state = store.data();
            return Err(if state.deadline_exceeded {
                InvokeError::Timeout(self.limits.invocation_timeout)
            } else if state.limiter.memory_exceeded {
                InvokeError::MemoryLimit(self.limits.guest_memory_bytes)
            } else {
                InvokeError::Trap(format!("{e:#}"))
            });
        }
        results
            .iter()
            .map(from_val)
            .collect::<Result<_, _>>()
            .map_err(InvokeError::Trap)
    }
}
