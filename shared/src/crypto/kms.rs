//! AWS KMS key provider: `GenerateDataKey` (AES_256), `GenerateDataKeyWithoutPlaintext`, `Decrypt`
//! and `ReEncrypt`, each with the key id pinned and the encryption context passed, so KMS itself
//! refuses a key opened for another purpose or version. Keys being moved from (during a move to a
//! new KMS key) are accepted for decryption only.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use super::{CryptoError, KeyContext, KeyMaintenance, KeyProvider, KeyProviderKind};
use crate::aws_client::LazyClient;
use crate::secret::DataKey;

pub struct KmsKeyProvider {
    client: LazyClient<Client>,
    key_id: String,
    /// Keys still accepted for decryption: those a move to `key_id` is taking material from.
    previous: Vec<String>,
}

impl KmsKeyProvider {
    pub fn new(client: impl Into<LazyClient<Client>>, key_id: impl Into<String>) -> Self {
        Self { client: client.into(), key_id: key_id.into(), previous: Vec::new() }
    }

    /// Also accepts material wrapped under `previous` keys, for decryption and moving only.
    pub fn accepting(mut self, previous: impl IntoIterator<Item = String>) -> Self {
        self.previous = previous.into_iter().filter(|id| *id != self.key_id).collect();
        self
    }
}

fn context_map(context: &KeyContext<'_>) -> std::collections::HashMap<String, String> {
    context.kms_pairs().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Sorts KMS failures: authentication failures are refusals, throttling and outages are retryable,
/// the rest are provider failures. The SDK's error text carries no key material.
fn classify<E: ProvideErrorMetadata, R>(err: SdkError<E, R>) -> CryptoError {
    match &err {
        SdkError::ServiceError(service) => match service.err().code() {
            Some("InvalidCiphertextException" | "IncorrectKeyException" | "AccessDeniedException") => {
                CryptoError::Refused
            }
            Some(
                code @ ("ThrottlingException"
                | "KMSInternalException"
                | "DependencyTimeoutException"
                | "KeyUnavailableException"
                | "LimitExceededException"),
            ) => CryptoError::KeyServiceUnavailable(code.to_owned()),
            code => CryptoError::KeyProvider(code.unwrap_or("unknown KMS error").to_owned()),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            CryptoError::KeyServiceUnavailable("KMS unreachable".into())
        }
        _ => CryptoError::KeyProvider("KMS request could not be built".into()),
    }
}

fn plaintext_key(plaintext: Option<Blob>) -> Result<DataKey, CryptoError> {
    let mut plain = zeroize::Zeroizing::new(plaintext.map(Blob::into_inner).unwrap_or_default());
    DataKey::from_slice(&mut plain)
        .ok_or_else(|| CryptoError::KeyProvider("KMS returned a key that is not 256 bits".into()))
}

fn ciphertext(blob: Option<&Blob>) -> Result<Vec<u8>, CryptoError> {
    match blob.map(|b| b.as_ref().to_vec()) {
        Some(wrapped) if !wrapped.is_empty() => Ok(wrapped),
        _ => Err(CryptoError::KeyProvider("KMS returned no wrapped key".into())),
    }
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn kind(&self) -> KeyProviderKind {
        KeyProviderKind::Kms
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    fn accepts(&self, key_id: &str) -> bool {
        key_id == self.key_id || self.previous.iter().any(|p| p == key_id)
    }

    async fn generate(&self, context: &KeyContext<'_>) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        let wrapped = ciphertext(out.ciphertext_blob())?;
        Ok((plaintext_key(out.plaintext)?, wrapped))
    }

    async fn unwrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<DataKey, CryptoError> {
        if !self.accepts(key_id) {
            return Err(CryptoError::ForeignKey(key_id.to_owned()));
        }
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        plaintext_key(out.plaintext).map_err(|_| CryptoError::Refused)
    }
}

#[async_trait]
impl KeyMaintenance for KmsKeyProvider {
    async fn generate_wrapped(&self, context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
        let out = self
            .client
            .generate_data_key_without_plaintext()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        ciphertext(out.ciphertext_blob())
    }

    async fn rewrap(&self, key_id: &str, wrapped: &[u8], context: &KeyContext<'_>) -> Result<Vec<u8>, CryptoError> {
        if !self.accepts(key_id) {
            return Err(CryptoError::ForeignKey(key_id.to_owned()));
        }
        let context = context_map(context);
        let out = self
            .client
            .re_encrypt()
            .source_key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_source_encryption_context(Some(context.clone()))
            .destination_key_id(&self.key_id)
            .set_destination_encryption_context(Some(context))
            .send()
            .await
            .map_err(classify)?;
        ciphertext(out.ciphertext_blob())
    }
}
