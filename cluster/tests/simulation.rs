//! Deterministic simulation of a cluster: N nodes running the real membership, lease, routing
//! and append code (`revenant_cluster`, `storage::leases`, `storage::kv_oplog`) over the
//! in-memory FoundationDB model, on tokio's paused clock (a single thread, so every seed runs
//! the same way), with a simulated network and a fault injector: node crashes and restarts,
//! pauses past a lease (with a call in progress), lost and delayed forwards, lost answers,
//! clock skew, and `commit_unknown_result` from the store.
//!
//! A worker is a counter: a call appends its start and its result (the count after it) under
//! its idempotency key, behind the same checks the WebAssembly runtime makes (it serves only
//! under the fence its placement gives, rebuilds its state from the log when the fence
//! changes, answers a repeated key from the log).
//!
//! After each run it checks: no acknowledged call lost, none applied twice, every append made
//! under the shard's current lease (at most one node appending to a shard at any instant), and
//! every worker's log the one a single node would have written (results 1, 2, 3, ... in log
//! order, each acknowledged call answered with its result there). A failing seed prints itself
//! and reproduces with `SIM_SEED=<seed>`.

// The simulation reads its environment (`SIM_SEEDS`, `SIM_SEED`): `clippy.toml`.
#![allow(clippy::disallowed_methods)]

use revenant_cluster::{Attempt, Clock, Hops, Membership, RouteError, Settings, route};
use revenant_storage::kv::model::{Faults, FdbModel};
use revenant_storage::kv_oplog::KvOplog;
use revenant_storage::{
    Append, Fence, OplogEntry, OplogStore, SequencedEntry, StorageError, Value, WorkerId,
    WorkerMetadata, leases,
};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const NODES: usize = 3;
const USERS: usize = 12;
const CLIENTS: usize = 6;
const SHARDS: u32 = 8;
const LEASE: Duration = Duration::from_millis(1_000);
/// Virtual time each run lasts before the final checks.
const RUN_FOR: Duration = Duration::from_secs(12);
const COMPONENT: &str = "counter";

/// A node's wall clock: tokio's (virtual) time, skewed.
struct SimClock {
    start: Instant,
    skew_ms: i64,
}

impl Clock for SimClock {
    fn wall_ms(&self) -> u64 {
        let elapsed = self.start.elapsed().as_millis() as i64;
        (1_000_000_000 + elapsed + self.skew_ms) as u64
    }
}

/// A worker's state in one node's memory, with the fence it was built under.
#[derive(Clone, Copy)]
struct Cached {
    fence: Fence,
    count: u64,
    last_index: u64,
}

struct Node {
    id: String,
    membership: RefCell<Option<Arc<Membership<FdbModel>>>>,
    /// Bumped at each crash: work of an earlier incarnation stops at its next step.
    generation: Cell<u64>,
    alive: Cell<bool>,
    /// Paused (SIGSTOP) until then.
    paused_until: Cell<Option<Instant>>,
    workers: RefCell<BTreeMap<String, Cached>>,
    skew_ms: i64,
}

#[derive(Clone, Copy, Debug)]
struct Knobs {
    /// The deliberately broken build: appends carry no fence.
    break_fence: bool,
}

struct Sim {
    seed: u64,
    knobs: Knobs,
    kv: Arc<FdbModel>,
    oplog: KvOplog<Arc<FdbModel>>,
    nodes: Vec<Node>,
    start: Instant,
    trace: RefCell<Vec<String>>,
    violations: RefCell<Vec<String>>,
    /// Acknowledged calls: (user, key) -> the result the client got.
    acked: RefCell<BTreeMap<(String, String), u64>>,
    rng: RefCell<fastrand::Rng>,
}

impl Sim {
    fn log(&self, line: String) {
        let t = self.start.elapsed().as_millis();
        self.trace.borrow_mut().push(format!("{t:>6} {line}"));
    }

    fn chance(&self, per_mille: u32) -> bool {
        self.rng.borrow_mut().u32(0..1000) < per_mille
    }

    fn settings(&self, n: usize) -> Settings {
        Settings {
            node: self.nodes[n].id.clone(),
            address: format!("sim://{}", self.nodes[n].id),
            shards: SHARDS,
            lease: LEASE,
        }
    }

    async fn boot(&self, n: usize) {
        let clock = Arc::new(SimClock {
            start: self.start,
            skew_ms: self.nodes[n].skew_ms,
        });
        let m = Membership::join(self.kv.clone(), self.settings(n), clock)
            .await
            .expect("the model never fails a join's one read");
        *self.nodes[n].membership.borrow_mut() = Some(m);
        self.nodes[n].alive.set(true);
        self.nodes[n].workers.borrow_mut().clear();
    }

    fn membership(&self, n: usize) -> Option<Arc<Membership<FdbModel>>> {
        if !self.nodes[n].alive.get() {
            return None;
        }
        self.nodes[n].membership.borrow().clone()
    }

    /// Waits while node `n` is paused; `false` if it crashed meanwhile (or before).
    async fn running(&self, n: usize, generation: u64) -> bool {
        while let Some(until) = self.nodes[n].paused_until.get() {
            if Instant::now() >= until {
                self.nodes[n].paused_until.set(None);
                break;
            }
            tokio::time::sleep_until(until).await;
        }
        self.nodes[n].alive.get() && self.nodes[n].generation.get() == generation
    }

    /// One node's membership loop: a tick every renewal interval while it lives.
    async fn ticking(self: Rc<Self>, n: usize, generation: u64) {
        loop {
            tokio::time::sleep(LEASE / revenant_cluster::limits::RENEWALS_PER_LEASE).await;
            if !self.running(n, generation).await {
                return;
            }
            let Some(m) = self.membership(n) else { return };
            match m.tick().await {
                Ok(changes) => {
                    if !changes.lost.is_empty() || !changes.gained.is_empty() {
                        self.log(format!(
                            "{} lost {:?} gained {:?}",
                            self.nodes[n].id, changes.lost, changes.gained
                        ));
                    }
                    // Drops the lost shards' workers from memory, as the server does.
                    let mut workers = self.nodes[n].workers.borrow_mut();
                    workers.retain(|_, c| !changes.lost.contains(&c.fence.shard));
                }
                Err(e) => self.log(format!("{} tick failed: {e}", self.nodes[n].id)),
            }
        }
    }

    fn worker(user: &str) -> WorkerId {
        WorkerId::new(COMPONENT, format!("user-{user}"))
    }

    /// Rebuilds a worker's count from its log.
    async fn rebuild(&self, worker: &WorkerId) -> Result<(u64, u64), StorageError> {
        let last = self
            .oplog
            .metadata(worker)
            .await?
            .map_or(0, |m| m.last_index);
        let entries = read_all(&self.oplog, worker).await?;
        let count = entries
            .iter()
            .filter(|e| matches!(e.entry, OplogEntry::InvocationCompleted { .. }))
            .count() as u64;
        Ok((count, last))
    }

    /// The call served on node `n` under `fence`: what the runtime does with a durable call.
    async fn local(
        &self,
        n: usize,
        user: &str,
        key: &str,
        fence: Fence,
    ) -> Attempt<Result<u64, String>> {
        let node = &self.nodes[n];
        let generation = node.generation.get();
        let Some(m) = self.membership(n) else {
            return Attempt::Moved;
        };
        let worker = Self::worker(user);
        // The runtime's placement check.
        if m.fence(&worker) != Some(fence) {
            return Attempt::Moved;
        }
        let cached = node.workers.borrow().get(&worker.name).copied();
        let (count, last) = match cached {
            Some(c) if c.fence == fence => (c.count, c.last_index),
            _ => match self.rebuild(&worker).await {
                Ok(state) => state,
                Err(e) => return Attempt::Done(Err(e.to_string())),
            },
        };
        match self.oplog.idempotent_outcome(&worker, key).await {
            Ok(Some(seq)) => {
                return Attempt::Done(match self.oplog.read(&worker, seq, 1).await {
                    Ok(e) => result_of(&e[0].entry).ok_or_else(|| "not a result".into()),
                    Err(e) => Err(e.to_string()),
                });
            }
            Ok(None) => {}
            Err(e) => return Attempt::Done(Err(e.to_string())),
        }
        // The guest computes; a pause (SIGSTOP) may land here, with the call in progress.
        let compute = Duration::from_millis(1 + self.rng.borrow_mut().u64(0..10));
        tokio::time::sleep(compute).await;
        if !self.running(n, generation).await {
            return Attempt::Moved;
        }
        let count = count + 1;
        let append = Append {
            worker: worker.clone(),
            fence: (!self.knobs.break_fence).then_some(fence),
            entries: vec![
                SequencedEntry {
                    seq: last + 1,
                    entry: OplogEntry::InvocationStarted {
                        idempotency_key: key.to_string(),
                        function: "add".into(),
                        args: Vec::new(),
                    },
                },
                SequencedEntry {
                    seq: last + 2,
                    entry: OplogEntry::InvocationCompleted {
                        idempotency_key: key.to_string(),
                        result: vec![Value::U64(count)],
                    },
                },
            ],
            metadata: WorkerMetadata {
                component_hash: "sim".into(),
                last_index: last + 2,
                snapshot_index: 0,
            },
            idempotency: Some((key.to_string(), last + 2)),
            in_flight: None,
        };
        match self.oplog.append(append).await {
            Ok(()) => {
                // At most one node appends to a shard at any instant: the append committed
                // under the lease the store holds now (nothing ran in between).
                let current = lease_epoch(&self.kv, fence.shard).await;
                if current != Some(fence.epoch) {
                    self.violations.borrow_mut().push(format!(
                        "{} appended {key} to shard {} under epoch {} while the lease is at {current:?}",
                        node.id, fence.shard, fence.epoch
                    ));
                }
                node.workers.borrow_mut().insert(
                    worker.name.clone(),
                    Cached {
                        fence,
                        count,
                        last_index: last + 2,
                    },
                );
                self.log(format!(
                    "{} {key} -> {count} (epoch {})",
                    node.id, fence.epoch
                ));
                Attempt::Done(Ok(count))
            }
            // Nothing of the call was recorded: it may go where the worker is served now.
            Err(StorageError::Fenced { .. }) => {
                node.workers.borrow_mut().remove(&worker.name);
                self.log(format!("{} {key} fenced", node.id));
                Attempt::Moved
            }
            Err(e) => {
                node.workers.borrow_mut().remove(&worker.name);
                Attempt::Done(Err(e.to_string()))
            }
        }
    }

    fn node_at(&self, address: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| format!("sim://{}", n.id) == address)
            .expect("a known node")
    }

    /// A forwarded call, over the simulated network.
    async fn remote(&self, address: String, user: &str, key: &str) -> Attempt<Result<u64, String>> {
        let target = self.node_at(&address);
        if self.chance(30) {
            self.log(format!(
                "forward of {key} to {} lost",
                self.nodes[target].id
            ));
            return Attempt::Moved;
        }
        if self.chance(50) {
            let delay =
                Duration::from_millis(self.rng.borrow_mut().u64(1..(LEASE.as_millis() as u64)));
            tokio::time::sleep(delay).await;
        }
        let Some(m) = self.membership(target) else {
            // Connection refused.
            return Attempt::Moved;
        };
        let generation = self.nodes[target].generation.get();
        if !self.running(target, generation).await {
            return Attempt::Moved;
        }
        let answer = route(
            m.as_ref(),
            &Self::worker(user),
            Hops(1),
            |fence| self.local(target, user, key, fence),
            |_| async { unreachable!("a forwarded call is not forwarded again") },
        )
        .await;
        match answer {
            // The answer is lost on its way back: the key makes the retry safe.
            Ok(_) if self.chance(30) => {
                self.log(format!(
                    "answer of {key} from {} lost",
                    self.nodes[target].id
                ));
                Attempt::Moved
            }
            Ok(answer) => Attempt::Done(answer),
            Err(RouteError::TooManyHops) => Attempt::Moved,
            Err(e) => Attempt::Done(Err(format!("{e:?}"))),
        }
    }

    /// A client's call through node `entry`: routed, forwarded and retried as the gateway does.
    async fn call(&self, entry: usize, user: &str, key: &str) -> Result<u64, String> {
        let Some(m) = self.membership(entry) else {
            return Err("connection refused".into());
        };
        if !self
            .running(entry, self.nodes[entry].generation.get())
            .await
        {
            return Err("the node crashed".into());
        }
        let answer = route(
            m.as_ref(),
            &Self::worker(user),
            Hops(0),
            |fence| self.local(entry, user, key, fence),
            |address| self.remote(address, user, key),
        )
        .await;
        match answer {
            Ok(inner) => inner,
            Err(e) => Err(format!("{e:?}")),
        }
    }

    /// One client: calls for random users through random nodes, retrying a call with its key
    /// until it is acknowledged.
    async fn client(self: Rc<Self>, c: usize) {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ ((c as u64 + 1) * 0x9e37_79b9));
        let mut n = 0;
        while self.start.elapsed() < RUN_FOR {
            let user = format!("u{}", rng.usize(0..USERS));
            let key = format!("c{c}-{n}");
            n += 1;
            loop {
                if self.start.elapsed() >= RUN_FOR + LEASE * 4 {
                    // The call stays unacknowledged: it may or may not be in the log.
                    break;
                }
                let entry = rng.usize(0..NODES);
                match self.call(entry, &user, &key).await {
                    Ok(result) => {
                        self.log(format!(
                            "ack {user} {key} = {result} via {}",
                            self.nodes[entry].id
                        ));
                        self.acked
                            .borrow_mut()
                            .insert((user.clone(), key.clone()), result);
                        break;
                    }
                    Err(e) => {
                        self.log(format!(
                            "retry {user} {key} via {}: {e}",
                            self.nodes[entry].id
                        ));
                        tokio::time::sleep(Duration::from_millis(rng.u64(5..100))).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.u64(0..30))).await;
        }
    }

    /// Crashes, restarts and pauses nodes at random moments.
    async fn faults(self: Rc<Self>) {
        let mut rng = fastrand::Rng::with_seed(self.seed ^ 0xfa17);
        while self.start.elapsed() < RUN_FOR {
            tokio::time::sleep(Duration::from_millis(rng.u64(100..1_500))).await;
            let n = rng.usize(0..NODES);
            let alive = self.nodes.iter().filter(|n| n.alive.get()).count();
            match rng.u32(0..3) {
                0 if self.nodes[n].alive.get() && alive > 1 => {
                    self.log(format!("crash {}", self.nodes[n].id));
                    self.nodes[n].alive.set(false);
                    self.nodes[n]
                        .generation
                        .set(self.nodes[n].generation.get() + 1);
                    self.nodes[n].workers.borrow_mut().clear();
                }
                0 | 1 if !self.nodes[n].alive.get() => {
                    self.log(format!("restart {}", self.nodes[n].id));
                    self.boot(n).await;
                    tokio::task::spawn_local(
                        self.clone().ticking(n, self.nodes[n].generation.get()),
                    );
                }
                _ if self.nodes[n].alive.get() && self.nodes[n].paused_until.get().is_none() => {
                    let pause = LEASE + Duration::from_millis(rng.u64(1..1_000));
                    self.log(format!(
                        "pause {} for {} ms",
                        self.nodes[n].id,
                        pause.as_millis()
                    ));
                    self.nodes[n].paused_until.set(Some(Instant::now() + pause));
                }
                _ => {}
            }
        }
    }
}

fn result_of(entry: &OplogEntry) -> Option<u64> {
    match entry {
        OplogEntry::InvocationCompleted { result, .. } => match result.as_slice() {
            [Value::U64(n)] => Some(*n),
            _ => None,
        },
        _ => None,
    }
}

async fn read_all(
    oplog: &KvOplog<Arc<FdbModel>>,
    worker: &WorkerId,
) -> Result<Vec<SequencedEntry>, StorageError> {
    let mut out: Vec<SequencedEntry> = Vec::new();
    loop {
        let from = out.last().map_or(1, |e| e.seq + 1);
        let page = oplog.read(worker, from, 1_000).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

async fn lease_epoch(kv: &FdbModel, shard: u32) -> Option<u64> {
    leases::all(kv)
        .await
        .ok()?
        .into_iter()
        .find(|(s, _)| *s == shard)
        .map(|(_, l)| l.epoch)
}

/// What one run produced.
struct Outcome {
    trace: Vec<String>,
    violations: Vec<String>,
    acked: usize,
    /// Faults the store injected (retryable errors, unknown results).
    injected: u64,
}

impl Outcome {
    /// How many trace lines mention `what`.
    fn count(&self, what: &str) -> usize {
        self.trace.iter().filter(|l| l.contains(what)).count()
    }
}

fn run(seed: u64, knobs: Knobs) -> Outcome {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, simulate(seed, knobs))
}

async fn simulate(seed: u64, knobs: Knobs) -> Outcome {
    let mut rng = fastrand::Rng::with_seed(seed);
    let kv = Arc::new(FdbModel::new(Faults {
        seed,
        retryable_per_mille: 20,
        unknown_result_per_mille: 20,
    }));
    let nodes = (0..NODES)
        .map(|i| Node {
            id: format!("n{}", i + 1),
            membership: RefCell::new(None),
            generation: Cell::new(0),
            alive: Cell::new(false),
            paused_until: Cell::new(None),
            workers: RefCell::new(BTreeMap::new()),
            skew_ms: rng.i64(-150..=150),
        })
        .collect();
    let sim = Rc::new(Sim {
        seed,
        knobs,
        oplog: KvOplog::new(kv.clone()),
        kv,
        nodes,
        start: Instant::now(),
        trace: RefCell::new(Vec::new()),
        violations: RefCell::new(Vec::new()),
        acked: RefCell::new(BTreeMap::new()),
        rng: RefCell::new(fastrand::Rng::with_seed(seed ^ 0x5eed)),
    });
    for n in 0..NODES {
        sim.boot(n).await;
        tokio::task::spawn_local(sim.clone().ticking(n, 0));
    }
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        tasks.push(tokio::task::spawn_local(sim.clone().client(c)));
    }
    tasks.push(tokio::task::spawn_local(sim.clone().faults()));
    for t in tasks {
        t.await.unwrap();
    }
    // The checks read the store as it is now, with no faults.
    sim.kv.set_faults(Faults::default());
    check(&sim).await;
    let acked = sim.acked.borrow().len();
    let trace = sim.trace.borrow().clone();
    let violations = sim.violations.borrow().clone();
    Outcome {
        trace,
        violations,
        acked,
        injected: sim.kv.stats().injected(),
    }
}

/// Every worker's log against what the clients were told.
async fn check(sim: &Sim) {
    let acked = sim.acked.borrow().clone();
    for u in 0..USERS {
        let user = format!("u{u}");
        let worker = Sim::worker(&user);
        let entries = read_all(&sim.oplog, &worker).await.unwrap();
        let mut results: BTreeMap<String, u64> = BTreeMap::new();
        let mut expected = 0;
        for e in &entries {
            if let OplogEntry::InvocationCompleted {
                idempotency_key, ..
            } = &e.entry
            {
                expected += 1;
                let result = result_of(&e.entry).unwrap();
                let mut v = sim.violations.borrow_mut();
                if result != expected {
                    v.push(format!(
                        "{user}: entry {} says {result}, a single node says {expected}",
                        e.seq
                    ));
                }
                if results.insert(idempotency_key.clone(), result).is_some() {
                    v.push(format!("{user}: {idempotency_key} applied twice"));
                }
            }
        }
        for ((u2, key), answer) in &acked {
            if *u2 != user {
                continue;
            }
            let mut v = sim.violations.borrow_mut();
            match results.get(key) {
                None => v.push(format!("{user}: acknowledged {key} lost")),
                Some(r) if r != answer => {
                    v.push(format!("{user}: {key} answered {answer}, the log says {r}"))
                }
                Some(_) => {}
            }
        }
    }
}

fn seeds() -> Vec<u64> {
    if let Ok(one) = std::env::var("SIM_SEED") {
        return vec![one.parse().expect("SIM_SEED is a number")];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000u64);
    (1..=count).collect()
}

#[test]
fn every_invariant_holds_on_every_seed() {
    let knobs = Knobs { break_fence: false };
    let (mut acked, mut fenced, mut crashes, mut pauses, mut lost, mut injected) =
        (0, 0, 0, 0, 0, 0);
    for seed in seeds() {
        let outcome = run(seed, knobs);
        fenced += outcome.count(" fenced");
        crashes += outcome.count("crash ");
        pauses += outcome.count("pause ");
        lost += outcome.count(" lost");
        injected += outcome.injected;
        assert!(
            outcome.violations.is_empty(),
            "seed {seed} broke an invariant (reproduce: SIM_SEED={seed} cargo test -p \
             revenant-cluster --test simulation):\n{}\n--- last of its trace ---\n{}",
            outcome.violations.join("\n"),
            outcome.trace[outcome.trace.len().saturating_sub(40)..].join("\n")
        );
        acked += outcome.acked;
    }
    eprintln!(
        "{} seeds, every invariant held: {acked} acknowledged calls, {fenced} appends fenced, \
         {crashes} crashes, {pauses} pauses past a lease, {lost} forwards or answers lost, \
         {injected} store faults injected",
        seeds().len()
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let knobs = Knobs { break_fence: false };
    let (a, b) = (run(7, knobs), run(7, knobs));
    assert!(
        a.trace.len() > 100,
        "a run does something: {}",
        a.trace.len()
    );
    assert_eq!(a.trace, b.trace);
    assert_ne!(a.trace, run(8, knobs).trace, "another seed runs otherwise");
}

#[test]
fn a_broken_fence_is_caught() {
    let knobs = Knobs { break_fence: true };
    let caught = (1..=200).find_map(|seed| {
        let outcome = run(seed, knobs);
        (!outcome.violations.is_empty()).then_some((seed, outcome.violations))
    });
    let (seed, violations) = caught.expect("appends without a fence break an invariant");
    eprintln!("seed {seed} caught the broken fence: {}", violations[0]);
}
