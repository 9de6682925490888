//! Membership over the in-memory FoundationDB model, with a clock the test moves: shards
//! spread over the nodes, a dead node's shards are taken over with a new epoch once its leases
//! expire, and a leaving node hands its shards over at once.

use revenant_cluster::{Clock, Location, Membership, Settings};
use revenant_storage::WorkerId;
use revenant_storage::kv::model::{Faults, FdbModel};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn wall_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

const LEASE: Duration = Duration::from_secs(2);

async fn node(kv: &Arc<FdbModel>, clock: &Arc<TestClock>, id: &str) -> Arc<Membership<FdbModel>> {
    Membership::join(
        kv.clone(),
        Settings {
            node: id.into(),
            address: format!("http://{id}"),
            shards: 16,
            lease: LEASE,
        },
        clock.clone(),
    )
    .await
    .unwrap()
}

async fn advance(clock: &TestClock, by: Duration) {
    clock.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    tokio::time::advance(by).await;
}

#[tokio::test(start_paused = true)]
async fn shards_spread_move_on_death_and_hand_over_on_leave() {
    let kv = Arc::new(FdbModel::new(Faults::default()));
    let clock = Arc::new(TestClock(AtomicU64::new(1_000_000)));
    let nodes = [
        node(&kv, &clock, "n1").await,
        node(&kv, &clock, "n2").await,
        node(&kv, &clock, "n3").await,
    ];
    // Two rounds: the first registers everyone, the second settles who holds what.
    for _ in 0..3 {
        for n in &nodes {
            n.tick().await.unwrap();
        }
        advance(&clock, nodes[0].renew_interval()).await;
    }
    let held: Vec<usize> = nodes.iter().map(|n| n.held().len()).collect();
    assert_eq!(held.iter().sum::<usize>(), 16, "{held:?}");
    assert!(held.iter().all(|&h| (5..=6).contains(&h)), "{held:?}");

    // Every node agrees where a worker lives, and exactly one serves it.
    let worker = WorkerId::new("c", "user-42");
    let here: Vec<_> = nodes
        .iter()
        .filter(|n| matches!(n.locate(&worker), Location::Here(_)))
        .collect();
    assert_eq!(here.len(), 1);
    let holder = here[0].node().to_string();
    let Location::Here(fence) = here[0].locate(&worker) else {
        unreachable!()
    };
    for n in &nodes {
        if n.node() != holder {
            assert_eq!(
                n.locate(&worker),
                Location::Remote {
                    node: holder.clone(),
                    address: format!("http://{holder}")
                }
            );
        }
    }

    // The holder dies (stops ticking). Until its leases expire nobody takes them; then the
    // others do, under a new epoch.
    let survivors: Vec<_> = nodes.iter().filter(|n| n.node() != holder).collect();
    advance(&clock, LEASE / 2).await;
    for n in &survivors {
        n.tick().await.unwrap();
    }
    assert!(survivors.iter().all(|n| n.fence(&worker).is_none()));
    let mut taken_by = None;
    for _ in 0..4 {
        advance(&clock, nodes[0].renew_interval()).await;
        for n in &survivors {
            let changes = n.tick().await.unwrap();
            if changes.gained.contains(&fence.shard) {
                taken_by = Some(n.node().to_string());
            }
        }
    }
    let taken_by = taken_by.expect("a survivor took the dead node's shard");
    let new = survivors
        .iter()
        .find(|n| n.node() == taken_by)
        .unwrap()
        .fence(&worker)
        .unwrap();
    assert!(new.epoch > fence.epoch, "{new:?} after {fence:?}");
    let held: usize = survivors.iter().map(|n| n.held().len()).sum();
    assert_eq!(held, 16);

    // A leaving node releases everything in one tick; the other takes it at its next one,
    // without waiting for any lease to expire.
    let (leaver, stayer) = (survivors[0], survivors[1]);
    let gone = leaver.leave().await.unwrap();
    assert!(!gone.lost.is_empty());
    assert!(leaver.held().is_empty());
    stayer.tick().await.unwrap();
    assert_eq!(stayer.held().len(), 16);
}
