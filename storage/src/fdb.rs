//! The FoundationDB backend: the KV interface over `Database::run`, so every layer written
//! against [`KvStore`] (the oplog in [`crate::kv_oplog`], leases, metadata) runs on a cluster.
//!
//! Compiled only with the cargo feature `foundationdb`; linking needs `libfdb_c`. Every
//! transaction gets a timeout and a retry limit, since `run` otherwise retries forever.

use crate::kv::{KeyValue, KvError, KvStore, MaybeCommitted, RangeOptions, Transaction};
use crate::limits::{FDB_TRANSACTION_TIMEOUT_MS, KV_ATTEMPTS_MAX, KV_RANGE_ROWS_MAX};
use foundationdb::options::{MutationType, StreamingMode, TransactionOption};
use foundationdb::{Database, FdbBindingError, FdbError, RangeOption, RetryableTransaction};
use std::future::Future;
use std::sync::Arc;

/// Keeps the FoundationDB client's network thread running; drop it last, at exit.
pub struct Network(#[allow(dead_code)] foundationdb::api::NetworkAutoStop);

/// Starts the FoundationDB client. Call once per process, before opening any store.
#[allow(unsafe_code)]
pub fn start_network() -> Network {
    // SAFETY: called once per process, and the guard is kept alive until every database handle
    // is dropped, as `foundationdb::boot` requires.
    Network(unsafe { foundationdb::boot() })
}

#[derive(Clone)]
pub struct FdbStore {
    db: Arc<Database>,
}

impl FdbStore {
    /// Opens the cluster named by `cluster_file` (or the default cluster file).
    pub fn open(cluster_file: Option<&str>) -> Result<Self, KvError> {
        let db = Database::new(cluster_file).map_err(fdb_error)?;
        Ok(Self { db: Arc::new(db) })
    }
}

fn fdb_error(e: FdbError) -> KvError {
    match e.code() {
        1020 => KvError::Conflict,
        1021 => KvError::CommitUnknownResult,
        1007 => KvError::TooOld,
        2101 => KvError::TransactionTooLarge {
            bytes: 0,
            limit: crate::limits::KV_TRANSACTION_BYTES_MAX,
        },
        2102 => KvError::KeyTooLarge {
            bytes: 0,
            limit: crate::limits::KV_KEY_BYTES_MAX,
        },
        2103 => KvError::ValueTooLarge {
            bytes: 0,
            limit: crate::limits::KV_VALUE_BYTES_MAX,
        },
        code => KvError::Foundation {
            code,
            message: e.message().to_string(),
        },
    }
}

/// Errors from the client keep their FoundationDB code, so that `run` can retry them.
fn to_binding(e: KvError) -> FdbBindingError {
    match e {
        KvError::Foundation { code, .. } => FdbError::from_code(code).into(),
        KvError::Conflict => FdbError::from_code(1020).into(),
        KvError::CommitUnknownResult => FdbError::from_code(1021).into(),
        KvError::TooOld => FdbError::from_code(1007).into(),
        other => FdbBindingError::CustomError(Box::new(other)),
    }
}

fn from_binding(e: FdbBindingError) -> KvError {
    match e {
        FdbBindingError::NonRetryableFdbError(e) => fdb_error(e),
        FdbBindingError::CustomError(inner) => match inner.downcast::<KvError>() {
            Ok(kv) => *kv,
            Err(other) => KvError::Engine(other.to_string()),
        },
        other => KvError::Engine(other.to_string()),
    }
}

#[derive(Clone)]
pub struct FdbTx(RetryableTransaction);

impl Transaction for FdbTx {
    fn get(
        &self,
        key: &[u8],
        snapshot: bool,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send {
        let read = self.0.get(key, snapshot);
        async move { read.await.map(|v| v.map(|v| v.to_vec())).map_err(fdb_error) }
    }

    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
    ) -> impl Future<Output = Result<Vec<KeyValue>, KvError>> + Send {
        let tx = self.0.clone();
        let (begin, end) = (begin.to_vec(), end.to_vec());
        async move {
            let limit = match options.limit {
                0 => KV_RANGE_ROWS_MAX,
                n => n.min(KV_RANGE_ROWS_MAX),
            };
            let mut out: Vec<KeyValue> = Vec::new();
            let mut range: RangeOption<'static> = (begin, end).into();
            range.reverse = options.reverse;
            range.mode = StreamingMode::WantAll;
            range.limit = Some(limit);
            let mut iteration = 1;
            // A range comes back in batches: continue after the last key until done or full.
            loop {
                let batch = tx
                    .get_range(&range, iteration, options.snapshot)
                    .await
                    .map_err(fdb_error)?;
                for kv in batch.as_ref() {
                    out.push((kv.key().to_vec(), kv.value().to_vec()));
                }
                match range.next_range(&batch) {
                    Some(next) => {
                        range = next;
                        iteration += 1;
                    }
                    None => return Ok(out),
                }
            }
        }
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.0.set(key, value);
    }

    fn clear(&self, key: &[u8]) {
        self.0.clear(key);
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        self.0.clear_range(begin, end);
    }

    fn atomic_add(&self, key: &[u8], delta: i64) {
        self.0
            .atomic_op(key, &delta.to_le_bytes(), MutationType::Add);
    }

    fn atomic_max(&self, key: &[u8], value: u64) {
        self.0
            .atomic_op(key, &value.to_le_bytes(), MutationType::Max);
    }
}

impl KvStore for FdbStore {
    type Tx = FdbTx;

    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(FdbTx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send,
    {
        let db = self.db.clone();
        async move {
            let f = &f;
            db.run(|trx, maybe_committed| async move {
                trx.set_option(TransactionOption::Timeout(FDB_TRANSACTION_TIMEOUT_MS))?;
                trx.set_option(TransactionOption::RetryLimit(KV_ATTEMPTS_MAX as i32))?;
                f(FdbTx(trx), MaybeCommitted(maybe_committed.into()))
                    .await
                    .map_err(to_binding)
            })
            .await
            .map_err(from_binding)
        }
    }
}
