//! The operator's commands, noun then verb, each one or a few requests to the admin API
//! (`gateway/src/admin`): `component`, `api`, `worker`, `oplog`. Human tables by default,
//! `--json` for the API's own answer. A worker is written `<component>/<worker name>`; the
//! name may itself hold `/`. Exit codes are in `docs/cli.md`.

pub mod client;
mod show;

use crate::Failure;
use anyhow::{Context, anyhow};
use client::{Client, Connection, query_value, segment};
use http::Method;
use serde_json::{Value as Json, json};
use std::path::PathBuf;

/// How often `worker logs --follow` asks for new lines.
const FOLLOW_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// What every admin command takes besides its own arguments.
#[derive(clap::Args)]
pub struct Common {
    #[command(flatten)]
    connection: Connection,
    /// Print the admin API's JSON answer instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ComponentArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    verb: ComponentVerb,
}

#[derive(clap::Subcommand)]
enum ComponentVerb {
    /// Upload a .wasm component as the next version of `name` and serve it.
    ///
    /// Example: revenant component deploy user-activity target/wasm32-wasip2/guest/user_activity.wasm
    Deploy { name: String, file: PathBuf },
    /// The loaded components.
    List,
    /// One component's hash and exports with their WIT signatures.
    Show { name: String },
}

#[derive(clap::Args)]
pub struct ApiArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    verb: ApiVerb,
}

#[derive(clap::Subcommand)]
enum ApiVerb {
    /// Deploy an API definition (YAML with `routes:`, and `auth:` if any) under `name`.
    ///
    /// Example: revenant api deploy activities routes.yaml
    Deploy { name: String, file: PathBuf },
    /// The deployed definitions.
    List,
    /// A deployed definition's YAML.
    Show { name: String },
    /// Stop serving a definition.
    Delete { name: String },
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    verb: WorkerVerb,
}

#[derive(clap::Subcommand)]
enum WorkerVerb {
    /// Workers by name, with their status and last oplog index.
    List {
        /// Only this component's workers (default: every loaded component's).
        #[arg(long)]
        component: Option<String>,
        /// Only workers in this status: idle, running, interrupted, failed, suspended, exited.
        #[arg(long)]
        status: Option<String>,
        /// Workers whose names come after this one (paging).
        #[arg(long)]
        after: Option<String>,
        /// At most this many per component.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One worker's status and log position.
    Show { worker: String },
    /// Call an export of the worker, durably, as a route would.
    ///
    /// Each argument is JSON (`5`, `true`, `'{"a": 1}'`, `'"5"'`), or else taken as a string.
    ///
    /// Example: revenant worker invoke user-activity/user-42 add-activity run 5km
    Invoke {
        /// <component>/<worker name>; the worker is created on first use.
        worker: String,
        /// The export: its full name, `interface.function`, or the bare function name.
        function: String,
        /// The export's arguments in order (negative numbers are values, not flags).
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        /// Run at most once for this key (a repeat gets the stored outcome).
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Stop the worker's running call (recorded as failed); it refuses calls until resumed.
    Interrupt { worker: String },
    /// Let an interrupted worker take calls again.
    Resume { worker: String },
    /// Remove the worker's oplog and metadata.
    Delete { worker: String },
    /// What the worker's guest wrote to stdout and stderr, as its log holds it.
    Logs {
        worker: String,
        /// From this oplog index.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// At most this many lines (per request, with --follow).
        #[arg(long, default_value_t = 1000)]
        limit: u64,
        /// Keep printing new lines as the worker writes them, until interrupted.
        #[arg(long, short)]
        follow: bool,
    },
    /// Time travel: call an export on the worker's state as it was after oplog entry `--at`,
    /// in a scratch instance; nothing is recorded and the live worker is not touched.
    ///
    /// Example: revenant worker state user-activity/user-42 --at 12 count
    State {
        worker: String,
        /// The oplog index whose state to show.
        #[arg(long)]
        at: u64,
        /// The export to call on that state (what it changes is dropped with the instance).
        function: String,
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
    },
    /// A new worker whose oplog is this one's up to `--at` (default: its end), which then
    /// lives on its own.
    ///
    /// Example: revenant worker fork user-activity/user-42 user-42-replay --at 12
    Fork {
        worker: String,
        new_name: String,
        #[arg(long)]
        at: Option<u64>,
    },
}

#[derive(clap::Args)]
pub struct OplogArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    verb: OplogVerb,
}

#[derive(clap::Subcommand)]
enum OplogVerb {
    /// A worker's oplog entries, decoded: invocations with their arguments and results, host
    /// calls with request and response, snapshots, output, lifecycle.
    Show {
        worker: String,
        #[arg(long, default_value_t = 1)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

/// `component/name` split, and the admin path of that worker.
fn worker_path(worker: &str) -> Result<String, Failure> {
    let Some((component, name)) = worker.split_once('/') else {
        return Err(Failure::Usage(format!(
            "`{worker}` is not a worker: write <component>/<worker name>, e.g. user-activity/user-42"
        )));
    };
    if component.is_empty() || name.is_empty() {
        return Err(Failure::Usage(format!(
            "`{worker}`: both the component and the worker name are needed (<component>/<worker name>)"
        )));
    }
    Ok(format!("/workers/{}/{}", segment(component), segment(name)))
}

/// Command-line arguments as JSON: each one parsed as JSON if it is, else a string.
fn json_args(args: &[String]) -> Json {
    Json::Array(
        args.iter()
            .map(|a| serde_json::from_str(a).unwrap_or_else(|_| Json::String(a.clone())))
            .collect(),
    )
}

fn read(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(file)
        .with_context(|| format!("reading {}", file.display()))
        .map_err(|e| Failure::Usage(format!("{e:#}")))
}

/// Prints `answer` as JSON, or as `human` renders it.
fn print(common: &Common, answer: &Json, human: impl FnOnce(&Json) -> String) {
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(answer).expect("JSON prints")
        );
    } else {
        let text = human(answer);
        if !text.is_empty() {
            println!("{}", text.trim_end());
        }
    }
}

pub async fn component(args: ComponentArgs) -> Result<(), Failure> {
    let c = &args.common;
    let client = c.connection.client()?;
    match args.verb {
        ComponentVerb::Deploy { name, file } => {
            let bytes = read(&file)?;
            let answer = client
                .upload(&format!("/components/{}", segment(&name)), bytes)
                .await?;
            print(c, &answer, show::component_deployed);
        }
        ComponentVerb::List => {
            let answer = client.json(Method::GET, "/components", None, &[]).await?;
            print(c, &answer, show::components);
        }
        ComponentVerb::Show { name } => {
            let path = format!("/components/{}", segment(&name));
            let answer = client.json(Method::GET, &path, None, &[]).await?;
            print(c, &answer, show::component);
        }
    }
    Ok(())
}

pub async fn api(args: ApiArgs) -> Result<(), Failure> {
    let c = &args.common;
    let client = c.connection.client()?;
    match args.verb {
        ApiVerb::Deploy { name, file } => {
            let bytes = read(&file)?;
            let answer = client
                .upload(&format!("/api-definitions/{}", segment(&name)), bytes)
                .await?;
            print(c, &answer, show::definition_deployed);
        }
        ApiVerb::List => {
            let answer = client
                .json(Method::GET, "/api-definitions", None, &[])
                .await?;
            print(c, &answer, show::definitions);
        }
        ApiVerb::Show { name } => {
            let path = format!("/api-definitions/{}", segment(&name));
            let (status, body) = client
                .raw(Method::GET, &path, bytes::Bytes::new(), &[])
                .await?;
            client::ok_or_refused(status, &body)?;
            let source = String::from_utf8_lossy(&body).into_owned();
            if c.json {
                print(c, &json!({"name": name, "source": source}), |_| {
                    String::new()
                });
            } else {
                print!("{source}");
            }
        }
        ApiVerb::Delete { name } => {
            let path = format!("/api-definitions/{}", segment(&name));
            let answer = client.json(Method::DELETE, &path, None, &[]).await?;
            print(c, &answer, |a| {
                format!("api {} deleted (version {})", a["name"], a["version"])
            });
        }
    }
    Ok(())
}

pub async fn worker(args: WorkerArgs) -> Result<(), Failure> {
    let c = &args.common;
    let client = c.connection.client()?;
    match args.verb {
        WorkerVerb::List {
            component,
            status,
            after,
            limit,
        } => {
            let components = match component {
                Some(one) => vec![one],
                None => {
                    let all = client.json(Method::GET, "/components", None, &[]).await?;
                    all.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["name"].as_str().map(str::to_string))
                        .collect()
                }
            };
            let mut rows = Vec::new();
            for component in components {
                let mut path = format!("/workers/{}?limit={limit}", segment(&component));
                if let Some(s) = &status {
                    path.push_str(&format!("&status={}", query_value(s)));
                }
                if let Some(a) = &after {
                    path.push_str(&format!("&after={}", query_value(a)));
                }
                let page = client.json(Method::GET, &path, None, &[]).await?;
                for mut w in page.as_array().cloned().unwrap_or_default() {
                    w["component"] = json!(component);
                    rows.push(w);
                }
            }
            print(c, &Json::Array(rows), show::workers);
        }
        WorkerVerb::Show { worker } => {
            let answer = client
                .json(Method::GET, &worker_path(&worker)?, None, &[])
                .await?;
            print(c, &answer, show::worker);
        }
        WorkerVerb::Invoke {
            worker,
            function,
            args,
            idempotency_key,
        } => {
            let path = format!("{}/invoke/{}", worker_path(&worker)?, segment(&function));
            let headers: Vec<(&str, String)> = idempotency_key
                .into_iter()
                .map(|k| ("idempotency-key", k))
                .collect();
            let answer = client
                .json(Method::POST, &path, Some(json_args(&args)), &headers)
                .await?;
            print(c, &answer, |a| show::pretty(&a["result"]));
        }
        WorkerVerb::Interrupt { worker } => control(c, &client, &worker, "interrupt").await?,
        WorkerVerb::Resume { worker } => control(c, &client, &worker, "resume").await?,
        WorkerVerb::Delete { worker } => {
            let answer = client
                .json(Method::DELETE, &worker_path(&worker)?, None, &[])
                .await?;
            print(c, &answer, |_| format!("worker {worker} deleted"));
        }
        WorkerVerb::Logs {
            worker,
            from,
            limit,
            follow,
        } => logs(c, &client, &worker, from, limit, follow).await?,
        WorkerVerb::State {
            worker,
            at,
            function,
            args,
        } => {
            let path = format!(
                "{}/state?at={at}&function={}&args={}",
                worker_path(&worker)?,
                query_value(&function),
                query_value(&json_args(&args).to_string())
            );
            let answer = client.json(Method::GET, &path, None, &[]).await?;
            print(c, &answer, |a| show::pretty(&a["result"]));
        }
        WorkerVerb::Fork {
            worker,
            new_name,
            at,
        } => {
            let path = format!("{}/fork", worker_path(&worker)?);
            let answer = client
                .json(
                    Method::POST,
                    &path,
                    Some(json!({"name": new_name, "at": at})),
                    &[],
                )
                .await?;
            print(c, &answer, |a| {
                format!(
                    "forked {worker} at index {} into {}/{} ({} entries)",
                    a["at"],
                    a["component"].as_str().unwrap_or_default(),
                    a["name"].as_str().unwrap_or_default(),
                    a["last_index"]
                )
            });
        }
    }
    Ok(())
}

async fn control(c: &Common, client: &Client, worker: &str, verb: &str) -> Result<(), Failure> {
    let path = format!("{}/{verb}", worker_path(worker)?);
    let answer = client.json(Method::POST, &path, None, &[]).await?;
    print(c, &answer, |a| {
        format!("worker {worker}: {}", a["status"].as_str().unwrap_or("?"))
    });
    Ok(())
}

async fn logs(
    c: &Common,
    client: &Client,
    worker: &str,
    mut from: u64,
    limit: u64,
    follow: bool,
) -> Result<(), Failure> {
    let base = format!("{}/logs", worker_path(worker)?);
    loop {
        let path = format!("{base}?from={from}&limit={limit}");
        let page = client.json(Method::GET, &path, None, &[]).await?;
        let next = page["next"].as_u64();
        if c.json && follow {
            // One object per line, so that a reader can take them as they come.
            for line in page["lines"].as_array().into_iter().flatten() {
                println!("{line}");
            }
        } else {
            print(c, &page, show::log_lines);
        }
        from = match next {
            Some(n) => n,
            None if follow => page["scanned_to"]
                .as_u64()
                .map_or(from, |s| s + 1)
                .max(from),
            None => return Ok(()),
        };
        if !follow {
            // More than one page: the next is asked for only when following.
            if next.is_some() && !c.json {
                eprintln!("(more: --from {from})");
            }
            return Ok(());
        }
        if next.is_none() {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
        }
    }
}

pub async fn oplog(args: OplogArgs) -> Result<(), Failure> {
    let c = &args.common;
    let client = c.connection.client()?;
    match args.verb {
        OplogVerb::Show {
            worker,
            from,
            limit,
        } => {
            let path = format!("{}/oplog?from={from}&limit={limit}", worker_path(&worker)?);
            let answer = client.json(Method::GET, &path, None, &[]).await?;
            print(c, &answer, show::oplog);
            if !c.json
                && let Some(next) = answer["next"].as_u64()
            {
                eprintln!("(more: --from {next})");
            }
        }
    }
    Ok(())
}

/// `revenant admin METHOD PATH`: one authenticated request, its answer printed as it came.
#[derive(clap::Args)]
pub struct RawArgs {
    /// GET, PUT, POST or DELETE.
    method: Method,
    /// The admin path, e.g. /workers/user-activity or /components/user-activity.
    path: String,
    /// Send this file as the body (`-`: standard input), e.g. a .wasm or a definition's YAML.
    #[arg(long)]
    body: Option<PathBuf>,
    #[command(flatten)]
    connection: Connection,
}

pub async fn raw(args: RawArgs) -> Result<(), Failure> {
    let client = args.connection.client()?;
    let body = match &args.body {
        None => Vec::new(),
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .context("reading the body from standard input")?;
            buf
        }
        Some(p) => read(p)?,
    };
    let (status, answer) = client
        .raw(
            args.method.clone(),
            &args.path,
            bytes::Bytes::from(body),
            &[],
        )
        .await?;
    let text = String::from_utf8_lossy(&answer);
    if status.is_success() {
        println!("{text}");
        Ok(())
    } else {
        Err(Failure::Other(anyhow!(
            "{} {} answered {status}: {text}",
            args.method,
            args.path
        )))
    }
}
