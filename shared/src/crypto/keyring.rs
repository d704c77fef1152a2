//! The hierarchical keyring: one 256-bit branch key per purpose and version, wrapped by the key
//! provider (KMS) and kept in the table; each record's key is derived from a branch key with
//! HKDF-SHA256 and a fresh salt. An instance unwraps a branch key once per cache TTL, so a warm
//! instance seals and opens with no key-service call (`docs/crypto.md`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{CryptoError, KeyContext, KeyMaintenance, Purpose};
use crate::secret::DataKey;

/// A record's salt: fresh per seal, so no two records share a key.
pub const SALT_LEN: usize = 32;
/// A record's key commitment (HKDF output beside its key).
pub const COMMITMENT_LEN: usize = 32;

/// A branch key's version: 16 random bytes, carried raw in records and as hex in the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchVersion([u8; 16]);

impl BranchVersion {
    pub fn random() -> Self {
        Self(rand::random())
    }

    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    pub fn parse(hex: &str) -> Option<Self> {
        let bytes = hex::decode(hex).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl std::fmt::Display for BranchVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for BranchVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BranchVersion({self})")
    }
}

/// One version of a purpose's branch key as the table holds it: wrapped, never in the clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedBranchKey {
    pub purpose: Purpose,
    pub version: BranchVersion,
    /// The key-provider key that wrapped it (a KMS key ARN, or local mode's key id).
    pub key_id: String,
    pub wrapped: Vec<u8>,
    pub created_at: i64,
}

/// Where branch keys live. The store implements it over the table.
#[async_trait]
pub trait BranchKeyStore: Send + Sync {
    /// The version of `purpose` new records are sealed under; `None` before the first seal.
    async fn active(&self, purpose: Purpose) -> Result<Option<WrappedBranchKey>, CryptoError>;
    /// One version of `purpose`, active or not; `None` if there is none (or it was retired).
    async fn version(&self, purpose: Purpose, version: BranchVersion) -> Result<Option<WrappedBranchKey>, CryptoError>;
    /// Stores `first` as the purpose's first, active version, unless another instance did so
    /// first; returns the active version either way.
    async fn create_first(&self, first: &WrappedBranchKey) -> Result<WrappedBranchKey, CryptoError>;
}

/// A new branch key for `purpose`, made inside the provider: its plaintext never leaves it.
pub async fn new_branch_key(
    provider: &dyn KeyMaintenance,
    purpose: Purpose,
    now: i64,
) -> Result<WrappedBranchKey, CryptoError> {
    let version = BranchVersion::random();
    let wrapped = provider.generate_wrapped(&KeyContext::BranchKey { purpose, version }).await?;
    Ok(WrappedBranchKey { purpose, version, key_id: provider.key_id().to_owned(), wrapped, created_at: now })
}

/// `branch_key` wrapped under the provider's current key, inside the provider; `None` when it
/// already is.
pub async fn moved_branch_key(
    provider: &dyn KeyMaintenance,
    branch_key: &WrappedBranchKey,
) -> Result<Option<WrappedBranchKey>, CryptoError> {
    if branch_key.key_id == provider.key_id() {
        return Ok(None);
    }
    let context = KeyContext::BranchKey { purpose: branch_key.purpose, version: branch_key.version };
    let wrapped = provider.rewrap(&branch_key.key_id, &branch_key.wrapped, &context).await?;
    Ok(Some(WrappedBranchKey { key_id: provider.key_id().to_owned(), wrapped, ..branch_key.clone() }))
}

/// A record's key and its commitment, derived from a branch key: HKDF-SHA256 with the record's
/// salt, expanded twice with the record's AAD (its context, format and branch version) in the info.
pub(super) fn derive(branch_key: &DataKey, salt: &[u8; SALT_LEN], aad: &[u8]) -> (DataKey, [u8; COMMITMENT_LEN]) {
    let hkdf = Hkdf::<Sha256>::new(Some(salt), branch_key.expose());
    // Both lengths are far below HKDF's limit of 255 × 32 bytes, so expanding cannot fail.
    let key = DataKey::filled_by(|key| {
        let _ = hkdf.expand_multi_info(&[b"keyward/v2/record-key|", aad], key);
    });
    let mut commitment = [0u8; COMMITMENT_LEN];
    let _ = hkdf.expand_multi_info(&[b"keyward/v2/commitment|", aad], &mut commitment);
    (key, commitment)
}

/// A MAC of `message` for `aad` (the record's context and branch version, self-delimiting) under
/// a branch key: HKDF-SHA256's expand, which is HMAC-SHA256 keyed by the branch key's PRK.
pub(super) fn mac(branch_key: &DataKey, aad: &[u8], message: &[u8]) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(None, branch_key.expose());
    let mut mac = [0u8; 32];
    // One block, far below HKDF's limit of 255 × 32 bytes: expanding cannot fail.
    let _ = hkdf.expand_multi_info(&[b"keyward/v2/mac|", aad, message], &mut mac);
    mac
}

/// Whether a stored commitment is the one the derived key makes, compared in constant time.
pub(super) fn commits(expected: &[u8; COMMITMENT_LEN], stored: &[u8; COMMITMENT_LEN]) -> bool {
    expected.ct_eq(stored).into()
}

/// Unwrapped keys of one instance, each until its time is up (the caller's clock, in ms).
pub(super) struct KeyCache {
    ttl_millis: i64,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    active: HashMap<Purpose, (BranchVersion, Arc<DataKey>, i64)>,
    branch: HashMap<(Purpose, BranchVersion), (Arc<DataKey>, i64)>,
    /// Format-1 records' own data keys, by a digest of the wrapped key and the context.
    data_keys: HashMap<[u8; 32], (Arc<DataKey>, i64)>,
}

impl KeyCache {
    /// Format-1 data keys cached at most (32 bytes and bookkeeping each); branch keys are few.
    const DATA_KEY_CAPACITY: usize = 10_000;

    pub(super) fn new(ttl_millis: i64) -> Self {
        Self { ttl_millis, entries: Mutex::default() }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves maps that are still consistent: use them.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn active(&self, purpose: Purpose, now: i64) -> Option<(BranchVersion, Arc<DataKey>)> {
        match self.entries().active.get(&purpose) {
            Some((version, key, until)) if now < *until => Some((*version, Arc::clone(key))),
            _ => None,
        }
    }

    pub(super) fn branch(&self, purpose: Purpose, version: BranchVersion, now: i64) -> Option<Arc<DataKey>> {
        match self.entries().branch.get(&(purpose, version)) {
            Some((key, until)) if now < *until => Some(Arc::clone(key)),
            _ => None,
        }
    }

    pub(super) fn data_key(&self, slot: &[u8; 32], now: i64) -> Option<Arc<DataKey>> {
        match self.entries().data_keys.get(slot) {
            Some((key, until)) if now < *until => Some(Arc::clone(key)),
            _ => None,
        }
    }

    pub(super) fn put_branch(
        &self,
        purpose: Purpose,
        version: BranchVersion,
        key: &Arc<DataKey>,
        active: bool,
        now: i64,
    ) {
        if self.ttl_millis <= 0 {
            return;
        }
        let until = now + self.ttl_millis;
        let mut entries = self.entries();
        entries.branch.retain(|_, (_, at)| now < *at);
        entries.branch.insert((purpose, version), (Arc::clone(key), until));
        if active {
            entries.active.insert(purpose, (version, Arc::clone(key), until));
        }
    }

    pub(super) fn put_data_key(&self, slot: [u8; 32], key: Arc<DataKey>, now: i64) {
        if self.ttl_millis <= 0 {
            return;
        }
        let mut entries = self.entries();
        if entries.data_keys.len() >= Self::DATA_KEY_CAPACITY {
            entries.data_keys.retain(|_, (_, until)| now < *until);
            if entries.data_keys.len() >= Self::DATA_KEY_CAPACITY {
                entries.data_keys.clear();
            }
        }
        entries.data_keys.insert(slot, (key, now + self.ttl_millis));
    }
}
