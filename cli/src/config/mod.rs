//! The project file, `revenant.yaml`: one typed tree. Values come from the defaults, then the
//! file, then `REVENANT_*` environment variables and command-line flags (see `main.rs`).
//! Relative paths in the file are relative to the file's own folder, so the demo runs from any
//! working directory.

mod defaults;
mod layers;

pub use layers::Sources;
use marked_yaml::Spanned;
use revenant_api_definitions::{
    ApiDefinition, ApiSpec, AuthSpec, Diagnostic, Diagnostics, Location, RouteSpec,
};
use revenant_runtime::limits::{
    ACTIVE_WORKERS_CEILING, ACTIVE_WORKERS_DEFAULT, CeilingBound, GUEST_ADDRESS_SPACE_BYTES,
    MAPPINGS_PER_INSTANCE, MAPPINGS_PER_POOL_SLOT, guest_reservation_bytes, instances_beyond_cap,
    live_workers_ceiling, mappings_needed, max_map_count,
};
use revenant_runtime::{AllowRule, OutgoingHttpConfig, WorkerLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA: &str = "./data";

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    /// The admin API's address; it is off unless set. Keep it off the public network.
    admin_listen: Option<Spanned<String>>,
    components: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default, skip_serializing)]
    auth: BTreeMap<String, Spanned<AuthSpec>>,
    #[serde(default, skip_serializing)]
    routes: Vec<RouteSpec>,
    #[serde(default)]
    outgoing_http: OutgoingFile,
    #[serde(default)]
    admin: AdminFile,
    /// Where workers' logs live: `embedded` (the default), `postgres://...`, or
    /// `foundationdb[:<cluster file>]`.
    store: Option<Spanned<String>>,
    #[serde(default)]
    cluster: ClusterFile,
    #[serde(default)]
    telemetry: TelemetryFile,
}

/// `telemetry:` — exporting the request and invocation spans over OTLP (`telemetry.rs`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TelemetryFile {
    /// The collector's OTLP/HTTP URL; `/v1/traces` is added to one without a path.
    otlp_endpoint: Option<Spanned<String>>,
    /// Headers sent with every export (a vendor's API key, say).
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    service_name: Option<Spanned<String>>,
    /// Share of the traces this node starts that are exported; a caller's `sampled` flag
    /// decides for the traces it starts.
    sample_ratio: Option<Spanned<f64>>,
}

/// A validated `telemetry:`: `None` when nothing is exported.
#[derive(Clone, Debug)]
// A build without the exporter refuses an endpoint, so it never reads one.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
pub struct TelemetryConfig {
    pub otlp_endpoint: http::Uri,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub service_name: String,
    pub sample_ratio: f64,
}

/// `cluster:` — a node of several sharing one store (PostgreSQL or FoundationDB).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    /// This node's id; generated once into `<data>/node-id` if unset.
    node_id: Option<Spanned<String>>,
    /// The internal listener other nodes forward calls to.
    listen: Option<Spanned<String>>,
    /// The URL peers reach the internal listener at, when it is not `http://<listen>`.
    advertise: Option<Spanned<String>>,
    /// The shared secret every member presents (or `REVENANT_CLUSTER_SECRET`).
    secret: Option<Spanned<String>>,
    /// Shards of a new store (fixed at its first use).
    shards: Option<Spanned<u64>>,
    lease_ms: Option<Spanned<u64>>,
}

/// The store the server runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// fjall under `<data>/store`: one node.
    Embedded,
    /// A PostgreSQL database several nodes share.
    Postgres(String),
    /// A FoundationDB cluster, by its cluster file (`None`: the client's default).
    FoundationDb(Option<String>),
}

impl StoreChoice {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t == "embedded" {
            Ok(Self::Embedded)
        } else if t.starts_with("postgres://") || t.starts_with("postgresql://") {
            Ok(Self::Postgres(t.to_string()))
        } else if t == "foundationdb" {
            Ok(Self::FoundationDb(None))
        } else if let Some(file) = t.strip_prefix("foundationdb:") {
            Ok(Self::FoundationDb(Some(file.to_string())))
        } else {
            Err(format!(
                "`{t}` is not a store: use `embedded`, `postgres://user@host:port/database` or \
                 `foundationdb[:<cluster file>]`"
            ))
        }
    }

    /// How the store is named in messages: a PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded => "embedded".into(),
            Self::Postgres(url) => match url.split_once("://").and_then(|(scheme, rest)| {
                let (auth, host) = rest.split_once('@')?;
                let user = auth.split(':').next().unwrap_or("");
                Some(format!("{scheme}://{user}@{host}"))
            }) {
                Some(redacted) => redacted,
                None => url.clone(),
            },
            Self::FoundationDb(None) => "foundationdb".into(),
            Self::FoundationDb(Some(f)) => format!("foundationdb:{f}"),
        }
    }
}

/// A validated `cluster:`.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub node_id: Option<String>,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub secret: Option<String>,
    pub shards: u32,
    pub lease: Duration,
}

/// Shortest cluster secret accepted: it is all that keeps non-members off the internal
/// listener.
pub const CLUSTER_SECRET_CHARS_MIN: usize = 16;

/// `outgoing_http:` — what guests' requests may reach, and their bounds (defaults in
/// `runtime::limits`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct OutgoingFile {
    /// Hosts, addresses or CIDRs, each with an optional `:port`, opened past the egress policy.
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    /// PEM files of certificate authorities trusted besides the system's (also for JWKS URLs).
    #[serde(default)]
    ca_files: Vec<Spanned<String>>,
    connect_timeout_ms: Option<Spanned<u64>>,
    first_byte_timeout_ms: Option<Spanned<u64>>,
    request_timeout_ms: Option<Spanned<u64>>,
    concurrent_per_worker: Option<Spanned<u64>>,
    concurrent_max: Option<Spanned<u64>>,
}

/// `admin:` — the admin API's credentials and the host names it answers to.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    /// The bearer token (or `REVENANT_ADMIN_TOKEN`); generated into `<data>/admin.token` if
    /// neither is set.
    token: Option<Spanned<String>>,
    /// `Host` values accepted besides the listener's own address and `localhost:<port>`.
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
}

/// `limits:` — the worker bounds a deployment may tune (defaults in `runtime::limits`).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    invocation_timeout_ms: Option<Spanned<u64>>,
    guest_memory_mb: Option<Spanned<u64>>,
    worker_idle_timeout_ms: Option<Spanned<u64>>,
    active_workers_max: Option<Spanned<u64>>,
    snapshot_every_invocations: Option<Spanned<u64>>,
    truncate_oplog_at_snapshot: Option<Spanned<bool>>,
    /// For tests: fail a read-only call that changes its worker's state (two snapshots a read).
    check_read_only: Option<Spanned<bool>>,
    header_read_timeout_ms: Option<Spanned<u64>>,
    store_free_min_mb: Option<Spanned<u64>>,
}

/// Reads one limit, checking it lies in `range`.
fn limit(
    file: &Sources,
    value: &Option<Spanned<u64>>,
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    problems: &mut Vec<Diagnostic>,
) -> Option<u64> {
    let v = value.as_ref()?;
    if !range.contains(v) {
        problems.push(Diagnostic::new(
            file.at(v.span()),
            format!(
                "`{name}` must be between {} and {}",
                range.start(),
                range.end()
            ),
        ));
        return None;
    }
    Some(**v)
}

/// A validated configuration.
#[derive(Debug)]
pub struct Config {
    pub data: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub components: Vec<(String, PathBuf)>,
    pub limits: WorkerLimits,
    pub server: revenant_gateway::ServerLimits,
    pub api: ApiDefinition,
    pub outgoing_http: OutgoingHttpConfig,
    /// The configured admin token (file or environment), if any.
    pub admin_token: Option<String>,
    pub admin_hosts: Vec<String>,
    pub store: StoreChoice,
    /// Free disk space under which the embedded store refuses writes.
    pub store_free_min_bytes: u64,
    pub cluster: ClusterConfig,
    pub telemetry: Option<TelemetryConfig>,
}

/// Flags and environment variables that override the file.
#[derive(Debug, Default)]
pub struct Overrides {
    pub data: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    /// `--store` / `REVENANT_STORE`, as given.
    pub store: Option<String>,
    pub node_id: Option<String>,
    pub cluster_listen: Option<SocketAddr>,
    /// `--set key.path=value` flags, over the file and the environment.
    pub sets: Vec<String>,
}

/// Reads the project file and lays it, then `extra` (environment variables and `--set`
/// flags), over the defaults: one tree, checked for syntax and key names only.
fn read(path: &Path, extra: &[layers::Override]) -> Result<(Sources, ConfigFile), Diagnostics> {
    let file_name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            Location {
                file: file_name.clone(),
                line: 1,
                column: 1,
            },
            format!("cannot read the configuration: {e}"),
        )])
    })?;
    let (tree, sources) = layers::merge((&file_name, &text), extra)?;
    let file: ConfigFile = marked_yaml::from_node(&tree).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            sources.at_marker(e.start_mark().as_ref()),
            e.to_string(),
        )])
    })?;
    Ok((sources, file))
}

/// The overrides from outside the file: `REVENANT_*__*` variables, then `--set` flags.
pub fn overrides_from(sets: &[String]) -> Result<Vec<layers::Override>, Diagnostics> {
    let mut all = layers::from_environment(env_vars());
    all.extend(layers::from_flags(sets)?);
    Ok(all)
}

pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, Diagnostics> {
    let (src, file) = read(path, &overrides_from(&overrides.sets)?)?;
    let file_name = &src;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut problems = Vec::new();

    let listen = match (&overrides.listen, &file.listen) {
        (Some(addr), _) => Some(*addr),
        (None, Some(s)) => s
            .parse::<SocketAddr>()
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    file_name.at(s.span()),
                    format!("`listen` must be an address like 127.0.0.1:8080: {e}"),
                ))
            })
            .ok(),
        (None, None) => Some(DEFAULT_LISTEN.parse().expect("valid default")),
    };
    let admin_listen = match (&overrides.admin_listen, &file.admin_listen) {
        (Some(addr), _) => Some(*addr),
        (None, Some(s)) => s
            .parse::<SocketAddr>()
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    file_name.at(s.span()),
                    format!("`admin_listen` must be an address like 127.0.0.1:8081: {e}"),
                ))
            })
            .ok(),
        (None, None) => None,
    };
    let data = match (&overrides.data, &file.data) {
        (Some(d), _) => d.clone(),
        (None, Some(d)) => base.join(d.as_str()),
        (None, None) => base.join(DEFAULT_DATA),
    };
    if file.components.is_empty() {
        problems.push(Diagnostic::new(
            Location {
                file: file_name.file().to_string(),
                line: 1,
                column: 1,
            },
            "`components` names no component",
        ));
    }
    let components: Vec<(String, PathBuf)> = file
        .components
        .iter()
        .map(|(name, p)| (name.clone(), base.join(p.as_str())))
        .collect();
    for ((name, resolved), (_, spanned)) in components.iter().zip(&file.components) {
        if !resolved.is_file() {
            problems.push(Diagnostic::new(
                file_name.at(spanned.span()),
                format!(
                    "component `{name}`: no file at {} (build it first: see README.md)",
                    resolved.display()
                ),
            ));
        }
    }
    let mut limits = WorkerLimits::default();
    let l = &file.limits;
    if let Some(ms) = limit(
        file_name,
        &l.invocation_timeout_ms,
        "invocation_timeout_ms",
        10..=3_600_000,
        &mut problems,
    ) {
        limits.invocation_timeout = Duration::from_millis(ms);
    }
    if let Some(mb) = limit(
        file_name,
        &l.guest_memory_mb,
        "guest_memory_mb",
        1..=4_096,
        &mut problems,
    ) {
        limits.guest_memory_bytes = (mb as usize) * 1024 * 1024;
    }
    if let Some(ms) = limit(
        file_name,
        &l.worker_idle_timeout_ms,
        "worker_idle_timeout_ms",
        10..=86_400_000,
        &mut problems,
    ) {
        limits.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = limit(
        file_name,
        &l.snapshot_every_invocations,
        "snapshot_every_invocations",
        0..=10_000_000,
        &mut problems,
    ) {
        limits.snapshot_every = n;
    }
    if let Some(t) = &l.truncate_oplog_at_snapshot {
        limits.truncate_at_snapshot = **t;
    }
    if let Some(c) = &l.check_read_only {
        limits.check_read_only = **c;
    }
    let mut server = revenant_gateway::ServerLimits::default();
    if let Some(ms) = limit(
        file_name,
        &l.header_read_timeout_ms,
        "header_read_timeout_ms",
        10..=600_000,
        &mut problems,
    ) {
        server.header_read_timeout = Duration::from_millis(ms);
    }
    let store_free_min_bytes = limit(
        file_name,
        &l.store_free_min_mb,
        "store_free_min_mb",
        0..=1_048_576,
        &mut problems,
    )
    .map_or(
        revenant_storage::limits::DISK_FREE_MIN_BYTES_DEFAULT,
        |mb| mb * 1024 * 1024,
    );
    let mut outgoing_http = OutgoingHttpConfig::default();
    let o = &file.outgoing_http;
    for rule in &o.allow {
        match AllowRule::parse(rule) {
            Ok(r) => outgoing_http.allow.push(r),
            Err(e) => problems.push(Diagnostic::new(
                file_name.at(rule.span()),
                format!("outgoing_http.allow: {e}"),
            )),
        }
    }
    for ca in &o.ca_files {
        let path = base.join(ca.as_str());
        if !path.is_file() {
            problems.push(Diagnostic::new(
                file_name.at(ca.span()),
                format!("outgoing_http.ca_files: no file at {}", path.display()),
            ));
        }
        outgoing_http.ca_files.push(path);
    }
    for (value, name, field) in [
        (
            &o.connect_timeout_ms,
            "connect_timeout_ms",
            &mut outgoing_http.connect_timeout,
        ),
        (
            &o.first_byte_timeout_ms,
            "first_byte_timeout_ms",
            &mut outgoing_http.first_byte_timeout,
        ),
        (
            &o.request_timeout_ms,
            "request_timeout_ms",
            &mut outgoing_http.request_timeout,
        ),
    ] {
        if let Some(ms) = limit(file_name, value, name, 10..=600_000, &mut problems) {
            *field = Duration::from_millis(ms);
        }
    }
    for (value, name, field) in [
        (
            &o.concurrent_per_worker,
            "concurrent_per_worker",
            &mut outgoing_http.per_worker_max,
        ),
        (
            &o.concurrent_max,
            "concurrent_max",
            &mut outgoing_http.total_max,
        ),
    ] {
        if let Some(n) = limit(file_name, value, name, 1..=100_000, &mut problems) {
            *field = n as usize;
        }
    }
    let map_count = max_map_count();
    let beyond = instances_beyond_cap(outgoing_http.total_max);
    let (ceiling, bound) = live_workers_ceiling(map_count, limits.guest_memory_bytes, beyond);
    limits.active_workers_max = ACTIVE_WORKERS_DEFAULT.min(ceiling);
    if let (Some(n), Some(asked)) = (
        limit(
            file_name,
            &l.active_workers_max,
            "active_workers_max",
            1..=ACTIVE_WORKERS_CEILING as u64,
            &mut problems,
        ),
        &l.active_workers_max,
    ) {
        let n = n as usize;
        if n > ceiling {
            let why = match bound {
                CeilingBound::Mappings => {
                    let needed = mappings_needed(n + beyond);
                    format!(
                        "needs vm.max_map_count of at least {needed} (it is {map_count}: this \
                         machine allows {ceiling}): the instance pool keeps a slot for each live \
                         worker and {beyond} more (ephemeral calls, workers waiting on outgoing \
                         requests, workers leaving, time travel), each holding up to {per} memory mappings; \
                         raise it with `sysctl -w vm.max_map_count={needed}`, or ask for fewer",
                        per = MAPPINGS_PER_POOL_SLOT + MAPPINGS_PER_INSTANCE
                    )
                }
                CeilingBound::AddressSpace => format!(
                    "needs more address space than guests may reserve ({} TiB): each slot of \
                     the instance pool (one per live worker and {beyond} more) reserves {} MiB \
                     (guest_memory_mb, its guard regions, tables and stack), which allows \
                     {ceiling}; lower guest_memory_mb, or ask for fewer",
                    GUEST_ADDRESS_SPACE_BYTES >> 40,
                    guest_reservation_bytes(limits.guest_memory_bytes) >> 20
                ),
                CeilingBound::Table => format!("is past the most, {ceiling}"),
            };
            problems.push(Diagnostic::new(
                file_name.at(asked.span()),
                format!("`active_workers_max` {n} {why}"),
            ));
        } else {
            limits.active_workers_max = n;
        }
    }
    let admin_token = match (env_var("REVENANT_ADMIN_TOKEN"), &file.admin.token) {
        (Some(t), _) => Some(t),
        (None, Some(t)) => Some(t.to_string()),
        (None, None) => None,
    };
    if let Some(t) = &admin_token
        && t.len() < revenant_gateway::admin::TOKEN_CHARS_MIN
    {
        let at = match &file.admin.token {
            Some(s) => file_name.at(s.span()),
            None => Location {
                file: "REVENANT_ADMIN_TOKEN".into(),
                line: 1,
                column: 1,
            },
        };
        problems.push(Diagnostic::new(
            at,
            format!(
                "the admin token must be at least {} characters",
                revenant_gateway::admin::TOKEN_CHARS_MIN
            ),
        ));
    }
    let admin_hosts = file
        .admin
        .hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let store = match (&overrides.store, &file.store) {
        (Some(s), _) => StoreChoice::parse(s)
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    Location {
                        file: "--store (or REVENANT_STORE)".into(),
                        line: 1,
                        column: 1,
                    },
                    e,
                ))
            })
            .ok(),
        (None, Some(s)) => StoreChoice::parse(s)
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    file_name.at(s.span()),
                    format!("`store`: {e}"),
                ))
            })
            .ok(),
        (None, None) => Some(StoreChoice::Embedded),
    };
    let cluster = cluster_config(file_name, &file.cluster, overrides, &mut problems);
    let telemetry = telemetry_config(file_name, &file.telemetry, &mut problems);
    let spec = ApiSpec {
        auth: file.auth.clone(),
        routes: file.routes.clone(),
    };
    let api = revenant_api_definitions::compile(
        file_name.file(),
        &spec,
        |c| file.components.contains_key(c),
        &env_var,
    );
    let api = match api {
        Ok(mut api) => {
            api.base_dir = base.to_path_buf();
            Some(api)
        }
        Err(Diagnostics(mut ds)) => {
            problems.append(&mut ds);
            None
        }
    };
    match (listen, api, store, cluster) {
        (Some(listen), Some(api), Some(store), Some(cluster)) if problems.is_empty() => {
            Ok(Config {
                data,
                listen,
                admin_listen,
                components,
                limits,
                server,
                api,
                outgoing_http,
                admin_token,
                admin_hosts,
                store,
                store_free_min_bytes,
                cluster,
                telemetry,
            })
        }
        _ => Err(Diagnostics(problems)),
    }
}

fn cluster_config(
    file_name: &Sources,
    c: &ClusterFile,
    overrides: &Overrides,
    problems: &mut Vec<Diagnostic>,
) -> Option<ClusterConfig> {
    use revenant_cluster::limits::{
        LEASE_DEFAULT, LEASE_MAX, LEASE_MIN, SHARDS_DEFAULT, SHARDS_MAX,
    };
    let before = problems.len();
    let listen = match (&overrides.cluster_listen, &c.listen) {
        (Some(a), _) => Some(*a),
        (None, Some(s)) => s
            .parse::<SocketAddr>()
            .map_err(|e| {
                problems.push(Diagnostic::new(
                    file_name.at(s.span()),
                    format!("`cluster.listen` must be an address like 127.0.0.1:7001: {e}"),
                ))
            })
            .ok(),
        (None, None) => Some("127.0.0.1:0".parse().expect("valid default")),
    };
    let advertise = c.advertise.as_ref().and_then(|a| {
        let ok = (a.starts_with("http://") || a.starts_with("https://"))
            && a.parse::<http::Uri>().is_ok();
        if !ok {
            problems.push(Diagnostic::new(
                file_name.at(a.span()),
                "`cluster.advertise` must be a URL like http://10.0.0.5:7001",
            ));
        }
        ok.then(|| a.trim_end_matches('/').to_string())
    });
    let secret = match (env_var("REVENANT_CLUSTER_SECRET"), &c.secret) {
        (Some(s), _) => Some(s),
        (None, Some(s)) => Some(s.to_string()),
        (None, None) => None,
    };
    if let Some(s) = &secret
        && (s.len() < CLUSTER_SECRET_CHARS_MIN || http::HeaderValue::from_str(s).is_err())
    {
        let at = match &c.secret {
            Some(s) => file_name.at(s.span()),
            None => Location {
                file: "REVENANT_CLUSTER_SECRET".into(),
                line: 1,
                column: 1,
            },
        };
        problems.push(Diagnostic::new(
            at,
            format!(
                "the cluster secret must be at least {CLUSTER_SECRET_CHARS_MIN} visible ASCII \
                 characters"
            ),
        ));
    }
    let node_id = match (&overrides.node_id, &c.node_id) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(n)) => Some(n.to_string()),
        (None, None) => None,
    };
    if let Some(n) = &node_id
        && (n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.'))
    {
        let at = match &c.node_id {
            Some(s) if overrides.node_id.is_none() => file_name.at(s.span()),
            _ => Location {
                file: "--node-id (or REVENANT_NODE_ID)".into(),
                line: 1,
                column: 1,
            },
        };
        problems.push(Diagnostic::new(
            at,
            "a node id has 1 to 64 letters, digits, `-`, `_` or `.`",
        ));
    }
    let shards = limit(
        file_name,
        &c.shards,
        "cluster.shards",
        1..=u64::from(SHARDS_MAX),
        problems,
    )
    .map_or(SHARDS_DEFAULT, |n| n as u32);
    let lease = limit(
        file_name,
        &c.lease_ms,
        "cluster.lease_ms",
        LEASE_MIN.as_millis() as u64..=LEASE_MAX.as_millis() as u64,
        problems,
    )
    .map_or(LEASE_DEFAULT, Duration::from_millis);
    match listen {
        Some(listen) if problems.len() == before => Some(ClusterConfig {
            node_id,
            listen,
            advertise,
            secret,
            shards,
            lease,
        }),
        _ => None,
    }
}

fn telemetry_config(
    file_name: &Sources,
    t: &TelemetryFile,
    problems: &mut Vec<Diagnostic>,
) -> Option<TelemetryConfig> {
    let endpoint = t.otlp_endpoint.as_ref()?;
    let before = problems.len();
    if !cfg!(feature = "otlp") {
        problems.push(Diagnostic::new(
            file_name.at(endpoint.span()),
            "`telemetry.otlp_endpoint`: this build has no OTLP exporter; build it with the \
             cargo feature `otlp` (on by default), or unset the key",
        ));
        return None;
    }
    let uri = match endpoint.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            if u.path() == "/" {
                // A collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is given.
                format!("{}/v1/traces", endpoint.trim_end_matches('/'))
                    .parse()
                    .ok()
            } else {
                Some(u)
            }
        }
        _ => None,
    };
    if uri.is_none() {
        problems.push(Diagnostic::new(
            file_name.at(endpoint.span()),
            "`telemetry.otlp_endpoint` must be an http:// or https:// URL, like \
             http://127.0.0.1:4318 (a collector's OTLP/HTTP port)",
        ));
    }
    let mut headers = Vec::new();
    for (name, value) in &t.headers {
        match (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => problems.push(Diagnostic::new(
                file_name.at(value.span()),
                format!("`telemetry.headers`: `{name}` is not a valid header name and value"),
            )),
        }
    }
    let service_name = t
        .service_name
        .as_ref()
        .map_or_else(|| "revenant".to_string(), |s| s.to_string());
    let sample_ratio = match &t.sample_ratio {
        Some(r) if !(0.0..=1.0).contains(&**r) => {
            problems.push(Diagnostic::new(
                file_name.at(r.span()),
                "`telemetry.sample_ratio` must be between 0 and 1",
            ));
            1.0
        }
        Some(r) => **r,
        None => 1.0,
    };
    (problems.len() == before).then(|| TelemetryConfig {
        otlp_endpoint: uri.expect("checked above"),
        headers,
        service_name,
        sample_ratio,
    })
}

/// The tree the layers make of `path` (defaults, file, environment, `--set`), as JSON, with
/// the admin token and cluster secret shown only as set or not: `revenant config show`.
/// Routes and auth are the API definition's, shown by `revenant check`.
pub fn show(path: &Path, sets: &[String]) -> Result<serde_json::Value, Diagnostics> {
    let (_, file) = read(path, &overrides_from(sets)?)?;
    let mut tree = serde_json::to_value(&file).expect("the tree serializes");
    for (section, key) in [("admin", "token"), ("cluster", "secret")] {
        if let Some(v) = tree.get_mut(section).and_then(|s| s.get_mut(key))
            && !v.is_null()
        {
            *v = serde_json::Value::String("(set)".into());
        }
    }
    // Export headers carry credentials as often as not.
    if let Some(serde_json::Value::Object(headers)) =
        tree.get_mut("telemetry").and_then(|t| t.get_mut("headers"))
    {
        for v in headers.values_mut() {
            *v = serde_json::Value::String("(set)".into());
        }
    }
    Ok(tree)
}

/// `revenant config default`.
pub fn default_text() -> String {
    defaults::text()
}

/// What the CLI's admin commands need of a project file: where its data is (for the token
/// file), its admin address and token. Only the file's syntax is checked, not its routes.
pub struct AdminView {
    pub data: PathBuf,
    pub admin_listen: Option<String>,
    pub token: Option<String>,
}

pub fn admin_view(path: &Path) -> Result<AdminView, Diagnostics> {
    let (_, file) = read(path, &overrides_from(&[])?)?;
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(AdminView {
        data: base.join(
            file.data
                .as_deref()
                .map(String::as_str)
                .unwrap_or(DEFAULT_DATA),
        ),
        admin_listen: file.admin_listen.map(|a| a.to_string()),
        token: file.admin.token.map(|t| t.to_string()),
    })
}

/// The process environment, read here for the whole server (`clippy.toml`): the definitions'
/// `secret_env` keys, the project file's and the deployed ones, are looked up through it.
#[allow(clippy::disallowed_methods)]
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Every variable of the process's environment, for the configuration's layer of them.
#[allow(clippy::disallowed_methods)]
fn env_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use marked_yaml::Node;

    /// A project folder with one (empty) component file and `revenant.yaml` holding `text`.
    fn project(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.wasm"), b"").unwrap();
        let path = dir.path().join("revenant.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn loaded(text: &str) -> Config {
        let (_dir, path) = project(text);
        load(&path, &Overrides::default()).unwrap_or_else(|d| panic!("{d}"))
    }

    /// What a loaded configuration resolves to, but for the project's own folder.
    fn resolved(c: &Config) -> String {
        format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {} {:?}",
            c.listen,
            c.admin_listen,
            c.limits,
            c.server,
            c.outgoing_http,
            c.admin_token,
            c.admin_hosts,
            c.store,
            c.data.ends_with("data"),
            (
                &c.cluster.node_id,
                c.cluster.listen,
                &c.cluster.advertise,
                &c.cluster.secret,
                c.cluster.shards,
                c.cluster.lease
            ),
        )
    }

    /// `revenant config default`, read back as a project file, is the configuration of a file
    /// that sets nothing, and that is the crates' own defaults: the printed values are the
    /// ones the server runs with.
    #[test]
    fn the_default_tree_reads_back_as_the_defaults() {
        let printed = defaults::text().replace("components: {}", "components:\n  c: c.wasm");
        let from_printed = loaded(&printed);
        let from_nothing = loaded("components:\n  c: c.wasm\n");
        assert_eq!(resolved(&from_printed), resolved(&from_nothing));
        let machine = live_workers_ceiling(
            max_map_count(),
            GUEST_MEMORY_BYTES_MAX_FOR_TEST,
            instances_beyond_cap(revenant_runtime::limits::HTTP_REQUESTS_MAX),
        )
        .0;
        let limits = WorkerLimits {
            active_workers_max: ACTIVE_WORKERS_DEFAULT.min(machine),
            ..WorkerLimits::default()
        };
        assert_eq!(format!("{:?}", from_nothing.limits), format!("{limits:?}"));
        assert_eq!(
            format!("{:?}", from_nothing.outgoing_http),
            format!("{:?}", OutgoingHttpConfig::default())
        );
        assert_eq!(
            format!("{:?}", from_nothing.server),
            format!("{:?}", revenant_gateway::ServerLimits::default())
        );
        assert_eq!(from_nothing.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(from_nothing.store, StoreChoice::Embedded);
        assert_eq!(
            from_nothing.cluster.shards,
            revenant_cluster::limits::SHARDS_DEFAULT
        );
        assert_eq!(
            from_nothing.cluster.lease,
            revenant_cluster::limits::LEASE_DEFAULT
        );
    }

    const GUEST_MEMORY_BYTES_MAX_FOR_TEST: usize = revenant_runtime::limits::GUEST_MEMORY_BYTES_MAX;

    /// Every key of the typed tree is printed, each under a comment of its own.
    #[test]
    fn the_default_tree_has_every_key_with_a_comment() {
        let text = defaults::text();
        // The typed tree's keys, as the tree serializes (unset keys as null).
        let (_dir, path) = project("");
        let (_, file) = read(&path, &[]).unwrap();
        let mut typed = Vec::new();
        json_keys(&serde_json::to_value(&file).unwrap(), "", &mut typed);
        typed.extend(["auth".to_string(), "routes".to_string()]);
        typed.sort();
        // The printed keys, with the line each is on.
        let node = marked_yaml::parse_yaml(0, &text).unwrap();
        let mut printed = Vec::new();
        yaml_keys(&node, "", &mut printed);
        let mut names: Vec<String> = printed
            .iter()
            .filter(|(k, _)| {
                !printed
                    .iter()
                    .any(|(other, _)| other.starts_with(&format!("{k}.")))
            })
            .map(|(k, _)| k.clone())
            .collect();
        names.sort();
        assert_eq!(
            names, typed,
            "the printed tree and the typed tree have the same keys"
        );
        let lines: Vec<&str> = text.lines().collect();
        for (key, line) in &printed {
            let above = lines[line - 2].trim_start();
            assert!(
                above.starts_with('#'),
                "`{key}` (line {line}) has no comment above it"
            );
        }
    }

    fn json_keys(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = v {
            for (k, v) in map {
                let path = format!("{prefix}{k}");
                // `components` and `telemetry.headers` are maps of the user's names, not keys
                // of the tree.
                if v.is_object() && k != "components" && path != "telemetry.headers" {
                    json_keys(v, &format!("{path}."), out);
                } else {
                    out.push(path);
                }
            }
        }
    }

    fn yaml_keys(node: &Node, prefix: &str, out: &mut Vec<(String, usize)>) {
        if let Node::Mapping(map) = node {
            for (k, v) in map.iter() {
                let path = format!("{prefix}{}", k.as_str());
                let line = k.span().start().map_or(0, |m| m.line());
                if matches!(v, Node::Mapping(m) if !m.is_empty()) {
                    out.push((path.clone(), line));
                    yaml_keys(v, &format!("{path}."), out);
                } else {
                    out.push((path, line));
                }
            }
        }
    }

    /// A key the tree does not have is refused where it is: the file's line and column, or the
    /// variable that set it.
    #[test]
    fn an_unknown_key_is_refused_with_its_location() {
        let (_dir, path) = project("components:\n  c: c.wasm\nlimits:\n  invocation_timeout: 5\n");
        let e = load(&path, &Overrides::default()).unwrap_err().to_string();
        assert!(
            e.contains("revenant.yaml:4:3") && e.contains("invocation_timeout"),
            "{e}"
        );
        let extra = layers::from_environment([(
            "REVENANT_LIMITS__INVOCATION_TIMEOUT".to_string(),
            "5".to_string(),
        )]);
        let (_dir, path) = project("components:\n  c: c.wasm\n");
        let e = read(&path, &extra).unwrap_err().to_string();
        assert!(
            e.contains("environment variable REVENANT_LIMITS__INVOCATION_TIMEOUT"),
            "{e}"
        );
        let e = read(&path, &layers::from_flags(&["limit.x=1".into()]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--set limit.x=1") && e.contains("limit"), "{e}");
    }

    /// The file over the defaults, a variable over the file, a flag over both; `null` unsets.
    #[test]
    fn a_variable_overrides_the_file_and_a_flag_overrides_both() {
        let (_dir, path) = project(
            "components:\n  c: c.wasm\nadmin_listen: 127.0.0.1:9000\nlimits:\n  invocation_timeout_ms: 1000\n",
        );
        let timeout = |extra: &[layers::Override]| {
            let (_, file) = read(&path, extra).unwrap();
            (
                file.limits.invocation_timeout_ms.map(|v| *v),
                file.admin_listen.map(|a| a.to_string()),
            )
        };
        assert_eq!(timeout(&[]), (Some(1000), Some("127.0.0.1:9000".into())));
        let env = layers::from_environment([(
            "REVENANT_LIMITS__INVOCATION_TIMEOUT_MS".to_string(),
            "2000".to_string(),
        )]);
        assert_eq!(timeout(&env).0, Some(2000));
        let mut both = env;
        both.extend(
            layers::from_flags(&[
                "limits.invocation_timeout_ms=3000".into(),
                "admin_listen=null".into(),
            ])
            .unwrap(),
        );
        assert_eq!(timeout(&both), (Some(3000), None));
        // A bad value is reported as the layer's that set it.
        let e = load_with(&path, &["limits.invocation_timeout_ms=5".into()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("--set limits.invocation_timeout_ms=5"),
            "{e}"
        );
    }

    fn load_with(path: &Path, sets: &[String]) -> Result<Config, Diagnostics> {
        load(
            path,
            &Overrides {
                sets: sets.to_vec(),
                ..Overrides::default()
            },
        )
    }
}
