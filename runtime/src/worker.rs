//! One worker: a task that owns the worker's wasmtime store, takes invocations from its bounded
//! mailbox one at a time, rebuilds its state from the oplog when activated, and replies only
//! after the invocation's entries are durable.

use crate::WorkerStatus;
use crate::component::{ExportInfo, LoadedComponent};
use crate::durability::{HostCallRecord, HostState};
use crate::environment::Environment;
use crate::error::InvokeError;
use crate::http::HttpClient;
use crate::journal::Journal;
use crate::limits::{
    EPOCH_TICK, REPLAY_PAGE_ENTRIES, REPLAY_TIMEOUT_FACTOR, SNAPSHOT_PART_BYTES, WorkerLimits,
};
use crate::slots::{Shared, WorkerFlags};
use crate::values::{from_val, to_val};
use revenant_storage::{OplogEntry, OplogStore, SequencedEntry, Value, WorkerId};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::{mpsc, oneshot};
use wasmtime::component::{Instance, Val};
use wasmtime::{Engine, Store, UpdateDeadline};

pub(crate) struct Invocation {
    pub export: ExportInfo,
    pub args: Vec<Value>,
    pub idempotency_key: Option<String>,
    /// `None` for a bare activation (recovery at start-up): activate, answer nobody.
    pub reply: Option<oneshot::Sender<Result<Vec<Value>, InvokeError>>>,
    /// An operator's command instead of a call (`export` and `args` are then unused).
    pub control: Option<Control>,
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

impl Invocation {
    fn answer(self, result: Result<Vec<Value>, InvokeError>) {
        if let Some(reply) = self.reply {
            // A caller that gave up waiting is no error: the outcome is stored either way.
            let _ = reply.send(result);
        }
    }
}

pub(crate) struct WorkerContext {
    pub id: WorkerId,
    pub engine: Engine,
    pub component: Arc<LoadedComponent>,
    pub oplog: Arc<dyn OplogStore>,
    pub environment: Arc<dyn Environment>,
    pub http: HttpClient,
    pub limits: WorkerLimits,
    pub flags: Arc<WorkerFlags>,
}

/// Why a call into the guest did not return.
enum CallFailure {
    Trap(String),
    Timeout,
    Memory,
    Interrupted,
    Exited(i32),
}

impl CallFailure {
    fn into_error(self, limits: &WorkerLimits) -> InvokeError {
        match self {
            Self::Trap(m) => InvokeError::Trap(m),
            Self::Timeout => InvokeError::Timeout(limits.invocation_timeout),
            Self::Memory => InvokeError::MemoryLimit(limits.guest_memory_bytes),
            Self::Interrupted => InvokeError::Trap("interrupted by an operator".into()),
            Self::Exited(code) => InvokeError::Trap(format!("the guest exited with code {code}")),
        }
    }
}

/// A worker whose state is in memory and matches its durable oplog.
struct Active {
    store: Store<HostState>,
    instance: Instance,
    /// Sequence number of the last durable entry.
    last_index: u64,
    /// A new worker's `Create` entry, written with its first invocation to save a sync.
    pending_create: Option<OplogEntry>,
    /// The first entry of the latest snapshot (0: none), and invocations completed since.
    snapshot_index: u64,
    since_snapshot: u64,
    /// Interrupted by an operator and not resumed: calls are refused.
    interrupted: bool,
    /// The guest exited, with this code: calls are refused for good.
    exited: Option<i32>,
}

/// The worker's task. It holds `lifetime` while it lives, so a successor for the same worker
/// (after an eviction) starts only once this one has answered everything and left.
pub(crate) async fn run(
    ctx: WorkerContext,
    mut mailbox: mpsc::Receiver<Invocation>,
    lifetime: Arc<tokio::sync::Mutex<()>>,
    evict: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
) {
    let _alive = lifetime.clone().lock_owned().await;
    let mut active: Option<Active> = None;
    loop {
        let invocation = tokio::select! {
            next = mailbox.recv() => match next {
                Some(invocation) => invocation,
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
        let deleted = invocation.control == Some(Control::Delete);
        handle(&ctx, &mut active, invocation).await;
        // A deleted worker leaves memory at once, unless calls are already queued for it.
        if deleted && shared.retire(&ctx.id, &lifetime, mailbox.is_empty()) {
            break;
        }
    }
    // Retired: new calls go to a successor. Answer what reached this mailbox meanwhile.
    mailbox.close();
    while let Some(invocation) = mailbox.recv().await {
        handle(&ctx, &mut active, invocation).await;
    }
    drop(active);
    shared.finished(&ctx.id, &lifetime);
}

async fn handle(ctx: &WorkerContext, active: &mut Option<Active>, invocation: Invocation) {
    if let Some(control) = invocation.control {
        let result = handle_control(ctx, active, control).await;
        return invocation.answer(result.map(|()| Vec::new()));
    }
    // Activation first: it may resume an interrupted invocation, which could be the very call
    // this one repeats, and whose outcome the lookup below must then find.
    if active.is_none() {
        match activate(ctx).await {
            Ok(a) => *active = Some(a),
            Err(e) => {
                tracing::error!(worker = %ctx.id, "activation failed: {e}");
                set_status(ctx, WorkerStatus::Failed);
                return invocation.answer(Err(e));
            }
        }
    }
    if invocation.reply.is_none() {
        return; // a bare activation: done
    }
    if let Some(key) = &invocation.idempotency_key {
        match stored_outcome(ctx, key).await {
            Ok(Some(outcome)) => return invocation.answer(outcome),
            Ok(None) => {}
            Err(e) => return invocation.answer(Err(e)),
        }
    }
    let Some(worker) = active.as_mut() else {
        return;
    };
    if ctx.flags.interrupt.swap(false, Ordering::SeqCst)
        && !worker.interrupted
        && let Err(e) = mark(ctx, worker, OplogEntry::Interrupted).await
    {
        return invocation.answer(Err(e));
    }
    if let Some(code) = worker.exited {
        return invocation.answer(Err(InvokeError::Exited {
            worker: ctx.id.to_string(),
            code,
        }));
    }
    if worker.interrupted {
        return invocation.answer(Err(InvokeError::Interrupted(ctx.id.to_string())));
    }
    set_status(ctx, WorkerStatus::Running);
    let (result, mut keep) = invoke_live(ctx, worker, &invocation).await;
    set_status(
        ctx,
        if worker.exited.is_some() {
            WorkerStatus::Exited
        } else if worker.interrupted {
            WorkerStatus::Interrupted
        } else {
            WorkerStatus::Idle
        },
    );
    if keep && result.is_ok() && ctx.limits.snapshot_every > 0 {
        worker.since_snapshot += 1;
        if worker.since_snapshot >= ctx.limits.snapshot_every
            && let Err(e) = take_snapshot(ctx, worker).await
        {
            tracing::warn!(worker = %ctx.id, "snapshot failed: {e}");
            keep = false;
        }
    }
    if !keep {
        // After a trap wasmtime refuses further calls into the instance, and after a failed
        // append memory holds state the log does not: rebuild from the log next time.
        *active = None;
    }
    invocation.answer(result);
}

/// A journal for entries that follow the worker's last durable one. `in_flight`: the worker is
/// already marked in flight (a resumed invocation).
fn journal_after(ctx: &WorkerContext, active: &Active, in_flight: bool) -> Arc<Journal> {
    Journal::new(
        ctx.oplog.clone(),
        ctx.id.clone(),
        ctx.component.info.hash.clone(),
        active.last_index + 1,
        in_flight,
        active.snapshot_index,
    )
}

fn set_status(ctx: &WorkerContext, status: WorkerStatus) {
    ctx.flags.status.store(status as u8, Ordering::Relaxed);
}

/// Records an operator's `Interrupted` or `Resumed` on its own.
async fn mark(
    ctx: &WorkerContext,
    active: &mut Active,
    entry: OplogEntry,
) -> Result<(), InvokeError> {
    let interrupted = entry == OplogEntry::Interrupted;
    let journal = journal_after(ctx, active, false);
    if let Some(create) = active.pending_create.take() {
        journal.push(create);
    }
    journal.push(entry);
    journal.flush(false, None).await?;
    active.last_index = journal.last_index();
    active.interrupted = interrupted;
    set_status(
        ctx,
        if interrupted {
            WorkerStatus::Interrupted
        } else {
            WorkerStatus::Idle
        },
    );
    Ok(())
}

async fn handle_control(
    ctx: &WorkerContext,
    active: &mut Option<Active>,
    control: Control,
) -> Result<(), InvokeError> {
    if control == Control::Delete {
        *active = None;
        ctx.oplog.delete_worker(&ctx.id).await?;
        ctx.flags.interrupt.store(false, Ordering::SeqCst);
        // Until this task leaves memory, its slot must not speak for the worker.
        ctx.flags.status.store(crate::GONE, Ordering::Relaxed);
        return Ok(());
    }
    if active.is_none() {
        *active = Some(activate(ctx).await?);
    }
    let Some(worker) = active.as_mut() else {
        return Ok(());
    };
    ctx.flags.interrupt.store(false, Ordering::SeqCst);
    match control {
        Control::Interrupt if !worker.interrupted => {
            mark(ctx, worker, OplogEntry::Interrupted).await
        }
        Control::Resume if worker.interrupted => mark(ctx, worker, OplogEntry::Resumed).await,
        _ => Ok(()),
    }
}

/// The outcome recorded for an idempotency key, if the worker already ran a call with it.
async fn stored_outcome(
    ctx: &WorkerContext,
    key: &str,
) -> Result<Option<Result<Vec<Value>, InvokeError>>, InvokeError> {
    let Some(seq) = ctx.oplog.idempotent_outcome(&ctx.id, key).await? else {
        return Ok(None);
    };
    let entry = ctx.oplog.read(&ctx.id, seq, 1).await?;
    match entry.into_iter().next() {
        Some(SequencedEntry {
            seq: found,
            entry: OplogEntry::InvocationCompleted { result, .. },
        }) if found == seq => Ok(Some(Ok(result))),
        Some(SequencedEntry {
            seq: found,
            entry: OplogEntry::InvocationFailed { error, .. },
        }) if found == seq => Ok(Some(Err(InvokeError::Trap(format!(
            "the call with this idempotency key failed: {error}"
        ))))),
        _ => Err(InvokeError::Storage(format!(
            "the outcome of idempotency key `{key}` (entry {seq}) is no longer stored"
        ))),
    }
}

fn new_store(ctx: &WorkerContext) -> Store<HostState> {
    let flags = ctx.flags.clone();
    guest_store(
        &ctx.engine,
        HostState::new(
            ctx.environment.clone(),
            ctx.http.clone(),
            ctx.limits.guest_memory_bytes,
        ),
        move || flags.interrupt.load(Ordering::SeqCst),
    )
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

async fn activate(ctx: &WorkerContext) -> Result<Active, InvokeError> {
    let metadata = ctx.oplog.metadata(&ctx.id).await?;
    let mut store = new_store(ctx);
    arm_deadline(&mut store, ctx.limits.invocation_timeout);
    let instance = ctx
        .component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| InvokeError::Trap(format!("instantiation failed: {e:#}")))?;
    let mut active = Active {
        store,
        instance,
        last_index: 0,
        pending_create: None,
        snapshot_index: 0,
        since_snapshot: 0,
        interrupted: false,
        exited: None,
    };
    match metadata {
        None => {
            active.pending_create = Some(OplogEntry::Create {
                component_hash: ctx.component.info.hash.clone(),
            });
        }
        Some(m) => {
            let from = if m.snapshot_index > 0 {
                load_snapshot(ctx, &mut active, m.snapshot_index).await?
            } else {
                1
            };
            active.last_index = from - 1;
            replay(ctx, &mut active, from, m.last_index).await?;
        }
    }
    Ok(active)
}

/// Loads the snapshot whose first part is at `index`; returns the entry after its last part.
async fn load_snapshot(
    ctx: &WorkerContext,
    active: &mut Active,
    index: u64,
) -> Result<u64, InvokeError> {
    let Some((_, load)) = ctx.component.info.snapshot_exports() else {
        return Err(InvokeError::Divergence(
            "the worker has a snapshot, but its component no longer exports revenant:durable/snapshot"
                .into(),
        ));
    };
    let mut bytes = Vec::new();
    let mut next = index;
    loop {
        let page = ctx.oplog.read(&ctx.id, next, REPLAY_PAGE_ENTRIES).await?;
        let mut done = false;
        for SequencedEntry { seq, entry } in page {
            match entry {
                OplogEntry::Snapshot {
                    part,
                    parts,
                    bytes: b,
                } if seq == next => {
                    bytes.extend_from_slice(&b);
                    next = seq + 1;
                    if part + 1 == parts {
                        done = true;
                        break;
                    }
                }
                other => {
                    return Err(InvokeError::Storage(format!(
                        "snapshot of {} at {index} is incomplete: entry {seq} is {other:?}",
                        ctx.id
                    )));
                }
            }
        }
        if done {
            break;
        }
        if next == index {
            return Err(InvokeError::Storage(format!(
                "snapshot of {} at {index} is missing",
                ctx.id
            )));
        }
    }
    arm_deadline(
        &mut active.store,
        ctx.limits.invocation_timeout * REPLAY_TIMEOUT_FACTOR,
    );
    let load = load.clone();
    call(active, &load, &[Value::Bytes(bytes)])
        .await
        .map_err(|f| {
            InvokeError::Divergence(format!(
                "loading the snapshot at {index} failed: {}",
                f.into_error(&ctx.limits)
            ))
        })?;
    active.snapshot_index = index;
    Ok(next)
}

/// Saves a snapshot of the worker's state after its latest invocation, if the component can,
/// and deletes the oplog before it if so configured. `Err` means the instance trapped and must
/// be rebuilt.
async fn take_snapshot(ctx: &WorkerContext, active: &mut Active) -> Result<(), InvokeError> {
    let Some((save, _)) = ctx.component.info.snapshot_exports() else {
        return Ok(());
    };
    let save = save.clone();
    arm_deadline(&mut active.store, ctx.limits.invocation_timeout);
    let result = call(active, &save, &[])
        .await
        .map_err(|f| f.into_error(&ctx.limits))?;
    let bytes: Vec<u8> = match result.as_slice() {
        [Value::List(items)] => items
            .iter()
            .map(|v| match v {
                Value::U8(b) => Ok(*b),
                _ => Err(()),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| {
                InvokeError::Internal("save-snapshot returned something else than bytes".into())
            })?,
        _ => {
            return Err(InvokeError::Internal(
                "save-snapshot returned something else than bytes".into(),
            ));
        }
    };
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(SNAPSHOT_PART_BYTES).collect()
    };
    let parts = chunks.len() as u32;
    let journal = journal_after(ctx, active, false);
    journal.push_snapshot(
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, b)| OplogEntry::Snapshot {
                part: i as u32,
                parts,
                bytes: b.to_vec(),
            })
            .collect(),
    );
    journal.flush(false, None).await?;
    active.last_index = journal.last_index();
    active.snapshot_index = journal.snapshot_index();
    active.since_snapshot = 0;
    if ctx.limits.truncate_at_snapshot {
        ctx.oplog
            .truncate_before(&ctx.id, active.snapshot_index)
            .await?;
    }
    Ok(())
}

/// An invocation read back from the log, waiting for its outcome.
struct Recorded {
    function: String,
    args: Vec<Value>,
    idempotency_key: String,
    host_calls: Vec<HostCallRecord>,
}

async fn replay(
    ctx: &WorkerContext,
    active: &mut Active,
    mut from: u64,
    last_index: u64,
) -> Result<(), InvokeError> {
    let mut open: Option<Recorded> = None;
    while from <= last_index {
        let page = ctx.oplog.read(&ctx.id, from, REPLAY_PAGE_ENTRIES).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for SequencedEntry { seq, entry } in page {
            match entry {
                OplogEntry::Create { component_hash } => {
                    if component_hash != ctx.component.info.hash {
                        tracing::warn!(worker = %ctx.id, "worker was created with component {component_hash}, now runs {}", ctx.component.info.hash);
                    }
                }
                OplogEntry::InvocationStarted {
                    function,
                    args,
                    idempotency_key,
                } => {
                    if let Some(abandoned) = open.take() {
                        tracing::warn!(worker = %ctx.id, "skipping invocation of {} that never completed", abandoned.function);
                    }
                    open = Some(Recorded {
                        function,
                        args,
                        idempotency_key,
                        host_calls: Vec::new(),
                    });
                }
                OplogEntry::HostCall {
                    interface,
                    function,
                    request,
                    response,
                } => {
                    let Some(inv) = open.as_mut() else {
                        return Err(InvokeError::Internal(format!(
                            "oplog of {} has a host call at {seq} outside any invocation",
                            ctx.id
                        )));
                    };
                    inv.host_calls.push(HostCallRecord {
                        interface,
                        function,
                        request,
                        response,
                    });
                }
                OplogEntry::InvocationCompleted { result, .. } => {
                    let Some(inv) = open.take() else {
                        return Err(InvokeError::Internal(format!(
                            "oplog of {} completes an invocation at {seq} that never started",
                            ctx.id
                        )));
                    };
                    replay_one(ctx, active, inv, result, seq).await?;
                }
                // An older snapshot is a state dump the log already accounts for.
                OplogEntry::Snapshot { .. } => {}
                OplogEntry::Interrupted => active.interrupted = true,
                OplogEntry::Exited { code } => active.exited = Some(code),
                OplogEntry::Resumed => active.interrupted = false,
                // A failed invocation's effects were rolled back when it trapped: skip it.
                OplogEntry::InvocationFailed { .. } => open = None,
            }
            active.last_index = seq;
        }
    }
    if active.last_index != last_index {
        return Err(InvokeError::Storage(format!(
            "oplog of {} ends at {} but its metadata says {last_index}",
            ctx.id, active.last_index
        )));
    }
    if let Some(interrupted) = open {
        resume(ctx, active, interrupted).await?;
    }
    Ok(())
}

/// Continues an invocation the process died in: its recorded host calls are answered from the
/// log, then it runs live; its outcome is stored under its idempotency key for the caller to
/// collect with a retry.
async fn resume(
    ctx: &WorkerContext,
    active: &mut Active,
    inv: Recorded,
) -> Result<(), InvokeError> {
    let export = ctx
        .component
        .info
        .exports
        .get(&inv.function)
        .cloned()
        .ok_or_else(|| {
            InvokeError::Divergence(format!(
                "the oplog invokes `{}`, which the component no longer exports",
                inv.function
            ))
        })?;
    tracing::info!(worker = %ctx.id, "resuming an interrupted invocation of {}", inv.function);
    let journal = journal_after(ctx, active, true);
    active
        .store
        .data_mut()
        .durability
        .begin_replay(inv.host_calls, Some(journal.clone()));
    arm_deadline(&mut active.store, ctx.limits.invocation_timeout);
    let outcome = call(active, &export, &inv.args).await;
    let leftover = active.store.data_mut().durability.finish();
    if let Some(d) = active.store.data_mut().durability.take_divergence() {
        return Err(InvokeError::Divergence(format!(
            "resuming `{}`: {d}",
            inv.function
        )));
    }
    if let Err(d) = leftover {
        return Err(InvokeError::Divergence(format!(
            "resuming `{}`: {d}",
            inv.function
        )));
    }
    let key = (!inv.idempotency_key.is_empty()).then_some(inv.idempotency_key);
    let (_, keep) = finish_invocation(ctx, active, &journal, key, outcome).await;
    if keep {
        Ok(())
    } else {
        Err(InvokeError::Internal(format!(
            "the resumed invocation of `{}` did not complete",
            inv.function
        )))
    }
}

async fn replay_one(
    ctx: &WorkerContext,
    active: &mut Active,
    inv: Recorded,
    recorded_result: Vec<Value>,
    seq: u64,
) -> Result<(), InvokeError> {
    let export = ctx
        .component
        .info
        .exports
        .get(&inv.function)
        .ok_or_else(|| {
            InvokeError::Divergence(format!(
                "the oplog invokes `{}`, which the component no longer exports",
                inv.function
            ))
        })?;
    active
        .store
        .data_mut()
        .durability
        .begin_replay(inv.host_calls, None);
    arm_deadline(
        &mut active.store,
        ctx.limits.invocation_timeout * REPLAY_TIMEOUT_FACTOR,
    );
    let outcome = call(active, export, &inv.args).await;
    let leftover = active.store.data_mut().durability.finish();
    let divergence = active.store.data_mut().durability.take_divergence();
    match (outcome, divergence, leftover) {
        (_, Some(d), _) => Err(InvokeError::Divergence(format!(
            "replaying entry {seq}: {d}"
        ))),
        (Err(CallFailure::Trap(e)), None, _) => Err(InvokeError::Divergence(format!(
            "replaying entry {seq}: `{}` trapped in replay but completed when recorded: {e}",
            inv.function
        ))),
        (Err(other), None, _) => Err(other.into_error(&ctx.limits)),
        (Ok(_), None, Err(d)) => Err(InvokeError::Divergence(format!(
            "replaying entry {seq}: {d}"
        ))),
        (Ok(result), None, Ok(_)) if result != recorded_result => {
            Err(InvokeError::Divergence(format!(
                "replaying entry {seq}: `{}` returned {result:?}, but the oplog records {recorded_result:?}",
                inv.function
            )))
        }
        (Ok(_), None, Ok(_)) => Ok(()),
    }
}

/// Calls an export within the deadline armed before.
async fn call(
    active: &mut Active,
    export: &ExportInfo,
    args: &[Value],
) -> Result<Vec<Value>, CallFailure> {
    let func = active
        .instance
        .get_func(&mut active.store, export.index)
        .ok_or_else(|| {
            CallFailure::Trap(format!("export `{}` not found in instance", export.name))
        })?;
    let params: Vec<Val> = args.iter().map(to_val).collect();
    let mut results = vec![Val::Bool(false); export.signature.results.len()];
    if let Err(e) = func
        .call_async(&mut active.store, &params, &mut results)
        .await
    {
        let state = active.store.data();
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return Err(CallFailure::Exited(exit.0));
        }
        return Err(if state.interrupted {
            CallFailure::Interrupted
        } else if state.deadline_exceeded {
            CallFailure::Timeout
        } else if state.limiter.memory_exceeded {
            CallFailure::Memory
        } else {
            CallFailure::Trap(format!("{e:#}"))
        });
    }
    results
        .iter()
        .map(from_val)
        .collect::<Result<_, _>>()
        .map_err(CallFailure::Trap)
}

/// Runs one invocation live and makes it durable. Returns the reply and whether the in-memory
/// worker may be kept.
async fn invoke_live(
    ctx: &WorkerContext,
    active: &mut Active,
    invocation: &Invocation,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    let export = &invocation.export;
    let journal = journal_after(ctx, active, false);
    if let Some(create) = active.pending_create.take() {
        journal.push(create);
    }
    journal.push(OplogEntry::InvocationStarted {
        idempotency_key: invocation.idempotency_key.clone().unwrap_or_default(),
        function: export.name.clone(),
        args: invocation.args.clone(),
    });
    active
        .store
        .data_mut()
        .durability
        .begin_live(journal.clone());
    arm_deadline(&mut active.store, ctx.limits.invocation_timeout);
    let outcome = call(active, export, &invocation.args).await;
    let _ = active.store.data_mut().durability.finish();
    finish_invocation(
        ctx,
        active,
        &journal,
        invocation.idempotency_key.clone(),
        outcome,
    )
    .await
}

/// Records how an invocation ended and makes it durable: the reply, and whether the in-memory
/// worker may be kept.
async fn finish_invocation(
    ctx: &WorkerContext,
    active: &mut Active,
    journal: &Journal,
    idempotency_key: Option<String>,
    outcome: Result<Vec<Value>, CallFailure>,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    let key = idempotency_key.clone().unwrap_or_default();
    let (reply, keep) = match outcome {
        Ok(result) => {
            journal.push(OplogEntry::InvocationCompleted {
                idempotency_key: key,
                result: result.clone(),
            });
            (Ok(result), true)
        }
        Err(failure) => {
            let interrupted = matches!(failure, CallFailure::Interrupted);
            let exited = match failure {
                CallFailure::Exited(code) => Some(code),
                _ => None,
            };
            let error = failure.into_error(&ctx.limits);
            tracing::info!(worker = %ctx.id, "an invocation failed: {error}");
            journal.push(OplogEntry::InvocationFailed {
                idempotency_key: key,
                error: error.to_string(),
            });
            if let Some(code) = exited {
                journal.push(OplogEntry::Exited { code });
                active.exited = Some(code);
                return match journal.flush(false, idempotency_key).await {
                    Ok(()) => (
                        Err(InvokeError::Exited {
                            worker: ctx.id.to_string(),
                            code,
                        }),
                        false,
                    ),
                    Err(e) => (Err(e.into()), false),
                };
            }
            if interrupted {
                journal.push(OplogEntry::Interrupted);
                active.interrupted = true;
                ctx.flags.interrupt.store(false, Ordering::SeqCst);
                return match journal.flush(false, idempotency_key).await {
                    Ok(()) => (Err(InvokeError::Interrupted(ctx.id.to_string())), false),
                    Err(e) => (Err(e.into()), false),
                };
            }
            (Err(error), false)
        }
    };
    if let Some(failure) = journal.failure() {
        return (Err(InvokeError::Storage(failure)), false);
    }
    match journal.flush(false, idempotency_key).await {
        Ok(()) => {
            active.last_index = journal.last_index();
            (reply, keep)
        }
        Err(e) => (Err(e.into()), false),
    }
}
