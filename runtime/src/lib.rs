//! `runtime` runs durable workers: it compiles and caches components, activates a worker on its
//! first invocation by replaying its oplog, runs each worker's invocations one at a time from a
//! bounded mailbox, records every nondeterministic host call through one chokepoint, and
//! answers an invocation only once its entries are durable.
//!
//! It knows nothing of HTTP, routes or JSON: callers hand it a worker id, an export name and
//! typed [`Value`]s.

mod component;
mod durability;
mod environment;
mod error;
pub mod limits;
mod types;
mod values;
mod worker;

pub use component::{ComponentInfo, ExportInfo};
pub use environment::{Environment, SystemEnvironment};
pub use error::{InvokeError, RuntimeError};
pub use revenant_storage::{Value, WorkerId};
pub use types::{FunctionSignature, ValueType};

use component::LoadedComponent;
use limits::{ACTIVE_WORKERS_MAX, MAILBOX_DEPTH, WORKER_NAME_BYTES_MAX};
use revenant_storage::OplogStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::Linker;
use wasmtime::{Config, Engine};
use worker::{Invocation, WorkerContext};

/// What the runtime needs to start.
pub struct RuntimeConfig {
    /// Components by name, from their `.wasm` files.
    pub components: Vec<(String, PathBuf)>,
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
}

pub struct Runtime {
    engine: Engine,
    components: HashMap<String, Arc<LoadedComponent>>,
    oplog: Arc<dyn OplogStore>,
    environment: Arc<dyn Environment>,
    // std's Mutex: held only to look up or insert a mailbox, never across an await.
    workers: Mutex<HashMap<WorkerId, mpsc::Sender<Invocation>>>,
}

impl Runtime {
    pub fn new(
        config: RuntimeConfig,
        oplog: Arc<dyn OplogStore>,
        environment: Arc<dyn Environment>,
    ) -> Result<Arc<Self>, RuntimeError> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true);
        // Component-model concurrency makes every call about four times slower and is unused.
        wasm.concurrency_support(false);
        let engine = Engine::new(&wasm).map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        durability::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?;
        let mut components = HashMap::new();
        for (name, path) in &config.components {
            let loaded = component::load(&engine, &linker, name, path, &config.cache_dir)?;
            tracing::info!(component = %name, hash = %loaded.info.hash, exports = loaded.info.exports.len(), "component loaded");
            components.insert(name.clone(), Arc::new(loaded));
        }
        Ok(Arc::new(Self {
            engine,
            components,
            oplog,
            environment,
            workers: Mutex::new(HashMap::new()),
        }))
    }

    /// A loaded component's name, hash and exports.
    pub fn component(&self, name: &str) -> Option<&ComponentInfo> {
        self.components.get(name).map(|c| &c.info)
    }

    /// Invokes `function` (any name [`ComponentInfo::resolve`] accepts) on the worker, creating
    /// the worker on first use. Returns once the invocation's result is durable.
    pub async fn invoke(
        &self,
        worker: WorkerId,
        function: &str,
        args: Vec<Value>,
        idempotency_key: String,
    ) -> Result<Vec<Value>, InvokeError> {
        let component = self
            .components
            .get(&worker.component)
            .ok_or_else(|| InvokeError::UnknownComponent(worker.component.clone()))?;
        check_worker_name(&worker.name)?;
        let export = component
            .info
            .resolve(function)
            .map_err(|_| InvokeError::UnknownFunction {
                component: worker.component.clone(),
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

        let (reply, answer) = oneshot::channel();
        let invocation = Invocation {
            export,
            args,
            idempotency_key,
            reply,
        };
        let mailbox = self.mailbox(&worker, component)?;
        mailbox.try_send(invocation).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => InvokeError::MailboxFull(worker.to_string()),
            mpsc::error::TrySendError::Closed(_) => {
                InvokeError::Internal(format!("worker {worker} stopped"))
            }
        })?;
        answer
            .await
            .map_err(|_| InvokeError::Internal("worker dropped the invocation".into()))?
    }

    fn mailbox(
        &self,
        worker: &WorkerId,
        component: &Arc<LoadedComponent>,
    ) -> Result<mpsc::Sender<Invocation>, InvokeError> {
        let mut workers = self.workers.lock().expect("worker map lock");
        if let Some(m) = workers.get(worker) {
            return Ok(m.clone());
        }
        if workers.len() >= ACTIVE_WORKERS_MAX {
            return Err(InvokeError::TooManyWorkers(ACTIVE_WORKERS_MAX));
        }
        let (sender, receiver) = mpsc::channel(MAILBOX_DEPTH);
        let ctx = WorkerContext {
            id: worker.clone(),
            engine: self.engine.clone(),
            component: component.clone(),
            oplog: self.oplog.clone(),
            environment: self.environment.clone(),
        };
        tokio::spawn(worker::run(ctx, receiver));
        workers.insert(worker.clone(), sender.clone());
        Ok(sender)
    }
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
