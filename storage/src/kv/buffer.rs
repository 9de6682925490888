//! A transaction's private state in the backends that run transactions in this process: its
//! writes (read back by its own reads), its read conflict ranges, and its size. FoundationDB
//! keeps the same state in its client; here it is written once for the embedded store and the
//! in-memory model.

use super::{AtomicOp, KeyValue, KvError, RangeOptions, Transaction, apply_atomic, key_after};
use crate::limits::{
    KV_KEY_BYTES_MAX, KV_RANGE_ROWS_MAX, KV_TRANSACTION_BYTES_MAX, KV_VALUE_BYTES_MAX,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub(crate) enum Point {
    /// Set (`Some`) or cleared (`None`) by this transaction.
    Value(Option<Vec<u8>>),
    /// Atomic ops on a value this transaction has not read: resolved against the store.
    Atomic(Vec<AtomicOp>),
}

#[derive(Default)]
pub(crate) struct TxBuffer {
    pub points: BTreeMap<Vec<u8>, Point>,
    /// Ranges cleared, each removing the points written before it.
    pub cleared: Vec<(Vec<u8>, Vec<u8>)>,
    pub read_conflicts: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
    /// The first limit broken by a write: FoundationDB reports these at commit, so do we.
    pub limit_error: Option<KvError>,
}

impl TxBuffer {
    fn account(&mut self, key: &[u8], value_len: usize) {
        if self.limit_error.is_some() {
            return;
        }
        if key.len() > KV_KEY_BYTES_MAX {
            self.limit_error = Some(KvError::KeyTooLarge {
                bytes: key.len(),
                limit: KV_KEY_BYTES_MAX,
            });
        } else if value_len > KV_VALUE_BYTES_MAX {
            self.limit_error = Some(KvError::ValueTooLarge {
                bytes: value_len,
                limit: KV_VALUE_BYTES_MAX,
            });
        }
        self.bytes += key.len() + value_len;
        if self.limit_error.is_none() && self.bytes > KV_TRANSACTION_BYTES_MAX {
            self.limit_error = Some(KvError::TransactionTooLarge {
                bytes: self.bytes,
                limit: KV_TRANSACTION_BYTES_MAX,
            });
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.account(key, value.len());
        self.points
            .insert(key.to_vec(), Point::Value(Some(value.to_vec())));
    }

    pub fn clear(&mut self, key: &[u8]) {
        self.account(key, 0);
        self.points.insert(key.to_vec(), Point::Value(None));
    }

    pub fn clear_range(&mut self, begin: &[u8], end: &[u8]) {
        if begin >= end {
            return;
        }
        self.account(begin, end.len());
        let doomed: Vec<Vec<u8>> = self
            .points
            .range(begin.to_vec()..end.to_vec())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.points.remove(&k);
        }
        self.cleared.push((begin.to_vec(), end.to_vec()));
    }

    pub fn atomic(&mut self, key: &[u8], op: AtomicOp) {
        self.account(key, 8);
        let cleared = self.in_cleared(key);
        match self.points.get_mut(key) {
            Some(Point::Value(v)) => *v = Some(apply_atomic(v.as_deref(), &op)),
            Some(Point::Atomic(ops)) => ops.push(op),
            None if cleared => {
                self.points
                    .insert(key.to_vec(), Point::Value(Some(apply_atomic(None, &op))));
            }
            None => {
                self.points.insert(key.to_vec(), Point::Atomic(vec![op]));
            }
        }
    }

    fn in_cleared(&self, key: &[u8]) -> bool {
        self.cleared
            .iter()
            .any(|(b, e)| b.as_slice() <= key && key < e.as_slice())
    }

    pub fn is_read_only(&self) -> bool {
        self.points.is_empty() && self.cleared.is_empty()
    }

    /// Whether this transaction wrote (or cleared) anything in `[begin, end)`: then a range read
    /// must see the whole range to merge its writes in.
    pub fn touches(&self, begin: &[u8], end: &[u8]) -> bool {
        self.points
            .range(begin.to_vec()..end.to_vec())
            .next()
            .is_some()
            || self
                .cleared
                .iter()
                .any(|(b, e)| b.as_slice() < end && begin < e.as_slice())
    }

    /// Whether a read of `key` needs the snapshot's value (the writes alone do not answer it).
    pub fn needs_base(&self, key: &[u8]) -> bool {
        match self.points.get(key) {
            Some(Point::Value(_)) => false,
            Some(Point::Atomic(_)) => true,
            None => !self.in_cleared(key),
        }
    }

    /// Reads `key` through this transaction's writes; `base` reads the snapshot.
    pub fn get(
        &mut self,
        key: &[u8],
        snapshot: bool,
        base: impl FnOnce() -> Result<Option<Vec<u8>>, KvError>,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let value = match self.points.get(key) {
            Some(Point::Value(v)) => return Ok(v.clone()),
            Some(Point::Atomic(ops)) => {
                let ops = ops.clone();
                let mut current = base()?;
                for op in &ops {
                    current = Some(apply_atomic(current.as_deref(), op));
                }
                current
            }
            None if self.in_cleared(key) => return Ok(None),
            None => base()?,
        };
        if !snapshot {
            self.read_conflicts.push((key.to_vec(), key_after(key)));
        }
        Ok(value)
    }

    /// Reads a range through this transaction's writes. `base(limit, reverse)` reads the
    /// snapshot; it is asked for exactly `limit` rows when the transaction wrote nothing in the
    /// range, and for the whole range (at most `KV_RANGE_ROWS_MAX` rows) otherwise.
    pub fn get_range(
        &mut self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
        base: impl FnOnce(usize, bool) -> Result<Vec<KeyValue>, KvError>,
    ) -> Result<Vec<KeyValue>, KvError> {
        let limit = match options.limit {
            0 => KV_RANGE_ROWS_MAX,
            n => n.min(KV_RANGE_ROWS_MAX),
        };
        if begin >= end {
            return Ok(Vec::new());
        }
        let rows = if self.touches(begin, end) {
            let all = base(KV_RANGE_ROWS_MAX, false)?;
            if all.len() >= KV_RANGE_ROWS_MAX {
                return Err(KvError::Invalid(format!(
                    "a range read over keys this transaction wrote may span at most {KV_RANGE_ROWS_MAX} rows"
                )));
            }
            let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = all.into_iter().collect();
            for (b, e) in &self.cleared {
                let doomed: Vec<Vec<u8>> = merged
                    .range(b.clone()..e.clone())
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    merged.remove(&k);
                }
            }
            for (k, p) in self.points.range(begin.to_vec()..end.to_vec()) {
                match p {
                    Point::Value(Some(v)) => {
                        merged.insert(k.clone(), v.clone());
                    }
                    Point::Value(None) => {
                        merged.remove(k);
                    }
                    Point::Atomic(ops) => {
                        let mut current = merged.get(k).cloned();
                        for op in ops {
                            current = Some(apply_atomic(current.as_deref(), op));
                        }
                        if let Some(v) = current {
                            merged.insert(k.clone(), v);
                        }
                    }
                }
            }
            let iter: Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)>> = if options.reverse {
                Box::new(merged.into_iter().rev())
            } else {
                Box::new(merged.into_iter())
            };
            iter.take(limit).collect()
        } else {
            base(limit, options.reverse)?
        };
        if !options.snapshot {
            // A read that stopped at its limit only depends on the keys up to where it stopped.
            let conflict = match rows.last() {
                Some((last, _)) if rows.len() == limit && !options.reverse => {
                    (begin.to_vec(), key_after(last))
                }
                Some((last, _)) if rows.len() == limit => (last.clone(), end.to_vec()),
                _ => (begin.to_vec(), end.to_vec()),
            };
            self.read_conflicts.push(conflict);
        }
        Ok(rows)
    }

    /// The ranges this transaction writes, for other transactions' conflict checks.
    pub fn write_ranges(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = self.cleared.clone();
        ranges.extend(self.points.keys().map(|k| (k.clone(), key_after(k))));
        ranges
    }

    /// Whether any of `writes` overlaps a range this transaction read.
    pub fn conflicts_with(&self, writes: &[(Vec<u8>, Vec<u8>)]) -> bool {
        self.read_conflicts.iter().any(|(rb, re)| {
            writes
                .iter()
                .any(|(wb, we)| wb.as_slice() < re.as_slice() && rb.as_slice() < we.as_slice())
        })
    }
}

/// The snapshot side of a transaction run in this process: reads as of its start.
pub trait SnapshotReader: Clone + Send + Sync + 'static {
    /// Refuses reads once the transaction is too old.
    fn check(&self) -> Result<(), KvError>;
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    fn read_range(
        &self,
        begin: &[u8],
        end: &[u8],
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<KeyValue>, KvError>;
}

/// A transaction of the in-process backends: snapshot reads through its own buffered writes.
/// The model and the embedded store differ only in their [`SnapshotReader`].
#[derive(Clone)]
pub struct BufferedTx<R> {
    pub(crate) reader: R,
    pub(crate) buffer: Arc<Mutex<TxBuffer>>,
}

impl<R> BufferedTx<R> {
    pub(crate) fn new(reader: R) -> Self {
        Self {
            reader,
            buffer: Arc::default(),
        }
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, TxBuffer> {
        self.buffer.lock().expect("tx lock")
    }
}

// Reads run inline and are answered at once: both readers serve from memory (or, for fjall,
// the page cache) in microseconds, and a transaction's reads are few and bounded.
impl<R: SnapshotReader> Transaction for BufferedTx<R> {
    fn get(
        &self,
        key: &[u8],
        snapshot: bool,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, KvError>> + Send {
        let result = self
            .reader
            .check()
            .and_then(|()| self.buffer().get(key, snapshot, || self.reader.read(key)));
        std::future::ready(result)
    }

    fn get_range(
        &self,
        begin: &[u8],
        end: &[u8],
        options: RangeOptions,
    ) -> impl Future<Output = Result<Vec<KeyValue>, KvError>> + Send {
        let result = self.reader.check().and_then(|()| {
            self.buffer()
                .get_range(begin, end, options, |limit, reverse| {
                    self.reader.read_range(begin, end, limit, reverse)
                })
        });
        std::future::ready(result)
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
