//! Secrets keyward reads at run time rather than from its environment: in aws mode from Secrets
//! Manager, fetched on first use and cached per execution environment for five minutes (so a
//! rotated secret is picked up without a redeploy, at one read per cold start and per TTL).

use std::time::{Duration, Instant};

use tokio::sync::RwLock;

use crate::aws_client::LazyClient;
use crate::secret::ClientSecret;

/// A secret keyward reads at cold start: from Secrets Manager in aws mode, or given directly.
#[derive(Debug, Clone)]
pub enum SecretSetting {
    Value(secrecy::SecretString),
    SecretsManager { arn: String },
}

const TTL: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secrets Manager is unavailable: {0}")]
    Unavailable(String),
    #[error("secret {0} has no string value")]
    Empty(String),
}

/// One secret and where it comes from.
pub struct SecretReader {
    setting: SecretSetting,
    client: Option<LazyClient<aws_sdk_secretsmanager::Client>>,
    cache: RwLock<Option<(ClientSecret, Instant)>>,
}

impl SecretReader {
    /// `client` is needed for a Secrets Manager setting (aws mode).
    pub fn new(setting: SecretSetting, client: Option<LazyClient<aws_sdk_secretsmanager::Client>>) -> Self {
        Self { setting, client, cache: RwLock::new(None) }
    }

    pub async fn get(&self) -> Result<ClientSecret, SecretError> {
        let arn = match &self.setting {
            SecretSetting::Value(value) => return Ok(ClientSecret::new(secrecy::ExposeSecret::expose_secret(value))),
            SecretSetting::SecretsManager { arn } => arn,
        };
        if let Some((secret, _)) = self.cache.read().await.as_ref().filter(|(_, at)| at.elapsed() < TTL) {
            return Ok(secret.clone());
        }
        let mut cache = self.cache.write().await;
        if let Some((secret, _)) = cache.as_ref().filter(|(_, at)| at.elapsed() < TTL) {
            return Ok(secret.clone());
        }
        let client =
            self.client.as_ref().ok_or_else(|| SecretError::Unavailable("no Secrets Manager client".into()))?;
        let fetched = match client.get_secret_value().secret_id(arn).send().await {
            Ok(out) => out.secret_string().map(ClientSecret::new).ok_or_else(|| SecretError::Empty(arn.clone()))?,
            // A stale secret beats none while Secrets Manager is failing.
            Err(e) => match cache.as_ref() {
                Some((stale, _)) => {
                    tracing::warn!(error = %aws_sdk_secretsmanager::error::DisplayErrorContext(&e), "secret refresh failed; using the cached value");
                    return Ok(stale.clone());
                }
                None => {
                    return Err(SecretError::Unavailable(
                        aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
                    ));
                }
            },
        };
        *cache = Some((fetched.clone(), Instant::now()));
        Ok(fetched)
    }
}
