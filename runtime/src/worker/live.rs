//! One call run live: its entries collect in a journal, its outcome is recorded, and the reply
//! goes out only once they are durable. Also the outcome of an idempotency key already used.

use super::guest::{CallFailure, arm_deadline};
use super::{Call, Worker, WorkerContext, journal_after};
use crate::component::ExportInfo;
use crate::error::InvokeError;
use crate::guest_output;
use crate::journal::Journal;
use revenant_storage::limits::VALUE_BYTES_MAX;
use revenant_storage::{OplogEntry, SequencedEntry, Value};
use std::sync::atomic::Ordering;

/// Runs the call and makes it durable. Returns the reply and whether the in-memory worker may
/// be kept.
pub(super) async fn invoke(
    ctx: &WorkerContext,
    worker: &mut Worker,
    export: &ExportInfo,
    call: &Call,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    let journal = journal_after(ctx, &worker.log, false);
    for entry in std::mem::take(&mut worker.log.pending_create) {
        journal.push(entry);
    }
    journal.push(OplogEntry::InvocationStarted {
        idempotency_key: call.idempotency_key.clone().unwrap_or_default(),
        function: export.name.clone(),
        args: call.args.clone(),
    });
    let guest = worker
        .guest
        .as_mut()
        .expect("a live call runs on an instance");
    let chokepoint = guest.store.data().durability.chokepoint.clone();
    // Output from outside any call (a start function, a snapshot) is not this call's.
    let _ = guest.store.data().output.take();
    guest.store.data_mut().durability.trace = call.trace;
    chokepoint.begin_live(journal.clone());
    arm_deadline(&mut guest.store, ctx.limits.invocation_timeout);
    let outcome = guest.call(export, &call.args).await;
    let _ = chokepoint.finish();
    finish(ctx, worker, &journal, call.idempotency_key.clone(), outcome).await
}

/// Runs a read-only call: nothing is journaled, nothing waits for the disk. Returns the reply
/// and whether the in-memory worker may be kept (not after a trap, nor after a read that
/// changed the state, which dropping the instance undoes: the log never saw it).
pub(super) async fn read(
    ctx: &WorkerContext,
    worker: &mut Worker,
    export: &ExportInfo,
    call: &Call,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    let before = match state_digest(ctx, worker).await {
        Ok(d) => d,
        Err(e) => return (Err(e), false),
    };
    let guest = worker.guest.as_mut().expect("a read runs on an instance");
    let chokepoint = guest.store.data().durability.chokepoint.clone();
    chokepoint.begin_read_only();
    arm_deadline(&mut guest.store, ctx.limits.invocation_timeout);
    let _ = guest.store.data().output.take();
    let outcome = guest.call(export, &call.args).await;
    let _ = chokepoint.finish();
    guest_output::emit(
        &ctx.id.to_string(),
        &guest.store.data().output.take(),
        false,
    );
    let result = match outcome {
        Ok(result) => result,
        Err(failure) => {
            let error = failure.into_error(&ctx.limits, &ctx.id.to_string());
            tracing::info!(worker = %ctx.id, "a read-only call failed: {error}");
            return (Err(error), false);
        }
    };
    match state_digest(ctx, worker).await {
        Ok(after) if after == before => (Ok(result), true),
        Ok(_) => (
            Err(InvokeError::ReadOnlyViolation(format!(
                "`{}` is declared read-only but changed the state of worker {} (the change is \
                 dropped)",
                export.name, ctx.id
            ))),
            false,
        ),
        Err(e) => (Err(e), false),
    }
}

/// The worker's state as `save-snapshot` gives it, when `check_read_only` asks for it (and the
/// component can give it); `None` otherwise. A component's core memories are not reachable
/// through wasmtime's component API, so the snapshot is the digest of its state.
async fn state_digest(
    ctx: &WorkerContext,
    worker: &mut Worker,
) -> Result<Option<Vec<Value>>, InvokeError> {
    if !ctx.limits.check_read_only {
        return Ok(None);
    }
    let Some((save, _)) = ctx.component.info.snapshot_exports() else {
        return Ok(None);
    };
    let save = save.clone();
    let guest = worker.guest.as_mut().expect("a read runs on an instance");
    arm_deadline(&mut guest.store, ctx.limits.invocation_timeout);
    guest
        .call(&save, &[])
        .await
        .map(Some)
        .map_err(|f| f.into_error(&ctx.limits, &ctx.id.to_string()))
}

/// Records how an invocation ended and makes it durable: the reply, and whether the in-memory
/// worker may be kept. A failure is recorded with its stable code, so that a retry with the
/// same idempotency key answers as the first call did. A result is recorded whole only when a
/// retry can ask for it again (the call has an idempotency key); otherwise its digest.
///
/// When the log cannot take the outcome, the invocation is recorded as failed instead (its
/// start and the failure, nothing else), if that is what the caller needs: the entry was too
/// large (trying again cannot help), or the invocation already reached the world (a restart
/// would resume it and send its requests again). Otherwise nothing of it is durable, and the
/// caller may retry it (503).
pub(super) async fn finish(
    ctx: &WorkerContext,
    worker: &mut Worker,
    journal: &Journal,
    idempotency_key: Option<String>,
    outcome: Result<Vec<Value>, CallFailure>,
) -> (Result<Vec<Value>, InvokeError>, bool) {
    let key = idempotency_key.clone().unwrap_or_default();
    // What the guest wrote goes in the log before the outcome, and out once it is durable.
    let written = worker
        .guest
        .as_ref()
        .map(|g| g.store.data().output.take())
        .unwrap_or_default();
    for w in &written {
        journal.push(OplogEntry::GuestOutput {
            stream: w.stream,
            bytes: w.bytes.clone(),
            dropped: w.dropped,
        });
    }
    let mut lifecycle = None;
    let (reply, keep) = match outcome {
        Ok(result) => match recorded_result(&key, &result) {
            Ok(entry) => {
                journal.push(entry);
                (Ok(result), true)
            }
            Err(error) => {
                journal.push(failed(&key, &error));
                (Err(error), false)
            }
        },
        Err(failure) => {
            lifecycle = match failure {
                CallFailure::Exited(code) => Some(OplogEntry::Exited { code }),
                CallFailure::Interrupted => Some(OplogEntry::Interrupted),
                _ => None,
            };
            let error = failure.into_error(&ctx.limits, &ctx.id.to_string());
            tracing::info!(worker = %ctx.id, "an invocation failed: {error}");
            journal.push(failed(&key, &error));
            if let Some(entry) = &lifecycle {
                journal.push(entry.clone());
            }
            (Err(error), false)
        }
    };
    let flushed =
        journal.failure().is_none() && journal.flush(false, idempotency_key.clone()).await.is_ok();
    guest_output::emit(&ctx.id.to_string(), &written, flushed);
    if flushed {
        worker.log.last_index = journal.last_index();
        if let Some(entry) = lifecycle {
            worker.life = worker.life.after(&entry);
            if entry == OplogEntry::Interrupted {
                ctx.flags.interrupt.store(false, Ordering::SeqCst);
            }
        }
        return (reply, keep);
    }
    let failure = journal
        .failure()
        .expect("a failed flush leaves its failure");
    tracing::warn!(worker = %ctx.id, "the outcome of an invocation could not be recorded: {}", failure.message);
    if failure.fenced {
        // Another node holds the shard now: nothing more can be written here.
        return (
            Err(if journal.in_flight() {
                InvokeError::Moved(format!(
                    "worker {} moved to another node during the call, which finishes it; repeat \
                     the call with its idempotency key for its outcome",
                    ctx.id
                ))
            } else {
                InvokeError::NotOwner(format!(
                    "worker {} moved to another node before the call was recorded",
                    ctx.id
                ))
            }),
            false,
        );
    }
    let error = if failure.too_large {
        InvokeError::ValueTooLarge(format!(
            "the call's outcome could not be recorded, {}; the call is recorded as failed and \
             the worker keeps its state",
            failure.message
        ))
    } else if journal.in_flight() {
        InvokeError::RecordingFailed(format!(
            "the store refused the call's outcome ({}); the call is recorded as failed, the \
             worker keeps its state, and nothing it sent will be sent again",
            failure.message
        ))
    } else {
        // Nothing of the invocation is durable: the caller may simply try again.
        let error = if failure.full {
            InvokeError::StorageFull(failure.message)
        } else {
            InvokeError::Storage(failure.message)
        };
        return (Err(error), false);
    };
    match journal
        .abandon(vec![failed(&key, &error)], idempotency_key)
        .await
    {
        Ok(()) => {
            worker.log.last_index = journal.last_index();
            (Err(error), false)
        }
        Err(e) => (Err(e.into()), false),
    }
}

/// What a digest costs in its entry (a SHA-256 and a length): a result no larger is kept whole,
/// which is cheaper and lets a divergence show the recorded value (a count, a status).
const DIGEST_BYTES: usize = 32 + 8;

/// The entry that records a completed call: its result whole when a retry with its idempotency
/// key may ask for it again (or when it is no larger than its digest), its digest otherwise;
/// refused past the bound on one value.
fn recorded_result(key: &str, result: &[Value]) -> Result<OplogEntry, InvokeError> {
    let bytes = revenant_storage::oplog::encoded_len(result);
    if bytes > VALUE_BYTES_MAX {
        return Err(InvokeError::ValueTooLarge(format!(
            "the call's result is {bytes} bytes, past the {VALUE_BYTES_MAX} bytes (16 MiB) a call \
             may return; the call is recorded as failed and the worker keeps its state"
        )));
    }
    if key.is_empty() && bytes > DIGEST_BYTES {
        let (sha256, bytes) = revenant_storage::oplog::result_digest(result);
        return Ok(OplogEntry::InvocationCompletedDigest { sha256, bytes });
    }
    Ok(OplogEntry::InvocationCompleted {
        idempotency_key: key.to_string(),
        result: result.to_vec(),
    })
}

fn failed(key: &str, error: &InvokeError) -> OplogEntry {
    OplogEntry::InvocationFailedWithCode {
        idempotency_key: key.to_string(),
        code: error.code().to_string(),
        error: error.to_string(),
    }
}

/// The outcome recorded for an idempotency key, if the worker already ran a call with it.
pub(super) async fn stored_outcome(
    ctx: &WorkerContext,
    key: &str,
) -> Result<Option<Result<Vec<Value>, InvokeError>>, InvokeError> {
    let Some(seq) = ctx.oplog.idempotent_outcome(&ctx.id, key).await? else {
        return Ok(None);
    };
    let entry = ctx.oplog.read(&ctx.id, seq, 1).await?;
    let repeated = |code: &str, error: String| InvokeError::Repeated {
        code: crate::error::recorded_code(code),
        message: format!("the call with this idempotency key failed: {error}"),
    };
    match entry.into_iter().next() {
        Some(SequencedEntry { seq: found, .. }) if found > seq => {
            Err(InvokeError::OutcomeTruncated(format!(
                "the call with idempotency key `{key}` ran, but its outcome (entry {seq}) was \
                 deleted with the log before a snapshot (limits.truncate_oplog_at_snapshot); it is \
                 not run again"
            )))
        }
        Some(SequencedEntry { seq: found, entry }) if found == seq => match entry {
            OplogEntry::InvocationCompleted { result, .. } => Ok(Some(Ok(result))),
            OplogEntry::InvocationFailedWithCode { code, error, .. } => {
                Ok(Some(Err(repeated(&code, error))))
            }
            // Written before failures kept their code.
            OplogEntry::InvocationFailed { error, .. } => {
                Ok(Some(Err(repeated("worker_trap", error))))
            }
            // An exit or interrupt is written after the failed call it ended; the index points
            // at the last entry of the append.
            OplogEntry::Exited { .. } | OplogEntry::Interrupted => {
                let before = ctx.oplog.read(&ctx.id, seq - 1, 1).await?;
                match before.into_iter().next().map(|e| e.entry) {
                    Some(OplogEntry::InvocationFailedWithCode { code, error, .. }) => {
                        Ok(Some(Err(repeated(&code, error))))
                    }
                    Some(OplogEntry::InvocationFailed { error, .. }) => {
                        Ok(Some(Err(repeated("worker_trap", error))))
                    }
                    _ => Err(lost(key, seq)),
                }
            }
            _ => Err(lost(key, seq)),
        },
        _ => Err(lost(key, seq)),
    }
}

fn lost(key: &str, seq: u64) -> InvokeError {
    InvokeError::Storage(format!(
        "the outcome of idempotency key `{key}` (entry {seq}) is no longer stored"
    ))
}
