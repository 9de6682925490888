//! Bringing a worker into memory: where its log stands (all an operator's command needs), and
//! its instance rebuilt from the latest snapshot and the entries after it; taking snapshots.

use super::guest::{Guest, arm_deadline, guest_store, instantiation_failed};
use super::lifecycle::Lifecycle;
use super::replay::{OpenAtEnd, Replayed};
use super::{Log, Worker, WorkerContext, journal_after, replay};
use crate::durability::HostState;
use crate::error::InvokeError;
use crate::limits::{REPLAY_PAGE_ENTRIES, REPLAY_TIMEOUT_FACTOR, SNAPSHOT_PART_BYTES};
use crate::metrics::METRICS;
use revenant_storage::{OplogEntry, SequencedEntry};
use std::sync::atomic::Ordering;
use wasmtime::Store;

/// The worker's log position and state, without an instance. A worker with no log yet is new:
/// its `Create` waits for its first entry.
pub(super) async fn load(ctx: &WorkerContext) -> Result<Worker, InvokeError> {
    let Some(metadata) = ctx.oplog.metadata(&ctx.id).await? else {
        return Ok(new_worker(ctx));
    };
    let last = ctx.oplog.read(&ctx.id, metadata.last_index, 1).await?;
    Ok(Worker {
        log: Log {
            last_index: metadata.last_index,
            snapshot_index: metadata.snapshot_index,
            since_snapshot: 0,
            snapshot_bytes: 0,
            pending_create: Vec::new(),
        },
        life: Lifecycle::of_last_entry(last.first().map(|e| &e.entry)),
        guest: None,
    })
}

/// The settings this node's engine computes under, as the log records them.
pub(super) fn engine_entry() -> OplogEntry {
    OplogEntry::Engine {
        settings: crate::ENGINE_SETTINGS.to_string(),
    }
}

fn new_worker(ctx: &WorkerContext) -> Worker {
    Worker {
        log: Log {
            last_index: 0,
            snapshot_index: 0,
            since_snapshot: 0,
            snapshot_bytes: 0,
            pending_create: vec![
                OplogEntry::Create {
                    component_hash: ctx.component.info.hash.clone(),
                },
                engine_entry(),
            ],
        },
        life: Lifecycle::Ready,
        guest: None,
    }
}

fn new_store(ctx: &WorkerContext) -> Store<HostState> {
    let flags = ctx.flags.clone();
    guest_store(
        &ctx.engine,
        HostState::new(
            ctx.environment.clone(),
            ctx.http.clone(),
            Some(ctx.flags.clone()),
            ctx.limits.guest_memory_bytes,
        ),
        move || flags.interrupt.load(Ordering::SeqCst),
    )
}

/// The worker with its instance: instantiated, then its state rebuilt from the log. A resumed
/// invocation that ends recorded as failed leaves effects in memory the log does not hold: the
/// instance is then built again, once (the log no longer has an open invocation).
pub(super) async fn activate(ctx: &WorkerContext) -> Result<Worker, InvokeError> {
    // Metrics measure real time.
    #[allow(clippy::disallowed_methods)]
    let began = std::time::Instant::now();
    let activated = activate_twice_at_most(ctx).await;
    if activated.is_ok() {
        METRICS.activations.inc();
        METRICS
            .activation_seconds
            .observe(began.elapsed().as_secs_f64());
    }
    activated
}

async fn activate_twice_at_most(ctx: &WorkerContext) -> Result<Worker, InvokeError> {
    match activate_once(ctx).await? {
        (worker, Replayed::Done) => Ok(worker),
        (_, Replayed::Rebuild) => match activate_once(ctx).await? {
            (worker, Replayed::Done) => Ok(worker),
            (_, Replayed::Rebuild) => Err(InvokeError::Internal(format!(
                "worker {} still has an invocation to resume after recording its failure",
                ctx.id
            ))),
        },
    }
}

/// A new worker with a fresh instance of its component, nothing replayed yet.
pub(super) async fn instantiated(ctx: &WorkerContext) -> Result<Worker, InvokeError> {
    let mut store = new_store(ctx);
    arm_deadline(&mut store, ctx.limits.invocation_timeout);
    let instance = ctx
        .component
        .pre
        .instantiate_async(&mut store)
        .await
        .map_err(|e| instantiation_failed(e, ctx.limits.active_workers_max))?;
    let mut worker = new_worker(ctx);
    worker.guest = Some(Guest { store, instance });
    Ok(worker)
}

async fn activate_once(ctx: &WorkerContext) -> Result<(Worker, Replayed), InvokeError> {
    let metadata = ctx.oplog.metadata(&ctx.id).await?;
    let mut worker = instantiated(ctx).await?;
    let Some(m) = metadata else {
        return Ok((worker, Replayed::Done));
    };
    worker.log.pending_create.clear();
    let from = if m.snapshot_index > 0 {
        load_snapshot(ctx, &mut worker, m.snapshot_index).await?
    } else {
        1
    };
    worker.log.last_index = from - 1;
    #[allow(clippy::disallowed_methods)]
    let began = std::time::Instant::now();
    let replayed = replay::replay(ctx, &mut worker, from, m.last_index, OpenAtEnd::Resume).await?;
    let entries = (m.last_index + 1).saturating_sub(from);
    if entries > 0 {
        METRICS.replays.inc();
        METRICS.replayed_entries.inc_by(entries);
        METRICS
            .replay_seconds
            .observe(began.elapsed().as_secs_f64());
    }
    Ok((worker, replayed))
}

/// Loads the snapshot whose first part is at `index`; returns the entry after its last part.
pub(super) async fn load_snapshot(
    ctx: &WorkerContext,
    worker: &mut Worker,
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
    let guest = worker.guest.as_mut().expect("activating");
    arm_deadline(
        &mut guest.store,
        ctx.limits.invocation_timeout * REPLAY_TIMEOUT_FACTOR,
    );
    let load = load.clone();
    guest.load_snapshot(&load, &bytes).await.map_err(|f| {
        InvokeError::Divergence(format!(
            "loading the snapshot at {index} failed: {}",
            f.into_error(&ctx.limits, &ctx.id.to_string())
        ))
    })?;
    worker.log.snapshot_index = index;
    worker.log.snapshot_bytes = bytes.len() as u64;
    Ok(next)
}

/// Saves a snapshot of the worker's state after its latest invocation, if the component can,
/// and deletes the oplog before it if so configured. `Err` means the instance trapped and must
/// be rebuilt.
pub(super) async fn take_snapshot(
    ctx: &WorkerContext,
    worker: &mut Worker,
) -> Result<(), InvokeError> {
    let Some((save, _)) = ctx.component.info.snapshot_exports() else {
        return Ok(());
    };
    let save = save.clone();
    let guest = worker
        .guest
        .as_mut()
        .expect("a snapshot is taken of an active worker");
    arm_deadline(&mut guest.store, ctx.limits.invocation_timeout);
    let bytes = guest
        .save_snapshot(&save)
        .await
        .map_err(|f| f.into_error(&ctx.limits, &ctx.id.to_string()))?;
    revenant_storage::crash_points::reached("snapshot.before_append");
    let bytes_len = bytes.len() as u64;
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(SNAPSHOT_PART_BYTES).collect()
    };
    let parts = chunks.len() as u32;
    let previous_snapshot = worker.log.snapshot_index;
    let journal = journal_after(ctx, &worker.log, false);
    // The entries after the snapshot are replayed without the log before it (which may be
    // truncated away): they say again which engine made them.
    let journal_parts = chunks
        .into_iter()
        .enumerate()
        .map(|(i, b)| OplogEntry::Snapshot {
            part: i as u32,
            parts,
            bytes: b.to_vec(),
        })
        .collect();
    journal.push_snapshot(journal_parts);
    journal.push(engine_entry());
    journal.flush(false, None).await?;
    revenant_storage::crash_points::reached("snapshot.before_truncate");
    METRICS.snapshots.inc();
    worker.log.last_index = journal.last_index();
    worker.log.snapshot_index = journal.snapshot_index();
    worker.log.since_snapshot = 0;
    worker.log.snapshot_bytes = bytes_len;
    // The log is cut at the snapshot before this one, not at this one: the calls since then
    // keep their outcomes, so that a retry is answered from the log, the retry of the call
    // just before this snapshot included, whose reply may not have reached its caller yet (a
    // crash before it was written: `cli/tests/crash_points.rs` found it).
    if ctx.limits.truncate_at_snapshot && previous_snapshot > 0 {
        ctx.oplog
            .truncate_before(&ctx.id, previous_snapshot)
            .await?;
    }
    Ok(())
}
