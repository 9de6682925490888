//! The configuration tree with every key at its default, one comment per key: what
//! `revenant config default` prints, and the first layer of every load (`layers.rs`), so that
//! the defaults it shows are the ones the server runs with. Values come from the constants in
//! the crates that own them; `null` means unset, with the behaviour the comment gives.

use revenant_runtime::limits::{
    GUEST_MEMORY_BYTES_MAX, HTTP_CONNECT_TIMEOUT, HTTP_FIRST_BYTE_TIMEOUT, HTTP_REQUEST_TIMEOUT,
    HTTP_REQUESTS_MAX, HTTP_REQUESTS_PER_WORKER_MAX, INVOCATION_TIMEOUT,
    SNAPSHOT_EVERY_INVOCATIONS, WORKER_IDLE_TIMEOUT,
};

pub fn text() -> String {
    use revenant_cluster::limits::{LEASE_DEFAULT, SHARDS_DEFAULT};
    let ms = |d: std::time::Duration| d.as_millis();
    format!(
        "\
# Revenant's configuration: every key with its default. Layers, each over the one before:
# these defaults, the project file (--config, REVENANT_CONFIG), REVENANT_* environment
# variables (nested keys joined with __: REVENANT_LIMITS__INVOCATION_TIMEOUT_MS=5000), then
# flags (--set limits.invocation_timeout_ms=5000, and --listen, --data, ... which their own
# variables REVENANT_LISTEN, REVENANT_DATA, ... also set). Relative paths are relative to the
# project file's folder.

# Where the store, the admin token and compiled components are kept.
data: {data}
# The public listener's address (port 0: any free port). --listen, REVENANT_LISTEN.
listen: {listen}
# The admin API's address; null: no admin API. Keep it off public networks. --admin-listen.
admin_listen: null
# Where workers' logs live: embedded (one node, under data/store), postgres://user@host:port/db
# or foundationdb[:<cluster file>] (several nodes; see cluster). --store, REVENANT_STORE.
store: embedded
# Components by name: the path of each .wasm file.
components: {{}}
# JWT issuers routes may require (docs/api-definitions.md); from the project file only.
auth: {{}}
# The routes: method, path, component, worker, call, args (docs/api-definitions.md); from the
# project file only.
routes: []
# Bounds on workers and requests (the others are constants, docs/performance.md).
limits:
  # Milliseconds one call may run before it is stopped and recorded as failed.
  invocation_timeout_ms: {invocation}
  # Linear memory one worker's guest may grow to, in MiB.
  guest_memory_mb: {memory}
  # Milliseconds a worker waits for a call before it leaves memory (its log stays).
  worker_idle_timeout_ms: {idle}
  # Workers held in memory at once; null: as many as this machine's vm.max_map_count and
  # address space allow, at most {active} (docs/performance.md).
  active_workers_max: null
  # Completed calls between snapshots, for components that export revenant:durable/snapshot;
  # 0: never.
  snapshot_every_invocations: {snapshot}
  # At each snapshot, remove the log before the previous one (saves space; time travel
  # then starts there, and retries of calls older than that answer 410 outcome_truncated).
  truncate_oplog_at_snapshot: false
  # For tests: fail a read-only call that changes its worker's state.
  check_read_only: false
  # Milliseconds a client may take to send a request's headers.
  header_read_timeout_ms: {header}
  # MiB of free disk space the embedded store keeps: below it writes are refused
  # (507 storage_full) and reads go on, until space is freed.
  store_free_min_mb: {free_min}
# What guests' outgoing HTTP requests may reach, and their bounds (docs/security.md).
outgoing_http:
  # Hosts, addresses or CIDRs (each with an optional :port) guests may reach besides the
  # public internet: loopback, private and link-local addresses are refused otherwise.
  allow: []
  # PEM files of certificate authorities trusted besides the system's (also for JWKS URLs).
  ca_files: []
  # Milliseconds to connect to an upstream.
  connect_timeout_ms: {connect}
  # Milliseconds from sending a request to its response's first byte.
  first_byte_timeout_ms: {first_byte}
  # Milliseconds a whole outgoing request may take.
  request_timeout_ms: {request}
  # Outgoing requests one worker may have in flight.
  concurrent_per_worker: {per_worker}
  # Outgoing requests the node may have in flight.
  concurrent_max: {total}
# The admin API's credentials and the names it answers to.
admin:
  # The admin API's bearer token (REVENANT_ADMIN_TOKEN); null: generated into
  # data/admin.token at the first start.
  token: null
  # Host header values the admin API answers besides its own address and localhost:<port>.
  hosts: []
# A node of several sharing one store (docs/cluster.md).
cluster:
  # This node's id; null: generated once into data/node-id. --node-id, REVENANT_NODE_ID.
  node_id: null
  # The internal listener other nodes forward calls to. --cluster-listen.
  listen: 127.0.0.1:0
  # The URL peers reach the internal listener at; null: http://<listen>.
  advertise: null
  # The secret every member presents (REVENANT_CLUSTER_SECRET); needed on a shared store.
  secret: null
  # Shards of a new store (fixed at its first use).
  shards: {shards}
  # Milliseconds a node's lease on a shard lasts without renewal.
  lease_ms: {lease}
# Exporting the request and invocation spans to an OpenTelemetry collector (docs/operations.md).
telemetry:
  # The collector's OTLP/HTTP URL (protobuf), like http://127.0.0.1:4318 (/v1/traces is added
  # to a URL without a path); null: no export.
  otlp_endpoint: null
  # Headers sent with every export, e.g. {{authorization: \"Bearer ...\"}}.
  headers: {{}}
  # The service.name the spans are exported under.
  service_name: revenant
  # Share (0 to 1) of the traces this node starts that are exported; a caller's traceparent
  # decides for its own trace by its sampled flag.
  sample_ratio: 1.0
",
        data = super::DEFAULT_DATA,
        active = revenant_runtime::limits::ACTIVE_WORKERS_DEFAULT,
        listen = super::DEFAULT_LISTEN,
        invocation = ms(INVOCATION_TIMEOUT),
        memory = GUEST_MEMORY_BYTES_MAX / (1024 * 1024),
        idle = ms(WORKER_IDLE_TIMEOUT),
        snapshot = SNAPSHOT_EVERY_INVOCATIONS,
        header = ms(revenant_gateway::limits::HEADER_READ_TIMEOUT),
        free_min = revenant_storage::limits::DISK_FREE_MIN_BYTES_DEFAULT >> 20,
        connect = ms(HTTP_CONNECT_TIMEOUT),
        first_byte = ms(HTTP_FIRST_BYTE_TIMEOUT),
        request = ms(HTTP_REQUEST_TIMEOUT),
        per_worker = HTTP_REQUESTS_PER_WORKER_MAX,
        total = HTTP_REQUESTS_MAX,
        shards = SHARDS_DEFAULT,
        lease = ms(LEASE_DEFAULT),
    )
}
