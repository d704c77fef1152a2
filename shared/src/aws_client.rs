//! AWS SDK clients built on first use.
//!
//! Building an SDK client costs a few hundred microseconds (its runtime plugins and endpoint rules):
//! about 0.9 ms for DynamoDB, KMS and Secrets Manager together, half of what a function's cold start
//! spent above a bare `lambda_runtime` function (BENCHMARKS.md). Health checks call no service,
//! `stripe-webhook` never calls KMS and `internal-keys` never calls Secrets Manager, so each client
//! is built by the first call that needs it.

use std::ops::Deref;
use std::sync::{Arc, LazyLock};

type Build<C> = Box<dyn FnOnce() -> C + Send>;

/// A client built the first time it is used; clones share the one client.
pub struct LazyClient<C>(Arc<LazyLock<C, Build<C>>>);

impl<C> LazyClient<C> {
    /// A client `build` makes on first use.
    pub fn new(build: impl FnOnce() -> C + Send + 'static) -> Self {
        Self(Arc::new(LazyLock::new(Box::new(build))))
    }
}

/// A client built already (tests configure theirs with interceptors or their own endpoints).
impl<C: Send + 'static> From<C> for LazyClient<C> {
    fn from(client: C) -> Self {
        Self::new(move || client)
    }
}

impl<C> Deref for LazyClient<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.0
    }
}

impl<C> Clone for LazyClient<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_client_is_built_once_on_first_use_and_shared_by_clones() {
        static BUILDS: AtomicUsize = AtomicUsize::new(0);
        let client = LazyClient::new(|| {
            BUILDS.fetch_add(1, Ordering::SeqCst);
            String::from("client")
        });
        let clone = client.clone();
        assert_eq!(BUILDS.load(Ordering::SeqCst), 0, "nothing is built before a use");
        assert_eq!(clone.len(), 6);
        assert_eq!(*client, "client");
        assert_eq!(BUILDS.load(Ordering::SeqCst), 1, "one build, shared by the clones");
    }
}
