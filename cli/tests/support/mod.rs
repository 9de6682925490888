//! Helpers for end-to-end tests: start the real `revenant` binary on 127.0.0.1 with port 0,
//! learn its address from its first line of output, speak HTTP to it, and SIGKILL it by PID.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]
#![allow(dead_code)]

pub mod counter;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The demo project file; its component must have been built (scripts/test.sh does it).
pub fn demo_config() -> PathBuf {
    let component = workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    assert!(
        component.exists(),
        "{} is missing: run the tests through scripts/test.sh, which builds it",
        component.display()
    );
    workspace().join("examples/user-activity/revenant.yaml")
}

/// The demo project with more top-level YAML (`head`, e.g. `outgoing_http:`), in a fresh folder.
pub fn demo_with(head: &str) -> (tempfile::TempDir, PathBuf) {
    let demo = std::fs::read_to_string(demo_config()).unwrap();
    let target = workspace().join("target");
    let text = demo.replace("../../target", &target.display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("revenant.yaml");
    std::fs::write(&config, format!("{head}\n{text}")).unwrap();
    (dir, config)
}

/// The stress project (examples/stress) in `dir`, its component path made absolute.
pub fn stress_project(dir: &std::path::Path) -> std::path::PathBuf {
    let component = workspace().join("target/wasm32-wasip2/guest/stress.wasm");
    assert!(
        component.exists(),
        "{} is missing: run scripts/test.sh",
        component.display()
    );
    let text = std::fs::read_to_string(workspace().join("examples/stress/revenant.yaml"))
        .unwrap()
        .replace(
            "../../target/wasm32-wasip2/guest/stress.wasm",
            component.to_str().unwrap(),
        );
    let path = dir.join("revenant.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A project file in a fresh folder: the demo component and `routes` (YAML list items).
pub fn project(routes: &str) -> (tempfile::TempDir, PathBuf) {
    project_with("", routes)
}

/// A project file with more top-level YAML (`head`, e.g. an `auth:` section) before `routes`.
pub fn project_with(head: &str, routes: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let component = workspace().join("target/wasm32-wasip2/guest/user_activity.wasm");
    let text = format!(
        "components:\n  user-activity: {}\n{head}routes:\n{routes}",
        component.display()
    );
    let config = dir.path().join("revenant.yaml");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

/// Runs `revenant <command> --config <config> --data <dir>/data`, for a project expected to
/// be refused; returns the exit code and stderr.
pub fn refused(command: &str, dir: &Path, config: &Path) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_revenant"))
        .args([command, "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(dir.join("data"))
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

pub struct Server {
    child: Child,
    pub url: String,
    /// The admin API's URL, when started with `start_with_admin`.
    pub admin: Option<String>,
    /// The admin token, read from the file the server named in its start-up line.
    pub admin_token: Option<String>,
}

impl Server {
    /// Starts `revenant serve` on `data` and waits (with a deadline) until it listens.
    pub fn start(config: &Path, data: &Path) -> Self {
        Self::spawn(config, data, false)
    }

    /// Also serves the admin API on a free port.
    pub fn start_with_admin(config: &Path, data: &Path) -> Self {
        Self::spawn(config, data, true)
    }

    fn spawn(config: &Path, data: &Path, admin: bool) -> Self {
        Self::spawn_binary(
            Path::new(env!("CARGO_BIN_EXE_revenant")),
            config,
            data,
            admin,
            &[],
        )
    }

    /// Starts another build of `revenant` (e.g. the fault-injection one), with extra
    /// environment variables.
    pub fn start_binary(binary: &Path, config: &Path, data: &Path, env: &[(&str, &str)]) -> Self {
        Self::spawn_binary(binary, config, data, false, env)
    }

    /// `revenant serve` with the admin API, more arguments (`--store`, `--node-id`, ...) and
    /// environment variables: a node of a cluster.
    pub fn start_node(config: &Path, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_with(
            Path::new(env!("CARGO_BIN_EXE_revenant")),
            config,
            data,
            true,
            args,
            env,
            Stdio::inherit(),
        )
    }

    /// As `start_node`, run inside the network namespace `netns` (`ip netns exec`, which
    /// execs the server: the PID is the server's).
    pub fn start_node_in(
        netns: &str,
        config: &Path,
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let launcher = ["netns", "exec", netns, env!("CARGO_BIN_EXE_revenant")];
        Self::try_spawn_with(
            Path::new("ip"),
            &launcher,
            config,
            data,
            true,
            args,
            env,
            Stdio::inherit(),
        )
        .unwrap_or_else(|status| panic!("revenant exited before listening ({status})"))
    }

    /// With the admin API, its log (stderr) appended to `log` at `filter` (`REVENANT_LOG`).
    pub fn start_logged(config: &Path, data: &Path, log: &Path, filter: &str) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the log file opens");
        Self::spawn_with(
            Path::new(env!("CARGO_BIN_EXE_revenant")),
            config,
            data,
            true,
            &[],
            &[("REVENANT_LOG", filter)],
            Stdio::from(file),
        )
    }

    fn spawn_binary(
        binary: &Path,
        config: &Path,
        data: &Path,
        admin: bool,
        env: &[(&str, &str)],
    ) -> Self {
        Self::spawn_with(binary, config, data, admin, &[], env, Stdio::inherit())
    }

    /// Starts `revenant serve` on `data`, its stderr appended to `log`; `Err` with how it
    /// exited if it exited before listening (a store it refuses to open).
    pub fn try_start(
        config: &Path,
        data: &Path,
        log: &Path,
    ) -> Result<Self, std::process::ExitStatus> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("the log file opens");
        Self::try_spawn_with(
            Path::new(env!("CARGO_BIN_EXE_revenant")),
            &[],
            config,
            data,
            false,
            &[],
            &[],
            Stdio::from(file),
        )
    }

    fn spawn_with(
        binary: &Path,
        config: &Path,
        data: &Path,
        admin: bool,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        Self::try_spawn_with(binary, &[], config, data, admin, args, env, stderr).unwrap_or_else(
            |status| panic!("revenant exited before listening ({status}); its stderr is above"),
        )
    }

    /// `launcher`: arguments before the server's own (`ip netns exec NS revenant`).
    #[allow(clippy::too_many_arguments)]
    fn try_spawn_with(
        binary: &Path,
        launcher: &[&str],
        config: &Path,
        data: &Path,
        admin: bool,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Result<Self, std::process::ExitStatus> {
        let mut command = Command::new(binary);
        command.args(launcher);
        command.env(
            "REVENANT_LOG",
            std::env::var("REVENANT_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        command.envs(env.iter().copied());
        if admin {
            command.args(["serve", "--admin-listen", "127.0.0.1:0"]);
        } else {
            command.arg("serve");
        }
        command.args(args);
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(config)
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("revenant starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("revenant listening on ") {
                    let _ = tx.send((false, url.to_string()));
                } else if let Some(rest) = line.strip_prefix("revenant admin listening on ") {
                    // `http://ADDR; token in FILE`
                    let _ = tx.send((true, rest.to_string()));
                }
            }
        });
        let (mut url, mut admin_url) = (None, None);
        while url.is_none() || (admin && admin_url.is_none()) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok((true, u)) => admin_url = Some(u),
                Ok((false, u)) => url = Some(u),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(child.wait().expect("reaped"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    panic!("revenant did not report its addresses within 60 s");
                }
            }
        }
        let (admin, admin_token) = match admin_url {
            None => (None, None),
            Some(line) => {
                let (url, rest) = line.split_once("; ").expect("`; token in` follows the URL");
                let token = rest.strip_prefix("token in ").map(|file| {
                    let file = Path::new(file);
                    assert_eq!(
                        std::os::unix::fs::PermissionsExt::mode(
                            &std::fs::metadata(file).unwrap().permissions()
                        ) & 0o777,
                        0o600,
                        "the admin token file is private to its owner"
                    );
                    std::fs::read_to_string(file).unwrap().trim().to_string()
                });
                (Some(url.to_string()), token)
            }
        };
        Ok(Self {
            child,
            url: url.expect("reported"),
            admin,
            admin_token,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal (`-STOP`, `-CONT`, ...) to this child, by its PID.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "{signal} delivered");
    }

    /// SIGTERM, by this child's PID; then waits (polling, up to `deadline`) for it to exit and
    /// returns how it exited.
    pub fn terminate(self, deadline: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM delivered");
        self.exited(deadline)
    }

    /// Waits (polling, up to `deadline`) for the server to exit by itself, and reaps it.
    pub fn exited(mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waitable") {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "the server did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL, by this child's PID, then reap it.
    pub fn kill9(mut self) {
        // std's `Child::kill` sends SIGKILL on Unix.
        self.child.kill().expect("SIGKILL delivered");
        let status = self.child.wait().expect("reaped");
        assert!(
            !status.success(),
            "the server was killed, not exited: {status}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    /// The admin API's URL and token: requests to it carry the token unless they set their own
    /// `Authorization`.
    admin: Option<(String, String)>,
}

impl Http {
    pub fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            admin: None,
        }
    }

    /// This client, sending `server`'s admin token to its admin API.
    pub fn with_admin(&self, server: &Server) -> Self {
        let url = server.admin.clone().expect("started with the admin API");
        let token = server.admin_token.clone().expect("a generated admin token");
        Self {
            client: self.client.clone(),
            admin: Some((url, token)),
        }
    }

    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<Json>,
    ) -> Result<(u16, Json), String> {
        self.request_with(method, url, body, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        url: &str,
        body: Option<Json>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, Json), String> {
        let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        let mut with_type = vec![("content-type", "application/json")];
        with_type.extend_from_slice(headers);
        let (status, _, body) = self.exchange(method, url, bytes, &with_type).await?;
        let json = serde_json::from_slice(&body).map_err(|e| format!("{e}: {body:?}"))?;
        Ok((status, json))
    }

    /// Any body, any answer: for uploads (YAML, wasm) and non-JSON replies.
    pub async fn raw(
        &self,
        method: &str,
        url: &str,
        body: impl Into<Bytes>,
    ) -> Result<(u16, Bytes), String> {
        let (status, _, body) = self.exchange(method, url, body, &[]).await?;
        Ok((status, body))
    }

    /// A request with headers; the answer's status, headers and body.
    pub async fn exchange(
        &self,
        method: &str,
        url: &str,
        body: impl Into<Bytes>,
        headers: &[(&str, &str)],
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let mut builder = http::Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        if let Some((admin, token)) = &self.admin
            && url.starts_with(admin.as_str())
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        let request = builder
            .body(Full::new(body.into()))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, headers, body))
    }

    /// A `PUT` of any body (an upload), its status and JSON answer (`null` if not JSON).
    pub async fn put(&self, url: &str, body: impl Into<Bytes>) -> (u16, Json) {
        let (status, body) = self.raw("PUT", url, body).await.expect("PUT answered");
        (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
    }

    pub async fn get(&self, url: &str) -> Json {
        let (status, json) = self.request("GET", url, None).await.expect("GET answered");
        assert_eq!(status, 200, "GET {url}: {json}");
        json
    }

    pub async fn post(&self, url: &str, body: Json) -> Json {
        let (status, json) = self
            .request("POST", url, Some(body))
            .await
            .expect("POST answered");
        assert_eq!(status, 200, "POST {url}: {json}");
        json
    }
}

/// Polls `check` until it returns true or the deadline passes.
pub async fn eventually(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// An upstream on 127.0.0.1 that holds its first request until `release` is notified and
/// answers the others at once.
pub async fn held_upstream(
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    release: std::sync::Arc<tokio::sync::Notify>,
) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/item", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (seen, release) = (seen.clone(), release.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request| {
                    let (seen, release) = (seen.clone(), release.clone());
                    async move {
                        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                            release.notified().await;
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"from upstream"),
                        )))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}

/// Sends `request` over a fresh TCP connection exactly as given and returns every byte the
/// server sent back until it closed the connection, or until `deadline` passed.
pub async fn tcp_exchange(url: &str, request: &[u8], deadline: Duration) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may close before the whole request is in: what it answered still counts.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(deadline, stream.read_to_end(&mut answer)).await;
    answer
}

/// `calls` POSTs of `body` by each of `clients` well-behaved clients, one after another per
/// client, to `url` + `path(client)`; each answer must be 200 with the client's next count
/// (after `round` earlier rounds of `calls`). Their latencies, sorted: the normal traffic that
/// the hostile tests measure with and without an attack.
pub async fn counted_calls(
    url: &str,
    clients: usize,
    calls: usize,
    round: u64,
    path: fn(usize) -> String,
    body: Option<Json>,
) -> Vec<Duration> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (url, body) = (url.to_string(), body.clone());
            tokio::spawn(async move {
                let http = Http::new();
                let mut took = Vec::with_capacity(calls);
                for i in 0..calls as u64 {
                    let began = Instant::now();
                    let (status, count) = http
                        .request("POST", &format!("{url}{}", path(c)), body.clone())
                        .await
                        .unwrap();
                    took.push(began.elapsed());
                    let expected = round * calls as u64 + i + 1;
                    assert_eq!((status, count), (200, Json::from(expected)), "{}", path(c));
                }
                took
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all
}

/// The 99th percentile of `sorted`, in milliseconds.
pub fn p99_ms(sorted: &[Duration]) -> f64 {
    sorted[(sorted.len() - 1) * 99 / 100].as_secs_f64() * 1e3
}
