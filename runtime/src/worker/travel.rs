//! Time travel and fork: a worker's state at an index of its log.
//!
//! - **State at an index**: a scratch instance is built from the log up to that index (the
//!   latest snapshot at or before it, then replay; an invocation still open there is dropped),
//!   and an export is called on it. Nothing is written: the scratch instance never has a
//!   journal, its host calls are answered from the log while replaying and refused (outgoing
//!   HTTP) or answered live (clocks, random) in the final call, as a read-only call's are, and
//!   it is dropped afterwards. The live worker is not touched: this does not go through its
//!   mailbox.
//! - **Fork**: a new worker whose log is a copy of the original's up to an index, which then
//!   lives on its own. It runs in the new worker's task (its mailbox), so calls to the new name
//!   made meanwhile wait for it.

use super::activation::{engine_entry, instantiated, load_snapshot};
use super::guest::arm_deadline;
use super::replay::{self, OpenAtEnd};
use super::{Worker, WorkerContext};
use crate::component::ExportInfo;
use crate::error::InvokeError;
use crate::limits::{FORK_BATCH_ENTRIES, REPLAY_PAGE_ENTRIES};
use revenant_storage::{Append, OplogEntry, SequencedEntry, Value, WorkerId, WorkerMetadata};

/// Calls `export` on the worker's state as it was after entry `at` of its log.
pub(crate) async fn state_at(
    ctx: &WorkerContext,
    at: u64,
    export: &ExportInfo,
    args: &[Value],
) -> Result<Vec<Value>, InvokeError> {
    let metadata = ctx
        .oplog
        .metadata(&ctx.id)
        .await?
        .ok_or_else(|| InvokeError::WorkerNotFound(ctx.id.to_string()))?;
    if at == 0 || at > metadata.last_index {
        return Err(InvokeError::BadArguments(format!(
            "worker {} has entries 1 to {}; there is no index {at}",
            ctx.id, metadata.last_index
        )));
    }
    let mut worker = instantiated(ctx).await?;
    worker.log.pending_create.clear();
    let from = start(ctx, &mut worker, metadata.snapshot_index, at).await?;
    worker.log.last_index = from - 1;
    if from <= at {
        replay::replay(ctx, &mut worker, from, at, OpenAtEnd::Drop).await?;
    }
    let guest = worker.guest.as_mut().expect("instantiated above");
    let chokepoint = guest.store.data().durability.chokepoint.clone();
    chokepoint.begin_read_only();
    arm_deadline(&mut guest.store, ctx.limits.invocation_timeout);
    let _ = guest.store.data().output.take();
    let outcome = guest.call(export, args).await;
    let _ = chokepoint.finish();
    // What it printed belongs to no invocation of the worker: recorded and shown nowhere.
    let _ = guest.store.data().output.take();
    outcome.map_err(|f| f.into_error(&ctx.limits, &ctx.id.to_string()))
}

/// Loads what replay to `at` starts from into the scratch instance: the latest snapshot if it
/// is at or before `at`, else the log's first entry. Returns the index replay starts at.
async fn start(
    ctx: &WorkerContext,
    worker: &mut Worker,
    snapshot_index: u64,
    at: u64,
) -> Result<u64, InvokeError> {
    if snapshot_index > 0 && snapshot_index <= at {
        return load_snapshot(ctx, worker, snapshot_index).await;
    }
    match ctx.oplog.read(&ctx.id, 1, 1).await?.into_iter().next() {
        Some(first) if first.seq == 1 => Ok(1),
        Some(SequencedEntry {
            seq,
            entry: OplogEntry::Snapshot { part: 0, .. },
        }) if seq <= at => load_snapshot(ctx, worker, seq).await,
        Some(first) => Err(truncated(&ctx.id, first.seq, at)),
        None => Err(InvokeError::Storage(format!(
            "worker {} has metadata but no log entries",
            ctx.id
        ))),
    }
}

fn truncated(worker: &WorkerId, first: u64, at: u64) -> InvokeError {
    InvokeError::BadArguments(format!(
        "the log of worker {worker} before index {first} was removed when a snapshot was taken \
         (truncate_oplog_at_snapshot), so its state at {at} cannot be rebuilt; the earliest \
         index it can show is {first}"
    ))
}

/// What a fork made: the new worker's last index, and the original's index it was cut at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forked {
    /// The original's index the copy ends at.
    pub at: u64,
    /// The new worker's last index (the same as `at` unless the original's log had been
    /// truncated at a snapshot: the copy then starts with a `Create` of its own).
    pub last_index: u64,
}

/// Makes the worker of `ctx` (which must not exist) a copy of `source` up to `at` (default:
/// its last entry that ends no invocation in the middle). Runs in the new worker's task.
pub(crate) async fn fork(
    ctx: &WorkerContext,
    source: &WorkerId,
    at: Option<u64>,
) -> Result<Forked, InvokeError> {
    if ctx.oplog.metadata(&ctx.id).await?.is_some() {
        return Err(InvokeError::WorkerExists(ctx.id.to_string()));
    }
    let metadata = ctx
        .oplog
        .metadata(source)
        .await?
        .ok_or_else(|| InvokeError::WorkerNotFound(source.to_string()))?;
    if let Some(at) = at
        && (at == 0 || at > metadata.last_index)
    {
        return Err(InvokeError::BadArguments(format!(
            "worker {source} has entries 1 to {}; there is no index {at}",
            metadata.last_index
        )));
    }
    let end = at.unwrap_or(metadata.last_index);
    let first = match ctx.oplog.read(source, 1, 1).await?.into_iter().next() {
        Some(e) => e.seq,
        None => {
            return Err(InvokeError::Storage(format!(
                "worker {source} has metadata but no log entries"
            )));
        }
    };
    if first > end {
        return Err(truncated(source, first, end));
    }
    // A log cut at a snapshot starts the copy with a Create and Engine of its own; the
    // entries after are renumbered to follow them.
    let mut prefix = Vec::new();
    if first > 1 {
        prefix.push(OplogEntry::Create {
            component_hash: metadata.component_hash.clone(),
        });
        prefix.push(engine_entry());
    }
    let renumber = |seq: u64| seq - first + 1 + prefix.len() as u64;
    let mut copy = Copy {
        ctx,
        component_hash: metadata.component_hash.clone(),
        batch: prefix
            .iter()
            .cloned()
            .zip(1..)
            .map(|(entry, seq)| SequencedEntry { seq, entry })
            .collect(),
        written: 0,
        snapshot_index: 0,
        batch_snapshot: None,
        key: None,
    };
    let mut open: Option<u64> = None;
    let mut snapshot_open = false;
    // The last original index at which the copy could end, and how much of it is not yet
    // appended (flushed only at such boundaries: a fork cut short by a crash is a worker at an
    // earlier index, never one with half an invocation).
    let mut boundary = first - 1;
    let mut next = first;
    'pages: while next <= end {
        let page = ctx.oplog.read(source, next, REPLAY_PAGE_ENTRIES).await?;
        let Some(last) = page.last() else { break };
        next = last.seq + 1;
        for SequencedEntry { seq, entry } in page {
            if seq > end {
                break 'pages;
            }
            let new_seq = renumber(seq);
            match &entry {
                OplogEntry::InvocationStarted { .. } => open = Some(seq),
                OplogEntry::InvocationCompleted {
                    idempotency_key, ..
                }
                | OplogEntry::InvocationFailed {
                    idempotency_key, ..
                }
                | OplogEntry::InvocationFailedWithCode {
                    idempotency_key, ..
                } => {
                    open = None;
                    if !idempotency_key.is_empty() {
                        copy.key = Some((idempotency_key.clone(), new_seq));
                    }
                }
                OplogEntry::InvocationCompletedDigest { .. } => open = None,
                OplogEntry::Snapshot { part, parts, .. } => {
                    if *part == 0 {
                        copy.batch_snapshot = Some(new_seq);
                    }
                    snapshot_open = part + 1 < *parts;
                }
                _ => {}
            }
            copy.batch.push(SequencedEntry {
                seq: new_seq,
                entry,
            });
            if open.is_none() && !snapshot_open {
                boundary = seq;
                // One append per keyed outcome: the store indexes one key per append.
                if copy.key.is_some() || copy.batch.len() >= FORK_BATCH_ENTRIES {
                    copy.flush().await?;
                }
            }
        }
    }
    if next <= end {
        return Err(InvokeError::Storage(format!(
            "the log of worker {source} ends before index {end}"
        )));
    }
    if let Some(started) = open.filter(|_| at.is_some()) {
        // Known only at the end of the copy: what was appended of it goes (a fork that is
        // refused leaves nothing).
        if copy.written > 0 {
            ctx.oplog.delete_worker(&ctx.id).await?;
        }
        return Err(InvokeError::BadArguments(format!(
            "index {end} of worker {source} is inside the invocation that started at {started}; \
             fork at {} (before it) or at the index that ends it",
            started - 1
        )));
    }
    // Without `at`: up to the last boundary; whatever follows it is an invocation in flight.
    copy.batch.retain(|e| e.seq <= renumber(boundary));
    copy.flush().await?;
    if copy.written == 0 {
        return Err(InvokeError::BadArguments(format!(
            "worker {source} has no complete entry to fork from"
        )));
    }
    Ok(Forked {
        at: boundary,
        last_index: copy.written,
    })
}

/// The fork's entries not yet appended.
struct Copy<'a> {
    ctx: &'a WorkerContext,
    component_hash: String,
    batch: Vec<SequencedEntry>,
    /// The fork's last durable index.
    written: u64,
    snapshot_index: u64,
    /// The first part of a snapshot in `batch`.
    batch_snapshot: Option<u64>,
    /// The idempotency key whose outcome ends `batch`, with the outcome's index.
    key: Option<(String, u64)>,
}

impl Copy<'_> {
    async fn flush(&mut self) -> Result<(), InvokeError> {
        let Some(last) = self.batch.last().map(|e| e.seq) else {
            return Ok(());
        };
        if let Some(s) = self.batch_snapshot.take().filter(|s| *s <= last) {
            self.snapshot_index = s;
        }
        let key = self.key.take().filter(|(_, seq)| *seq <= last);
        self.ctx
            .oplog
            .append(Append {
                worker: self.ctx.id.clone(),
                fence: self.ctx.fence,
                entries: std::mem::take(&mut self.batch),
                metadata: WorkerMetadata {
                    component_hash: self.component_hash.clone(),
                    last_index: last,
                    snapshot_index: self.snapshot_index,
                },
                idempotency: key,
                in_flight: None,
            })
            .await?;
        self.written = last;
        Ok(())
    }
}
