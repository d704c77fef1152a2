//! AWS KMS key provider: `GenerateDataKey` (AES_256) and `Decrypt`, both with the key id pinned and
//! the encryption context passed, so KMS itself refuses a record opened for the wrong owner.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;

use super::{CryptoError, EncryptionContext, KeyProvider, KeyProviderKind};
use crate::aws_client::LazyClient;
use crate::secret::DataKey;

pub struct KmsKeyProvider {
    client: LazyClient<Client>,
    key_id: String,
}

impl KmsKeyProvider {
    pub fn new(client: impl Into<LazyClient<Client>>, key_id: impl Into<String>) -> Self {
        Self { client: client.into(), key_id: key_id.into() }
    }
}

fn context_map(context: &EncryptionContext) -> std::collections::HashMap<String, String> {
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

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn kind(&self) -> KeyProviderKind {
        KeyProviderKind::Kms
    }

    fn key_id(&self) -> &str {
        &self.key_id
    }

    async fn generate(&self, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        let wrapped = out.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default();
        let mut plain = zeroize::Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        let key = DataKey::from_slice(&mut plain)
            .ok_or_else(|| CryptoError::KeyProvider("KMS returned a data key that is not 256 bits".into()))?;
        if wrapped.is_empty() {
            return Err(CryptoError::KeyProvider("KMS returned no wrapped data key".into()));
        }
        Ok((key, wrapped))
    }

    async fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey, CryptoError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(classify)?;
        let mut plain = zeroize::Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        DataKey::from_slice(&mut plain).ok_or(CryptoError::Refused)
    }
}
