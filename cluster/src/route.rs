//! Routing one call to the node that serves its worker: here, or forwarded to the holder, and
//! tried again, bounded, while the shard has no holder or its holder changes. Callers supply
//! the two ways a call is made (locally, and over the network) so that the same loop runs in
//! the server (the runtime and HTTP) and in the simulation (a state machine and a simulated
//! network).

use crate::limits::{ROUTE_ATTEMPTS_MAX, ROUTE_BACKOFF_MAX, ROUTE_BACKOFF_MIN, ROUTE_SLACK};
use crate::membership::{ClusterView, Location, Membership};
use revenant_storage::kv::KvStore;
use revenant_storage::{Fence, WorkerId};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What routing needs of a node's membership, object-safe so that the server holds it
/// whatever store it runs on.
pub trait Locator: Send + Sync + 'static {
    fn locate(&self, worker: &WorkerId) -> Location;
    fn shard_of(&self, worker: &WorkerId) -> u32;
    fn lease(&self) -> Duration;
    /// Re-reads who holds what (rate-limited); failures are logged, not returned.
    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    fn view(&self) -> ClusterView;
    /// Why the store did not answer the last lease renewal, if it did not.
    fn store_error(&self) -> Option<String>;
}

impl<K: KvStore> Locator for Membership<K> {
    fn locate(&self, worker: &WorkerId) -> Location {
        Membership::locate(self, worker)
    }

    fn shard_of(&self, worker: &WorkerId) -> u32 {
        Membership::shard_of(self, worker)
    }

    fn lease(&self) -> Duration {
        Membership::lease(self)
    }

    fn refresh(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(e) = Membership::refresh(self).await {
                tracing::debug!("cannot refresh the lease table: {e}");
            }
        })
    }

    fn view(&self) -> ClusterView {
        Membership::view(self)
    }

    fn store_error(&self) -> Option<String> {
        Membership::store_error(self)
    }
}

/// How one attempt ended.
#[derive(Debug)]
pub enum Attempt<T> {
    /// An answer for the caller (success or a final error).
    Done(T),
    /// The call did not happen where it was sent (that node does not serve the worker, or it
    /// could not be reached before the request was sent): it may be sent again.
    Moved,
}

/// Why a call could not be routed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteError {
    /// No node took the worker's shard in time.
    NoHolder { shard: u32, attempts: u32 },
    /// This request was forwarded here (`HOPS_MAX` times already) and this node does not serve
    /// the worker: the node that forwarded it routes it again.
    TooManyHops,
}

/// Where the request stands on its way: how many times it was forwarded before reaching here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hops(pub u32);

/// Makes the call where `worker` is served, trying again while it moves. `local` runs it here
/// under the given fence; `remote` forwards it to a node's address.
pub async fn route<T, L, LF, R, RF>(
    membership: &dyn Locator,
    worker: &WorkerId,
    hops: Hops,
    local: L,
    remote: R,
) -> Result<T, RouteError>
where
    L: Fn(Fence) -> LF,
    LF: Future<Output = Attempt<T>>,
    R: Fn(String) -> RF,
    RF: Future<Output = Attempt<T>>,
{
    if hops.0 >= crate::limits::HOPS_MAX {
        // Forwarded already: served here, or sent back to the node before.
        return match membership.locate(worker) {
            Location::Here(fence) => match local(fence).await {
                Attempt::Done(answer) => Ok(answer),
                Attempt::Moved => Err(RouteError::TooManyHops),
            },
            _ => Err(RouteError::TooManyHops),
        };
    }
    // Counted from the first attempt that did not reach the holder, and again after an attempt
    // that hung: one may hang for seconds in a node that is dying (a killed process keeps its
    // sockets until its memory is torn down), and the wait for its takeover starts after that.
    // The server's request deadline bounds the whole.
    let mut deadline = None;
    let mut backoff = ROUTE_BACKOFF_MIN;
    for attempt in 1..=ROUTE_ATTEMPTS_MAX {
        let location = membership.locate(worker);
        tracing::trace!(%worker, attempt, ?location, "routing");
        let started = tokio::time::Instant::now();
        let outcome = match location {
            Location::Here(fence) => Some(local(fence).await),
            Location::Remote { address, .. } => Some(remote(address).await),
            Location::Unknown { .. } => None,
        };
        if let Some(Attempt::Done(answer)) = outcome {
            return Ok(answer);
        }
        let now = tokio::time::Instant::now();
        if now - started > ROUTE_BACKOFF_MAX {
            deadline = None;
        }
        let deadline = *deadline.get_or_insert(now + membership.lease() + ROUTE_SLACK);
        if now >= deadline || attempt == ROUTE_ATTEMPTS_MAX {
            return Err(RouteError::NoHolder {
                shard: membership.shard_of(worker),
                attempts: attempt,
            });
        }
        tokio::time::sleep(backoff.min(deadline - now)).await;
        backoff = (backoff * 2).min(ROUTE_BACKOFF_MAX);
        membership.refresh().await;
    }
    unreachable!("the loop returns at its last attempt")
}
