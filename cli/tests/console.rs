//! The web console in headless Chromium (Debian's chromium and chromium-driver, installed by
//! scripts/test.sh): from the worker list into a worker, its oplog entries and its logs, and
//! time travel whose result follows the index. Saves `target/console/worker.png`.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use base64::Engine;
use serde_json::{Value as Json, json};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Http, Server, workspace};

/// WebDriver's key for an element reference in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long the page may take to show what a step waits for.
const STEP: Duration = Duration::from_secs(20);

/// chromedriver, started on a free port and ended by its PID.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    /// Ends chromedriver and the Chromium it started, which outlives it otherwise when a
    /// failed step leaves the session open: both are in the process group made for them.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A WebDriver session: the handful of commands this test needs, each one JSON request to
/// chromedriver (the W3C protocol is that plain; the tests' HTTP client does it).
struct Browser {
    http: Http,
    session: String,
}

fn driver() -> Driver {
    let binary = std::env::var_os("REVENANT_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    assert!(
        binary.exists(),
        "{} is missing: run the tests through scripts/test.sh, which installs chromium-driver",
        binary.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        // A process group of its own, which Chromium joins: ended whole by `Drop`.
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

impl Browser {
    async fn start(driver: &Driver, profile: &std::path::Path) -> Self {
        let http = Http::new();
        let chromium = std::env::var("REVENANT_CHROMIUM").unwrap_or("/usr/bin/chromium".into());
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        // chromedriver takes a moment to listen.
        let deadline = Instant::now() + STEP;
        let answer = loop {
            match http
                .request(
                    "POST",
                    &format!("{}/session", driver.url),
                    Some(capabilities.clone()),
                )
                .await
            {
                Ok((200, answer)) => break answer,
                Ok((status, answer)) => panic!("no session: {status} {answer}"),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("chromedriver did not answer: {e}"),
            }
        };
        let session = answer["value"]["sessionId"].as_str().unwrap().to_string();
        Self {
            http,
            session: format!("{}/session/{session}", driver.url),
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Json>) -> Json {
        let url = format!("{}{path}", self.session);
        let (status, answer) = self
            .http
            .request(method, &url, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        let found = self
            .command(
                "POST",
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    async fn text(&self, element: &str) -> String {
        self.command("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn click(&self, element: &str) {
        self.command(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.command(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.command(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// The first element matching `css` whose text satisfies `want`, once one does.
    async fn wait_for(&self, css: &str, what: &str, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        loop {
            seen.clear();
            for e in self.find_all(css).await {
                let text = self.text(&e).await;
                if want(&text) {
                    return e;
                }
                seen.push(text);
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no `{css}` within {STEP:?}; saw {seen:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn screenshot(&self, to: &std::path::Path) {
        let png = self.command("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, bytes).unwrap();
    }

    async fn end(self) {
        let (status, answer) = self
            .http
            .request("DELETE", &self.session, None)
            .await
            .unwrap();
        assert_eq!(status, 200, "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_workers_oplog_logs_and_state_at_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::stress_project(dir.path());
    let server = Server::start_with_admin(&config, &dir.path().join("data"));
    let admin = server.admin.clone().unwrap();
    let token = server.admin_token.clone().unwrap();
    let http = Http::new().with_admin(&server);
    for n in 1..=3 {
        let (status, answer) = http
            .request("POST", &format!("{}/stress/s-1/say/2/16", server.url), None)
            .await
            .unwrap();
        assert_eq!((status, answer), (200, json!(n)));
    }
    let oplog = http
        .get(&format!("{admin}/workers/stress/s-1/oplog?limit=1000"))
        .await;
    let completed: Vec<u64> = oplog["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "invocation_completed")
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(completed.len(), 3, "{oplog}");

    let chromedriver = driver();
    let browser = Browser::start(&chromedriver, &dir.path().join("profile")).await;
    browser.go(&format!("{admin}/console#token={token}")).await;

    // The worker list, then the worker.
    let link = browser
        .wait_for("a.worker-link", "the worker list", |t| t == "s-1")
        .await;
    browser.click(&link).await;
    browser
        .wait_for("#worker-name", "the worker's page", |t| t == "s-1")
        .await;
    browser
        .wait_for("#oplog tr.entry", "an invocation in the oplog", |t| {
            t.contains("invocation_started") && t.contains("say(2, 16)")
        })
        .await;
    browser
        .wait_for("#oplog tr.entry", "an outcome in the oplog", |t| {
            t.contains("invocation_completed") && t.contains("→ 3")
        })
        .await;
    browser
        .wait_for("#logs", "the guest's output", |t| {
            t.contains("stdout call 1 line 1 xx") && t.contains("stderr call 3 done")
        })
        .await;

    // Time travel: `ping` on the state after each call returns one more than that call did.
    let ping = browser
        .wait_for("#tt-export option", "the exports", |t| {
            t.starts_with("api.ping(")
        })
        .await;
    browser.click(&ping).await;
    let index = browser.find_all("#tt-index").await.remove(0);
    for (call, at) in completed.iter().enumerate() {
        browser.type_into(&index, &at.to_string()).await;
        let expected = (call + 2).to_string();
        browser
            .wait_for("#tt-at", "the index shown", |t| {
                t == format!("state after entry {at}")
            })
            .await;
        browser
            .wait_for("#tt-result", "the state at the index", |t| t == expected)
            .await;
    }
    let shot = workspace().join("target/console/worker.png");
    browser.screenshot(&shot).await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a real screenshot"
    );

    // The live worker was not touched: its next call is its fourth.
    let (status, answer) = http
        .request("POST", &format!("{}/stress/s-1/say/1/16", server.url), None)
        .await
        .unwrap();
    assert_eq!((status, answer), (200, json!(4)));

    // The deployments page lists the component.
    browser.go(&format!("{admin}/console#/deployments")).await;
    browser
        .wait_for("#components td", "the components", |t| t == "stress")
        .await;
    browser.end().await;
}
