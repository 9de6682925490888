//! Where a worker is in its life, as one state with one transition function. Replay feeds it
//! the entries it reads, the live path the entries it writes, control asks it what an operator's
//! command records, and status reads it: nothing else keeps a lifecycle flag.

use super::Control;
use crate::WorkerStatus;
use crate::error::InvokeError;
use revenant_storage::{OplogEntry, WorkerId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Takes calls.
    Ready,
    /// Stopped by an operator: refuses calls until resumed.
    Interrupted,
    /// The guest ended itself with this code: refuses calls for good.
    Exited(i32),
}

/// What an operator's command does to a worker in a given state.
#[derive(Debug, PartialEq)]
pub(crate) enum ControlStep {
    /// Record this entry; the state follows it.
    Record(OplogEntry),
    /// Nothing to record: the worker is already where the command would put it.
    Nothing,
    /// Remove the worker's log and metadata.
    Delete,
}

impl Lifecycle {
    /// The state after `entry`, read in replay or just made durable live. This is the one
    /// transition function: every lifecycle change is an entry in the log.
    pub fn after(self, entry: &OplogEntry) -> Self {
        match (self, entry) {
            // Nothing follows an exit but what an operator deletes.
            (Self::Exited(code), _) => Self::Exited(code),
            (_, OplogEntry::Exited { code }) => Self::Exited(*code),
            (_, OplogEntry::Interrupted) => Self::Interrupted,
            (_, OplogEntry::Resumed) => Self::Ready,
            (state, _) => state,
        }
    }

    /// The state of a worker whose log ends with `last` (`None`: an empty log). An interrupted
    /// or exited worker records nothing after its `Interrupted` or `Exited` entry, so the last
    /// entry decides, and a worker not in memory needs no replay to report its state.
    pub fn of_last_entry(last: Option<&OplogEntry>) -> Self {
        last.map_or(Self::Ready, |e| Self::Ready.after(e))
    }

    /// Whether a call may run now.
    pub fn admit(self, worker: &WorkerId) -> Result<(), InvokeError> {
        match self {
            Self::Ready => Ok(()),
            Self::Interrupted => Err(InvokeError::Interrupted(worker.to_string())),
            Self::Exited(code) => Err(InvokeError::Exited {
                worker: worker.to_string(),
                code,
            }),
        }
    }

    /// What `control` records in this state.
    pub fn on_control(self, control: Control) -> ControlStep {
        match (self, control) {
            (_, Control::Delete) => ControlStep::Delete,
            (Self::Ready, Control::Interrupt) => ControlStep::Record(OplogEntry::Interrupted),
            (Self::Interrupted, Control::Resume) => ControlStep::Record(OplogEntry::Resumed),
            // Interrupting an interrupted or exited worker, resuming a ready or exited one:
            // already done, or nothing to do (an exit is final; `status` says so).
            _ => ControlStep::Nothing,
        }
    }

    /// The status reported for a worker in memory in this state.
    pub fn status(self, running: bool) -> WorkerStatus {
        match self {
            Self::Ready if running => WorkerStatus::Running,
            Self::Ready => WorkerStatus::Idle,
            Self::Interrupted => WorkerStatus::Interrupted,
            Self::Exited(_) => WorkerStatus::Exited,
        }
    }

    /// The status reported for a worker not in memory.
    pub fn stored_status(self) -> WorkerStatus {
        match self {
            Self::Ready => WorkerStatus::Suspended,
            other => other.status(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_is_final_whatever_follows() {
        let exited = Lifecycle::Ready.after(&OplogEntry::Exited { code: 3 });
        assert_eq!(exited.after(&OplogEntry::Resumed), Lifecycle::Exited(3));
        assert_eq!(exited.on_control(Control::Interrupt), ControlStep::Nothing);
        assert_eq!(exited.on_control(Control::Resume), ControlStep::Nothing);
        assert_eq!(exited.on_control(Control::Delete), ControlStep::Delete);
    }

    #[test]
    fn interrupt_and_resume_record_only_a_change() {
        let ready = Lifecycle::Ready;
        assert_eq!(
            ready.on_control(Control::Interrupt),
            ControlStep::Record(OplogEntry::Interrupted)
        );
        assert_eq!(ready.on_control(Control::Resume), ControlStep::Nothing);
        let interrupted = ready.after(&OplogEntry::Interrupted);
        assert_eq!(
            interrupted.on_control(Control::Interrupt),
            ControlStep::Nothing
        );
        assert_eq!(
            interrupted.on_control(Control::Resume),
            ControlStep::Record(OplogEntry::Resumed)
        );
        assert_eq!(interrupted.after(&OplogEntry::Resumed), Lifecycle::Ready);
    }

    #[test]
    fn a_stored_worker_is_suspended_unless_its_last_entry_says_otherwise() {
        assert_eq!(
            Lifecycle::of_last_entry(None).stored_status(),
            WorkerStatus::Suspended
        );
        assert_eq!(
            Lifecycle::of_last_entry(Some(&OplogEntry::Interrupted)).stored_status(),
            WorkerStatus::Interrupted
        );
        assert_eq!(
            Lifecycle::of_last_entry(Some(&OplogEntry::Exited { code: 0 })).stored_status(),
            WorkerStatus::Exited
        );
    }
}
