//! The application: the state every function builds once per cold start ([`AppState`], with the
//! use cases over it), each function's declared routes ([`routes`]), and running on Lambda.

mod aws;
pub mod routes;
pub mod runtime;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;

use crate::auth::auth0::Auth0Client;
use crate::auth::{Access, AuthError, TokenVerifier, UserCaller};
use crate::aws_client::LazyClient;
use crate::config::{Config, ConfigError, Mode};
use crate::crypto::{CryptoError, Envelope, KeyMaintenance, KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::github::AlertKeys;
use crate::http::ApiError;
use crate::model::{Clock, OAuthProvider, SystemClock};
use crate::oauth::connection::ConnectionClient;
use crate::oauth::connection_spec;
use crate::outbound::Outbound;
use crate::providers::KeyValidator;
use crate::secret::SessionHandle;
use crate::secret_store::SecretReader;
use crate::store::{DynamoTable, Store, StoreError};
use crate::use_cases::access_tokens::PersonalTokens;
use crate::use_cases::accounts::Accounts;
use crate::use_cases::billing::{Billing, BillingError};
use crate::use_cases::connections::{ConnectError, Connections};
use crate::use_cases::credits::Credits;
use crate::use_cases::devices::Devices;
use crate::use_cases::keys::Keys;
use crate::use_cases::sessions::{SESSION_COOKIE, SessionHolders, Sessions};

pub use aws::{aws_config_loader, lambda_sdk_config};
pub use routes::{Routes, service};
pub use runtime::run;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("key provider: {0}")]
    Crypto(#[from] CryptoError),
}

/// The AWS clients of aws mode, each built on first use ([`LazyClient`]).
pub struct AwsClients {
    pub dynamodb: LazyClient<aws_sdk_dynamodb::Client>,
    pub kms: LazyClient<aws_sdk_kms::Client>,
    pub secrets: LazyClient<aws_sdk_secretsmanager::Client>,
}

impl AwsClients {
    pub fn new(sdk: &SdkConfig) -> Self {
        let sdk = Arc::new(sdk.clone());
        let (dynamodb, kms, secrets) = (Arc::clone(&sdk), Arc::clone(&sdk), sdk);
        Self {
            dynamodb: LazyClient::new(move || aws_sdk_dynamodb::Client::new(&dynamodb)),
            kms: LazyClient::new(move || aws_sdk_kms::Client::new(&kms)),
            secrets: LazyClient::new(move || aws_sdk_secretsmanager::Client::new(&secrets)),
        }
    }
}

/// Everything a handler needs, shared by all requests of one execution environment.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub envelope: Envelope,
    pub tokens: TokenVerifier,
    /// The keys GitHub signs secret-scanning alerts with.
    pub github_alerts: AlertKeys,
    pub validator: KeyValidator,
    pub auth0: Auth0Client,
    /// The configured connection providers' clients (in aws mode, those with a client id).
    pub connections: BTreeMap<OAuthProvider, ConnectionClient>,
    /// The Stripe webhook secrets; `None` when Stripe is not configured.
    pub stripe_secrets: Option<SecretReader>,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    /// Builds the state from the environment, or writes one line naming the problem and exits: a
    /// misconfigured function must fail its cold start, not serve errors. The line goes to stderr,
    /// which Lambda always captures, so no log filter can hide it.
    pub fn from_env_or_exit() -> Arc<Self> {
        let env = |name: &str| std::env::var(name).ok();
        match Config::from_lookup(env).map_err(InitError::from).and_then(|config| Self::on_lambda(config, env)) {
            Ok(state) => Arc::new(state),
            Err(e) => {
                eprintln!("keyward: cold start failed: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Builds the state for `config` as a function inside Lambda: aws mode's clients are configured
    /// from the variables Lambda sets, read through `lookup` ([`lambda_sdk_config`]).
    pub fn on_lambda(config: Config, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, InitError> {
        let aws = match config.mode {
            Mode::Aws { .. } => Some(AwsClients::new(&lambda_sdk_config(lookup)?)),
            Mode::Local { .. } => None,
        };
        Self::with_aws(config, aws)
    }

    /// Builds the state with given AWS clients (tests inject endpoints and interceptors).
    pub fn with_aws(config: Config, aws: Option<AwsClients>) -> Result<Self, InitError> {
        let secrets_client = aws.as_ref().map(|a| a.secrets.clone());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (store, envelope) = storage(&config.mode, config.data_key_cache_ttl, aws.as_ref(), Arc::clone(&clock))?;
        // One outbound client per execution environment, shared (connection pooling), built on first use.
        let http = Outbound::new();
        Ok(Self {
            envelope,
            tokens: TokenVerifier::new(config.tokens.clone(), http.clone()),
            github_alerts: AlertKeys::new(http.clone(), config.github_keys_url.clone()),
            validator: KeyValidator::new(http.clone(), config.providers.clone(), config.provider_timeout),
            auth0: Auth0Client::new(
                http.clone(),
                config.auth0.clone(),
                config.tokens.audience.clone(),
                SecretReader::new(config.auth0.client_secret.clone(), secrets_client.clone()),
            ),
            connections: config
                .connections
                .iter()
                .map(|(&provider, settings)| {
                    let secret = SecretReader::new(settings.client_secret.clone(), secrets_client.clone());
                    (provider, ConnectionClient::new(connection_spec(provider), http.clone(), settings.clone(), secret))
                })
                .collect(),
            stripe_secrets: config
                .stripe
                .as_ref()
                .map(|stripe| SecretReader::new(stripe.webhook_secret.clone(), secrets_client)),
            store,
            config,
            clock,
        })
    }

    /// The user a user route's request comes from, by the credential it presents: the one place
    /// an authenticator is chosen. A bearer with this deployment's token prefix is a personal
    /// access token (refused unread on a sign-in route); any other, an Auth0 access token
    /// (carrying every scope). Without an `Authorization` header, the session cookie of a browser
    /// signed in here (carrying every scope too).
    pub async fn user_caller(&self, req: &lambda_http::Request, access: Access) -> Result<UserCaller, ApiError> {
        use lambda_http::http::header::{AUTHORIZATION, ORIGIN};
        if !req.headers().contains_key(AUTHORIZATION)
            && let Some(handle) = crate::http::request::cookie(req, SESSION_COOKIE)
        {
            let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
            let changes = !req.method().is_safe();
            let origins = &self.config.auth0.return_origins;
            let holders = SessionHolders { store: &self.store, envelope: &self.envelope };
            return Ok(holders.caller(&SessionHandle::new(handle), origin, changes, origins).await?);
        }
        let bearer = crate::auth::jwt::bearer(req)?;
        if self.config.personal_tokens.format.claims(bearer) {
            if access == Access::SignedIn {
                return Err(AuthError::SignInRequired.into());
            }
            return Ok(self.personal_tokens().verify(bearer).await?);
        }
        let claims = self.tokens.verify(bearer).await?;
        Ok(UserCaller::signed_in(claims.user, claims.email, claims.email_verified))
    }

    pub fn personal_tokens(&self) -> PersonalTokens<'_> {
        PersonalTokens {
            store: &self.store,
            envelope: &self.envelope,
            clock: self.clock.as_ref(),
            settings: &self.config.personal_tokens,
        }
    }

    pub fn accounts(&self) -> Accounts<'_> {
        Accounts { store: &self.store, clock: self.clock.as_ref() }
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            store: &self.store,
            envelope: &self.envelope,
            auth0: &self.auth0,
            tokens: &self.tokens,
            limits: &self.config.anonymous_limits,
            clock: self.clock.as_ref(),
        }
    }

    pub fn devices(&self) -> Devices<'_> {
        Devices { sessions: self.sessions() }
    }

    pub fn keys(&self) -> Keys<'_> {
        Keys {
            store: &self.store,
            envelope: &self.envelope,
            validator: &self.validator,
            validations_per_hour: self.config.validations_per_hour,
            clock: self.clock.as_ref(),
        }
    }

    /// The connections at `provider`, when it is configured.
    pub fn connections(&self, provider: OAuthProvider) -> Result<Connections<'_>, ConnectError> {
        let client = self.connections.get(&provider).ok_or(ConnectError::NotConfigured(provider))?;
        Ok(Connections { client, sessions: self.sessions() })
    }

    pub fn credits(&self) -> Credits<'_> {
        Credits { store: &self.store, stripe: self.config.stripe.as_ref(), clock: self.clock.as_ref() }
    }

    /// The Stripe webhook, when Stripe is configured.
    pub fn billing(&self) -> Result<Billing<'_>, BillingError> {
        match (self.config.stripe.as_ref(), self.stripe_secrets.as_ref()) {
            (Some(settings), Some(secrets)) => {
                Ok(Billing { store: &self.store, settings, secrets, clock: self.clock.as_ref() })
            }
            _ => Err(BillingError::NotConfigured),
        }
    }
}

/// The store and the envelope of a mode, with keys cached for `cache_ttl`: what the functions, the
/// admin command and the capacity model seal and open with. Branch keys live in the same table as
/// the records.
pub fn storage(
    mode: &Mode,
    cache_ttl: Duration,
    aws: Option<&AwsClients>,
    clock: Arc<dyn Clock>,
) -> Result<(Store, Envelope), InitError> {
    let (store, provider): (Store, Arc<dyn KeyProvider>) = match (mode, aws) {
        (Mode::Aws { table_name, kms_key_id, previous_kms_key_ids }, Some(aws)) => (
            Store::new(Arc::new(DynamoTable::new(aws.dynamodb.clone(), table_name))),
            Arc::new(kms_provider(aws, kms_key_id, previous_kms_key_ids)),
        ),
        (Mode::Aws { .. }, None) => return Err(aws_needed()),
        (Mode::Local { data_dir }, _) => {
            (embedded_store(data_dir)?, Arc::new(LocalKeyProvider::open_or_create(data_dir)?))
        }
    };
    let envelope = Envelope::new(provider, Arc::new(store.clone()), cache_ttl, clock);
    Ok((store, envelope))
}

/// The key provider of a mode for the keyring's operator (`keyward-admin`), with the calls the
/// functions never make: branch keys made inside KMS, and moves between KMS keys.
pub fn key_maintenance(mode: &Mode, aws: Option<&AwsClients>) -> Result<Arc<dyn KeyMaintenance>, InitError> {
    match (mode, aws) {
        (Mode::Aws { kms_key_id, previous_kms_key_ids, .. }, Some(aws)) => {
            Ok(Arc::new(kms_provider(aws, kms_key_id, previous_kms_key_ids)))
        }
        (Mode::Aws { .. }, None) => Err(aws_needed()),
        (Mode::Local { data_dir }, _) => Ok(Arc::new(LocalKeyProvider::open_or_create(data_dir)?)),
    }
}

/// aws mode's KMS key, accepting the keys branch keys are being moved off.
fn kms_provider(aws: &AwsClients, kms_key_id: &str, previous: &[String]) -> KmsKeyProvider {
    KmsKeyProvider::new(aws.kms.clone(), kms_key_id).accepting(previous.iter().cloned())
}

fn aws_needed() -> InitError {
    InitError::Config(ConfigError { var: "KEYWARD_MODE", problem: "aws mode needs an AWS configuration".into() })
}

/// Local mode's store, the embedded SQLite file, in builds with the `embedded-store` feature (the
/// local gateway's and the tests'). The functions' Lambda builds leave it out: they never run it,
/// and SQLite was a tenth of each binary (BENCHMARKS.md).
#[cfg(feature = "embedded-store")]
fn embedded_store(data_dir: &std::path::Path) -> Result<Store, InitError> {
    Ok(Store::new(Arc::new(crate::store::EmbeddedTable::open(data_dir)?)))
}

#[cfg(not(feature = "embedded-store"))]
fn embedded_store(_: &std::path::Path) -> Result<Store, InitError> {
    Err(InitError::Config(ConfigError {
        var: "KEYWARD_MODE",
        problem: "local mode's embedded store is not in this build (Lambda builds leave SQLite out): build with \
                  `--features keyward/embedded-store`, run `keyward-local`, or use aws mode"
            .into(),
    }))
}
