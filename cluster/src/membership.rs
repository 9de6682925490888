//! One node's membership: its heartbeat, the shards it holds under leases, and its view of who
//! holds the rest. Everything goes through the store's KV interface (`storage::leases`,
//! `storage::catalog`), so the same code runs on PostgreSQL, FoundationDB and the in-memory
//! model the simulation uses.
//!
//! A node calls [`Membership::tick`] every [`Membership::renew_interval`]: it heartbeats, reads
//! every node and lease, computes which shards it should hold ([`crate::assign`]), and in one
//! transaction renews or takes those and releases the others. It serves a shard only while its
//! lease is valid by its own monotonic clock, with a margin before the store's expiry; the
//! store's fence makes even that belief unnecessary for safety.

use crate::assign::assign;
use crate::clock::Clock;
use crate::limits::{REFRESH_INTERVAL_MIN, RENEWALS_PER_LEASE, SAFETY_MARGIN_FRACTION};
use revenant_storage::catalog::{self, NodeRecord};
use revenant_storage::kv::{KvError, KvStore};
use revenant_storage::layout::shard::shard_of;
use revenant_storage::leases::{self, Lease};
use revenant_storage::{Fence, WorkerId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What a node is told at start.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node's id: stable across restarts.
    pub node: String,
    /// Where peers reach this node's internal listener, `http://host:port`.
    pub address: String,
    /// The shard count proposed if the store has none yet (it keeps the first one).
    pub shards: u32,
    pub lease: Duration,
}

/// Where a worker is served now, as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// Here, with the fence its appends must carry.
    Here(Fence),
    /// On another node, reached at `address`.
    Remote { node: String, address: String },
    /// Nobody holds the shard (its holder left or died, and no one has taken it yet).
    Unknown { shard: u32 },
}

/// What a tick changed for this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Shards this node now holds under a new epoch: workers of them that had an invocation in
    /// flight are to be recovered.
    pub gained: Vec<u32>,
    /// Shards this node no longer serves: their workers leave memory.
    pub lost: Vec<u32>,
}

/// A shard this node holds.
#[derive(Clone, Copy, Debug)]
struct Held {
    epoch: u64,
    /// Served until then (monotonic), well before the lease expires in the store.
    valid_until: Instant,
}

#[derive(Default)]
struct View {
    nodes: BTreeMap<String, NodeRecord>,
    leases: BTreeMap<u32, Lease>,
    held: BTreeMap<u32, Held>,
    last_refresh: Option<Instant>,
}

/// The operator's view of the cluster (`GET /cluster`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClusterView {
    pub node: String,
    pub shards: u32,
    pub lease_ms: u64,
    pub nodes: Vec<NodeView>,
    pub leases: Vec<ShardView>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeView {
    pub id: String,
    pub address: String,
    pub last_heartbeat_ms: u64,
    pub leaving: bool,
    /// Shards it holds, by the lease table.
    pub shards: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ShardView {
    pub shard: u32,
    /// Empty when nobody holds it.
    pub holder: String,
    pub epoch: u64,
    pub expires_at_ms: u64,
}

pub struct Membership<K: KvStore> {
    kv: Arc<K>,
    settings: Settings,
    shards: u32,
    clock: Arc<dyn Clock>,
    view: Mutex<View>,
    leaving: std::sync::atomic::AtomicBool,
    /// Serialises ticks and the final release.
    ticking: tokio::sync::Mutex<()>,
    /// Why the last tick failed, while the store does not answer.
    store_error: Mutex<Option<String>>,
}

impl<K: KvStore> Membership<K> {
    /// Joins the cluster the store describes: learns (or fixes) its shard count. The node
    /// holds nothing until its first [`tick`](Self::tick).
    pub async fn join(
        kv: Arc<K>,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, KvError> {
        let shards = leases::shard_count(kv.as_ref(), settings.shards).await?;
        if shards != settings.shards {
            tracing::info!(
                stored = shards,
                configured = settings.shards,
                "the store's shard count was fixed at its first use; keeping it"
            );
        }
        Ok(Arc::new(Self {
            kv,
            settings,
            shards,
            clock,
            view: Mutex::new(View::default()),
            leaving: false.into(),
            ticking: tokio::sync::Mutex::new(()),
            store_error: Mutex::new(None),
        }))
    }

    pub fn node(&self) -> &str {
        &self.settings.node
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn lease(&self) -> Duration {
        self.settings.lease
    }

    pub fn renew_interval(&self) -> Duration {
        self.settings.lease / RENEWALS_PER_LEASE
    }

    pub fn shard_of(&self, worker: &WorkerId) -> u32 {
        shard_of(worker, self.shards)
    }

    /// Where `worker` is served now, by this node's view.
    pub fn locate(&self, worker: &WorkerId) -> Location {
        let shard = self.shard_of(worker);
        let view = self.view.lock().expect("view lock");
        if let Some(held) = view.held.get(&shard)
            && held.valid_until > Instant::now()
        {
            return Location::Here(Fence {
                shard,
                epoch: held.epoch,
            });
        }
        match view.leases.get(&shard) {
            Some(lease) if !lease.node.is_empty() && lease.node != self.settings.node => {
                match view.nodes.get(&lease.node) {
                    Some(n) => Location::Remote {
                        node: n.node.clone(),
                        address: n.address.clone(),
                    },
                    None => Location::Unknown { shard },
                }
            }
            _ => Location::Unknown { shard },
        }
    }

    /// The fence for `worker`'s appends if this node serves it now.
    pub fn fence(&self, worker: &WorkerId) -> Option<Fence> {
        match self.locate(worker) {
            Location::Here(fence) => Some(fence),
            _ => None,
        }
    }

    /// Heartbeats, then renews, takes and releases shards so that this node holds its share.
    pub async fn tick(&self) -> Result<Changes, KvError> {
        let result = self.round().await;
        *self.store_error.lock().expect("store error lock") =
            result.as_ref().err().map(ToString::to_string);
        result
    }

    /// Why the store did not answer the last renewal, if it did not: the node then serves
    /// nothing once its leases lapse, and takes shards again when the store is back.
    pub fn store_error(&self) -> Option<String> {
        self.store_error.lock().expect("store error lock").clone()
    }

    async fn round(&self) -> Result<Changes, KvError> {
        let _one = self.ticking.lock().await;
        let started = Instant::now();
        let now_ms = self.clock.wall_ms();
        let leaving = self.leaving.load(std::sync::atomic::Ordering::SeqCst);
        let lease_ms = self.settings.lease.as_millis() as u64;
        catalog::heartbeat(
            self.kv.as_ref(),
            &NodeRecord {
                node: self.settings.node.clone(),
                address: self.settings.address.clone(),
                heartbeat_ms: now_ms,
                leaving,
            },
        )
        .await?;
        let nodes = catalog::nodes(self.kv.as_ref()).await?;
        let table: BTreeMap<u32, Lease> =
            leases::all(self.kv.as_ref()).await?.into_iter().collect();
        // Who may hold shards: nodes heard from within a lease that are not leaving.
        let live: Vec<String> = nodes
            .iter()
            .filter(|n| !n.leaving && n.heartbeat_ms + lease_ms >= now_ms)
            .map(|n| n.node.clone())
            .collect();
        let desired = assign(self.shards, &live);
        let me = live.iter().position(|n| *n == self.settings.node);
        let (mut take, mut release) = (Vec::new(), Vec::new());
        for shard in 0..self.shards {
            let mine = me.is_some() && desired[shard as usize] == me;
            let holds = table
                .get(&shard)
                .is_some_and(|l| l.node == self.settings.node);
            if mine {
                take.push(shard);
            } else if holds {
                release.push(shard);
            }
        }
        // Stop serving what is released before the release commits: appends made after it
        // are refused by the store anyway.
        let mut changes = Changes::default();
        {
            let mut view = self.view.lock().expect("view lock");
            for shard in &release {
                if view.held.remove(shard).is_some() {
                    changes.lost.push(*shard);
                }
            }
        }
        let result = leases::update(
            self.kv.as_ref(),
            &self.settings.node,
            now_ms,
            lease_ms,
            &take,
            &release,
        )
        .await;
        let mut view = self.view.lock().expect("view lock");
        view.nodes = nodes.into_iter().map(|n| (n.node.clone(), n)).collect();
        view.leases = table;
        view.last_refresh = Some(Instant::now());
        // On failure nothing was renewed: what is held stays valid until its own deadline.
        let taken = result?;
        let margin = self.settings.lease / SAFETY_MARGIN_FRACTION;
        let valid_until = started + self.settings.lease - margin;
        for shard in &release {
            if let Some(l) = view.leases.get_mut(shard) {
                l.node.clear();
                l.epoch += 1;
                l.expires_at_ms = 0;
            }
        }
        for (shard, lease) in taken {
            match lease {
                Some(lease) => {
                    let before = view.held.get(&shard).map(|h| h.epoch);
                    if before != Some(lease.epoch) {
                        if before.is_some() {
                            changes.lost.push(shard);
                        }
                        changes.gained.push(shard);
                    }
                    view.held.insert(
                        shard,
                        Held {
                            epoch: lease.epoch,
                            valid_until,
                        },
                    );
                    view.leases.insert(shard, lease);
                }
                None => {
                    if view.held.remove(&shard).is_some() {
                        changes.lost.push(shard);
                    }
                }
            }
        }
        // A shard held here but not taken this round (the table said another node holds it;
        // the released ones are gone already) is lost.
        let taken: BTreeSet<u32> = take.into_iter().collect();
        view.held.retain(|shard, _| {
            let kept = taken.contains(shard);
            if !kept {
                changes.lost.push(*shard);
            }
            kept
        });
        Ok(changes)
    }

    /// Re-reads the lease table and the nodes (no writes), at most once per
    /// `REFRESH_INTERVAL_MIN`: what routing does after reaching a node that no longer holds a
    /// shard, so as not to wait for the next tick.
    pub async fn refresh(&self) -> Result<(), KvError> {
        {
            let view = self.view.lock().expect("view lock");
            if view
                .last_refresh
                .is_some_and(|t| t.elapsed() < REFRESH_INTERVAL_MIN)
            {
                return Ok(());
            }
        }
        let nodes = catalog::nodes(self.kv.as_ref()).await?;
        let table = leases::all(self.kv.as_ref()).await?;
        let mut view = self.view.lock().expect("view lock");
        view.nodes = nodes.into_iter().map(|n| (n.node.clone(), n)).collect();
        for (shard, lease) in table {
            // Our own leases are known better from our renewals than from a read that may
            // have raced one.
            if lease.node != self.settings.node || !view.held.contains_key(&shard) {
                view.leases.insert(shard, lease);
            }
        }
        view.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Starts leaving: the node takes no more shards and the next tick releases all it holds,
    /// so others take them over at their next renewal instead of waiting for expiry. Returns
    /// the shards that were served here.
    pub async fn leave(&self) -> Result<Changes, KvError> {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.tick().await
    }

    /// Shards this node serves now.
    pub fn held(&self) -> Vec<u32> {
        let view = self.view.lock().expect("view lock");
        let now = Instant::now();
        view.held
            .iter()
            .filter(|(_, h)| h.valid_until > now)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The nodes and every shard's holder, as last read.
    pub fn view(&self) -> ClusterView {
        let view = self.view.lock().expect("view lock");
        let leases: Vec<ShardView> = (0..self.shards)
            .map(|shard| match view.leases.get(&shard) {
                Some(l) => ShardView {
                    shard,
                    holder: l.node.clone(),
                    epoch: l.epoch,
                    expires_at_ms: l.expires_at_ms,
                },
                None => ShardView {
                    shard,
                    holder: String::new(),
                    epoch: 0,
                    expires_at_ms: 0,
                },
            })
            .collect();
        let nodes = view
            .nodes
            .values()
            .map(|n| NodeView {
                id: n.node.clone(),
                address: n.address.clone(),
                last_heartbeat_ms: n.heartbeat_ms,
                leaving: n.leaving,
                shards: leases.iter().filter(|l| l.holder == n.node).count(),
            })
            .collect();
        ClusterView {
            node: self.settings.node.clone(),
            shards: self.shards,
            lease_ms: self.settings.lease.as_millis() as u64,
            nodes,
            leases,
        }
    }
}
