//! An oplog store that passes everything to another, and shows each append to a hook first,
//! which may hold it back or refuse it: how tests inject a slow or refusing store.

use crate::{Append, OplogStore, SequencedEntry, StorageError, WorkerId, WorkerMetadata};
use async_trait::async_trait;
use std::future::Future;
use std::pin::Pin;

/// What the hook answers for an append: `Ok` passes it on, an error refuses it unwritten.
pub type HookFuture = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

pub struct Intercepted<S> {
    inner: S,
    hook: Box<dyn Fn(&Append) -> HookFuture + Send + Sync>,
}

impl<S: OplogStore> Intercepted<S> {
    pub fn new(inner: S, hook: impl Fn(&Append) -> HookFuture + Send + Sync + 'static) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
        }
    }

    /// The store behind the hook, to read what reached it.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: OplogStore> OplogStore for Intercepted<S> {
    async fn append(&self, append: Append) -> Result<(), StorageError> {
        (self.hook)(&append).await?;
        self.inner.append(append).await
    }

    async fn read(
        &self,
        worker: &WorkerId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<SequencedEntry>, StorageError> {
        self.inner.read(worker, from, limit).await
    }

    async fn metadata(&self, worker: &WorkerId) -> Result<Option<WorkerMetadata>, StorageError> {
        self.inner.metadata(worker).await
    }

    async fn in_flight_workers(&self) -> Result<Vec<WorkerId>, StorageError> {
        self.inner.in_flight_workers().await
    }

    async fn list_workers(
        &self,
        component: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(WorkerId, WorkerMetadata)>, StorageError> {
        self.inner.list_workers(component, after, limit).await
    }

    async fn delete_worker(&self, worker: &WorkerId) -> Result<(), StorageError> {
        self.inner.delete_worker(worker).await
    }

    async fn idempotent_outcome(
        &self,
        worker: &WorkerId,
        key: &str,
    ) -> Result<Option<u64>, StorageError> {
        self.inner.idempotent_outcome(worker, key).await
    }

    async fn truncate_before(&self, worker: &WorkerId, seq: u64) -> Result<(), StorageError> {
        self.inner.truncate_before(worker, seq).await
    }

    async fn log_bytes(&self, worker: &WorkerId) -> Result<u64, StorageError> {
        self.inner.log_bytes(worker).await
    }
}
