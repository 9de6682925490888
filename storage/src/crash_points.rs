//! Named crash points: places where a test can make the process die as `kill -9` would, to
//! check that what was acknowledged survives a crash at exactly that step and that nothing is
//! applied twice. They are compiled in only with the cargo feature `failpoints` (part of the
//! CLI's test-only `fault-injection` build, never a default one); without it `reached` is an
//! empty inline function.
//!
//! Configured through the `FAILPOINTS` environment variable in the `fail` crate's syntax, read
//! once at start-up by [`setup`]: `FAILPOINTS='store.after_sync=20*off->return'` lets the point
//! pass 20 times, then kills the process the 21st time it is reached. `return` is the only
//! action given a meaning here (it kills); `sleep(ms)`, `pause` and `panic` behave as the
//! crate documents.
//!
//! The points, in the order a call reaches them (docs/guarantees.md, "Crash points"):
//!
//! | name | where |
//! |---|---|
//! | `store.mid_batch` | group commit: part of a batch of several items is in the write batch |
//! | `store.before_append` | group commit: the batch is built, nothing of it is written |
//! | `store.before_sync` | group commit: the batch is in the journal, not yet synced |
//! | `store.after_sync` | group commit: the batch is durable, no caller has heard |
//! | `snapshot.before_append` | a worker's state is saved from the guest, not yet appended |
//! | `snapshot.before_truncate` | the snapshot is durable, the log before it not yet deleted |
//! | `replay.entry` | activation: a worker's log is being replayed, entry by entry |

/// Every crash point, for the test that drives each (`cli/tests/crash_points.rs`).
pub const ALL: [&str; 7] = [
    "store.mid_batch",
    "store.before_append",
    "store.before_sync",
    "store.after_sync",
    "snapshot.before_append",
    "snapshot.before_truncate",
    "replay.entry",
];

/// Passes point `name`, or kills the process there if the point is configured to.
#[cfg(feature = "failpoints")]
pub fn reached(name: &'static str) {
    debug_assert!(ALL.contains(&name), "crash point {name} is listed in ALL");
    if fail::eval(name, |_| ()).is_some() {
        use std::io::Write;
        // Not `eprintln!`, which panics when stderr cannot be written.
        let _ = writeln!(std::io::stderr(), "crash point {name}: killing the process");
        // SIGKILL to itself: no destructor, no flush, no exit handler runs, as with kill -9.
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        std::process::abort();
    }
}

/// Passes point `name` (this build has no crash points).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn reached(_name: &'static str) {}

/// Reads `FAILPOINTS` (once, at start-up, before any point is reached); a build without crash
/// points ignores it.
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        let scenario = fail::FailScenario::setup();
        for (name, actions) in fail::list() {
            tracing::warn!(point = %name, %actions, "crash point armed");
        }
        // Lives as long as the process: dropping it would clear the configuration.
        std::mem::forget(scenario);
    }
}
