//! `revenant admin METHOD PATH`: one authenticated request to the admin API, for operators and
//! scripts until the noun-verb commands exist. It finds the admin token the way the server
//! does (`admin_token.rs`).

use crate::{Failure, admin_token, config};
use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::PathBuf;

/// Largest answer printed: admin answers are listings of at most 1,000 workers.
const ANSWER_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(clap::Args)]
pub struct AdminArgs {
    /// GET, PUT, POST or DELETE.
    method: http::Method,
    /// The admin path, e.g. /workers/user-activity or /components/user-activity.
    path: String,
    /// Send this file as the body (`-`: standard input), e.g. a .wasm or a definition's YAML.
    #[arg(long)]
    body: Option<PathBuf>,
    /// The admin API's URL (default: the project file's `admin_listen`).
    #[arg(long, env = "REVENANT_ADMIN")]
    admin: Option<String>,
    /// The admin token (default: the project's `admin.token`, else <data>/admin.token).
    #[arg(long, env = "REVENANT_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The project file, for its `data`, `admin_listen` and `admin.token`.
    #[arg(long, short, env = "REVENANT_CONFIG", default_value = "revenant.yaml")]
    config: PathBuf,
    /// The data directory holding admin.token, overriding the file's `data`.
    #[arg(long, env = "REVENANT_DATA")]
    data: Option<PathBuf>,
}

pub async fn run(args: AdminArgs) -> Result<(), Failure> {
    let project = || config::admin_view(&args.config).map_err(|d| Failure::Invalid(d.to_string()));
    let token = match (&args.token, &args.data) {
        (Some(t), _) => t.clone(),
        (None, Some(data)) => admin_token::read(&admin_token::file_in(data))?,
        (None, None) => {
            let view = project()?;
            match view.token {
                Some(t) => t,
                None => admin_token::read(&admin_token::file_in(&view.data))?,
            }
        }
    };
    let base = match &args.admin {
        Some(url) => url.clone(),
        None => {
            let listen = project()?.admin_listen.ok_or_else(|| {
                anyhow!(
                    "no admin URL: pass --admin or set admin_listen in {}",
                    args.config.display()
                )
            })?;
            format!("http://{listen}")
        }
    };
    let body = match &args.body {
        None => Bytes::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading the body from standard input")?;
            Bytes::from(buf)
        }
        Some(p) => {
            Bytes::from(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?)
        }
    };
    let url = format!("{}{}", base.trim_end_matches('/'), args.path);
    let request = http::Request::builder()
        .method(args.method.clone())
        .uri(&url)
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(body))
        .with_context(|| format!("building a request to {url}"))?;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let response = client
        .request(request)
        .await
        .with_context(|| format!("{} {url}", args.method))?;
    let status = response.status();
    let answer = Limited::new(response.into_body(), ANSWER_BYTES_MAX)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the answer: {e}"))?
        .to_bytes();
    let text = String::from_utf8_lossy(&answer);
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        Err(Failure::Other(anyhow!(
            "{} {url} answered {status}: {text}",
            args.method
        )))
    }
}
