//! `revenant`: the command line. `revenant serve` runs a node on the embedded store;
//! `revenant check` validates a project file without serving.

mod admin_token;
mod cluster_node;
mod config;
mod ops;
mod telemetry;

use anyhow::Context;
use clap::{Parser, Subcommand};
use revenant_gateway::Gateway;
use revenant_gateway::deploy::Deployments;
use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment};
use revenant_storage::embedded::EmbeddedStore;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// mimalloc instead of glibc's malloc: under load glibc's allocator (with its consolidation
/// passes) took about a quarter of the server's CPU; see docs/performance.md for the figures.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Revenant runs durable workers: WebAssembly components whose state survives crashes,
/// called through HTTP routes declared in YAML.
#[derive(Parser)]
#[command(name = "revenant", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the routes of a project file on the embedded store.
    ///
    /// Example: revenant serve --config examples/user-activity/revenant.yaml
    Serve {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Validate a project file (routes, components, types) and exit.
    Check {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Print the OpenAPI 3.1 document of a project's routes (the server also serves it at
    /// GET /openapi.json).
    Openapi {
        #[command(flatten)]
        project: ProjectArgs,
    },
    /// Drive HTTP load at per-user routes, measure it, and check every user's state.
    ///
    /// Example: revenant loadtest --scenario bench/scenarios/add-activity.yaml --url
    ///   http://127.0.0.1:8080 --html report.html --json report.json
    ///
    /// Without --scenario, the flags describe a one-step scenario.
    Loadtest(LoadtestArgs),
    /// Components: deploy, list, show.
    ///
    /// The admin commands (component, api, worker, oplog) find the admin API in --admin or
    /// REVENANT_ADMIN, else the project file's `admin_listen`; the token in --token,
    /// REVENANT_ADMIN_TOKEN, the project's `admin.token`, or the file <data>/admin.token that
    /// `revenant serve` wrote. Exit codes: docs/cli.md.
    Component(ops::ComponentArgs),
    /// API definitions (routes): deploy, list, show, delete.
    Api(ops::ApiArgs),
    /// Workers: list, show, invoke, interrupt, resume, delete, logs, state (time travel),
    /// fork. A worker is written <component>/<worker name>, e.g. user-activity/user-42.
    Worker(ops::WorkerArgs),
    /// A worker's oplog, decoded.
    Oplog(ops::OplogArgs),
    /// The configuration tree: `config default` prints every key with its default and what it
    /// does; `config show` the tree a project's layers make (defaults, file, REVENANT_*
    /// variables, --set flags).
    Config {
        #[command(subcommand)]
        verb: ConfigVerb,
    },
    /// Send one request to the admin API, with the admin token, and print its answer.
    ///
    /// Example: revenant admin GET /workers/user-activity --config revenant.yaml
    Admin(ops::RawArgs),
}

#[derive(Subcommand)]
enum ConfigVerb {
    /// Print every key of the configuration with its default, one comment per key: a
    /// starting point for a project file.
    Default,
    /// Print, as JSON, the tree a project's layers make, with secrets shown only as set.
    Show {
        #[command(flatten)]
        project: Box<ProjectArgs>,
    },
}

#[derive(clap::Args)]
struct LoadtestArgs {
    /// Scenario file (YAML): users, steps, load model, verification.
    #[arg(long)]
    scenario: Option<PathBuf>,
    /// Base URL of the service (overrides the scenario's `url`). For a cluster, the nodes'
    /// URLs, comma-separated: iterations go to them in turn and a retry goes to the next.
    #[arg(long)]
    url: Option<String>,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the report as a self-contained HTML page here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Name printed on the final `RESULT` line, for scripts.
    #[arg(long, default_value = "run")]
    name: String,
    /// (No scenario) HTTP method.
    #[arg(long, default_value = "GET")]
    method: http::Method,
    /// (No scenario) path; `{user}` is the user's key, `{n}` the iteration, `{tag}` both.
    #[arg(long, default_value = "/")]
    path: String,
    /// (No scenario) JSON body, with the same placeholders.
    #[arg(long)]
    body: Option<String>,
    /// (No scenario) number of distinct users.
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// (No scenario) prefix of user keys (`{prefix}{index}`).
    #[arg(long, default_value = "")]
    user_prefix: String,
    /// (No scenario) the first user's index: users are first..first + users.
    #[arg(long, default_value_t = 0)]
    first_user: usize,
    /// (No scenario) pick each user in turn instead of at random: with --iterations equal to
    /// --users, every user exactly once.
    #[arg(long)]
    sequential: bool,
    /// (No scenario) stop once this many iterations have started (or at the duration).
    #[arg(long)]
    iterations: Option<u64>,
    /// (No scenario) closed model: this many virtual users, one request in flight each.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// (No scenario) open model at this many requests per second instead.
    #[arg(long)]
    rate: Option<f64>,
    /// (No scenario) seconds of load before measuring.
    #[arg(long, default_value_t = 2)]
    warmup_secs: u64,
    /// (No scenario) seconds measured.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// (No scenario) after the run, GET this path per user and check its number against the
    /// acknowledged calls.
    #[arg(long)]
    verify_count: Option<String>,
}

#[derive(clap::Args)]
struct ProjectArgs {
    /// The project file: components, routes and where data lives.
    #[arg(long, short, env = "REVENANT_CONFIG", default_value = "revenant.yaml")]
    config: PathBuf,
    /// Address to listen on, overriding the file's `listen` (port 0 picks a free port).
    #[arg(long, env = "REVENANT_LISTEN")]
    listen: Option<SocketAddr>,
    /// Data directory, overriding the file's `data`.
    #[arg(long, env = "REVENANT_DATA")]
    data: Option<PathBuf>,
    /// Address of the admin API (worker lifecycle), overriding the file's `admin_listen`.
    #[arg(long, env = "REVENANT_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
    /// The store, overriding the file's `store`: `embedded`, `postgres://user@host:port/db`,
    /// or `foundationdb[:<cluster file>]`.
    #[arg(long, env = "REVENANT_STORE")]
    store: Option<String>,
    /// This node's id in a cluster, overriding `cluster.node_id`.
    #[arg(long, env = "REVENANT_NODE_ID")]
    node_id: Option<String>,
    /// The internal listener for calls other nodes forward, overriding `cluster.listen`.
    #[arg(long, env = "REVENANT_CLUSTER_LISTEN")]
    cluster_listen: Option<SocketAddr>,
    /// Sets one key of the configuration over the file and the environment, e.g.
    /// `--set limits.invocation_timeout_ms=5000` (repeatable; `revenant config default` lists
    /// the keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server's commands install the log once their configuration is read: it may ask
    // for spans to be exported (`telemetry.rs`).
    if !matches!(
        cli.command,
        Command::Serve { .. } | Command::Check { .. } | Command::Openapi { .. }
    ) {
        telemetry::init_log();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { project } => runtime.block_on(serve(project, Mode::Serve)),
        Command::Check { project } => runtime.block_on(serve(project, Mode::Check)),
        Command::Openapi { project } => runtime.block_on(serve(project, Mode::OpenApi)),
        Command::Loadtest(args) => runtime.block_on(loadtest(args)),
        Command::Component(args) => runtime.block_on(ops::component(args)),
        Command::Api(args) => runtime.block_on(ops::api(args)),
        Command::Worker(args) => runtime.block_on(ops::worker(args)),
        Command::Oplog(args) => runtime.block_on(ops::oplog(args)),
        Command::Admin(args) => runtime.block_on(ops::raw(args)),
        Command::Config { verb } => config_command(verb),
    };
    // Here, off the runtime's threads: the last exports are sent on them.
    telemetry::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(text)) => {
            eprintln!("error: invalid project\n{text}");
            ExitCode::from(2)
        }
        Err(Failure::InvalidScenario(text)) => {
            eprintln!("error: invalid scenario\n{text}");
            ExitCode::from(2)
        }
        Err(Failure::Usage(text)) => {
            eprintln!("error: {text}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Refused(r)) => {
            eprintln!("error: {}: {}", r.code, r.message.replace('\n', " "));
            ExitCode::from(if r.status.is_client_error() {
                EXIT_REFUSED
            } else {
                EXIT_SERVER
            })
        }
        Err(Failure::Unreachable(text)) => {
            eprintln!("error: cannot reach the admin API: {text}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit codes (docs/cli.md). 1 is any other failure.
/// A wrong command line or input file (clap's own code for usage errors is also 2).
const EXIT_USAGE: u8 = 2;
/// The admin API refused the request (a 4xx answer: not found, bad argument, conflict).
const EXIT_REFUSED: u8 = 3;
/// The admin API failed it (a 5xx answer: the worker trapped, the store is unavailable).
const EXIT_SERVER: u8 = 4;
/// The admin API did not answer (connection refused, timeout).
const EXIT_UNREACHABLE: u8 = 5;

enum Failure {
    /// The project file is wrong: the text names each problem's file, line and column.
    Invalid(String),
    /// The load-test scenario is wrong, likewise located.
    InvalidScenario(String),
    /// A command line that cannot be carried out as written (a malformed worker name, an
    /// unreadable file).
    Usage(String),
    /// The admin API answered with an error.
    Refused(ops::client::Refused),
    /// The admin API could not be reached.
    Unreachable(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

fn config_command(verb: ConfigVerb) -> Result<(), Failure> {
    match verb {
        ConfigVerb::Default => print!("{}", config::default_text()),
        ConfigVerb::Show { project } => {
            let mut tree = config::show(&project.config, &project.sets)
                .map_err(|d| Failure::Invalid(d.to_string()))?;
            // The dedicated flags (and their variables) over everything, as `serve` applies
            // them.
            let text = |v: &dyn std::fmt::Display| serde_json::Value::String(v.to_string());
            for (key, value) in [
                ("data", project.data.as_ref().map(|d| text(&d.display()))),
                ("listen", project.listen.as_ref().map(|a| text(a))),
                (
                    "admin_listen",
                    project.admin_listen.as_ref().map(|a| text(a)),
                ),
                ("store", project.store.as_ref().map(|s| text(s))),
            ] {
                if let Some(v) = value {
                    tree[key] = v;
                }
            }
            for (key, value) in [
                ("node_id", project.node_id.as_ref().map(|n| text(n))),
                ("listen", project.cluster_listen.as_ref().map(|a| text(a))),
            ] {
                if let Some(v) = value {
                    tree["cluster"][key] = v;
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&tree).expect("JSON prints")
            );
        }
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Check,
    OpenApi,
}

async fn serve(args: ProjectArgs, mode: Mode) -> Result<(), Failure> {
    let overrides = config::Overrides {
        data: args.data,
        listen: args.listen,
        admin_listen: args.admin_listen,
        store: args.store,
        node_id: args.node_id,
        cluster_listen: args.cluster_listen,
        sets: args.sets,
    };
    let config =
        config::load(&args.config, &overrides).map_err(|d| Failure::Invalid(d.to_string()))?;
    if mode != Mode::Serve {
        telemetry::init_log();
        return check(&args.config, &config, mode);
    }
    telemetry::init(
        config.telemetry.as_ref(),
        &tokio::runtime::Handle::current(),
    )?;
    // Only the test-only `fault-injection` build has crash points to arm.
    revenant_storage::crash_points::setup();
    let store = config.store.describe();
    #[cfg(not(feature = "foundationdb"))]
    if let config::StoreChoice::FoundationDb(_) = config.store {
        return Err(Failure::Other(anyhow::anyhow!(
            "store `{store}`: this build has no FoundationDB client; build with `cargo build \
             --release --features foundationdb` (needs libfdb_c)"
        )));
    }
    if config.store != config::StoreChoice::Embedded && config.cluster.secret.is_none() {
        // Checked before the store is opened: it is a mistake in the configuration.
        return Err(Failure::Other(anyhow::anyhow!(
            "store `{store}` is shared by a cluster: set its secret in `cluster.secret` or \
             REVENANT_CLUSTER_SECRET (at least {} characters, the same on every node)",
            config::CLUSTER_SECRET_CHARS_MIN
        )));
    }
    match config.store.clone() {
        config::StoreChoice::Embedded => {
            let store_dir = config.data.join("store");
            let kv = Arc::new(
                EmbeddedStore::open_with(&store_dir, config.store_free_min_bytes).with_context(
                    || format!("store `embedded`: cannot open {}", store_dir.display()),
                )?,
            );
            run(config, kv.clone(), kv, false).await
        }
        config::StoreChoice::Postgres(url) => {
            let kv = Arc::new(
                revenant_storage::postgres::PgStore::open(&url)
                    .await
                    .map_err(|e| anyhow::anyhow!("store `{store}`: cannot open it: {e}"))?,
            );
            // Appends of many workers share one transaction (group commit).
            let oplog = Arc::new(revenant_storage::pg_oplog::PgOplog::new(
                kv.as_ref().clone(),
            ));
            run(config, kv, oplog, true).await
        }
        #[cfg(feature = "foundationdb")]
        config::StoreChoice::FoundationDb(cluster_file) => {
            // The client's network thread runs until the server returns.
            let _network = revenant_storage::fdb::start_network();
            let kv = Arc::new(
                revenant_storage::fdb::FdbStore::open(cluster_file.as_deref())
                    .map_err(|e| anyhow::anyhow!("store `{store}`: cannot open it: {e}"))?,
            );
            let oplog = Arc::new(revenant_storage::kv_oplog::KvOplog::new(kv.clone()));
            run(config, kv, oplog, true).await
        }
        #[cfg(not(feature = "foundationdb"))]
        config::StoreChoice::FoundationDb(_) => unreachable!("refused above"),
    }
}

/// The runtime of the project's components, on `oplog`.
fn runtime(
    config: &config::Config,
    oplog: Arc<dyn revenant_storage::OplogStore>,
) -> Result<Arc<Runtime>, Failure> {
    Ok(Runtime::new(
        RuntimeConfig {
            components: config.components.clone(),
            cache_dir: config.data.join("cache"),
            limits: config.limits.clone(),
            outgoing_http: config.outgoing_http.clone(),
        },
        oplog,
        Arc::new(SystemEnvironment::new()),
    )
    .context("loading components")?)
}

/// `revenant check` and `revenant openapi`: the project is compiled and bound against an
/// in-memory store; nothing on disk is touched.
fn check(path: &std::path::Path, config: &config::Config, mode: Mode) -> Result<(), Failure> {
    let runtime = runtime(
        config,
        Arc::new(revenant_storage::memory::MemoryStore::default()),
    )?;
    let gateway =
        Gateway::new(runtime.clone(), &config.api).map_err(|d| Failure::Invalid(d.to_string()))?;
    if mode == Mode::OpenApi {
        let text = serde_json::to_string_pretty(&gateway.openapi()).context("printing")?;
        println!("{text}");
        return Ok(());
    }
    let read_only: Vec<String> = config
        .api
        .routes
        .iter()
        .filter(|r| r.read_only)
        .map(|r| r.describe())
        .collect();
    println!(
        "{}: ok ({} routes; read-only: {})",
        path.display(),
        config.api.routes.len(),
        if read_only.is_empty() {
            "none".to_string()
        } else {
            read_only.join(", ")
        }
    );
    Ok(())
}

/// Serves the project on a store: `shared` (PostgreSQL, FoundationDB) makes this node a member
/// of the cluster the store holds.
async fn run<K: revenant_storage::kv::KvStore>(
    config: config::Config,
    kv: Arc<K>,
    oplog: Arc<dyn revenant_storage::OplogStore>,
    shared: bool,
) -> Result<(), Failure> {
    let secret = config.cluster.secret.clone();
    let runtime = runtime(&config, oplog)?;
    // The project file's routes were checked by `config::load`; this binds them.
    Gateway::new(runtime.clone(), &config.api).map_err(|d| Failure::Invalid(d.to_string()))?;
    // The project file's routes and everything deployed through the admin API.
    let deployments = Arc::new(
        Deployments::open(
            runtime.clone(),
            kv.clone(),
            config.api.clone(),
            Arc::new(config::env_var),
        )
        .await
        .map_err(|e| anyhow::anyhow!("loading deployed components and definitions: {e}"))?,
    );
    // The admin token is settled before anything listens: a bad token file stops the start.
    let admin_token = match config.admin_listen {
        Some(_) => Some(admin_token::for_server(
            config.admin_token.clone(),
            &config.data,
        )?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Guests may not call back into this node unless `outgoing_http.allow` says so.
    runtime.refuse_egress_to(addr);
    // SIGTERM or Ctrl-C: both listeners stop accepting and drain, then the workers leave.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let node = match secret {
        Some(secret) if shared => Some(
            cluster_node::start(
                &config,
                kv.clone(),
                runtime.clone(),
                deployments.live(),
                &secret,
                stopping.clone(),
            )
            .await?,
        ),
        _ => None,
    };
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("revenant listening on http://{addr}");
    let _ = std::io::stdout().flush();
    {
        let node = node.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            // A node of a cluster hands its shards over first, so that the others take them
            // at once; it keeps serving (forwarding) while its listeners drain.
            if let Some(node) = &node {
                node.leave().await;
            }
            let _ = stop.send(true);
        });
    }
    let mut admin_server = None;
    if let (Some(admin_addr), Some((token, file))) = (config.admin_listen, admin_token) {
        let admin = tokio::net::TcpListener::bind(admin_addr)
            .await
            .with_context(|| format!("listening on {admin_addr} (admin)"))?;
        let addr = admin.local_addr().context("reading the admin address")?;
        runtime.refuse_egress_to(addr);
        let access = revenant_gateway::admin::Access::new(&token, addr, config.admin_hosts.clone());
        // Scripts read the address up to the `;`.
        match file {
            Some(file) => println!(
                "revenant admin listening on http://{addr}; token in {}",
                file.display()
            ),
            None => println!("revenant admin listening on http://{addr}; token as configured"),
        }
        let _ = std::io::stdout().flush();
        let handler = Arc::new(revenant_gateway::admin::Admin::new(
            deployments.clone(),
            access,
        ));
        let stop = stopping.clone();
        let server = config.server;
        admin_server = Some(tokio::spawn(async move {
            if let Err(e) =
                revenant_gateway::serve_with(admin, handler, server, stopped(stop)).await
            {
                tracing::error!("admin API stopped: {e}");
            }
        }));
    }
    if node.is_some() {
        // A node has joined: it recovers each shard's workers as it takes the shard.
        runtime.set_recovery(revenant_runtime::Recovery::Done);
    } else {
        // Invocations the last process died in resume now, not on their worker's next call
        // (a cluster node does this for each shard it takes).
        let recovering = runtime.clone();
        tokio::spawn(async move {
            match recovering.recover_in_flight().await {
                Ok(0) => {}
                Ok(n) => tracing::info!("resuming {n} interrupted invocations"),
                Err(e) => tracing::error!("cannot look for interrupted invocations: {e}"),
            }
        });
    }
    tracing::info!(data = %config.data.display(), store = %config.store.describe(), "serving {} routes", config.api.routes.len());
    revenant_gateway::serve_with(
        listener,
        deployments.live(),
        config.server,
        stopped(stopping),
    )
    .await
    .context("serving")?;
    if let Some(admin) = admin_server {
        let _ = admin.await;
    }
    if let Some(node) = &node {
        node.stopped().await;
    }
    // Every accepted request has its answer; workers finish what is queued and leave memory.
    if tokio::time::timeout(revenant_gateway::limits::DRAIN_TIMEOUT, runtime.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("workers still busy after the drain bound; exiting anyway");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes once a shutdown was asked for.
async fn stopped(mut stopping: tokio::sync::watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

async fn loadtest(args: LoadtestArgs) -> Result<(), Failure> {
    use revenant_loadtest::scenario::{
        CountCheck, Distribution, LoadModel, Stage, Step, Users, Verify,
    };
    let scenario = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            revenant_loadtest::Scenario::parse(&path.display().to_string(), &text)
                .map_err(Failure::InvalidScenario)?
        }
        None => {
            let most = revenant_loadtest::limits::USERS_MAX;
            if args.users == 0 || args.users > most {
                return Err(Failure::InvalidScenario(format!(
                    "--users must be 1 to {most}, not {}",
                    args.users
                )));
            }
            if args.first_user.checked_add(args.users).is_none() {
                return Err(Failure::InvalidScenario(
                    "--first-user + --users overflows".into(),
                ));
            }
            if args.iterations == Some(0) {
                return Err(Failure::InvalidScenario(
                    "--iterations must be at least 1".into(),
                ));
            }
            let duration = std::time::Duration::from_secs(args.duration_secs);
            let warmup = std::time::Duration::from_secs(args.warmup_secs);
            revenant_loadtest::Scenario {
                name: args.name.clone(),
                url: None,
                users: Users {
                    count: args.users,
                    first: args.first_user,
                    key: format!("{}{{index}}", args.user_prefix),
                    distribution: if args.sequential {
                        Distribution::Sequential
                    } else {
                        Distribution::Uniform
                    },
                },
                steps: vec![Step {
                    name: "request".into(),
                    method: args.method.clone(),
                    path: args.path.clone(),
                    body: args.body.clone(),
                    headers: Vec::new(),
                    expect_status: 200,
                    extract: Vec::new(),
                    counts: args.verify_count.is_some(),
                }],
                load: match args.rate {
                    Some(rate) => LoadModel::Open {
                        start_rate: rate,
                        stages: vec![Stage {
                            target: rate,
                            duration: duration + warmup,
                        }],
                        max_in_flight: revenant_loadtest::limits::IN_FLIGHT_DEFAULT,
                    },
                    None => LoadModel::Closed {
                        virtual_users: args.connections,
                        think_time: std::time::Duration::ZERO,
                    },
                },
                iterations: args.iterations,
                duration,
                warmup,
                verify: Verify {
                    count: args.verify_count.clone().map(|path| CountCheck {
                        path,
                        pointer: String::new(),
                    }),
                    items: None,
                },
                retries: 2,
                timeout: std::time::Duration::from_secs(10),
            }
        }
    };
    let options = revenant_loadtest::RunOptions {
        url: args.url.clone(),
        progress: !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = revenant_loadtest::run(&scenario, &options)
        .await
        .map_err(|e| Failure::Other(e.into()))?;
    print!("{report}");
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        std::fs::write(path, report.to_html())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "RESULT {} {:.0} {:.2} {:.2} {} {:.0} {}",
        args.name,
        report.achieved_rate,
        report.latency.p50_ms,
        report.latency.p99_ms,
        report.errors.values().sum::<u64>(),
        report.offered_rate,
        report.late
    );
    if !report.passed {
        let v = &report.verification;
        let users: std::collections::BTreeSet<&str> = v.problems.iter().map(|p| p.user()).collect();
        return Err(Failure::Other(anyhow::anyhow!(
            "verification failed: {} problems, users: {}",
            v.problems.len() + v.problems_not_listed,
            users.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
