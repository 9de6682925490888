//! A damaged embedded store, through the real server: damage the store cannot tell from good
//! data stops the start with one message naming the file and the offset, and changes nothing
//! on disk; a torn last write is dropped and the rest served.

// Tests read their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use support::{Http, Server, demo_config};

const USERS: usize = 50;
const ACTIVITIES: usize = 20;

/// 50 users × 20 activities, then kill -9: what the calls wrote is in the journal only.
async fn written(data: &Path) {
    let server = Server::start(&demo_config(), data);
    let http = Http::new();
    for i in 0..ACTIVITIES {
        for u in 0..USERS {
            let count = http
                .post(
                    &format!("{}/user/u{u}/activities", server.url),
                    json!({"kind": "k", "detail": format!("{u} did {i}")}),
                )
                .await;
            assert_eq!(count, json!(i + 1));
        }
    }
    server.kill9();
}

fn newest_journal(data: &Path) -> PathBuf {
    let mut journals: Vec<PathBuf> = std::fs::read_dir(data.join("store"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
        .collect();
    journals.sort();
    journals.pop().expect("a journal")
}

/// The reproduction from the issue: a zeroed 4 KiB block at offset 4096 of the journal used
/// to leave 47 of 50 users answering a count of 0 with 200, the file cut on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zeroed_block_in_the_journal_stops_the_start_and_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    written(data.path()).await;
    let journal = newest_journal(data.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[4096..8192].fill(0);
    std::fs::write(&journal, &bytes).unwrap();

    for _ in 0..2 {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_revenant"))
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(demo_config())
            .arg("--data")
            .arg(data.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("an error line: {stderr}"));
        assert!(
            line.contains(&journal.display().to_string()) && line.contains("damaged at byte"),
            "{line}"
        );
        assert_eq!(
            line.matches("storage engine failed").count(),
            0,
            "said once, without the engine's prefix: {line}"
        );
        assert!(
            std::fs::read(&journal).unwrap() == bytes,
            "the journal is left as it was"
        );
    }
}

/// A torn last write (here: its last bytes zeroed, as a crash mid-write leaves them) is
/// dropped; the server starts and every user's activities before it are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_write_is_dropped_and_the_rest_served() {
    let data = tempfile::tempdir().unwrap();
    written(data.path()).await;
    let journal = newest_journal(data.path());
    let mut bytes = std::fs::read(&journal).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    bytes[end - 8..end].fill(0);
    std::fs::write(&journal, &bytes).unwrap();

    let server = Server::start(&demo_config(), data.path());
    let http = Http::new();
    let mut short = 0;
    for u in 0..USERS {
        let count = http.get(&format!("{}/user/u{u}/count", server.url)).await;
        let count = count.as_u64().unwrap() as usize;
        assert!(
            count == ACTIVITIES || count == ACTIVITIES - 1,
            "u{u}: {count}"
        );
        short += usize::from(count < ACTIVITIES);
    }
    assert!(
        short <= 1,
        "only the last write was torn: {short} users short"
    );
}

/// A damaged oplog entry (its checksum fails) answers `500 storage_damaged`, which says the
/// worker's data is damaged, not `503 storage_unavailable`, which clients read as "retry";
/// other workers are served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_answers_storage_damaged_and_others_are_served() {
    use revenant_storage::kv::{KvStore, Transaction};
    let data = tempfile::tempdir().unwrap();
    {
        let server = Server::start(&demo_config(), data.path());
        let http = Http::new();
        for user in ["alice", "bob"] {
            for i in 0..3 {
                http.post(
                    &format!("{}/user/{user}/activities", server.url),
                    json!({"kind": "k", "detail": format!("{user} {i}")}),
                )
                .await;
            }
        }
        server.kill9();
    }
    {
        let store =
            revenant_storage::embedded::EmbeddedStore::open(&data.path().join("store")).unwrap();
        let alice = revenant_storage::WorkerId::new("user-activity", "user-alice");
        let key = revenant_storage::layout::keys::oplog_entry(&alice, 2);
        store
            .transact(|tx, _| {
                let key = key.clone();
                async move {
                    let mut value = tx.get(&key, false).await?.expect("alice's entry 2");
                    let middle = value.len() / 2;
                    value[middle] ^= 0x01;
                    tx.set(&key, &value);
                    Ok(())
                }
            })
            .await
            .unwrap();
    }
    let server = Server::start(&demo_config(), data.path());
    let http = Http::new();
    let (status, body) = http
        .request("GET", &format!("{}/user/alice/count", server.url), None)
        .await
        .unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "storage_damaged", "{body}");
    let (status, count) = http
        .request("GET", &format!("{}/user/bob/count", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, count), (200, json!(3)));
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Random damage between runs: a copy of a written store has one of its files truncated at a
/// random offset, or random bits of it flipped. The server then either refuses to start with
/// an error (exit 1, no panic), or it serves, and then every user's answer is either its
/// acknowledged history or an older prefix of it (a lost tail: what a truncated journal looks
/// like to its reader), consistent between its count and its list, or `500 storage_damaged`;
/// never other activities, never a panic. `REVENANT_CORRUPTION_ROUNDS` (24) and
/// `REVENANT_CORRUPTION_SEED` repeat or lengthen a run; each prints its seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_truncations_and_bit_flips_are_refused_or_recovered_never_served_wrong() {
    const USERS: usize = 8;
    const CALLS: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let pristine = dir.path().join("pristine");
    let http = Http::new();
    {
        let server = Server::start(&demo_config(), &pristine);
        for i in 0..CALLS {
            for u in 0..USERS {
                let count = http
                    .post(
                        &format!("{}/user/r{u}/activities", server.url),
                        json!({"kind": "k", "detail": format!("r{u}-{i};")}),
                    )
                    .await;
                assert_eq!(count, json!(i + 1));
            }
        }
        server.kill9();
    }
    let expected = |u: usize| -> Vec<String> { (0..CALLS).map(|i| format!("r{u}-{i};")).collect() };
    let files: Vec<PathBuf> = files_under(&pristine.join("store"))
        .into_iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() > 0)
        .collect();
    assert!(!files.is_empty());

    let rounds: usize = std::env::var("REVENANT_CORRUPTION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(24);
    let seed = std::env::var("REVENANT_CORRUPTION_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("REVENANT_CORRUPTION_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let (mut refused, mut whole, mut older, mut damaged) = (0, 0, 0, 0);
    for round in 0..rounds {
        let copy = dir.path().join(format!("round-{round}"));
        copy_dir(&pristine, &copy);
        // Half the rounds damage a journal, where the calls are, within what it holds (it is
        // preallocated: most of it is zeros).
        let journals: Vec<&PathBuf> = files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "jnl"))
            .collect();
        let victim = if rng.bool() && !journals.is_empty() {
            journals[rng.usize(..journals.len())]
        } else {
            &files[rng.usize(..files.len())]
        };
        let file = copy.join(victim.strip_prefix(&pristine).unwrap());
        let mut bytes = std::fs::read(&file).unwrap();
        let held = bytes
            .iter()
            .rposition(|b| *b != 0)
            .map_or(bytes.len(), |i| i + 1);
        let what = if rng.bool() {
            let at = rng.usize(..held.max(1));
            bytes.truncate(at);
            format!("{} cut at {at}", file.display())
        } else {
            let flips: Vec<usize> = (0..rng.usize(1..=8))
                .map(|_| rng.usize(..held.max(1)))
                .collect();
            for &at in &flips {
                bytes[at] ^= 1 << rng.u8(..8);
            }
            format!("{} flipped at {flips:?}", file.display())
        };
        std::fs::write(&file, &bytes).unwrap();
        let log = dir.path().join(format!("round-{round}.log"));
        let (c, d, l) = (demo_config(), copy.clone(), log.clone());
        let started = tokio::task::spawn_blocking(move || Server::try_start(&c, &d, &l))
            .await
            .unwrap();
        match started {
            Err(status) => {
                let stderr = std::fs::read_to_string(&log).unwrap();
                assert_eq!(status.code(), Some(1), "{what}: {status}\n{stderr}");
                assert!(stderr.contains("error: "), "{what}: {stderr}");
                refused += 1;
            }
            Ok(server) => {
                let mut lost = false;
                let mut bad = false;
                for u in 0..USERS {
                    let (status, list) = http
                        .request("GET", &format!("{}/user/r{u}/activities", server.url), None)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: r{u}: {e}"));
                    if status == 500 && list["code"] == "storage_damaged" {
                        bad = true;
                        continue;
                    }
                    assert_eq!(status, 200, "{what}: r{u}: {list}");
                    let details: Vec<String> = list
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a["detail"].as_str().unwrap().to_string())
                        .collect();
                    let all = expected(u);
                    assert_eq!(details[..], all[..details.len()], "{what}: r{u}'s history");
                    lost |= details.len() < all.len();
                    let (status, count) = http
                        .request("GET", &format!("{}/user/r{u}/count", server.url), None)
                        .await
                        .unwrap();
                    assert_eq!((status, count), (200, json!(details.len())), "{what}: r{u}");
                }
                let (status, _) = http
                    .request("GET", &format!("{}/user/r0/count", server.url), None)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: the server still answers: {e}"));
                assert!(status == 200 || status == 500, "{what}");
                server.kill9();
                match (bad, lost) {
                    (true, _) => damaged += 1,
                    (false, true) => older += 1,
                    (false, false) => whole += 1,
                }
            }
        }
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        eprintln!("round {round}: {what}");
        std::fs::remove_dir_all(&copy).unwrap();
    }
    eprintln!(
        "CORRUPTION rounds={rounds} refused={refused} served_whole={whole} \
         served_older_prefix={older} answered_storage_damaged={damaged}"
    );
}
