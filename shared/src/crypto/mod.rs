//! Envelope encryption over a hierarchical keyring: each secret is sealed with AES-256-GCM under a
//! key of its own, derived from its purpose's branch key and a fresh salt; branch keys are wrapped
//! by the key provider (KMS, or a local master key) and kept in the table ([`keyring`]).
//!
//! The [`EncryptionContext`] binds a record to its owner and purpose: it is the GCM associated data
//! and part of the key derivation, beside the branch key's version, and a key commitment stored
//! with the record is checked before decrypting. A record copied into another user's item, moved to
//! another provider's slot or relabelled to another version fails to open. Records of format 1
//! (a KMS data key per record) still open; the rewrap job moves them to format 2.

mod counting;
mod keyring;
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

use crate::model::{Clock, OAuthProvider, UserId};
use crate::secret::DataKey;

pub use counting::CountingKeyProvider;
pub use keyring::{
    BranchKeyStore, BranchVersion, COMMITMENT_LEN, SALT_LEN, WrappedBranchKey, moved_branch_key, new_branch_key,
};
pub use kms::KmsKeyProvider;
pub use local::LocalKeyProvider;
pub use sealed::{NONCE_LEN, Sealed, Wrapping};

/// The message a MAC binds: `label`, then each field length-prefixed, so no two field lists
/// frame to the same bytes.
pub fn framed(label: &str, fields: &[&str]) -> Vec<u8> {
    let mut out = label.as_bytes().to_vec();
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// A MAC under a purpose's branch key, and the version that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub version: BranchVersion,
    pub mac: [u8; 32],
}

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
    /// The record names a branch key version its purpose does not have (retired, or tampered).
    #[error("no {purpose} branch key of version {version}; refusing to open the record")]
    UnknownBranchKey { purpose: String, version: BranchVersion },
    #[error("branch key store: {0}")]
    KeyStore(String),
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

/// What a sealed secret is for; each purpose has branch keys of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    LlmKey,
    Auth0Refresh,
    /// The tokens of a connected account at one OAuth provider.
    Connection(OAuthProvider),
    /// The PKCE verifier of a sign-in or connect in flight.
    OAuthState,
    /// The MACs that bind a personal access token's record (never sealing: nothing is secret).
    AccessToken,
    /// The MACs that bind a session family to its user and current handle (never sealing).
    Session,
}

impl Purpose {
    /// Every purpose, one per connection provider among them.
    pub fn all() -> impl Iterator<Item = Self> {
        [Self::LlmKey, Self::Auth0Refresh, Self::OAuthState, Self::AccessToken, Self::Session]
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
            Self::AccessToken => "access-token".into(),
            Self::Session => "session".into(),
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

    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Canonical, unambiguous bytes (length-prefixed fields) used as AES-GCM associated data of a
    /// format-1 record: the format and the key provider are part of it.
    pub fn aad_v1(&self, provider: KeyProviderKind) -> Vec<u8> {
        self.aad_with(&[1, provider.tag()])
    }

    /// The associated data of a format-2 record, which also goes into its key's derivation: the
    /// format and the branch key version are part of it, so a record relabelled to another format
    /// or version cannot open.
    pub fn aad_v2(&self, version: BranchVersion) -> Vec<u8> {
        let mut aad = self.aad_with(&[2]);
        aad.extend_from_slice(version.as_bytes());
        aad
    }

    fn aad_with(&self, header: &[u8]) -> Vec<u8> {
        let mut out = b"keyward/sealed".to_vec();
        out.extend_from_slice(header);
        let purpose = self.purpose.name();
        for field in [purpose.as_str(), self.user.as_str(), self.name.as_str()] {
            out.extend_from_slice(&(field.len() as u32).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// What the key provider wraps: a purpose's branch key, or (format 1) one record's data key. KMS
/// sees it as the encryption context, which key policies match on and CloudTrail records.
#[derive(Debug, Clone, Copy)]
pub enum KeyContext<'a> {
    BranchKey { purpose: Purpose, version: BranchVersion },
    Record(&'a EncryptionContext),
}

impl KeyContext<'_> {
    /// The KMS `EncryptionContext` map.
    pub fn kms_pairs(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::BranchKey { purpose, version } => {
                vec![("keyward:purpose", purpose.name()), ("keyward:branch-key", version.to_string())]
            }
            Self::Record(context) => context.kms_pairs().into(),
        }
    }

    /// The associated data a local master key wraps under.
    fn local_aad(&self) -> Vec<u8> {
        match self {
            Self::BranchKey { purpose, version } => {
                let purpose = purpose.name();
                let mut out = b"keyward/branch-key".to_vec();
                out.extend_from_slice(&(purpose.len() as u32).to_be_bytes());
                out.extend_from_slice(purpose.as_bytes());
                out.extend_from_slice(version.as_bytes());
                out
            }
            Self::Record(context) => context.aad_v1(KeyProviderKind::Local),
        }
    }
}

/// A key provider: wraps and unwraps keys under one current key (KMS, or a local master key).
#[async_trait]
pub trait KeyProvider: Send + Sync {
    fn kind(&self) -> KeyProviderKind;
    /// The key new material is wrapped under.
    fn key_id(&self) -> &str;
    /// Whether material wrapped under `key_id` opens here: the current key, or one being moved from.
    fn accepts(&self, key_id: &str) -> bool {
        key_id == self.key_id()
    }
    /// A fresh 256-bit key, in plaintext and wrapped under the current key.
    async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>), CryptoError>;
    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey, CryptoError>;
}

/// What only the keyring's operator asks of a provider. A trait of its own, so the functions,
/// which never rotate or move keys, do not carry those calls (each is an SDK operation's code).
#[async_trait]
pub trait KeyMaintenance: KeyProvider {
    /// A fresh 256-bit key, wrapped only: its plaintext never leaves the provider.
    async fn generate_wrapped(&self, context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError>;
    /// Wraps under the current key what `key_id` wrapped, inside the provider (KMS `ReEncrypt`).
    async fn rewrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError>;
}

/// Which format [`Envelope::seal`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealFormat {
    /// Format 2: keys derived from the purpose's branch key. What keyward writes.
    BranchKeys,
    /// Format 1: a key-provider data key per record. Written only to model and test the design
    /// keyward moved from (`scripts/capacity`, the compatibility tests).
    DataKeyPerRecord,
}

/// Seals and opens secrets. Unwrapped branch keys (and format 1's data keys) are cached per
/// instance for the TTL, so a warm instance seals and opens with no key-service call.
#[derive(Clone)]
pub struct Envelope {
    provider: Arc<dyn KeyProvider>,
    branch_keys: Arc<dyn BranchKeyStore>,
    cache: Arc<keyring::KeyCache>,
    clock: Arc<dyn Clock>,
    format: SealFormat,
}

impl Envelope {
    /// The longest a key stays cached, and so the longest an instance seals under a branch key
    /// version after a rotation: retiring a version waits this long.
    pub const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

    pub fn new(
        provider: Arc<dyn KeyProvider>,
        branch_keys: Arc<dyn BranchKeyStore>,
        cache_ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ttl = cache_ttl.min(Self::MAX_CACHE_TTL).as_millis() as i64;
        Self {
            provider,
            branch_keys,
            cache: Arc::new(keyring::KeyCache::new(ttl)),
            clock,
            format: SealFormat::BranchKeys,
        }
    }

    /// The same envelope writing `format`.
    pub fn writing(mut self, format: SealFormat) -> Self {
        self.format = format;
        self
    }

    pub async fn seal(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Sealed, CryptoError> {
        match self.format {
            SealFormat::BranchKeys => self.seal_v2(plaintext, context).await,
            SealFormat::DataKeyPerRecord => self.seal_v1(plaintext, context).await,
        }
    }

    pub async fn open(&self, sealed: &Sealed, context: &EncryptionContext) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &sealed.wrapping {
            Wrapping::Branch { version, salt, commitment } => {
                let branch_key = self.branch_key(context.purpose, *version).await?;
                let aad = context.aad_v2(*version);
                let (key, expected) = keyring::derive(&branch_key, salt, &aad);
                // Plain AES-GCM is not key-committing: check the commitment before decrypting.
                if !keyring::commits(&expected, commitment) {
                    return Err(CryptoError::Refused);
                }
                decrypt(&key, sealed, &aad)
            }
            Wrapping::DataKey { provider, key_id, wrapped_key } => {
                if *provider != self.provider.kind() || !self.provider.accepts(key_id) {
                    return Err(CryptoError::ForeignKey(key_id.clone()));
                }
                let aad = context.aad_v1(*provider);
                let slot = cache_slot(wrapped_key, &aad);
                let now = self.clock.now_millis();
                let key = match self.cache.data_key(&slot, now) {
                    Some(key) => key,
                    None => {
                        let key =
                            Arc::new(self.provider.unwrap(key_id, wrapped_key, &KeyContext::Record(context)).await?);
                        self.cache.put_data_key(slot, Arc::clone(&key), now);
                        key
                    }
                };
                decrypt(&key, sealed, &aad)
            }
        }
    }

    /// Opens a sealed UTF-8 secret (a key or token).
    pub async fn open_text(&self, sealed: &Sealed, context: &EncryptionContext) -> Result<SecretString, CryptoError> {
        let bytes = self.open(sealed, context).await?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CryptoError::Malformed)?;
        Ok(SecretString::from(text.to_owned()))
    }

    /// A MAC of `message`, bound to `context`, under its purpose's active branch key: what lets a
    /// record that holds no secret prove it was written by keyward, not by someone with table access.
    pub async fn tag(&self, message: &[u8], context: &EncryptionContext) -> Result<Tag, CryptoError> {
        let (version, branch_key) = self.active_branch_key(context.purpose).await?;
        Ok(Tag { version, mac: keyring::mac(&branch_key, &context.aad_v2(version), message) })
    }

    /// Whether `tag` is the MAC of `message` and `context`, compared in constant time; a version
    /// the purpose does not have is [`CryptoError::UnknownBranchKey`].
    pub async fn check_tag(&self, message: &[u8], context: &EncryptionContext, tag: &Tag) -> Result<(), CryptoError> {
        let branch_key = self.branch_key(context.purpose, tag.version).await?;
        let expected = keyring::mac(&branch_key, &context.aad_v2(tag.version), message);
        if keyring::commits(&expected, &tag.mac) { Ok(()) } else { Err(CryptoError::Refused) }
    }

    /// The key the provider wraps new material under.
    pub fn key_id(&self) -> &str {
        self.provider.key_id()
    }

    fn wrapped_branch_key(&self, purpose: Purpose, version: BranchVersion, wrapped: Vec<u8>) -> WrappedBranchKey {
        let key_id = self.provider.key_id().to_owned();
        WrappedBranchKey { purpose, version, key_id, wrapped, created_at: self.clock.now() }
    }

    async fn seal_v2(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Sealed, CryptoError> {
        let (version, branch_key) = self.active_branch_key(context.purpose).await?;
        let salt: [u8; SALT_LEN] = rand::random();
        let aad = context.aad_v2(version);
        let (key, commitment) = keyring::derive(&branch_key, &salt, &aad);
        let (nonce, ciphertext) = encrypt(&key, plaintext, &aad)?;
        Ok(Sealed { wrapping: Wrapping::Branch { version, salt, commitment }, nonce, ciphertext })
    }

    async fn seal_v1(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Sealed, CryptoError> {
        let kind = self.provider.kind();
        let (data_key, wrapped_key) = self.provider.generate(&KeyContext::Record(context)).await?;
        let aad = context.aad_v1(kind);
        let (nonce, ciphertext) = encrypt(&data_key, plaintext, &aad)?;
        self.cache.put_data_key(cache_slot(&wrapped_key, &aad), Arc::new(data_key), self.clock.now_millis());
        let key_id = self.provider.key_id().to_owned();
        Ok(Sealed { wrapping: Wrapping::DataKey { provider: kind, key_id, wrapped_key }, nonce, ciphertext })
    }

    /// The version new records of `purpose` are sealed under, and its key; the first seal of a
    /// purpose makes its first version.
    async fn active_branch_key(&self, purpose: Purpose) -> Result<(BranchVersion, Arc<DataKey>), CryptoError> {
        let now = self.clock.now_millis();
        if let Some(active) = self.cache.active(purpose, now) {
            return Ok(active);
        }
        let (stored, key) = match self.branch_keys.active(purpose).await? {
            // The version this instance already opens records with: no need to unwrap it again.
            Some(stored) => match self.cache.branch(purpose, stored.version, now) {
                Some(key) => {
                    self.cache.put_branch(purpose, stored.version, &key, true, now);
                    return Ok((stored.version, key));
                }
                None => {
                    let key = self.unwrap_branch_key(&stored).await?;
                    (stored, key)
                }
            },
            None => {
                let version = BranchVersion::random();
                let (key, wrapped) = self.provider.generate(&KeyContext::BranchKey { purpose, version }).await?;
                let ours = self.wrapped_branch_key(purpose, version, wrapped);
                let active = self.branch_keys.create_first(&ours).await?;
                // Another instance may have made the first version meanwhile: use the one stored.
                let key = if active == ours { key } else { self.unwrap_branch_key(&active).await? };
                (active, key)
            }
        };
        let key = Arc::new(key);
        self.cache.put_branch(purpose, stored.version, &key, true, now);
        Ok((stored.version, key))
    }

    async fn branch_key(&self, purpose: Purpose, version: BranchVersion) -> Result<Arc<DataKey>, CryptoError> {
        let now = self.clock.now_millis();
        if let Some(key) = self.cache.branch(purpose, version, now) {
            return Ok(key);
        }
        let stored = self
            .branch_keys
            .version(purpose, version)
            .await?
            .ok_or_else(|| CryptoError::UnknownBranchKey { purpose: purpose.name(), version })?;
        let key = Arc::new(self.unwrap_branch_key(&stored).await?);
        self.cache.put_branch(purpose, version, &key, false, now);
        Ok(key)
    }

    async fn unwrap_branch_key(&self, stored: &WrappedBranchKey) -> Result<DataKey, CryptoError> {
        if !self.provider.accepts(&stored.key_id) {
            return Err(CryptoError::ForeignKey(stored.key_id.clone()));
        }
        let context = KeyContext::BranchKey { purpose: stored.purpose, version: stored.version };
        self.provider.unwrap(&stored.key_id, &stored.wrapped, &context).await
    }
}

fn encrypt(key: &DataKey, plaintext: &[u8], aad: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>), CryptoError> {
    let nonce = random_nonce();
    let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()))
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
        .map_err(|_| CryptoError::KeyProvider("AES-GCM encryption failed".into()))?;
    Ok((nonce, ciphertext))
}

fn decrypt(key: &DataKey, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key.expose()))
        .decrypt(Nonce::from_slice(&sealed.nonce), Payload { msg: &sealed.ciphertext, aad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::Refused)
}

/// The cache slot of a format-1 data key: its wrapped form and the context it was unwrapped under.
fn cache_slot(wrapped_key: &[u8], aad: &[u8]) -> [u8; 32] {
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
