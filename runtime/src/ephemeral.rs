//! Ephemeral calls: an export run on a fresh instance that is dropped afterwards. Nothing is
//! recorded, so there is nothing to replay and no worker to keep: the cost of a call is an
//! instantiation (microseconds from the `InstancePre`) and the call itself. For routes that
//! compute rather than remember (`durable: false`).

use crate::Runtime;
use crate::component::{ExportInfo, LoadedComponent};
use crate::durability::HostState;
use crate::error::InvokeError;
use crate::limits::{EPHEMERAL_CALLS_MAX, EVICTION_WAIT};
use crate::metrics;
use crate::worker::{arm_deadline, call, guest_store, instantiation_failed};
use revenant_storage::Value;
use std::sync::Arc;
use tokio::sync::Semaphore;

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
        // Metrics measure real time.
        #[allow(clippy::disallowed_methods)]
        let began = std::time::Instant::now();
        let kind = metrics::Kind::Ephemeral;
        let (loaded, export) = match self.resolve_call(component, function, &args) {
            Ok(resolved) => resolved,
            Err(e) => {
                metrics::invoked("", "", kind, Err(e.code()), began.elapsed());
                return Err(e);
            }
        };
        let outcome = match tokio::time::timeout(EVICTION_WAIT, self.ephemeral.acquire()).await {
            Err(_) => Err(InvokeError::TooManyWorkers(EPHEMERAL_CALLS_MAX)),
            Ok(slot) => {
                let _slot = slot.expect("the semaphore is never closed");
                self.run_ephemeral(&loaded, &export, &args).await
            }
        };
        let code = outcome.as_ref().map(|_| ()).map_err(InvokeError::code);
        metrics::invoked(&loaded.info.name, &export.name, kind, code, began.elapsed());
        outcome
    }

    async fn run_ephemeral(
        &self,
        loaded: &Arc<LoadedComponent>,
        export: &ExportInfo,
        args: &[Value],
    ) -> Result<Vec<Value>, InvokeError> {
        let mut store = guest_store(
            &self.engine,
            HostState::new(
                self.environment.clone(),
                self.http.clone(),
                None,
                self.limits.guest_memory_bytes,
            ),
            || false,
        );
        arm_deadline(&mut store, self.limits.invocation_timeout);
        store.data_mut().durability.trace = crate::trace::current();
        store.data().durability.chokepoint.begin_ephemeral();
        let instance = loaded
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| instantiation_failed(e, EPHEMERAL_CALLS_MAX))?;
        let _ = store.data().output.take();
        let outcome = call(&mut store, &instance, export, args)
            .await
            .map_err(|f| f.into_error(&self.limits, "(ephemeral)"));
        crate::guest_output::emit("(ephemeral)", &store.data().output.take(), false);
        outcome
    }
}
