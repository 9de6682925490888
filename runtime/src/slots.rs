//! Which workers are in memory. A slot is a worker's mailbox and task; the number of slots is
//! capped, idle workers leave on their own after the idle timeout, and when the cap is reached
//! the least recently used idle worker is asked to leave. A worker that leaves loses nothing:
//! its state is rebuilt from the oplog on its next call.
//!
//! The one rule that keeps this safe: two tasks never run the same worker at once. A retiring
//! task keeps its `lifetime` lock until it has answered everything in its mailbox, and a
//! successor for the same worker takes the same lock before it activates.

use crate::worker::Invocation;
use revenant_storage::WorkerId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

pub(crate) struct Slot {
    pub sender: mpsc::Sender<Invocation>,
    pub lifetime: Arc<tokio::sync::Mutex<()>>,
    pub evict: Arc<Notify>,
    pub flags: Arc<WorkerFlags>,
    last_used_us: AtomicU64,
}

/// What the worker's task shares with the rest of the runtime while it lives.
#[derive(Default)]
pub(crate) struct WorkerFlags {
    /// A `WorkerStatus` as `u8`.
    pub status: std::sync::atomic::AtomicU8,
    /// Set to stop the running invocation at the next epoch tick.
    pub interrupt: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Slots {
    live: HashMap<WorkerId, Slot>,
    /// Lifetimes of tasks that left `live` but are still answering their last calls.
    retiring: HashMap<WorkerId, Arc<tokio::sync::Mutex<()>>>,
}

pub(crate) struct Shared {
    // std's Mutex: held for map operations only, never across an await.
    slots: Mutex<Slots>,
    /// Signalled whenever a slot frees up.
    pub space: Notify,
    start: Instant,
}

/// What `Shared::get_or_reserve` found.
pub(crate) enum Reserve {
    Existing(mpsc::Sender<Invocation>),
    /// A new slot: spawn its task with these.
    New {
        sender: mpsc::Sender<Invocation>,
        receiver: mpsc::Receiver<Invocation>,
        lifetime: Arc<tokio::sync::Mutex<()>>,
        evict: Arc<Notify>,
        flags: Arc<WorkerFlags>,
    },
    /// All slots are taken; the least recently used worker was asked to leave.
    Full,
}

impl Shared {
    pub fn new() -> Self {
        Self {
            slots: Mutex::default(),
            space: Notify::new(),
            start: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Asks every worker in memory to leave; returns how many remain or are still leaving.
    pub fn evict_all(&self) -> usize {
        let slots = self.slots.lock().expect("slots lock");
        for slot in slots.live.values() {
            slot.evict.notify_one();
        }
        slots.live.len() + slots.retiring.len()
    }

    /// The flags of a worker in memory.
    pub fn flags(&self, worker: &WorkerId) -> Option<Arc<WorkerFlags>> {
        let slots = self.slots.lock().expect("slots lock");
        slots.live.get(worker).map(|s| s.flags.clone())
    }

    pub fn live(&self) -> usize {
        self.slots.lock().expect("slots lock").live.len()
    }

    pub fn get_or_reserve(&self, worker: &WorkerId, cap: usize, depth: usize) -> Reserve {
        let mut slots = self.slots.lock().expect("slots lock");
        let now = self.now_us();
        if let Some(slot) = slots.live.get(worker) {
            slot.last_used_us.store(now, Ordering::Relaxed);
            return Reserve::Existing(slot.sender.clone());
        }
        if slots.live.len() >= cap {
            if let Some(victim) = slots
                .live
                .values()
                .min_by_key(|s| s.last_used_us.load(Ordering::Relaxed))
            {
                victim.evict.notify_one();
            }
            return Reserve::Full;
        }
        let (sender, receiver) = mpsc::channel(depth);
        let lifetime = slots.retiring.remove(worker).unwrap_or_default();
        let evict = Arc::new(Notify::new());
        let flags = Arc::new(WorkerFlags::default());
        slots.live.insert(
            worker.clone(),
            Slot {
                sender: sender.clone(),
                lifetime: lifetime.clone(),
                evict: evict.clone(),
                flags: flags.clone(),
                last_used_us: AtomicU64::new(now),
            },
        );
        Reserve::New {
            sender,
            receiver,
            lifetime,
            evict,
            flags,
        }
    }

    /// Called by a worker's task when it is idle or asked to leave. Removes its slot if its
    /// mailbox is empty, so new calls go to a successor; returns whether it did.
    pub fn retire(
        &self,
        worker: &WorkerId,
        lifetime: &Arc<tokio::sync::Mutex<()>>,
        mailbox_empty: bool,
    ) -> bool {
        let mut slots = self.slots.lock().expect("slots lock");
        let ours = slots
            .live
            .get(worker)
            .is_some_and(|s| Arc::ptr_eq(&s.lifetime, lifetime));
        if !ours || !mailbox_empty {
            return false;
        }
        slots.live.remove(worker);
        slots.retiring.insert(worker.clone(), lifetime.clone());
        drop(slots);
        self.space.notify_waiters();
        true
    }

    /// Called by a worker's task as it ends.
    pub fn finished(&self, worker: &WorkerId, lifetime: &Arc<tokio::sync::Mutex<()>>) {
        let mut slots = self.slots.lock().expect("slots lock");
        if slots
            .retiring
            .get(worker)
            .is_some_and(|l| Arc::ptr_eq(l, lifetime))
        {
            slots.retiring.remove(worker);
        }
        // A task that ends without retiring (its mailbox closed) leaves its slot too.
        if slots
            .live
            .get(worker)
            .is_some_and(|s| Arc::ptr_eq(&s.lifetime, lifetime))
        {
            slots.live.remove(worker);
        }
        drop(slots);
        self.space.notify_waiters();
    }
}
