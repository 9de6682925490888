//! The storage layout, shared by every backend: which key families exist ([`Family`], and the
//! tuple-encoded keys in [`keys`]), how rows are encoded (`rows`), and the rule an append must
//! pass before it is written (`append`). A backend implements reads and writes; it owns none of
//! these rules.

pub(crate) mod append;
pub mod keys;
pub(crate) mod rows;
pub mod shard;

/// A family of keys: the first element of every key's tuple. Each family holds one kind of
/// record (`keys` documents the whole layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `("w", component, worker)`: worker metadata.
    Worker,
    /// `("l", component, worker, seq)`: oplog entries.
    Oplog,
    /// `("lc", component, worker, seq, chunk)`: chunks of large oplog entries.
    EntryChunk,
    /// `("i", component, worker, key)`: the idempotency index.
    Idempotency,
    /// `("f", component, worker)`: the in-flight mark.
    InFlight,
    /// `("s", shard)`: shard leases.
    Lease,
    /// `("c", component, version)`: component records.
    Component,
    /// `("api", definition, version)`: API definition records.
    Definition,
    /// `("cb", hash, chunk)`: blob chunks.
    Blob,
    /// `("n", node)`: node heartbeats.
    Node,
    /// `("live", kind, name)`: the deployed version of a component or definition.
    Live,
    /// `("cl", setting)`: cluster-wide settings fixed when the store is first used (the shard
    /// count).
    Cluster,
}

impl Family {
    /// The tag that starts every key of the family: part of the persisted format.
    pub const fn tag(self) -> &'static str {
        match self {
            Self::Worker => "w",
            Self::Oplog => "l",
            Self::EntryChunk => "lc",
            Self::Idempotency => "i",
            Self::InFlight => "f",
            Self::Lease => "s",
            Self::Component => "c",
            Self::Definition => "api",
            Self::Blob => "cb",
            Self::Node => "n",
            Self::Live => "live",
            Self::Cluster => "cl",
        }
    }
}
