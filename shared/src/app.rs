//! The application state every function builds once per cold start, and the glue that serves its
//! handler under `lambda_http` with one log span per request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response, Service, service_fn};
use serde::Serialize;
use tracing::Instrument;

use crate::auth::TokenVerifier;
use crate::auth::auth0::Auth0Client;
use crate::config::{Config, ConfigError, Mode};
use crate::crypto::{CryptoError, Envelope, KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::http::json_response;
use crate::oauth::google::GoogleClient;
use crate::outbound::Outbound;
use crate::providers::KeyValidator;
use crate::secrets::SecretReader;
use crate::store::{DynamoTable, EmbeddedTable, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("key provider: {0}")]
    Crypto(#[from] CryptoError),
}

/// The AWS clients of aws mode.
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            kms: aws_sdk_kms::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// Everything a handler needs, shared by all requests of one execution environment.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub envelope: Envelope,
    pub tokens: TokenVerifier,
    pub validator: KeyValidator,
    pub auth0: Auth0Client,
    /// `None` when Google connections are not configured (aws mode without a Google client).
    pub google: Option<GoogleClient>,
    /// The Stripe webhook secrets; `None` when Stripe is not configured.
    pub stripe_secrets: Option<SecretReader>,
}

impl AppState {
    /// Builds the state from the environment, or writes one line naming the problem and exits: a
    /// misconfigured function must fail its cold start, not serve errors. The line goes to stderr,
    /// which Lambda always captures, so no log filter can hide it.
    pub async fn from_env_or_exit() -> Arc<Self> {
        let built = match Config::from_env() {
            Ok(config) => Self::from_config(config).await,
            Err(e) => Err(e.into()),
        };
        match built {
            Ok(state) => Arc::new(state),
            Err(e) => {
                eprintln!("keyward: cold start failed: {e}");
                std::process::exit(1);
            }
        }
    }

    /// Builds the state for `config`; AWS clients come from the standard AWS configuration chain.
    pub async fn from_config(config: Config) -> Result<Self, InitError> {
        let aws = match config.mode {
            Mode::Aws { .. } => Some(aws_config_loader().load().await),
            Mode::Local { .. } => None,
        };
        Self::with_aws(config, aws.as_ref().map(AwsClients::new))
    }

    /// Builds the state with given AWS clients (tests inject endpoints and interceptors).
    pub fn with_aws(config: Config, aws: Option<AwsClients>) -> Result<Self, InitError> {
        let secrets_client = aws.as_ref().map(|a| a.secrets.clone());
        let (store, provider): (Store, Arc<dyn KeyProvider>) = match (&config.mode, aws) {
            (Mode::Aws { table_name, kms_key_id }, Some(aws)) => (
                Store::new(Arc::new(DynamoTable::new(aws.dynamodb, table_name))),
                Arc::new(KmsKeyProvider::new(aws.kms, kms_key_id)),
            ),
            (Mode::Aws { .. }, None) => {
                return Err(InitError::Config(ConfigError {
                    var: "KEYWARD_MODE",
                    problem: "aws mode needs an AWS configuration".into(),
                }));
            }
            (Mode::Local { data_dir }, _) => (
                Store::new(Arc::new(EmbeddedTable::open(data_dir)?)),
                Arc::new(LocalKeyProvider::open_or_create(data_dir)?),
            ),
        };
        // One outbound client per execution environment, shared (connection pooling), built on first use.
        let http = Outbound::new();
        Ok(Self {
            envelope: Envelope::new(provider, config.data_key_cache_ttl),
            tokens: TokenVerifier::new(config.tokens.clone(), http.clone()),
            validator: KeyValidator::new(http.clone(), config.providers.clone(), config.provider_timeout),
            auth0: Auth0Client::new(
                http.clone(),
                config.auth0.clone(),
                config.tokens.audience.clone(),
                SecretReader::new(config.auth0.client_secret.clone(), secrets_client.clone()),
            ),
            google: config.google.clone().map(|settings| {
                let secret = SecretReader::new(settings.client_secret.clone(), secrets_client.clone());
                GoogleClient::new(http.clone(), settings, secret)
            }),
            stripe_secrets: config
                .stripe
                .as_ref()
                .map(|stripe| SecretReader::new(stripe.webhook_secret.clone(), secrets_client)),
            store,
            config,
        })
    }
}

/// The AWS SDK settings every function runs with. The SDK's defaults bound only the connect, so a
/// DynamoDB, KMS or Secrets Manager call that never answers would hold a request until Lambda kills
/// it, with no problem+json and no `Retry-After`. Each attempt gets 2 s (their p99s are tens of
/// milliseconds) and a whole call with its retries 5 s, well inside the functions' 10 s timeout.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .http_client(crate::aws_trust::https_client())
}

/// Wraps a handler as the service `lambda_http::run` drives, serving each request in its own span.
pub fn service<H, F>(
    state: Arc<AppState>,
    handler: H,
) -> impl Service<Request, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
where
    H: Fn(Arc<AppState>, Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    service_fn(move |req: Request| {
        let (request_id, route) = request_labels(&req);
        let span = crate::telemetry::request_span(&request_id, &route);
        let response = handler.clone()(Arc::clone(&state), req);
        async move {
            let response = response.instrument(span.clone()).await;
            span.in_scope(|| tracing::info!(status = response.status().as_u16(), "served"));
            Ok(response)
        }
    })
}

/// The Lambda request id and API Gateway's route template of a request.
fn request_labels(req: &Request) -> (String, String) {
    let lambda_id = req.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty());
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            lambda_id.or_else(|| ctx.request_id.clone()).unwrap_or_default(),
            ctx.route_key.clone().unwrap_or_default(),
        ),
        _ => (lambda_id.unwrap_or_default(), String::new()),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    function: &'a str,
    mode: &'a str,
    store: &'a str,
    /// Third-party services answered by local stand-ins (empty when every one is real).
    sandbox: Vec<&'static str>,
    version: &'a str,
}

/// Liveness of a function: answers without touching any dependency.
pub fn health(state: &AppState, function: &str) -> Response<Body> {
    let mode = match state.config.mode {
        Mode::Aws { .. } => "aws",
        Mode::Local { .. } => "local",
    };
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            function,
            mode,
            store: state.store.backend(),
            sandbox: state.config.stand_ins(),
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}
