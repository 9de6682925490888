//! One worker: a task that owns the worker's wasmtime store and takes commands from its bounded
//! mailbox one at a time. Each command is its own kind of message with its own reply; the worker
//! resolves a call's function against **its own** component, the version it was activated with.
//!
//! - `mod.rs`: the commands, the task loop and dispatch.
//! - `lifecycle.rs`: the one lifecycle state and its transition function.
//! - `activation.rs`: loading the log's position, instantiating, snapshots.
//! - `replay.rs`: re-running recorded invocations, and resuming one the process died in.
//! - `live.rs`: one call run live and made durable; idempotent outcomes.
//! - `guest.rs`: the store, its deadline and memory cap, a call and its failures.
//! - `travel.rs`: the state at an index of the log (a scratch instance), and fork.

mod activation;
mod guest;
mod lifecycle;
mod live;
mod replay;
mod travel;

pub use travel::Forked;
pub(crate) use travel::state_at;

pub(crate) use guest::{arm_deadline, call, guest_store, instantiation_failed};

use crate::WorkerStatus;
use crate::component::{ExportInfo, LoadedComponent};
use crate::environment::Environment;
use crate::error::InvokeError;
use crate::http::Outgoing;
use crate::journal::Journal;
use crate::limits::{SNAPSHOT_BYTES_PER_INVOCATION, WorkerLimits};
use crate::slots::{Shared, WorkerFlags};
use guest::Guest;
use lifecycle::{ControlStep, Lifecycle};
use revenant_storage::{OplogEntry, OplogStore, Value, WorkerId};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

pub(crate) use lifecycle::Lifecycle as StoredLifecycle;

/// A message to a worker's task.
pub(crate) enum Command {
    /// Run a call; the reply comes once its outcome is durable.
    Invoke(Call, oneshot::Sender<Result<Vec<Value>, InvokeError>>),
    /// An operator's command; the reply comes once it is recorded.
    Control(Control, oneshot::Sender<Result<(), InvokeError>>),
    /// Activate now, resuming an invocation the last process died in; nobody waits for it.
    Activate,
    /// Become a copy of another worker's log up to an index (this worker must not exist).
    Fork {
        source: WorkerId,
        at: Option<u64>,
        reply: oneshot::Sender<Result<Forked, InvokeError>>,
    },
}

/// A call as the runtime hands it over: by function name, resolved by the worker.
pub(crate) struct Call {
    pub function: String,
    pub args: Vec<Value>,
    pub idempotency_key: Option<String>,
    /// The component's newest version when the call was made: a worker whose own version lacks
    /// the function moves to it.
    pub latest: Arc<LoadedComponent>,
    /// The function resolved in `latest`, with the arguments checked against it.
    pub export: ExportInfo,
    /// Reads the worker's state: run in its turn, recording nothing (`live::read`).
    pub read_only: bool,
    /// The caller's trace, passed on to the guest's outgoing requests (`trace.rs`).
    pub trace: Option<crate::trace::TraceContext>,
    /// The caller's span (its request's, in the gateway): the invocation's span is its child
    /// although it runs in the worker's task.
    pub span: tracing::Span,
}

/// What an operator can do to a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Stop the running invocation (if any) at the next epoch tick, recorded; refuse calls until
    /// `Resume`.
    Interrupt,
    Resume,
    /// Remove the worker's oplog and metadata.
    Delete,
}

pub(crate) struct WorkerContext {
    pub id: WorkerId,
    pub engine: wasmtime::Engine,
    /// The version this worker runs; it changes only between activations.
    pub component: Arc<LoadedComponent>,
    pub oplog: Arc<dyn OplogStore>,
    pub environment: Arc<dyn Environment>,
    pub http: Arc<Outgoing>,
    pub limits: WorkerLimits,
    pub flags: Arc<WorkerFlags>,
    /// Which shards this node serves, in a cluster.
    pub placement: Option<Arc<dyn crate::Placement>>,
    /// The lease the worker's state in memory was built under: appends carry it, and a
    /// command that finds the lease changed rebuilds the worker from the log first.
    pub fence: Option<revenant_storage::Fence>,
}

/// Where the worker's durable log stands.
pub(crate) struct Log {
    /// Sequence number of the last durable entry.
    pub last_index: u64,
    /// The first entry of the latest snapshot (0: none), and invocations completed since.
    pub snapshot_index: u64,
    pub since_snapshot: u64,
    /// The size of the latest snapshot this activation took or loaded (0: none).
    pub snapshot_bytes: u64,
    /// A new worker's `Create` and `Engine` entries, written with its first entry to save a
    /// sync.
    pub pending_create: Vec<OplogEntry>,
}

/// What the task knows of its worker once loaded from the store.
pub(crate) struct Worker {
    pub log: Log,
    pub life: Lifecycle,
    /// The instance, once activated: its memory matches the durable log. An operator's command
    /// needs only the log, so it does not instantiate.
    pub guest: Option<Guest>,
}

/// The worker's task. It holds `lifetime` while it lives, so a successor for the same worker
/// (after an eviction) starts only once this one has answered everything and left.
pub(crate) async fn run(
    mut ctx: WorkerContext,
    mut mailbox: mpsc::Receiver<Command>,
    lifetime: Arc<tokio::sync::Mutex<()>>,
    evict: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
) {
    let _alive = lifetime.clone().lock_owned().await;
    let mut worker: Option<Worker> = None;
    loop {
        let command = tokio::select! {
            next = mailbox.recv() => match next {
                Some(command) => command,
                None => break,
            },
            () = tokio::time::sleep(ctx.limits.idle_timeout) => {
                if shared.retire(&ctx.id, &lifetime, mailbox.is_empty()) { break }
                continue;
            }
            () = evict.notified() => {
                if shared.retire(&ctx.id, &lifetime, mailbox.is_empty()) { break }
                continue;
            }
        };
        let deleted = matches!(command, Command::Control(Control::Delete, _));
        dispatch(&mut ctx, &mut worker, command).await;
        // A deleted worker leaves memory at once, unless calls are already queued for it.
        if deleted && shared.retire(&ctx.id, &lifetime, mailbox.is_empty()) {
            break;
        }
    }
    // Retired: new commands go to a successor. Answer what reached this mailbox meanwhile.
    mailbox.close();
    while let Some(command) = mailbox.recv().await {
        dispatch(&mut ctx, &mut worker, command).await;
    }
    drop(worker);
    shared.finished(&ctx.id, &lifetime);
}

async fn dispatch(ctx: &mut WorkerContext, worker: &mut Option<Worker>, command: Command) {
    if let Err(e) = check_placement(ctx, worker) {
        match command {
            Command::Invoke(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Command::Control(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Command::Fork { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Command::Activate => {}
        }
        return;
    }
    match command {
        // A caller that gave up waiting is no error: the outcome is stored either way.
        Command::Invoke(call, reply) => {
            let _ = reply.send(invoke(ctx, worker, call).await);
            // After the reply: a call never waits for the snapshot its completion made due.
            snapshot_if_due(ctx, worker).await;
        }
        Command::Control(control, reply) => {
            let _ = reply.send(self::control(ctx, worker, control).await);
        }
        Command::Activate => {
            let _ = activated(ctx, worker).await;
        }
        Command::Fork { source, at, reply } => {
            let forked = travel::fork(ctx, &source, at).await;
            // Whatever it wrote, the log is the truth: the next command loads it, and the
            // status is read from it meanwhile.
            *worker = None;
            publish(ctx, None);
            let _ = reply.send(forked);
        }
    }
}

/// Takes a snapshot if one is due: `snapshot_every` invocations since the last, and at least
/// as many as the last snapshot's size is worth (`SNAPSHOT_BYTES_PER_INVOCATION`), so that a
/// large state is not saved again and again for a short log. A failed snapshot leaves the log
/// as it was; the instance is rebuilt from it.
async fn snapshot_if_due(ctx: &WorkerContext, worker: &mut Option<Worker>) {
    let Some(w) = worker.as_mut() else {
        return;
    };
    let every = ctx.limits.snapshot_every;
    let worth = w.log.snapshot_bytes / SNAPSHOT_BYTES_PER_INVOCATION;
    if every == 0 || w.log.since_snapshot < every.max(worth) {
        return;
    }
    if let Err(e) = activation::take_snapshot(ctx, w).await {
        tracing::warn!(worker = %ctx.id, "snapshot failed: {e}");
        *worker = None;
    }
}

/// In a cluster: whether this node still serves the worker, and under the lease its memory
/// was built with. A new epoch means another node may have appended meanwhile: the worker is
/// rebuilt from the log.
fn check_placement(
    ctx: &mut WorkerContext,
    worker: &mut Option<Worker>,
) -> Result<(), InvokeError> {
    let Some(placement) = &ctx.placement else {
        return Ok(());
    };
    match placement.fence(&ctx.id) {
        Some(fence) if Some(fence) == ctx.fence => Ok(()),
        Some(fence) => {
            ctx.fence = Some(fence);
            *worker = None;
            Ok(())
        }
        None => {
            *worker = None;
            Err(InvokeError::NotOwner(format!(
                "this node no longer serves worker {}",
                ctx.id
            )))
        }
    }
}

/// The worker with its instance, activating it if needed. A failed activation leaves nothing
/// loaded (the next command tries again) and reports the worker failed meanwhile.
async fn activated<'w>(
    ctx: &WorkerContext,
    worker: &'w mut Option<Worker>,
) -> Result<&'w mut Worker, InvokeError> {
    if worker.as_ref().is_none_or(|w| w.guest.is_none()) {
        *worker = None;
        match activation::activate(ctx).await {
            Ok(w) => {
                publish(ctx, Some(w.life.status(false)));
                *worker = Some(w);
            }
            Err(e) => {
                tracing::error!(worker = %ctx.id, "activation failed: {e}");
                publish(ctx, Some(WorkerStatus::Failed));
                return Err(e);
            }
        }
    }
    Ok(worker.as_mut().expect("loaded above"))
}

/// The export a call names in the worker's own component, with its arguments checked. When
/// the worker runs the version the runtime resolved the call in (the usual case), that
/// resolution holds and is not done again.
fn resolve(ctx: &WorkerContext, call: &Call) -> Result<ExportInfo, InvokeError> {
    if Arc::ptr_eq(&call.latest, &ctx.component) {
        return Ok(call.export.clone());
    }
    crate::resolve_export(&ctx.component, &call.function, &call.args)
}

async fn invoke(
    ctx: &mut WorkerContext,
    worker: &mut Option<Worker>,
    call: Call,
) -> Result<Vec<Value>, InvokeError> {
    let export = match resolve(ctx, &call) {
        Ok(export) => export,
        // A version deployed after this worker was activated has the function: move to it
        // (the instance is rebuilt from the log on the new code, as after an eviction).
        Err(InvokeError::UnknownFunction { .. } | InvokeError::BadArguments(_))
            if call.latest.info.hash != ctx.component.info.hash =>
        {
            tracing::info!(worker = %ctx.id, from = %ctx.component.info.hash, to = %call.latest.info.hash, "moving to the component's newest version");
            ctx.component = call.latest.clone();
            *worker = None;
            resolve(ctx, &call)?
        }
        Err(e) => return Err(e),
    };
    // Activation first: it may resume an interrupted invocation, which could be the very call
    // this one repeats, and whose outcome the lookup below must then find.
    let w = activated(ctx, worker).await?;
    // Spans at debug level: off by default, so that serving pays nothing for them
    // (REVENANT_LOG=revenant_runtime=debug shows them; docs/operations.md).
    let span = tracing::debug_span!(
        parent: &call.span,
        "invocation",
        worker = %ctx.id,
        function = %export.name,
        index = w.log.last_index + 1,
        trace_id = %call.trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
    );
    let (result, keep) = call_activated(ctx, w, &export, &call)
        .instrument(span)
        .await;
    if !keep {
        // After a trap wasmtime refuses further calls into the instance, after a failed
        // append memory holds state the log does not, and a read may have changed the state:
        // rebuild from the log next time.
        *worker = None;
    }
    result
}

/// The call on the activated worker: its result, and whether the instance may be kept.
async fn call_activated(
    ctx: &WorkerContext,
    w: &mut Worker,
    export: &ExportInfo,
    call: &Call,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    if call.read_only {
        if let Err(e) = w.life.admit(&ctx.id) {
            return (Err(e), true);
        }
        publish(ctx, Some(w.life.status(true)));
        let (result, keep) = live::read(ctx, w, export, call).await;
        publish(ctx, Some(w.life.status(false)));
        return (result, keep);
    }
    if let Some(key) = &call.idempotency_key {
        match live::stored_outcome(ctx, key).await {
            Ok(Some(outcome)) => return (outcome, true),
            Ok(None) => {}
            Err(e) => return (Err(e), true),
        }
    }
    // An interrupt requested while no call ran reaches the worker here or as its command.
    if ctx.flags.interrupt.swap(false, Ordering::SeqCst)
        && w.life == Lifecycle::Ready
        && let Err(e) = record(ctx, w, OplogEntry::Interrupted).await
    {
        return (Err(e), true);
    }
    if let Err(e) = w.life.admit(&ctx.id) {
        return (Err(e), true);
    }
    publish(ctx, Some(w.life.status(true)));
    let (result, keep) = live::invoke(ctx, w, export, call).await;
    if keep && result.is_ok() {
        w.log.since_snapshot += 1;
    }
    publish(ctx, Some(w.life.status(false)));
    tracing::debug!(
        outcome = %result.as_ref().map_or_else(|e| e.code(), |_| "ok"),
        last_index = w.log.last_index,
        "invocation ended"
    );
    (result, keep)
}

async fn control(
    ctx: &WorkerContext,
    worker: &mut Option<Worker>,
    control: Control,
) -> Result<(), InvokeError> {
    if worker.is_none() {
        *worker = Some(activation::load(ctx).await?);
    }
    let w = worker.as_mut().expect("loaded above");
    ctx.flags.interrupt.store(false, Ordering::SeqCst);
    match w.life.on_control(control) {
        ControlStep::Nothing => Ok(()),
        ControlStep::Record(entry) => record(ctx, w, entry).await,
        ControlStep::Delete => {
            *worker = None;
            ctx.oplog.delete_worker(&ctx.id).await?;
            // Until this task leaves memory, its slot must not speak for the worker.
            publish(ctx, None);
            Ok(())
        }
    }
}

/// Records a lifecycle entry on its own and moves the state after it.
async fn record(ctx: &WorkerContext, w: &mut Worker, entry: OplogEntry) -> Result<(), InvokeError> {
    let journal = journal_after(ctx, &w.log, false);
    for entry in std::mem::take(&mut w.log.pending_create) {
        journal.push(entry);
    }
    journal.push(entry.clone());
    journal.flush(false, None).await?;
    w.log.last_index = journal.last_index();
    w.life = w.life.after(&entry);
    publish(ctx, Some(w.life.status(false)));
    Ok(())
}

/// A journal for entries that follow the worker's last durable one. `in_flight`: the worker is
/// already marked in flight (a resumed invocation).
fn journal_after(ctx: &WorkerContext, log: &Log, in_flight: bool) -> Arc<Journal> {
    Journal::new(
        ctx.oplog.clone(),
        ctx.id.clone(),
        ctx.fence,
        ctx.component.info.hash.clone(),
        log.last_index + 1,
        in_flight,
        log.snapshot_index,
    )
}

/// What the runtime reports for this worker while it is in memory; `None`: nothing (deleted).
fn publish(ctx: &WorkerContext, status: Option<WorkerStatus>) {
    *ctx.flags.status.lock().expect("status lock") = status;
}
