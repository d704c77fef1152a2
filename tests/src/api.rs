//! The whole API through real HTTP: `keyward-local`'s gateway and the sandbox stand-ins on free
//! loopback ports, on either backend, plus SigV4 signing as internal services do it.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials as SigningCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use keyward::app::{AppState, AwsClients};
use keyward::config::{Config, LOCAL_AUDIENCE};
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::{Provider, UserId, ZaiRegion};
use keyward::providers::preview;
use keyward::secret::ApiKey;
use keyward::store::{KeyStatus, NewLlmKey, StoredLlmKey, now_epoch};
use keyward_local::{Credentials, Gateway, RouteTable};
use keyward_sandbox::Sandbox;
use keyward_sandbox::auth0::DeviceTimings;
use keyward_sandbox::aws_proxy::AwsProxy;

use crate::{CallCounter, TestTable, aws, aws_at, kms_key};

pub const REGION: &str = "us-east-1";
/// A web app origin the local API lets sign-in return to.
pub const APP_ORIGIN: &str = "https://app.example.com";
/// The sandbox's device flow, quickened: poll every second, codes live five seconds.
pub const DEVICE_TIMINGS: DeviceTimings =
    DeviceTimings { interval: std::time::Duration::from_secs(1), lifetime: std::time::Duration::from_secs(5) };

/// An IAM identity of the local credentials file.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub access_key: &'static str,
    pub secret: &'static str,
    pub arn: &'static str,
}

/// Allowed to fetch OpenAI, Anthropic and Zai keys.
pub const NOTES_SERVICE: Principal = Principal {
    access_key: "AKIATESTNOTES0000001",
    secret: "notes-service-secret-0123456789abcdefghij",
    arn: "arn:aws:iam::111122223333:role/notes-service",
};

/// Allowed to fetch Google access tokens, and nothing else.
pub const CALENDAR_SERVICE: Principal = Principal {
    access_key: "AKIATESTCALENDAR0001",
    secret: "calendar-service-secret-0123456789abcdef",
    arn: "arn:aws:iam::111122223333:role/calendar-service",
};

/// Allowed to read and consume users' credits, and nothing else.
pub const BILLING_SERVICE: Principal = Principal {
    access_key: "AKIATESTBILLING00001",
    secret: "billing-service-secret-0123456789abcdefg",
    arn: "arn:aws:iam::111122223333:role/billing-service",
};

/// Signs correctly, but is on no allow-list.
pub const STRANGER: Principal = Principal {
    access_key: "AKIATESTSTRANGER0001",
    secret: "stranger-secret-0123456789abcdefghijklmn",
    arn: "arn:aws:iam::444455556666:role/stranger",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Moto,
}

/// A running local API; everything stops and is deleted when dropped.
pub struct LocalApi {
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    pub base_url: String,
    pub routes: RouteTable,
    pub sandbox: Sandbox,
    pub credentials_file: std::path::PathBuf,
    /// The AWS calls the functions made (`DynamoDB.Query`, `KMS.Decrypt`…); moto backend only.
    pub aws_calls: CallCounter,
    _gateway: Gateway,
    _dir: tempfile::TempDir,
    table: Option<TestTable>,
}

impl LocalApi {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, &[]).await
    }

    /// Starts with configuration `overrides` on top of the defaults (which point every third-party
    /// endpoint at the sandbox).
    pub async fn start_with(backend: Backend, overrides: &[(&'static str, &str)]) -> Self {
        Self::start_inner(backend, overrides, None).await
    }

    /// Starts on moto with every AWS call going through `proxy` (which can count and fail them).
    pub async fn start_behind(proxy: &AwsProxy, overrides: &[(&'static str, &str)]) -> Self {
        Self::start_inner(Backend::Moto, overrides, Some(proxy.url())).await
    }

    async fn start_inner(backend: Backend, overrides: &[(&'static str, &str)], aws_endpoint: Option<String>) -> Self {
        crate::leaks::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = Sandbox::start_with(([127, 0, 0, 1], 0).into(), DEVICE_TIMINGS).await.expect("start sandbox");
        // The gateway's port is chosen (and held) first: keyward's callback URL names it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("bound address").port();
        let base_url = format!("http://127.0.0.1:{port}");
        let principals = serde_json::json!({
            NOTES_SERVICE.arn: ["openai", "anthropic", "zai"],
            CALENDAR_SERVICE.arn: ["google-oauth", "microsoft-oauth"],
            BILLING_SERVICE.arn: ["credits"],
        })
        .to_string();
        let mut settings = vec![
            ("KEYWARD_DATA_DIR", dir.path().display().to_string()),
            ("KEYWARD_AUTH0_ISSUER", sandbox.auth0_issuer()),
            ("KEYWARD_AUTH0_AUDIENCE", LOCAL_AUDIENCE.to_owned()),
            ("KEYWARD_INTERNAL_PRINCIPALS", principals),
            // The `slow` sandbox scenario outlasts this, so timeouts are quick to test.
            ("KEYWARD_PROVIDER_TIMEOUT_SECS", "2".to_owned()),
            ("KEYWARD_AUTH0_CALLBACK_URL", format!("{base_url}/auth/callback")),
            ("KEYWARD_RETURN_ORIGINS", format!("{base_url},{APP_ORIGIN}")),
        ];
        settings.extend(keyward_local::sandbox_settings(sandbox.base_url(), &base_url));
        settings.retain(|(name, _)| !overrides.iter().any(|(o, _)| o == name));
        settings.extend(overrides.iter().map(|(name, value)| (*name, (*value).to_owned())));
        let aws_calls = CallCounter::default();
        let (state, table) = match backend {
            Backend::Embedded => {
                settings.push(("KEYWARD_STRIPE_WEBHOOK_SECRET", crate::stripe::ENDPOINT_SECRETS.join(",")));
                let config = config(&settings);
                (AppState::with_aws(config, None).expect("local state"), None)
            }
            Backend::Moto => {
                let aws = match &aws_endpoint {
                    Some(endpoint) => aws_at(endpoint).await,
                    None => aws().await,
                };
                let table = TestTable::new().await;
                let key = kms_key(&aws).await;
                // In aws mode the endpoint secrets live in Secrets Manager, both while one is rolled.
                let secrets = aws_sdk_secretsmanager::Client::new(&crate::setup_config(&aws));
                let created = secrets
                    .create_secret()
                    .name(crate::unique_name("stripe-webhook"))
                    .secret_string(crate::stripe::ENDPOINT_SECRETS.join(","))
                    .send()
                    .await
                    .expect("create the webhook secret on moto");
                settings.extend([
                    ("KEYWARD_STRIPE_WEBHOOK_SECRET_ARN", created.arn().expect("arn").to_owned()),
                    ("KEYWARD_STRIPE_PRICE_TIERS", crate::stripe::PRICE_TIERS.to_owned()),
                    ("KEYWARD_STRIPE_MODE", "test".to_owned()),
                    ("KEYWARD_MODE", "aws".to_owned()),
                    ("KEYWARD_TABLE_NAME", table.name.clone()),
                    ("KEYWARD_KMS_KEY_ID", key),
                ]);
                let clients = AwsClients {
                    dynamodb: aws_sdk_dynamodb::Client::from_conf(
                        aws_sdk_dynamodb::config::Builder::from(&aws).interceptor(aws_calls.clone()).build(),
                    )
                    .into(),
                    kms: aws_sdk_kms::Client::from_conf(
                        aws_sdk_kms::config::Builder::from(&aws)
                            .interceptor(aws_calls.clone())
                            .interceptor(crate::leaks::DataKeyRecorder)
                            .build(),
                    )
                    .into(),
                    secrets: aws_sdk_secretsmanager::Client::from_conf(
                        aws_sdk_secretsmanager::config::Builder::from(&aws).interceptor(aws_calls.clone()).build(),
                    )
                    .into(),
                };
                (AppState::with_aws(config(&settings), Some(clients)).expect("aws state"), Some(table))
            }
        };
        let state = Arc::new(state);

        let credentials_file = dir.path().join("credentials.json");
        let entries: Vec<_> = [NOTES_SERVICE, CALENDAR_SERVICE, BILLING_SERVICE, STRANGER]
            .iter()
            .map(|p| serde_json::json!({"accessKeyId": p.access_key, "secretAccessKey": p.secret, "principalArn": p.arn}))
            .collect();
        keyward::files::create_private(
            &credentials_file,
            serde_json::json!({ "credentials": entries }).to_string().as_bytes(),
        )
        .expect("write credentials");
        let credentials = Credentials::load(&credentials_file).expect("load credentials");

        let template = std::fs::read_to_string(keyward_local::default_template_path()).expect("read template.yaml");
        let routes = RouteTable::from_template(&template).expect("parse template.yaml");
        let gateway = Gateway::start_on(
            listener,
            routes.clone(),
            keyward_local::functions(&state),
            credentials,
            REGION.to_owned(),
        )
        .expect("start gateway");
        Self {
            state,
            // Redirects are the API's answers here, so they are never followed.
            client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
            base_url: gateway.base_url(),
            routes,
            sandbox,
            credentials_file,
            aws_calls,
            _gateway: gateway,
            _dir: dir,
            table,
        }
    }

    /// The DynamoDB table behind the API (moto backend only), for tests that change items directly.
    pub fn table(&self) -> Option<&TestTable> {
        self.table.as_ref()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Stores `plaintext` as `user`'s key for `provider` directly, sealed as `llm-keys` would,
    /// without a validation call (for keys a test wants in a given state).
    pub async fn seed_llm_key(&self, user: &UserId, provider: Provider, plaintext: &str) -> StoredLlmKey {
        let context = EncryptionContext::new(user, Purpose::LlmKey, provider.slug());
        let sealed = self.state.envelope.seal(plaintext.as_bytes(), &context).await.expect("seal");
        let new = NewLlmKey {
            provider,
            sealed,
            preview: preview(&ApiKey::new(plaintext)),
            status: KeyStatus::Valid,
            test: None,
            zai_region: (provider == Provider::Zai).then_some(ZaiRegion::International),
        };
        crate::seed_key(&self.state.store, user, &new, now_epoch()).await
    }

    /// `user`'s audit trail, newest first, as `(action, target, outcome)`.
    pub async fn audit_trail(&self, user: &UserId) -> Vec<(String, Option<String>, String)> {
        let entries = self.state.store.audit().list(user, 100, None).await.expect("audit").items;
        entries.into_iter().map(|e| (e.action.name(), e.target, e.outcome)).collect()
    }

    /// A sandbox user's access token (Auth0's password grant on the stand-in).
    pub async fn user_token(&self, email: &str) -> String {
        sandbox_token(&self.client, &self.sandbox, email).await
    }

    /// Sends a request signed for `principal` at `time` (SigV4, service `execute-api`); a body is JSON.
    pub async fn signed(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        principal: Principal,
        time: SystemTime,
    ) -> reqwest::Response {
        let url = self.url(path);
        let headers = sigv4_headers(method, &url, body, principal.access_key, principal.secret, time);
        let mut request = self.client.request(method.parse().expect("method"), &url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        // Internal routes take JSON bodies.
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        request.send().await.expect("send signed request")
    }
}

/// A sandbox user's access token from `sandbox`'s Auth0 (its password grant).
pub async fn sandbox_token(client: &reqwest::Client, sandbox: &Sandbox, email: &str) -> String {
    let response = client
        .post(format!("{}oauth/token", sandbox.auth0_issuer()))
        .form(&[
            ("grant_type", "password"),
            ("username", email),
            ("password", keyward_sandbox::auth0::SANDBOX_PASSWORD),
            ("audience", LOCAL_AUDIENCE),
        ])
        .send()
        .await
        .expect("sandbox token request");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("token JSON");
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// A response's JSON body (panics with the text when it is not JSON).
pub async fn json(response: reqwest::Response) -> serde_json::Value {
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// A user id as it appears in a path (`|` percent-encoded).
pub fn in_path(user: &UserId) -> String {
    user.as_str().replace('|', "%7C")
}

/// Runs each named suite, an `async fn(Backend)`, once on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($suite:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $suite() {
                super::$suite($crate::api::Backend::Embedded).await;
            })*
        }
        mod moto {
            $(#[tokio::test]
            async fn $suite() {
                super::$suite($crate::api::Backend::Moto).await;
            })*
        }
    };
}

fn config(settings: &[(&str, String)]) -> Config {
    Config::from_lookup(|name| settings.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).expect("config")
}

/// The headers (`x-amz-date`, `authorization`) the AWS SDK's signer adds for `execute-api`.
pub fn sigv4_headers(
    method: &str,
    url: &str,
    body: &[u8],
    access_key: &str,
    secret: &str,
    time: SystemTime,
) -> Vec<(String, String)> {
    let identity = SigningCredentials::new(access_key, secret, None, None, "keyward-tests").into();
    let params = SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("execute-api")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let request = SignableRequest::new(method, url, std::iter::empty(), SignableBody::Bytes(body)).expect("signable");
    let (instructions, _signature) = sign(request, &params).expect("sign").into_parts();
    instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect()
}

/// The Python that has botocore (the moto venv `scripts/test` installs), from `KEYWARD_TEST_PYTHON`.
pub fn botocore_python() -> String {
    match std::env::var("KEYWARD_TEST_PYTHON") {
        Ok(path) if !path.is_empty() => path,
        _ => panic!("KEYWARD_TEST_PYTHON is not set: run the tests with `scripts/test`, which installs botocore"),
    }
}

impl Drop for LocalApi {
    /// Whatever the stand-ins issued while this API ran joins the leak audit's planted secrets;
    /// every DynamoDB request a function made was one its deployed role allows.
    fn drop(&mut self) {
        crate::leaks::plant_issued();
        if !std::thread::panicking() {
            self.aws_calls.assert_roles_allowed();
        }
    }
}
