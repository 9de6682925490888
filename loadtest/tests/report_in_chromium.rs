//! The HTML report opens in headless Chromium (Debian's, installed by scripts/test.sh) and its
//! plots render: plotly draws each as SVG, and every plot must have drawn lines with points.
//! The test also saves a screenshot, `target/loadtest-report/report.png`.

// Tests read the clock and their environment (`clippy.toml`).
#![allow(clippy::disallowed_methods)]

mod support;

use revenant_loadtest::{RunOptions, Scenario, run};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::delay_server;

fn chromium() -> PathBuf {
    let path = std::env::var_os("REVENANT_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run the tests through scripts/test.sh, which installs Debian's chromium",
        path.display()
    );
    path
}

/// Runs headless Chromium on `page` with the flags this machine needs (no network chatter, a
/// fresh profile), plus `extra`; returns stdout.
fn headless(page: &Path, profile: &Path, extra: &[&str]) -> String {
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_html_report_renders_its_plots_in_chromium() {
    let url = delay_server(
        Duration::from_millis(5),
        Duration::from_secs(2),
        Duration::from_millis(300),
    );
    let scenario = Scenario::parse(
        "report.yaml",
        "name: report-check
users: {count: 10}
steps: [{path: /}]
load: {model: open, rate: 100}
duration_s: 4
",
    )
    .unwrap();
    let options = RunOptions {
        url: Some(url),
        progress: false,
    };
    let report = run(&scenario, &options).await.unwrap();
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/loadtest-report");
    std::fs::create_dir_all(&out).unwrap();
    let page = out
        .join("report.html")
        .canonicalize()
        .unwrap_or(out.join("report.html"));
    std::fs::write(&page, report.to_html()).unwrap();
    let page = page.canonicalize().unwrap();
    let profile = tempfile::tempdir().unwrap();

    let dom = headless(&page, profile.path(), &["--dump-dom"]);
    // Three plots, each an SVG that plotly filled in: its traces' lines have path data.
    for id in ["latency", "throughput", "distribution"] {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no #{id} in the rendered page"));
        let rest = &dom[at..];
        let end = rest[1..]
            .find("class=\"plot\"")
            .map_or(rest.len(), |e| e + 1);
        let plot = &rest[..end];
        assert!(plot.contains("class=\"main-svg\""), "#{id} has no SVG");
        let lines = plot.matches("class=\"js-line\"").count();
        assert!(lines >= 1, "#{id} drew no line");
        let drawn = plot
            .split("class=\"js-line\"")
            .skip(1)
            .filter(|s| {
                s.split('>')
                    .next()
                    .is_some_and(|tag| tag.contains(" d=\"M"))
            })
            .count();
        assert!(drawn >= 1, "#{id}: its lines have no path data");
    }
    assert!(dom.contains("report-check"), "the summary table is there");

    let shot = out.join("report.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &page,
        profile.path(),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.len() > 20_000,
        "the screenshot is {} bytes: blank?",
        png.len()
    );
    println!("screenshot: {}", shot.display());
}
