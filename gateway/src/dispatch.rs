//! Handing a bound request to the runtime: a durable call on the worker the route names, a
//! read of it (`read_only: true`), or an ephemeral call on a fresh instance (`durable: false`).

use crate::binding::Binding;
use crate::error::ApiError;
use revenant_runtime::trace::{self, TraceContext};
use revenant_runtime::{Runtime, Value, WorkerId};

/// The call, with the caller's trace context (its `traceparent`) as the call's own.
pub(crate) async fn call(
    runtime: &Runtime,
    binding: &Binding,
    worker_name: String,
    args: Vec<Value>,
    idempotency_key: Option<String>,
    method: &http::Method,
    trace: Option<TraceContext>,
) -> Result<Vec<Value>, ApiError> {
    let called = untraced(runtime, binding, worker_name, args, idempotency_key, method);
    match trace {
        Some(t) => trace::scope(t, called).await,
        None => called.await,
    }
}

async fn untraced(
    runtime: &Runtime,
    binding: &Binding,
    worker_name: String,
    args: Vec<Value>,
    idempotency_key: Option<String>,
    #[cfg_attr(not(feature = "fault-injection"), allow(unused_variables))] method: &http::Method,
) -> Result<Vec<Value>, ApiError> {
    let route = &binding.route;
    #[cfg(feature = "fault-injection")]
    if crate::faults::lose_update(&worker_name, method) {
        return Ok(Vec::new());
    }
    Ok(if route.read_only {
        let worker = WorkerId::new(route.component.clone(), worker_name);
        runtime.read(worker, &binding.export, args).await?
    } else if route.durable {
        let worker = WorkerId::new(route.component.clone(), worker_name);
        runtime
            .invoke(worker, &binding.export, args, idempotency_key)
            .await?
    } else {
        runtime
            .invoke_ephemeral(&route.component, &binding.export, args)
            .await?
    })
}
