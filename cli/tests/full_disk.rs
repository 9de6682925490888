//! A full disk, for real: the store and the server's own log on a small tmpfs this test mounts
//! (it runs as root, as CI does). Under the reserve, writes are refused with `507 storage_full`
//! and nothing is acknowledged that is not durable; reads keep answering; `/readyz` says the
//! store refuses writes; with the disk filled to the last byte (the log cannot be written
//! either) every request still gets its answer; once space is freed, writes are accepted
//! again without a restart, and what was acknowledged is all there after a kill -9.

mod support;

use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{Http, Server, demo_with};

/// A tmpfs mounted at a new folder, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(mib: u64) -> Self {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a tmpfs: run it as root (CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs");
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).unwrap();
        s.f_bavail * s.f_frsize
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes `filler` until the disk has at most `leave` bytes free (0: until it is full).
fn fill(disk: &Tmpfs, filler: &Path, leave: u64) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(filler)
        .unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    while disk.free() > leave {
        let n = (disk.free() - leave).min(chunk.len() as u64) as usize;
        if file.write_all(&chunk[..n.max(1)]).is_err() {
            break;
        }
    }
    let _ = file.sync_all();
}

async fn add(http: &Http, url: &str, user: &str, n: usize) -> (u16, serde_json::Value) {
    http.request(
        "POST",
        &format!("{url}/user/{user}/activities"),
        Some(json!({"kind": "k", "detail": format!("{user} {n}")})),
    )
    .await
    .expect("answered, not a closed connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_by_itself() {
    let disk = Tmpfs::mount(384);
    let data: PathBuf = disk.path().join("data");
    let log = disk.path().join("server.log");
    let filler = disk.path().join("filler");
    // A reserve of 64 MiB (the default, 256 MiB, would leave this disk little to use).
    let (_project, config) = demo_with("limits:\n  store_free_min_mb: 64\n");
    // Debug: every call writes to the log, which fails once the disk is full.
    let server = Server::start_logged(&config, &data, &log, "debug");
    let http = Http::new().with_admin(&server);
    let url = server.url.clone();
    for n in 1..=3 {
        assert_eq!(add(&http, &url, "alice", n).await, (200, json!(n)));
    }

    // Under the reserve: refused with a clear code, nothing written.
    fill(&disk, &filler, 32 << 20);
    let (status, body) = add(&http, &url, "alice", 4).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["code"], "storage_full", "{body}");
    let (status, count) = http
        .request("GET", &format!("{url}/user/alice/count"), None)
        .await
        .unwrap();
    assert_eq!((status, count), (200, json!(3)), "reads keep answering");
    let admin = server.admin.clone().unwrap();
    let (status, ready) = http
        .request("GET", &format!("{admin}/readyz"), None)
        .await
        .unwrap();
    assert_eq!(status, 503, "{ready}");
    assert!(
        ready["details"]["writes"]
            .as_str()
            .is_some_and(|w| w.contains("MiB free")),
        "{ready}"
    );

    // To the last byte: the server's log cannot be written either; every request still gets
    // its answer.
    fill(&disk, &filler, 0);
    for n in 4..=60 {
        let (status, body) = add(&http, &url, "bob", n).await;
        assert_eq!(status, 507, "{body}");
        let (status, count) = http
            .request("GET", &format!("{url}/user/alice/count"), None)
            .await
            .unwrap();
        assert_eq!((status, count), (200, json!(3)));
    }

    // Space back: writes accepted again, no restart.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(add(&http, &url, "alice", 4).await, (200, json!(4)));
    let (status, _) = http
        .request("GET", &format!("{admin}/readyz"), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    server.kill9();
    let server = Server::start(&config, &data);
    let (status, count) = Http::new()
        .request("GET", &format!("{}/user/alice/count", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, count), (200, json!(4)), "every acknowledged write");
}
