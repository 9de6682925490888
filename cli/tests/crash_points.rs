//! Crash points (storage/src/crash_points.rs): a server built with them (the test-only
//! `fault-injection` build, target/faulty/revenant, made by scripts/test.sh) kills itself with
//! SIGKILL the moment it reaches one named step under load. The normal server then restarts on
//! the same data and the clients go on, retrying what was not acknowledged with the same
//! idempotency keys. Afterwards, per user: the counts acknowledged are exactly 1..=n (nothing
//! applied twice, nothing acknowledged lost), the counter is n and every key is in the list
//! once; again after one more kill -9, from the log alone.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::counter::{Load, verify};
use support::{Server, demo_with, workspace};

const USERS: usize = 8;
/// How long the server under load may take to reach its crash point.
const CRASH_DEADLINE: Duration = Duration::from_secs(60);
/// Snapshots every third call, the log before them deleted: the snapshot points are reached
/// early and often, and replay must start from a snapshot.
const SNAPSHOTS_OFTEN: &str =
    "limits:\n  snapshot_every_invocations: 3\n  truncate_oplog_at_snapshot: true\n";

fn faulty() -> PathBuf {
    let faulty = workspace().join("target/faulty/revenant");
    assert!(
        faulty.exists(),
        "{} is missing: scripts/test.sh builds it with --features fault-injection",
        faulty.display()
    );
    faulty
}

async fn start(
    binary: Option<PathBuf>,
    config: &Path,
    data: &Path,
    env: Vec<(String, String)>,
) -> Server {
    let (config, data) = (config.to_path_buf(), data.to_path_buf());
    tokio::task::spawn_blocking(move || match binary {
        Some(b) => {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Server::start_binary(&b, &config, &data, &env)
        }
        None => Server::start(&config, &data),
    })
    .await
    .unwrap()
}

/// Runs the counter load into a server that dies at `point` after passing it `passes` times
/// (after a first stretch on the normal server, if `history`), then checks every invariant.
async fn crash_at(point: &str, passes: u32, head: &str, history: bool) {
    assert!(revenant_storage::crash_points::ALL.contains(&point));
    let (_dir, config) = demo_with(head);
    let data = tempfile::tempdir().unwrap();
    let armed = vec![(
        "FAILPOINTS".to_string(),
        format!("{point}={passes}*off->return"),
    )];

    let (load, crashing) = if history {
        let normal = start(None, &config, data.path(), vec![]).await;
        let load = Load::start(USERS, &normal.url);
        load.until_more(USERS * 12, CRASH_DEADLINE).await;
        normal.kill9();
        let crashing = start(Some(faulty()), &config, data.path(), armed).await;
        load.point_at(&crashing.url);
        (load, crashing)
    } else {
        let crashing = start(Some(faulty()), &config, data.path(), armed).await;
        (Load::start(USERS, &crashing.url), crashing)
    };
    let status = tokio::task::spawn_blocking(move || crashing.exited(CRASH_DEADLINE))
        .await
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "{point}: the server killed itself there: {status}"
    );
    let before = load.acknowledged();

    let restarted = start(None, &config, data.path(), vec![]).await;
    load.point_at(&restarted.url);
    load.until_more(USERS * 5, CRASH_DEADLINE).await;
    let acked = load.stop().await;
    let calls = verify(&restarted.url, &acked).await;
    restarted.kill9();
    let last = start(None, &config, data.path(), vec![]).await;
    assert_eq!(verify(&last.url, &acked).await, calls);
    eprintln!("CRASH POINT {point}: {before} acknowledged before the crash, {calls} in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_batch_is_half_built_loses_nothing_acknowledged() {
    crash_at("store.mid_batch", 3, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_append_loses_nothing_acknowledged() {
    crash_at("store.before_append", 40, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_append_and_sync_loses_nothing_acknowledged() {
    crash_at("store.before_sync", 40, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_the_sync_before_the_reply_applies_nothing_twice() {
    crash_at("store.after_sync", 40, "", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_saving_a_snapshot_loses_nothing() {
    crash_at("snapshot.before_append", 10, SNAPSHOTS_OFTEN, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_snapshot_and_its_truncation_loses_nothing() {
    crash_at("snapshot.before_truncate", 10, SNAPSHOTS_OFTEN, false).await;
}

/// Every worker's log holds more than 20 entries by then (12 calls of at least 2 entries, no
/// snapshot), so the first worker activated reaches the point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_replay_leaves_the_log_replayable() {
    crash_at("replay.entry", 20, "", true).await;
}

#[test]
fn every_crash_point_has_a_test() {
    let source = include_str!("crash_points.rs");
    for point in revenant_storage::crash_points::ALL {
        assert!(
            source.contains(&format!("crash_at(\"{point}\"")),
            "{point} is driven by a test here"
        );
    }
}
