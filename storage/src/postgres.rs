//! The PostgreSQL backend: the KV interface over one table of a database that several nodes
//! share, so every layer written against [`KvStore`] (the oplog in [`crate::kv_oplog`], leases,
//! the catalog) runs on it unchanged.
//!
//! A transaction is a PostgreSQL transaction at `SERIALIZABLE` isolation on a pooled
//! connection (tokio-postgres, deadpool). Its writes are buffered in the same [`TxBuffer`] the
//! in-process backends use, read back by its own reads, and applied at commit in a few
//! statements; PostgreSQL's serializable snapshot isolation then refuses a commit that would
//! not be serializable (SQLSTATE 40001), which `transact` retries as a conflict. Keys are
//! `bytea`, which PostgreSQL orders byte by byte like FoundationDB, so range reads come back in
//! the same order on every backend.
//!
//! Differences from FoundationDB, each safe: every read of a serializable transaction takes part
//! in conflict detection, snapshot reads included, and atomic adds to one key conflict with one
//! another; both can only cause a retry, never a lost update. The size limits of FoundationDB
//! are kept (checked by the buffer) so that data written here can move to a cluster.

use crate::kv::buffer::{Point, TxBuffer};
use crate::kv::{
    AtomicOp, KeyValue, KvError, KvStore, MaybeCommitted, OccBackend, RangeOptions, Transaction,
    apply_atomic, run_transaction,
};
use crate::limits::{
    KV_RANGE_ROWS_MAX, PG_CONNECT_TIMEOUT, PG_CONNECTIONS_MAX, PG_STATEMENT_TIMEOUT,
};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio_postgres::error::SqlState;

/// The one table, created on first use: keys in FoundationDB's tuple encoding, values as is.
const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS revenant_kv (
    key bytea PRIMARY KEY,
    value bytea NOT NULL
)";

/// Writes keys `$1` with values `$2` (two arrays), whether they exist or not.
pub(crate) const UPSERT: &str = "INSERT INTO revenant_kv (key, value) \
     SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value";

/// Serialises `CREATE TABLE IF NOT EXISTS` between nodes starting at once (it races otherwise).
const SCHEMA_LOCK: i64 = 0x7265_7665_6e61_6e74; // "revenant"

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), checks that it
    /// answers, and creates the table if needed.
    pub async fn open(url: &str) -> Result<Self, KvError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| KvError::Engine(format!("the PostgreSQL URL does not parse: {e}")))?;
        let mut config = config;
        config.connect_timeout(PG_CONNECT_TIMEOUT);
        config.options(format!(
            "-c statement_timeout={}",
            PG_STATEMENT_TIMEOUT.as_millis()
        ));
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(PG_CONNECTIONS_MAX)
            .build()
            .map_err(|e| KvError::Engine(format!("PostgreSQL pool: {e}")))?;
        let store = Self { pool };
        let client = store.client().await?;
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({SCHEMA_LOCK}); {SCHEMA}; COMMIT"
            ))
            .await
            .map_err(pg_error)?;
        Ok(store)
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, KvError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => pg_error(e),
            other => KvError::Retryable(format!("PostgreSQL connection: {other}")),
        })
    }

    async fn start(&self) -> Result<PgTx, KvError> {
        let client = self.client().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .map_err(pg_error)?;
        Ok(PgTx {
            inner: Arc::new(Inner {
                client: tokio::sync::Mutex::new(Some(client)),
                buffer: Mutex::default(),
            }),
        })
    }
}

/// A PostgreSQL error as the KV interface reports it.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> KvError {
    match e.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            KvError::Conflict
        }
        Some(code) => KvError::Engine(format!("PostgreSQL {}: {e}", code.code())),
        // No SQLSTATE: the connection failed. Retrying on another connection is safe for a
        // statement before COMMIT (the transaction is gone with the connection).
        None if e.is_closed() => KvError::Retryable(format!("PostgreSQL connection closed: {e}")),
        // "error connecting to server" says little without its cause (refused, timed out).
        None => match std::error::Error::source(&e) {
            Some(cause) => KvError::Retryable(format!("PostgreSQL: {e}: {cause}")),
            None => KvError::Retryable(format!("PostgreSQL: {e}")),
        },
    }
}

struct Inner {
    /// The connection, in its transaction; taken by commit or rollback.
    client: tokio::sync::Mutex<Option<deadpool_postgres::Object>>,
    buffer: Mutex<TxBuffer>,
}

/// One serializable transaction on one pooled connection.
#[derive(Clone)]
pub struct PgTx {
    inner: Arc<Inner>,
}

impl PgTx {
    fn buffer(&self) -> std::sync::MutexGuard<'_, TxBuffer> {
        self.inner.buffer.lock().expect("tx lock")
    }

    async fn query_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        let guard = self.inner.client.lock().await;
        let client = guard.as_ref().ok_or_else(finished)?;
        let row = client
            .query_opt("SELECT value FROM revenant_kv WHERE key = $1", &[&key])
            .await
            .map_err(pg_error)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn query_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, KvError> {
        let guard = self.inner.client.lock().await;
        let client = guard.as_ref().ok_or_else(finished)?;
        let sql = if reverse {
            "SELECT key, value FROM revenant_kv WHERE key >= $1 AND key < $2 \
             ORDER BY key DESC LIMIT $3"
        } else {
            "SELECT key, value FROM revenant_kv WHERE key >= $1 AND key < $2 \
             ORDER BY key LIMIT $3"
        };
        let limit = limit as i64;
        let rows = client
            .query(sql, &[&begin, &end, &limit])
            .await
            .map_err(pg_error)?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Applies the buffered writes and commits. A connection lost during `COMMIT` leaves its
    /// outcome unknown, as FoundationDB's `commit_unknown_result`.
    async fn commit(&self) -> Result<(), KvError> {
        let buffer = std::mem::take(&mut *self.buffer());
        if let Some(e) = buffer.limit_error {
            self.rollback().await;
            return Err(e);
        }
        let mut guard = self.inner.client.lock().await;
        let client = guard.take().ok_or_else(finished)?;
        let applied = apply(&client, &buffer).await;
        if let Err(e) = applied {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| match e.code() {
                Some(_) => pg_error(e),
                None => KvError::CommitUnknownResult,
            })
    }

    /// Ends the transaction without writing, so the connection goes back to the pool clean.
    async fn rollback(&self) {
        if let Some(client) = self.inner.client.lock().await.take() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
    }
}

fn finished() -> KvError {
    KvError::Invalid("the transaction has already ended".into())
}

/// Deletes the keys of each range `[begin, end)`.
pub(crate) async fn clear_ranges(
    client: &deadpool_postgres::Object,
    ranges: &[(Vec<u8>, Vec<u8>)],
) -> Result<(), KvError> {
    for (begin, end) in ranges {
        client
            .execute(
                "DELETE FROM revenant_kv WHERE key >= $1 AND key < $2",
                &[begin, end],
            )
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

/// The buffered writes as statements: range clears first (each removed the points written
/// before it, so every point left in the buffer comes after them), then point deletes and
/// upserts, each one statement over arrays.
async fn apply(client: &deadpool_postgres::Object, buffer: &TxBuffer) -> Result<(), KvError> {
    clear_ranges(client, &buffer.cleared).await?;
    let (mut keys, mut values, mut doomed) = (Vec::new(), Vec::new(), Vec::new());
    for (key, point) in &buffer.points {
        let value = match point {
            Point::Value(v) => v.clone(),
            Point::Atomic(ops) => {
                let row = client
                    .query_opt("SELECT value FROM revenant_kv WHERE key = $1", &[key])
                    .await
                    .map_err(pg_error)?;
                let mut current: Option<Vec<u8>> = row.map(|r| r.get(0));
                for op in ops {
                    current = Some(apply_atomic(current.as_deref(), op));
                }
                current
            }
        };
        match value {
            Some(v) => {
                keys.push(key.clone());
                values.push(v);
            }
            None => doomed.push(key.clone()),
        }
    }
    if !doomed.is_empty() {
        client
            .execute("DELETE FROM revenant_kv WHERE key = ANY($1)", &[&doomed])
            .await
            .map_err(pg_error)?;
    }
    if !keys.is_empty() {
        client
            .execute(UPSERT, &[&keys, &values])
            .await
            .map_err(pg_error)?;
    }
    Ok(())
}

impl Transaction for PgTx {
    fn get(
        &self,
        key: &[u8],
        snapshot: bool,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send {
        let (tx, key) = (self.clone(), key.to_vec());
        async move {
            let needs_base = tx.buffer().needs_base(&key);
            let base = match needs_base {
                true => Some(tx.query_get(&key).await?),
                false => None,
            };
            // Another clone of this transaction may have written meanwhile: then try again.
            let raced = || KvError::Retryable("a read raced a write of its own transaction".into());
            tx.buffer()
                .get(&key, snapshot, move || base.ok_or_else(raced))
        }
    }

    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
    ) -> impl Future<Output = Result<Vec<KeyValue>, KvError>> + Send {
        let (tx, begin, end) = (self.clone(), begin.to_vec(), end.to_vec());
        async move {
            // What the buffer will ask of the snapshot: the whole range when the transaction
            // wrote into it, else exactly the rows asked for.
            let touched = tx.buffer().touches(&begin, &end);
            let (limit, reverse) = if touched {
                (KV_RANGE_ROWS_MAX, false)
            } else {
                let limit = match options.limit {
                    0 => KV_RANGE_ROWS_MAX,
                    n => n.min(KV_RANGE_ROWS_MAX),
                };
                (limit, options.reverse)
            };
            let rows = if begin < end {
                tx.query_range(&begin, &end, limit, reverse).await?
            } else {
                Vec::new()
            };
            tx.buffer()
                .get_range(&begin, &end, options, |_, _| Ok(rows))
        }
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.buffer().set(key, value);
    }

    fn clear(&self, key: &[u8]) {
        self.buffer().clear(key);
    }

    fn clear_range(&self, begin: &[u8], end: &[u8]) {
        self.buffer().clear_range(begin, end);
    }

    fn atomic_add(&self, key: &[u8], delta: i64) {
        self.buffer().atomic(key, AtomicOp::Add(delta));
    }

    fn atomic_max(&self, key: &[u8], value: u64) {
        self.buffer().atomic(key, AtomicOp::Max(value));
    }
}

impl OccBackend for PgStore {
    type Tx = PgTx;

    fn begin(&self) -> impl Future<Output = Result<PgTx, KvError>> + Send {
        self.start()
    }

    async fn commit(&self, tx: PgTx) -> Result<(), KvError> {
        tx.commit().await
    }

    async fn abandon(&self, tx: PgTx) {
        tx.rollback().await
    }
}

impl KvStore for PgStore {
    type Tx = PgTx;

    fn transact<T, F, Fut>(&self, f: F) -> impl Future<Output = Result<T, KvError>> + Send
    where
        T: Send,
        F: Fn(PgTx, MaybeCommitted) -> Fut + Send + Sync,
        Fut: Future<Output = Result<T, KvError>> + Send,
    {
        run_transaction(self, f)
    }
}
