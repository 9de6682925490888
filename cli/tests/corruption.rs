//! A damaged embedded store, through the real server: damage the store cannot tell from good
//! data stops the start with one message naming the file and the offset, and changes nothing
//! on disk; a torn last write is dropped and the rest served.

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
