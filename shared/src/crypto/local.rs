//! Local key provider: a 256-bit master key in a file (mode 0600), wrapping data keys with
//! AES-256-GCM under the encryption context. For local mode only; AWS mode uses KMS.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{CryptoError, EncryptionContext, FORMAT_VERSION, KeyProvider, KeyProviderKind, NONCE_LEN, random_nonce};
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
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create", e))?;
        let path = dir.join(Self::FILE_NAME);
        if !path.exists() {
            create_key_file(dir, &path).map_err(|e| io("cannot write master key in", e))?;
        }
        let mode = std::fs::metadata(&path).map_err(|e| io("cannot read master key in", e))?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(CryptoError::KeyProvider(format!(
                "{} is readable by other users (mode {:o}); run chmod 600 on it",
                path.display(),
                mode & 0o777
            )));
        }
        let mut bytes = Zeroizing::new(std::fs::read(&path).map_err(|e| io("cannot read master key in", e))?);
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

/// Writes a fresh key to a temporary file and links it into place, so a concurrent first run never
/// reads a half-written key and never replaces one that already exists.
fn create_key_file(dir: &Path, path: &PathBuf) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{}.{}", LocalKeyProvider::FILE_NAME, std::process::id()));
    let mut key = Zeroizing::new([0u8; 32]);
    rand::fill(&mut key[..]);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    file.write_all(&key[..])?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&tmp, path);
    std::fs::remove_file(&tmp)?;
    match linked {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
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

    async fn generate(&self, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let data_key = DataKey::random();
        let nonce = random_nonce();
        let aad = context.aad(FORMAT_VERSION, KeyProviderKind::Local);
        let wrapped = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: data_key.expose(), aad: &aad })
            .map_err(|_| CryptoError::KeyProvider("wrapping the data key failed".into()))?;
        Ok((data_key, [nonce.as_slice(), &wrapped].concat()))
    }

    async fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey, CryptoError> {
        if wrapped.len() < NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let aad = context.aad(FORMAT_VERSION, KeyProviderKind::Local);
        let mut plain = Zeroizing::new(
            self.cipher()
                .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: &aad })
                .map_err(|_| CryptoError::Refused)?,
        );
        DataKey::from_slice(&mut plain).ok_or(CryptoError::Refused)
    }
}
