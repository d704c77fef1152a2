//! A key provider that counts the calls it passes on: each would be one KMS request. The capacity
//! model and the cache's tests count what the keyring saves rather than assume it.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{CryptoError, KeyContext, KeyProvider, KeyProviderKind};
use crate::secret::DataKey;

pub struct CountingKeyProvider<P> {
    inner: P,
    generates: AtomicU64,
    unwraps: AtomicU64,
}

impl<P> CountingKeyProvider<P> {
    pub fn new(inner: P) -> Self {
        Self { inner, generates: AtomicU64::new(0), unwraps: AtomicU64::new(0) }
    }

    /// The provider counted, to reach it uncounted.
    pub fn inner(&self) -> &P {
        &self.inner
    }

    /// The `generate` and `unwrap` calls so far.
    pub fn calls(&self) -> (u64, u64) {
        (self.generates.load(Ordering::SeqCst), self.unwraps.load(Ordering::SeqCst))
    }

    /// All calls since the last take, and the count starts again from zero.
    pub fn take_calls(&self) -> u64 {
        self.generates.swap(0, Ordering::SeqCst) + self.unwraps.swap(0, Ordering::SeqCst)
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for CountingKeyProvider<P> {
    fn kind(&self) -> KeyProviderKind {
        self.inner.kind()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn accepts(&self, key_id: &str) -> bool {
        self.inner.accepts(key_id)
    }
    async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>), CryptoError> {
        self.generates.fetch_add(1, Ordering::SeqCst);
        self.inner.generate(context).await
    }
    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey, CryptoError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(key_id, wrapped, context).await
    }
}
