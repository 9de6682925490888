//! The demo worker for Revenant: a user's activity list, kept in ordinary guest memory.
//!
//! Nothing here knows about durability: the host records every clock read and random draw
//! in the worker's oplog and replays them after a crash, so the list comes back exactly.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

wit_bindgen::generate!({
    world: "user-activity",
    path: "wit",
});

use exports::revenant::user_activity::api::{Activity, Guest};

thread_local! {
    // A component instance is single-threaded; the state is the worker's memory.
    static ACTIVITIES: RefCell<Vec<Activity>> = const { RefCell::new(Vec::new()) };
}

struct UserActivity;

impl Guest for UserActivity {
    fn add_activity(kind: String, detail: String) -> u64 {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        #[cfg(not(feature = "diverge"))]
        let id = wasip2::random::random::get_random_u64();
        #[cfg(feature = "diverge")]
        let id = u64::from_le_bytes(
            wasip2::random::random::get_random_bytes(8)
                .try_into()
                .unwrap_or([0; 8]),
        );
        ACTIVITIES.with_borrow_mut(|list| {
            list.push(Activity {
                id,
                kind,
                detail,
                timestamp_ms,
            });
            list.len() as u64
        })
    }

    fn activities() -> Vec<Activity> {
        ACTIVITIES.with_borrow(|list| list.clone())
    }

    fn count() -> u64 {
        ACTIVITIES.with_borrow(|list| list.len() as u64)
    }
}

export!(UserActivity);
