//! The application state every function builds once per cold start, and the glue that serves its
//! handler under `lambda_http` with one log span per request.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response, Service, service_fn};
use serde::Serialize;
use tracing::Instrument;

use crate::auth::TokenVerifier;
use crate::auth::auth0::Auth0Client;
use crate::aws_client::LazyClient;
use crate::config::{Config, ConfigError, Mode};
use crate::crypto::{CryptoError, Envelope, KeyProvider, KmsKeyProvider, LocalKeyProvider};
use crate::http::{ApiError, json_response};
use crate::oauth::google::GoogleClient;
use crate::outbound::Outbound;
use crate::providers::KeyValidator;
use crate::secrets::SecretReader;
use crate::store::{DynamoTable, Store, StoreError};

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
            (Mode::Local { data_dir }, _) => {
                (embedded_store(data_dir)?, Arc::new(LocalKeyProvider::open_or_create(data_dir)?))
            }
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

/// The AWS SDK's time limits. The SDK's defaults bound only the connect, so a DynamoDB, KMS or
/// Secrets Manager call that never answers would hold a request until Lambda kills it, with no
/// problem+json and no `Retry-After`. Each attempt gets 2 s (their p99s are tens of milliseconds)
/// and a whole call with its retries 5 s, well inside the functions' 10 s timeout.
fn sdk_timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The AWS configuration of a function inside Lambda, from the variables Lambda sets in every
/// execution environment and nothing else: `AWS_REGION`; the execution role's `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`; and, when set, `AWS_ENDPOINT_URL` (moto),
/// `AWS_USE_FIPS_ENDPOINT` and `AWS_USE_DUALSTACK_ENDPOINT`.
///
/// Not `aws_config`'s default chains: profile files, SSO, web identity (an STS client), container
/// and instance metadata can never apply inside Lambda, yet every function linked them and walked
/// them at each cold start (BENCHMARKS.md has the before and after).
pub fn lambda_sdk_config(lookup: impl Fn(&str) -> Option<String>) -> Result<SdkConfig, ConfigError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    let required = |name: &'static str| {
        get(name).ok_or(ConfigError {
            var: name,
            problem: "not set (Lambda sets it for every function; elsewhere export it, or run `keyward-local`, \
                      which reads profiles)"
                .into(),
        })
    };
    let flag = |name: &'static str| match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ConfigError { var: name, problem: "must be `true` or `false`".into() }),
    };
    let credentials = Credentials::new(
        required("AWS_ACCESS_KEY_ID")?,
        required("AWS_SECRET_ACCESS_KEY")?,
        get("AWS_SESSION_TOKEN"),
        None,
        "lambda-environment",
    );
    let mut sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(required("AWS_REGION")?))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .identity_cache(IdentityCache::lazy().build())
        .retry_config(RetryConfig::standard())
        .timeout_config(sdk_timeouts())
        .http_client(crate::aws_trust::https_client())
        .use_fips(flag("AWS_USE_FIPS_ENDPOINT")?)
        .use_dual_stack(flag("AWS_USE_DUALSTACK_ENDPOINT")?);
    sdk.set_endpoint_url(get("AWS_ENDPOINT_URL"));
    Ok(sdk.build())
}

/// The AWS SDK's standard configuration chains (profiles, SSO, instance roles…) with keyward's
/// timeouts and trust store: for the local gateway and tools run on a developer's machine.
pub fn aws_config_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(sdk_timeouts())
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
        let refused = span.in_scope(|| refusal(&state, &req));
        let (state, handler) = (Arc::clone(&state), handler.clone());
        async move {
            let response = match refused {
                Some(refused) => refused,
                None => handler(state, req).instrument(span.clone()).await,
            };
            span.in_scope(|| tracing::info!(status = response.status().as_u16(), "served"));
            Ok(response)
        }
    })
}

/// Refuses, before any handler runs, an event that did not come through this stack's API: a direct
/// invoke naming whatever caller it likes ([`crate::auth::gateway`]). Logged with the `alarm` field
/// the template's metric filters count.
fn refusal(state: &AppState, req: &Request) -> Option<Response<Body>> {
    state.config.api_gateway.admit(req).err().map(|claimed| {
        tracing::warn!(
            alarm = "foreign_invocation",
            api_id = %claimed.api_id,
            stage = %claimed.stage,
            account_id = %claimed.account_id,
            "refused an event that did not come through this stack's API"
        );
        ApiError::forbidden(
            "foreign_invocation",
            "This function serves only its stack's API Gateway API; nothing was read or written.",
        )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider::ProvideCredentials;

    /// The variables Lambda sets in an execution environment, with a session token as its role's are.
    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEYID"),
        ("AWS_SECRET_ACCESS_KEY", "example-secret-access-key"),
        ("AWS_SESSION_TOKEN", "example-session-token"),
    ];

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    #[tokio::test]
    async fn lambdas_variables_configure_region_credentials_and_limits() {
        let sdk = lambda_sdk_config(lookup(&LAMBDA)).unwrap();
        assert_eq!(sdk.region().map(Region::as_ref), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(false), Some(false)));
        assert_eq!(sdk.timeout_config().and_then(|t| t.operation_timeout()), Some(Duration::from_secs(5)));
        assert_eq!(sdk.retry_config().map(RetryConfig::max_attempts), Some(3));
        let credentials = sdk.credentials_provider().unwrap().provide_credentials().await.unwrap();
        assert_eq!(credentials.access_key_id(), "ASIAEXAMPLEKEYID");
        assert_eq!(credentials.secret_access_key(), "example-secret-access-key");
        assert_eq!(credentials.session_token(), Some("example-session-token"));
        assert!(!format!("{sdk:?}").contains("example-secret-access-key"), "the secret key is redacted");
    }

    #[test]
    fn an_endpoint_and_endpoint_variants_are_honoured() {
        let vars = [
            LAMBDA.as_slice(),
            &[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"), ("AWS_USE_FIPS_ENDPOINT", "TRUE")],
            &[("AWS_USE_DUALSTACK_ENDPOINT", "true")],
        ]
        .concat();
        let sdk = lambda_sdk_config(lookup(&vars)).unwrap();
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:5000"));
        assert_eq!((sdk.use_fips(), sdk.use_dual_stack()), (Some(true), Some(true)));
    }

    #[test]
    fn a_missing_or_malformed_variable_is_named_and_no_value_is_echoed() {
        for missing in ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
            let vars: Vec<_> = LAMBDA.iter().copied().filter(|(n, _)| *n != missing).collect();
            let err = lambda_sdk_config(lookup(&vars)).unwrap_err();
            assert_eq!(err.var, missing);
        }
        let blank = LAMBDA.map(|(n, v)| (n, if n == "AWS_SECRET_ACCESS_KEY" { " " } else { v }));
        assert_eq!(lambda_sdk_config(lookup(&blank)).unwrap_err().var, "AWS_SECRET_ACCESS_KEY");
        let vars = [LAMBDA.as_slice(), &[("AWS_USE_FIPS_ENDPOINT", "yes")]].concat();
        let err = lambda_sdk_config(lookup(&vars)).unwrap_err();
        assert_eq!(err.var, "AWS_USE_FIPS_ENDPOINT");
        assert!(!err.to_string().contains("yes") && !err.to_string().contains("example-"), "{err}");
    }

    /// A state on AWS clients that are never called (the handlers below touch nothing).
    fn idle_state() -> Arc<AppState> {
        let vars = [
            ("KEYWARD_MODE", "aws"),
            ("KEYWARD_TABLE_NAME", "keyward"),
            ("KEYWARD_KMS_KEY_ID", "alias/keyward"),
            ("KEYWARD_AUTH0_ISSUER", "http://127.0.0.1:9/"),
            ("KEYWARD_AUTH0_AUDIENCE", "https://api.keyward.dev"),
        ];
        let config = Config::from_lookup(lookup(&vars)).unwrap();
        Arc::new(AppState::on_lambda(config, lookup(&LAMBDA)).unwrap())
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_event_of_another_api_stage_or_account_never_reaches_a_handler_and_raises_the_alarm() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let mut service = service(idle_state(), move |_state, _req| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { json_response(StatusCode::OK, &serde_json::json!({})) }
        });
        let (api, stage, account) = (crate::config::LOCAL_API_ID, "$default", crate::config::LOCAL_ACCOUNT_ID);
        let event = crate::auth::gateway::test_event;
        for forged in
            [event("a1b2c3d4e5", stage, account), event(api, "prod", account), event(api, stage, "123456789012")]
        {
            let response = service.call(forged).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            let Body::Text(body) = response.body() else { panic!("a problem body") };
            assert!(body.contains("\"code\":\"foreign_invocation\""), "{body}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 0, "no handler ran");
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let alarms: Vec<serde_json::Value> = logged
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["alarm"] == "foreign_invocation")
            .collect();
        assert_eq!(alarms.len(), 3, "{logged}");
        assert!(alarms.iter().all(|l| l["level"] == "WARN"));
        assert_eq!(alarms[0]["api_id"], "a1b2c3d4e5", "what the forged event claimed");
        // The stack's own API reaches the handler.
        assert_eq!(service.call(event(api, stage, account)).await.unwrap().status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_session_token_is_optional() {
        let vars: Vec<_> = LAMBDA.iter().copied().filter(|(n, _)| *n != "AWS_SESSION_TOKEN").collect();
        assert!(lambda_sdk_config(lookup(&vars)).is_ok());
    }
}
