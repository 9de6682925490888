//! The in-memory `OplogStore` for tests, and the base of test wrappers that delay or fail
//! durability on purpose: the oplog written once over the KV interface (`kv_oplog`) on the
//! in-memory FoundationDB model without faults. So a runtime or gateway test runs the very code
//! and encodings the conformance suite checks, not a store of its own. Nothing survives the
//! process.

use crate::kv::model::{Faults, FdbModel};
use crate::kv_oplog::KvOplog;

pub type MemoryStore = KvOplog<FdbModel>;

impl Default for KvOplog<FdbModel> {
    fn default() -> Self {
        Self::new(FdbModel::new(Faults::default()))
    }
}
