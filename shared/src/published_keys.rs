//! Signing keys a third party publishes at a URL (Auth0's JWKS, GitHub's secret-scanning keys): one
//! cache per execution environment, refetched when stale, and for an unknown key id at most once
//! per refetch interval, so forged ids cannot flood the publisher. Stale keys keep working through
//! the publisher's outage.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::RwLock;
use url::Url;

use crate::outbound::{Outbound, read_capped};

/// How long fetched keys are trusted before a refetch.
pub const KEYS_TTL: Duration = Duration::from_secs(600);
/// The least time between fetches forced by unknown key ids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// The least time between fetch attempts while no fresh keys are held.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// No key set is larger than this.
const MAX_KEYS_BYTES: usize = 64 * 1024;

/// Why no key could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup {
    /// The publisher cannot be reached and no key was ever fetched.
    Unavailable,
    /// The publisher's current set has no key of that id.
    Unknown,
}

struct Cache<K> {
    keys: HashMap<String, K>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
}

pub struct PublishedKeys<K> {
    cache: RwLock<Cache<K>>,
    refetch_interval: Duration,
}

impl<K: Clone> PublishedKeys<K> {
    pub fn new(refetch_interval: Duration) -> Self {
        let cache = Cache { keys: HashMap::new(), fetched_at: None, last_attempt: None };
        Self { cache: RwLock::new(cache), refetch_interval }
    }

    /// The key of `id`, fetching the set with `fetch` when the cache is stale or lacks it (and the
    /// interval allows).
    pub async fn get<F, Fut>(&self, id: &str, fetch: F) -> Result<K, KeyLookup>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<HashMap<String, K>, ()>>,
    {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < KEYS_TTL);
            if let Some(key) = cache.keys.get(id).filter(|_| fresh) {
                return Ok(key.clone());
            }
        }
        let mut cache = self.cache.write().await;
        // Another request may have refreshed the cache while this one waited for the lock.
        let fresh = cache.fetched_at.is_some_and(|at| at.elapsed() < KEYS_TTL);
        if let Some(key) = cache.keys.get(id).filter(|_| fresh) {
            return Ok(key.clone());
        }
        let pause = if fresh { self.refetch_interval } else { RETRY_INTERVAL.min(self.refetch_interval) };
        if cache.last_attempt.is_none_or(|at| at.elapsed() >= pause) {
            cache.last_attempt = Some(Instant::now());
            match fetch().await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                }
                Err(()) if cache.keys.is_empty() => return Err(KeyLookup::Unavailable),
                Err(()) => {}
            }
        }
        cache.keys.get(id).cloned().ok_or(KeyLookup::Unknown)
    }
}

/// The body a key set's URL answers with, or `Err` (logged as `what`) when it cannot be had.
pub async fn fetch_key_set(http: &Outbound, url: &Url, what: &str) -> Result<Vec<u8>, ()> {
    let http = http.client().map_err(|e| tracing::warn!(error = %e, "{what} fetch failed"))?;
    let response = http.get(url.clone()).send().await.map_err(|e| {
        tracing::warn!(error = %e.without_url(), "{what} fetch failed");
    })?;
    if !response.status().is_success() {
        tracing::warn!(status = response.status().as_u16(), "{what} fetch refused");
        return Err(());
    }
    let (body, more) = read_capped(response, MAX_KEYS_BYTES).await.map_err(|e| {
        tracing::warn!(error = %e.without_url(), "{what} fetch failed");
    })?;
    if more {
        tracing::warn!(limit = MAX_KEYS_BYTES, "the {what} is larger than any key set should be");
        return Err(());
    }
    Ok(body)
}
