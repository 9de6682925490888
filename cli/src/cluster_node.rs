//! A node of a cluster: its id, its internal listener, its membership loop (renewing leases,
//! dropping the workers of shards it lost, recovering those of shards it took), and the glue
//! that gives the runtime its placement and the gateway its forwarder.

use crate::config::Config;
use anyhow::Context;
use revenant_cluster::{Changes, Membership, Settings, SystemClock};
use revenant_gateway::cluster::{Forwarder, Internal};
use revenant_gateway::deploy::LiveGateway;
use revenant_runtime::{Placement, Runtime};
use revenant_storage::kv::KvStore;
use revenant_storage::{Fence, WorkerId};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The runtime serves the workers of the shards the membership holds.
struct Placed<K: KvStore>(Arc<Membership<K>>);

impl<K: KvStore> Placement for Placed<K> {
    fn fence(&self, worker: &WorkerId) -> Option<Fence> {
        self.0.fence(worker)
    }
}

pub struct Node<K: KvStore> {
    membership: Arc<Membership<K>>,
    runtime: Arc<Runtime>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl<K: KvStore> Node<K> {
    /// Hands every shard over: the next renewal of the other nodes takes them.
    pub async fn leave(&self) {
        match self.membership.leave().await {
            Ok(changes) => {
                tracing::info!(shards = changes.lost.len(), "left the cluster's shards");
                apply(&self.membership, &self.runtime, &changes);
            }
            Err(e) => tracing::warn!(
                "cannot release the shards ({e}); the others take them when the leases expire"
            ),
        }
    }

    /// Waits for the internal listener and the membership loop to end (after the stop).
    pub async fn stopped(&self) {
        for task in self.tasks.lock().await.drain(..) {
            let _ = task.await;
        }
    }
}

/// Joins the cluster the store holds and starts serving as one of its nodes.
pub async fn start<K: KvStore>(
    config: &Config,
    kv: Arc<K>,
    runtime: Arc<Runtime>,
    live: Arc<LiveGateway>,
    secret: &str,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<Arc<Node<K>>> {
    let c = &config.cluster;
    let node_id = match &c.node_id {
        Some(id) => id.clone(),
        None => node_id_file(&config.data)?,
    };
    let listener = tokio::net::TcpListener::bind(c.listen)
        .await
        .with_context(|| format!("listening on {} (cluster.listen)", c.listen))?;
    let bound = listener
        .local_addr()
        .context("reading the cluster address")?;
    runtime.refuse_egress_to(bound);
    let address = c
        .advertise
        .clone()
        .unwrap_or_else(|| format!("http://{bound}"));
    let membership = Membership::join(
        kv,
        Settings {
            node: node_id.clone(),
            address: address.clone(),
            shards: c.shards,
            lease: c.lease,
        },
        Arc::new(SystemClock),
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "store `{}`: cannot join its cluster: {e}",
            config.store.describe()
        )
    })?;
    runtime.set_placement(Arc::new(Placed(membership.clone())));
    let forwarder =
        Forwarder::new(&node_id, membership.clone(), secret).map_err(anyhow::Error::msg)?;
    live.set_cluster(Arc::new(forwarder));
    let node = Arc::new(Node {
        membership: membership.clone(),
        runtime: runtime.clone(),
        tasks: tokio::sync::Mutex::new(Vec::new()),
    });
    // The first round, before serving: the node holds its share of whatever is free.
    match membership.tick().await {
        Ok(changes) => apply(&membership, &runtime, &changes),
        Err(e) => tracing::warn!("the first lease renewal failed: {e}"),
    }
    let internal = Arc::new(Internal::new(live, secret));
    let server = config.server;
    let stop = stopping.clone();
    let serving = tokio::spawn(async move {
        if let Err(e) = revenant_gateway::serve_with(listener, internal, server, async move {
            let mut stop = stop;
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        {
            tracing::error!("the internal listener stopped: {e}");
        }
    });
    let ticking = {
        let (membership, runtime) = (membership.clone(), runtime.clone());
        let mut stop = stopping;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(membership.renew_interval());
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                match membership.tick().await {
                    Ok(changes) => apply(&membership, &runtime, &changes),
                    Err(e) => tracing::warn!("lease renewal failed: {e}"),
                }
            }
        })
    };
    node.tasks.lock().await.extend([serving, ticking]);
    println!(
        "revenant cluster listening on {address}; node {node_id}; {} shards, holding {}",
        membership.shards(),
        membership.held().len()
    );
    let _ = std::io::stdout().flush();
    Ok(node)
}

/// Drops the workers of lost shards from memory; recovers the interrupted invocations of the
/// workers of gained ones.
fn apply<K: KvStore>(membership: &Arc<Membership<K>>, runtime: &Arc<Runtime>, changes: &Changes) {
    if !changes.lost.is_empty() {
        let lost: BTreeSet<u32> = changes.lost.iter().copied().collect();
        let m = membership.clone();
        let n = runtime.evict_where(move |w| lost.contains(&m.shard_of(w)));
        tracing::info!(node = %membership.node(), shards = ?changes.lost, workers = n, "stopped serving shards");
    }
    if !changes.gained.is_empty() {
        tracing::info!(node = %membership.node(), shards = ?changes.gained, "now serving shards");
        let gained: BTreeSet<u32> = changes.gained.iter().copied().collect();
        let (m, runtime) = (membership.clone(), runtime.clone());
        tokio::spawn(async move {
            match runtime
                .recover_in_flight_where(|w| gained.contains(&m.shard_of(w)))
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!("resuming {n} interrupted invocations of taken shards"),
                Err(e) => tracing::error!("cannot look for interrupted invocations: {e}"),
            }
        });
    }
}

/// The node's id from `<data>/node-id`, generated and written there the first time.
fn node_id_file(data: &Path) -> anyhow::Result<String> {
    let file = data.join("node-id");
    match std::fs::read_to_string(&file) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", file.display())),
    }
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("generating a node id: {e}"))?;
    let id = format!(
        "node-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    std::fs::write(&file, format!("{id}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(id)
}
