//! `cluster`: several nodes on one shared store. A worker belongs to a shard
//! (`storage::layout::shard`); each shard is held by one node under a lease whose epoch fences
//! the oplog appends in the store (`storage::leases`). This crate is the part of the cluster
//! that is not storage: each node's membership (heartbeats, which shards it should hold,
//! renewing, taking and releasing them) and the routing of a call to the node that holds its
//! worker, with bounded retries while shards move.
//!
//! It knows neither HTTP nor WebAssembly: the server plugs in the runtime and an HTTP client,
//! the simulation a state machine and a simulated network.

pub mod assign;
pub mod clock;
pub mod limits;
pub mod membership;
pub mod route;

pub use clock::{Clock, SystemClock};
pub use membership::{Changes, ClusterView, Location, Membership, Settings};
pub use route::{Attempt, Hops, Locator, RouteError, route};
