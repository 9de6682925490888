//! Rebuilding a worker's state from its log: every completed invocation is run again with its
//! recorded arguments, its host calls answered from the log, and must return its recorded
//! result. An invocation the process died in is continued on the same path, then live.

use super::guest::{CallFailure, arm_deadline};
use super::{Worker, WorkerContext, journal_after, live};
use crate::durability::HostCallRecord;
use crate::error::InvokeError;
use crate::limits::{REPLAY_PAGE_ENTRIES, REPLAY_TIMEOUT_FACTOR};
use revenant_storage::{OplogEntry, SequencedEntry, Value};

/// An invocation read back from the log, waiting for its outcome.
struct Recorded {
    function: String,
    args: Vec<Value>,
    idempotency_key: String,
    host_calls: Vec<HostCallRecord>,
}

/// What the log holds of a completed invocation's result.
enum Expected {
    Whole(Vec<Value>),
    /// The SHA-256 and length of its encoding (a call without an idempotency key).
    Digest {
        sha256: [u8; 32],
        bytes: u64,
    },
}

impl Expected {
    /// `None` if `now` is the recorded result; otherwise how it differs.
    fn differs(&self, now: &[Value]) -> Option<String> {
        match self {
            Self::Whole(result) if result.as_slice() == now => None,
            Self::Whole(result) => Some(format!(
                "returned {now:?}, but the oplog records {result:?}"
            )),
            Self::Digest { sha256, bytes } => {
                let (found, found_bytes) = revenant_storage::oplog::result_digest(now);
                (found != *sha256).then(|| {
                    format!(
                        "returned {now:?} ({found_bytes} bytes, SHA-256 {}), but the oplog \
                         records a result of {bytes} bytes with SHA-256 {}",
                        hex(&found),
                        hex(sha256)
                    )
                })
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether replay left the instance as the log says, or the log changed under it.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Replayed {
    Done,
    /// A resumed invocation failed and was recorded as failed: its effects are in the
    /// instance's memory but not in the log, so the instance must be built again.
    Rebuild,
}

/// How a re-run invocation ends.
enum Ending {
    /// It completed when recorded, at `seq`, with this result: it must again.
    Completed { expected: Expected, seq: u64 },
    /// The process died during it: it goes on live and its outcome is recorded now.
    Resumed,
}

/// What replay does with an invocation still open at the last entry it replays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OpenAtEnd {
    /// The process died in it: it goes on live (activation).
    Resume,
    /// It is not part of the state asked for (time travel to an index inside it): dropped.
    Drop,
}

/// Replays entries `from..=last_index` (no entry after `last_index` is looked at).
pub(super) async fn replay(
    ctx: &WorkerContext,
    worker: &mut Worker,
    mut from: u64,
    last_index: u64,
    open_at_end: OpenAtEnd,
) -> Result<Replayed, InvokeError> {
    let mut open: Option<Recorded> = None;
    'pages: while from <= last_index {
        let page = ctx.oplog.read(&ctx.id, from, REPLAY_PAGE_ENTRIES).await?;
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        for SequencedEntry { seq, entry } in page {
            if seq > last_index {
                break 'pages;
            }
            revenant_storage::crash_points::reached("replay.entry");
            worker.life = worker.life.after(&entry);
            match entry {
                OplogEntry::Engine { settings } => {
                    if settings != crate::ENGINE_SETTINGS {
                        return Err(InvokeError::Divergence(format!(
                            "entries from {seq} of {} were made by an engine with settings \
                             `{settings}`; this node's engine runs `{}` and could compute \
                             differently, so it refuses to replay them",
                            ctx.id,
                            crate::ENGINE_SETTINGS
                        )));
                    }
                }
                OplogEntry::Create { component_hash } => {
                    if component_hash != ctx.component.info.hash {
                        tracing::info!(worker = %ctx.id, "worker was created with component {component_hash}, now runs {}", ctx.component.info.hash);
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
                    let expected = Expected::Whole(result);
                    completed(ctx, worker, open.take(), expected, seq).await?;
                }
                OplogEntry::InvocationCompletedDigest { sha256, bytes } => {
                    let expected = Expected::Digest { sha256, bytes };
                    completed(ctx, worker, open.take(), expected, seq).await?;
                }
                // A failed invocation's effects were rolled back when it failed: skip it.
                OplogEntry::InvocationFailed { .. }
                | OplogEntry::InvocationFailedWithCode { .. } => open = None,
                // An older snapshot is a state dump the log already accounts for; lifecycle
                // entries moved the state above.
                OplogEntry::Snapshot { .. }
                | OplogEntry::Interrupted
                | OplogEntry::Resumed
                | OplogEntry::Exited { .. }
                // Output was emitted when the invocation ran; replay discards it.
                | OplogEntry::GuestOutput { .. } => {}
            }
            worker.log.last_index = seq;
        }
    }
    if worker.log.last_index != last_index {
        return Err(InvokeError::Storage(format!(
            "oplog of {} ends at {} but its metadata says {last_index}",
            ctx.id, worker.log.last_index
        )));
    }
    if let Some(interrupted) = open
        && open_at_end == OpenAtEnd::Resume
    {
        tracing::info!(worker = %ctx.id, "resuming an interrupted invocation of {}", interrupted.function);
        return rerun(ctx, worker, interrupted, Ending::Resumed).await;
    }
    Ok(Replayed::Done)
}

async fn completed(
    ctx: &WorkerContext,
    worker: &mut Worker,
    open: Option<Recorded>,
    expected: Expected,
    seq: u64,
) -> Result<Replayed, InvokeError> {
    let Some(inv) = open else {
        return Err(InvokeError::Internal(format!(
            "oplog of {} completes an invocation at {seq} that never started",
            ctx.id
        )));
    };
    rerun(ctx, worker, inv, Ending::Completed { expected, seq }).await
}

/// Runs a recorded invocation again: its host calls are answered from the log; a resumed one
/// continues live once they run out, on a journal that follows the log.
async fn rerun(
    ctx: &WorkerContext,
    worker: &mut Worker,
    inv: Recorded,
    ending: Ending,
) -> Result<Replayed, InvokeError> {
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
    let (then_live, timeout) = match ending {
        Ending::Completed { .. } => (None, ctx.limits.invocation_timeout * REPLAY_TIMEOUT_FACTOR),
        Ending::Resumed => (
            Some(journal_after(ctx, &worker.log, true)),
            ctx.limits.invocation_timeout,
        ),
    };
    let guest = worker.guest.as_mut().expect("replay runs on an instance");
    let chokepoint = guest.store.data().durability.chokepoint.clone();
    // Its caller's trace is gone with the process that ran it.
    guest.store.data_mut().durability.trace = None;
    chokepoint.begin_replay(inv.host_calls, then_live.clone());
    arm_deadline(&mut guest.store, timeout);
    let outcome = guest.call(&export, &inv.args).await;
    let leftover = chokepoint.finish();
    let at = match &ending {
        Ending::Completed { seq, .. } => format!("replaying entry {seq}"),
        Ending::Resumed => format!("resuming `{}`", inv.function),
    };
    if let Some(d) = chokepoint.take_divergence() {
        return Err(InvokeError::Divergence(format!("{at}: {d}")));
    }
    match ending {
        Ending::Completed { expected, .. } => match (outcome, leftover) {
            (Err(CallFailure::Trap(e)), _) => Err(InvokeError::Divergence(format!(
                "{at}: `{}` trapped in replay but completed when recorded: {e}",
                inv.function
            ))),
            (Err(other), _) => Err(other.into_error(&ctx.limits, &ctx.id.to_string())),
            (Ok(_), Err(d)) => Err(InvokeError::Divergence(format!("{at}: {d}"))),
            (Ok(now), Ok(())) => match expected.differs(&now) {
                Some(how) => Err(InvokeError::Divergence(format!(
                    "{at}: `{}` {how}",
                    inv.function
                ))),
                None => Ok(Replayed::Done),
            },
        },
        Ending::Resumed => {
            if let Err(d) = leftover {
                return Err(InvokeError::Divergence(format!("{at}: {d}")));
            }
            let journal = then_live.expect("a resumed invocation has a journal");
            let key = (!inv.idempotency_key.is_empty()).then_some(inv.idempotency_key);
            let (reply, keep) = live::finish(ctx, worker, &journal, key, outcome).await;
            match reply {
                Ok(_) if keep => Ok(Replayed::Done),
                // Recorded as failed (the guest failed, or its outcome could not be recorded):
                // the log is whole again, without the invocation's effects.
                Err(e) if !matches!(e, InvokeError::Storage(_)) => {
                    tracing::info!(worker = %ctx.id, "the resumed invocation of `{}` failed: {e}", inv.function);
                    Ok(Replayed::Rebuild)
                }
                _ => Err(InvokeError::Internal(format!(
                    "the resumed invocation of `{}` did not complete",
                    inv.function
                ))),
            }
        }
    }
}
