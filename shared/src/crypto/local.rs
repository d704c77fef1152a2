//! Local key provider: a 256-bit master key in a file (mode 0600), wrapping keys with AES-256-GCM
//! under their context. For local mode only; AWS mode uses KMS. Local mode has one master key, so
//! there is nothing to move keys to.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{CryptoError, KeyContext, KeyMaintenance, KeyProvider, KeyProviderKind, NONCE_LEN, random_nonce};
use crate::secret::DataKey;

pub struct LocalKeyProvider {
    master: DataKey,
    key_id: String,
}

impl LocalKeyProvider {
    pub const FILE_NAME: &'static str = "master.key";

    /// Opens `dir/master.key`, creating it (and `dir`) on first run.
    pub fn open_or_create(dir: &Path) -> Result<Self, CryptoError> {
        let io = |what: &str, e: std::io::Error| CryptoError::KeyProvider(format!("{what} {}: {e}", dir.display()));
        crate::files::create_private_dir(dir).map_err(|e| io("cannot create", e))?;
        crate::files::ensure_own(dir).map_err(CryptoError::KeyProvider)?;
        let path = dir.join(Self::FILE_NAME);
        if std::fs::symlink_metadata(&path).is_err() {
            let key = Zeroizing::new(rand::random::<[u8; 32]>());
            crate::files::create_private(&path, &key[..]).map_err(|e| io("cannot write master key in", e))?;
        }
        let mut bytes = crate::files::read_private(&path).map_err(CryptoError::KeyProvider)?;
        let master = DataKey::from_slice(&mut bytes)
            .ok_or_else(|| CryptoError::KeyProvider(format!("{} is not a 32-byte key", path.display())))?;
        Ok(Self::from_master(master))
    }

    pub fn from_master(master: DataKey) -> Self {
        let fingerprint = Sha256::new().chain_update(b"keyward-local-key-id").chain_update(master.expose()).finalize();
        let key_id = format!("local:{}", hex::encode(&fingerprint[..8]));
        Self { master, key_id }
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.master.expose()))
    }
}

#[async_trait]
impl KeyProvider for LocalKeyProvider {
    fn kind(&self) -> KeyProviderKind {
        KeyProviderKind::Local
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let data_key = DataKey::random();
        let nonce = random_nonce();
        let wrapped = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: data_key.expose(), aad: &context.local_aad() })
            .map_err(|_| CryptoError::KeyProvider("wrapping the key failed".into()))?;
        Ok((data_key, [nonce.as_slice(), &wrapped].concat()))
    }

    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey, CryptoError> {
        if key_id != self.key_id {
            return Err(CryptoError::ForeignKey(key_id.to_owned()));
        }
        if wrapped.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let mut plain = Zeroizing::new(
            self.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &context.local_aad() })
                .map_err(|_| CryptoError::Refused)?,
        );
        DataKey::from_slice(&mut plain).ok_or(CryptoError::Refused)
    }
}

#[async_trait]
impl KeyMaintenance for LocalKeyProvider {
    async fn generate_wrapped(&self, context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
        Ok(self.generate(context).await?.1)
    }

    async fn rewrap(&self, key_id: &str, _wrapped: &[u8], _context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
        Err(CryptoError::KeyProvider(format!(
            "local mode has one master key ({}); {key_id} cannot be moved to it",
            self.key_id
        )))
    }
}
