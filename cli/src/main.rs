//! `revenant`: the command line. `revenant serve` runs a node on the embedded store;
//! `revenant check` validates a project file without serving.

mod config;

use anyhow::Context;
use clap::{Parser, Subcommand};
use revenant_gateway::Gateway;
use revenant_runtime::{Runtime, RuntimeConfig, SystemEnvironment};
use revenant_storage::embedded::EmbeddedStore;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REVENANT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { project } => runtime.block_on(serve(project, true)),
        Command::Check { project } => runtime.block_on(serve(project, false)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(text)) => {
            eprintln!("error: invalid project\n{text}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// The project file is wrong: the text names each problem's file, line and column.
    Invalid(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

async fn serve(args: ProjectArgs, run: bool) -> Result<(), Failure> {
    let overrides = config::Overrides {
        data: args.data,
        listen: args.listen,
    };
    let config =
        config::load(&args.config, &overrides).map_err(|d| Failure::Invalid(d.to_string()))?;
    // Components are compiled before the store is opened: a project that cannot serve never
    // touches its data.
    let cache_dir = config.data.join("cache");
    let store_dir = config.data.join("store");
    let oplog: Arc<dyn revenant_storage::OplogStore> = if run {
        Arc::new(
            EmbeddedStore::open(&store_dir)
                .with_context(|| format!("opening the store in {}", store_dir.display()))?,
        )
    } else {
        Arc::new(revenant_storage::memory::MemoryStore::new())
    };
    let runtime = Runtime::new(
        RuntimeConfig {
            components: config.components.clone(),
            cache_dir,
        },
        oplog,
        Arc::new(SystemEnvironment::new()),
    )
    .context("loading components")?;
    let gateway =
        Gateway::new(runtime, &config.api).map_err(|d| Failure::Invalid(d.to_string()))?;
    if !run {
        println!(
            "{}: ok ({} routes)",
            args.config.display(),
            config.api.routes.len()
        );
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // Tests and scripts read this line to learn the port when listening on port 0.
    println!("revenant listening on http://{addr}");
    let _ = std::io::stdout().flush();
    tracing::info!(data = %config.data.display(), "serving {} routes", config.api.routes.len());
    revenant_gateway::serve(listener, Arc::new(gateway), shutdown_signal())
        .await
        .context("serving")?;
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
