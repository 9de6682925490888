//! An oplog store that passes everything to another, and shows each append to a hook first,
//! which may hold it back or refuse it: how tests inject a slow or refusing store.

use crate::{Append, AppendsItsOwnWay, OplogStore, StorageError};
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
impl<S: OplogStore> AppendsItsOwnWay for Intercepted<S> {
    type Reads = S;

    fn reads(&self) -> &S {
        &self.inner
    }

    async fn append_its_way(&self, append: Append) -> Result<(), StorageError> {
        (self.hook)(&append).await?;
        self.inner.append(append).await
    }
}
