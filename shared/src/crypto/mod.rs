//! Envelope encryption: each secret is sealed with AES-256-GCM under a fresh 256-bit data key from
//! the key provider (KMS, or a local master key); only the wrapped data key is stored beside it.
//!
//! The [`EncryptionContext`] binds a record to its owner and purpose twice: as GCM associated data
//! and as the KMS encryption context. A record copied into another user's item, or moved to another
//! provider's slot, fails to open.

mod kms;
mod local;
mod sealed;

use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::model::{OAuthProvider, UserId};
use crate::secret::DataKey;

pub use kms::KmsKeyProvider;
pub use local::LocalKeyProvider;
pub use sealed::{FORMAT_VERSION, NONCE_LEN, Sealed};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed record is malformed")]
    Malformed,
    #[error("sealed record has unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("sealed record was made by another key ({0}); refusing to open it")]
    ForeignKey(String),
    /// Authentication failed: tampering, or a record opened under the wrong context.
    #[error("sealed record failed authentication")]
    Refused,
    #[error("key service unavailable: {0}")]
    KeyServiceUnavailable(String),
    #[error("key provider failure: {0}")]
    KeyProvider(String),
}

/// Which kind of key provider wrapped a data key; recorded in every [`Sealed`] record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProviderKind {
    Kms,
    Local,
}

impl KeyProviderKind {
    fn tag(self) -> u8 {
        match self {
            Self::Kms => 1,
            Self::Local => 2,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            1 => Some(Self::Kms),
            2 => Some(Self::Local),
            _ => None,
        }
    }
}

/// What a sealed secret is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    LlmKey,
    Auth0Refresh,
    /// The tokens of a connected account at one OAuth provider.
    Connection(OAuthProvider),
    /// The PKCE verifier of a sign-in or connect in flight.
    OAuthState,
}

impl Purpose {
    /// Every purpose, one per connection provider among them.
    pub fn all() -> impl Iterator<Item = Self> {
        [Self::LlmKey, Self::Auth0Refresh, Self::OAuthState]
            .into_iter()
            .chain(OAuthProvider::ALL.iter().map(|&p| Self::Connection(p)))
    }

    /// The name key policies match on (`keyward:purpose`): `llm-key`, `google-oauth`, …
    pub fn name(self) -> String {
        match self {
            Self::LlmKey => "llm-key".into(),
            Self::Auth0Refresh => "auth0-refresh".into(),
            Self::Connection(provider) => format!("{provider}-oauth"),
            Self::OAuthState => "oauth-state".into(),
        }
    }
}

/// Who and what a sealed record belongs to. Identifiers only: KMS logs the context in CloudTrail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    user: UserId,
    purpose: Purpose,
    /// Distinguishes records of one purpose, e.g. the provider of an LLM key; empty when unique.
    name: String,
}

impl EncryptionContext {
    pub fn new(user: &UserId, purpose: Purpose, name: impl Into<String>) -> Self {
        Self { user: user.clone(), purpose, name: name.into() }
    }

    /// The KMS `EncryptionContext` map (key policies can require these keys).
    pub fn kms_pairs(&self) -> [(&'static str, String); 3] {
        [
            ("keyward:user", self.user.as_str().to_owned()),
            ("keyward:purpose", self.purpose.name()),
            ("keyward:name", self.name.clone()),
        ]
    }

    /// Canonical, unambiguous bytes (length-prefixed fields) used as AES-GCM associated data.
    /// The format version is part of it, so a record relabelled to another version cannot open.
    pub fn aad(&self, version: u8, provider: KeyProviderKind) -> Vec<u8> {
        let mut out = b"keyward/sealed".to_vec();
        out.extend_from_slice(&[version, provider.tag()]);
        let purpose = self.purpose.name();
        for field in [purpose.as_str(), self.user.as_str(), self.name.as_str()] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// A source of data keys: makes fresh ones (plaintext + wrapped) and unwraps stored ones.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    fn kind(&self) -> KeyProviderKind;
    /// The one key this provider wraps under; records naming another key are refused.
    fn key_id(&self) -> &str;
    async fn generate(&self, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>), CryptoError>;
    async fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey, CryptoError>;
}

/// Seals and opens secrets, caching unwrapped data keys briefly so warm reads make no key-service call.
#[derive(Clone)]
pub struct Envelope {
    provider: Arc<dyn KeyProvider>,
    cache: moka::sync::Cache<[u8; 32], Arc<DataKey>>,
}

impl Envelope {
    /// Data keys cached at most; each is 32 bytes plus bookkeeping.
    const CACHE_CAPACITY: u64 = 10_000;
    const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

    pub fn new(provider: Arc<dyn KeyProvider>, cache_ttl: Duration) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(Self::CACHE_CAPACITY)
            .time_to_live(cache_ttl.min(Self::MAX_CACHE_TTL))
            .build();
        Self { provider, cache }
    }

    pub async fn seal(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Sealed, CryptoError> {
        let kind = self.provider.kind();
        let (data_key, wrapped_key) = self.provider.generate(context).await?;
        let nonce = random_nonce();
        let aad = context.aad(FORMAT_VERSION, kind);
        let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.expose()))
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| CryptoError::KeyProvider("AES-GCM encryption failed".into()))?;
        self.cache.insert(cache_key(&wrapped_key, &aad), Arc::new(data_key));
        Ok(Sealed {
            version: FORMAT_VERSION,
            provider: kind,
            key_id: self.provider.key_id().to_owned(),
            wrapped_key,
            nonce,
            ciphertext,
        })
    }

    pub async fn open(&self, sealed: &Sealed, context: &EncryptionContext) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.provider != self.provider.kind() || sealed.key_id != self.provider.key_id() {
            return Err(CryptoError::ForeignKey(sealed.key_id.clone()));
        }
        let aad = context.aad(sealed.version, sealed.provider);
        let slot = cache_key(&sealed.wrapped_key, &aad);
        let data_key = match self.cache.get(&slot) {
            Some(key) => key,
            None => {
                let key = Arc::new(self.provider.unwrap(&sealed.wrapped_key, context).await?);
                self.cache.insert(slot, Arc::clone(&key));
                key
            }
        };
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.expose()))
            .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Refused)
    }

    /// Opens a sealed UTF-8 secret (a key or token).
    pub async fn open_text(&self, sealed: &Sealed, context: &EncryptionContext) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, context).await?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

/// The cache slot of a data key: its wrapped form and the context it was unwrapped under.
fn cache_key(wrapped_key: &[u8], aad: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((wrapped_key.len() as u32).to_be_bytes());
    hasher.update(wrapped_key);
    hasher.update(aad);
    hasher.finalize().into()
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests;
