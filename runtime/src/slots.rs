//! Which workers are in memory. A slot is a worker's mailbox and task; the number of slots is
//! capped, idle workers leave on their own after the idle timeout, and when the cap is reached
//! the least recently used idle worker is asked to leave. A worker that leaves loses nothing:
//! its state is rebuilt from the oplog on its next call.
//!
//! The one rule that keeps this safe: two tasks never run the same worker at once. A retiring
//! task keeps its `lifetime` lock until it has answered everything in its mailbox, and a
//! successor for the same worker takes the same lock before it activates.

use crate::WorkerStatus;
use crate::limits::EVICTION_SCAN;
use crate::worker::Command;
use revenant_storage::WorkerId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc};

pub(crate) struct Slot {
    pub sender: mpsc::Sender<Command>,
    pub lifetime: Arc<tokio::sync::Mutex<()>>,
    pub evict: Arc<Notify>,
    pub flags: Arc<WorkerFlags>,
    /// Asked to leave to make room: not asked again until it is used again.
    leaving: AtomicBool,
}

/// What the worker's task shares with the rest of the runtime while it lives.
#[derive(Default)]
pub(crate) struct WorkerFlags {
    /// What the task last reported from its lifecycle; `None` until it has loaded the worker,
    /// and once it deleted it: the store speaks for the worker then.
    pub status: Mutex<Option<WorkerStatus>>,
    /// Set to stop the running invocation at the next epoch tick: a request to the task, read
    /// by the guest's epoch callback on whatever thread runs it.
    pub interrupt: AtomicBool,
    /// Outgoing requests in flight: a worker waiting on one is not counted against the cap,
    /// nor asked to leave (it could not before its call ends).
    pub outgoing: AtomicUsize,
}

struct Slots {
    /// In order of use: a call moves its worker to the front, eviction looks from the back.
    /// A plain map scanned for the oldest made every miss at the cap cost a pass over all
    /// slots under this lock (found by the 10,000-user benchmark).
    live: lru::LruCache<WorkerId, Slot>,
    /// Lifetimes of tasks that left `live` but are still answering their last calls.
    retiring: HashMap<WorkerId, Arc<tokio::sync::Mutex<()>>>,
}

pub(crate) struct Shared {
    // std's Mutex: held for map operations only, never across an await.
    slots: Mutex<Slots>,
    /// Signalled whenever a slot frees up.
    pub space: Notify,
    /// Workers in memory that are waiting on an outgoing request: they do not count against the
    /// cap (their number is bounded by the outgoing-request cap instead).
    waiting: AtomicUsize,
}

/// Counts a worker as waiting on the outside world while it lives.
pub(crate) struct Waiting<'a> {
    shared: &'a Shared,
    flags: &'a WorkerFlags,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.flags.outgoing.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// What `Shared::get_or_reserve` found.
pub(crate) enum Reserve {
    Existing(mpsc::Sender<Command>),
    /// A new slot: spawn its task with these.
    New {
        sender: mpsc::Sender<Command>,
        receiver: mpsc::Receiver<Command>,
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
            slots: Mutex::new(Slots {
                live: lru::LruCache::unbounded(),
                retiring: HashMap::new(),
            }),
            space: Notify::new(),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Marks one worker as waiting on an outgoing request until the guard is dropped; a slot
    /// for another worker may be taken meanwhile.
    pub fn waiting<'a>(&'a self, flags: &'a WorkerFlags) -> Waiting<'a> {
        if flags.outgoing.fetch_add(1, Ordering::Relaxed) == 0 {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            self.space.notify_waiters();
        }
        Waiting {
            shared: self,
            flags,
        }
    }

    /// Asks every worker in memory to leave; returns how many remain or are still leaving.
    pub fn evict_all(&self) -> usize {
        let slots = self.slots.lock().expect("slots lock");
        for (_, slot) in slots.live.iter() {
            slot.evict.notify_one();
        }
        slots.live.len() + slots.retiring.len()
    }

    /// Asks the workers `which` selects to leave memory; returns how many were asked.
    pub fn evict_where(&self, which: impl Fn(&WorkerId) -> bool) -> usize {
        let slots = self.slots.lock().expect("slots lock");
        let mut asked = 0;
        for (id, slot) in slots.live.iter() {
            if which(id) {
                slot.evict.notify_one();
                asked += 1;
            }
        }
        asked
    }

    /// The flags of a worker in memory.
    pub fn flags(&self, worker: &WorkerId) -> Option<Arc<WorkerFlags>> {
        let slots = self.slots.lock().expect("slots lock");
        slots.live.peek(worker).map(|s| s.flags.clone())
    }

    pub fn live(&self) -> usize {
        self.slots.lock().expect("slots lock").live.len()
    }

    pub fn get_or_reserve(&self, worker: &WorkerId, cap: usize, depth: usize) -> Reserve {
        let mut slots = self.slots.lock().expect("slots lock");
        if let Some(slot) = slots.live.get(worker) {
            slot.leaving.store(false, Ordering::Relaxed);
            return Reserve::Existing(slot.sender.clone());
        }
        let waiting = self.waiting.load(Ordering::Relaxed);
        if slots.live.len().saturating_sub(waiting) >= cap {
            // The least recently used worker not already asked; each miss asks another, so
            // concurrent misses free as many slots.
            if let Some((_, victim)) = slots.live.iter().rev().take(EVICTION_SCAN).find(|(_, s)| {
                !s.leaving.load(Ordering::Relaxed) && s.flags.outgoing.load(Ordering::Relaxed) == 0
            }) {
                victim.leaving.store(true, Ordering::Relaxed);
                victim.evict.notify_one();
            }
            return Reserve::Full;
        }
        let (sender, receiver) = mpsc::channel(depth);
        let lifetime = slots.retiring.remove(worker).unwrap_or_default();
        let evict = Arc::new(Notify::new());
        let flags = Arc::new(WorkerFlags::default());
        slots.live.put(
            worker.clone(),
            Slot {
                sender: sender.clone(),
                lifetime: lifetime.clone(),
                evict: evict.clone(),
                flags: flags.clone(),
                leaving: AtomicBool::new(false),
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
            .peek(worker)
            .is_some_and(|s| Arc::ptr_eq(&s.lifetime, lifetime));
        if !ours || !mailbox_empty {
            return false;
        }
        slots.live.pop(worker);
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
            .peek(worker)
            .is_some_and(|s| Arc::ptr_eq(&s.lifetime, lifetime))
        {
            slots.live.pop(worker);
        }
        drop(slots);
        self.space.notify_waiters();
    }
}
