//! A private PostgreSQL server for one test: `initdb` in a temporary folder, `pg_ctl start` on
//! a free port of 127.0.0.1, stopped (and its folder removed) when dropped. PostgreSQL refuses
//! to run as root, so as root its programs run as the `postgres` user (`runuser`).
//!
//! The programs come from Debian's `postgresql` package (`scripts/test.sh` installs it). Where
//! they are missing, [`Postgres::start`] returns `None` and the test says it was skipped; under
//! CI (`CI` set) a missing server fails the test instead, so CI never skips it silently.

// Tests read their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub url: String,
    as_postgres: bool,
}

/// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/<version>/bin`).
fn programs() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Postgres {
    pub fn start() -> Option<Self> {
        Self::start_on("127.0.0.1")
    }

    /// A server listening on `host` (an address of this machine), which accepts connections
    /// from any address without a password: for tests whose clients live in other network
    /// namespaces.
    pub fn start_on(host: &str) -> Option<Self> {
        let Some(bin) = programs() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "PostgreSQL is not installed (scripts/test.sh installs Debian's postgresql)"
            );
            eprintln!("PostgreSQL is not installed: skipped");
            return None;
        };
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = tempfile::tempdir().unwrap();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the PostgreSQL folder");
        }
        let port = free_port();
        let pg = Self {
            bin,
            url: format!("postgres://postgres@{host}:{port}/postgres"),
            dir,
            as_postgres,
        };
        let data = pg.data();
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        if host != "127.0.0.1" {
            let hba = data.join("pg_hba.conf");
            let mut text = std::fs::read_to_string(&hba).unwrap();
            text.push_str("host all all 0.0.0.0/0 trust\n");
            std::fs::write(&hba, text).unwrap();
        }
        pg.serve();
        Some(pg)
    }

    fn host(&self) -> &str {
        let after = self.url.split_once('@').unwrap().1;
        after.rsplit_once(':').unwrap().0
    }

    fn port(&self) -> &str {
        self.url
            .rsplit_once(':')
            .unwrap()
            .1
            .split('/')
            .next()
            .unwrap()
    }

    /// Starts the server on its folder and port (again, after [`stop`](Self::stop)).
    pub fn serve(&self) {
        let data = self.data();
        let options = format!(
            "-p {} -c listen_addresses={} -k {} -c fsync=off",
            self.port(),
            self.host(),
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.dir.path().join("log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    /// Stops the server (its clients' connections break), keeping its data.
    pub fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// One of PostgreSQL's programs, as the user that may run it.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{program} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }

    /// Creates another database on the server; returns its URL.
    pub fn database(&self, name: &str) -> String {
        let port = self.port();
        self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                port,
                "-U",
                "postgres",
                "-qc",
                &format!("CREATE DATABASE {name}"),
            ],
        );
        format!("postgres://postgres@127.0.0.1:{port}/{name}")
    }

    /// The server's log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    pub fn folder(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        // "immediate": the data is thrown away with the folder.
        let _ = self
            .command("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}
