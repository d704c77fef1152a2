//! The whole API through real HTTP: `keyward-local`'s gateway and the sandbox stand-ins on free
//! loopback ports, on either backend, plus SigV4 signing as internal services do it.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::Credentials as SigningCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4::SigningParams;
use keyward::app::AppState;
use keyward::config::{Config, LOCAL_AUDIENCE};
use keyward_local::{Credentials, Gateway, RouteTable};
use keyward_sandbox::Sandbox;

use crate::{TestTable, aws, kms_key};

pub const REGION: &str = "us-east-1";

/// An IAM identity of the local credentials file.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub access_key: &'static str,
    pub secret: &'static str,
    pub arn: &'static str,
}

/// Allowed to fetch OpenAI and Anthropic keys.
pub const NOTES_SERVICE: Principal = Principal {
    access_key: "AKIATESTNOTES0000001",
    secret: "notes-service-secret-0123456789abcdefghij",
    arn: "arn:aws:iam::111122223333:role/notes-service",
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
    _gateway: Gateway,
    _dir: tempfile::TempDir,
    _table: Option<TestTable>,
}

impl LocalApi {
    pub async fn start(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into()).await.expect("start sandbox");
        let principals = serde_json::json!({ NOTES_SERVICE.arn: ["openai", "anthropic"] }).to_string();
        let mut settings = vec![
            ("KEYWARD_DATA_DIR", dir.path().display().to_string()),
            ("KEYWARD_AUTH0_ISSUER", sandbox.auth0_issuer()),
            ("KEYWARD_AUTH0_AUDIENCE", LOCAL_AUDIENCE.to_owned()),
            ("KEYWARD_INTERNAL_PRINCIPALS", principals),
        ];
        let (state, table) = match backend {
            Backend::Embedded => {
                let config = config(&settings);
                (AppState::with_aws(config, None).expect("local state"), None)
            }
            Backend::Moto => {
                let aws = aws().await;
                let table = TestTable::new().await;
                let key = kms_key(&aws_sdk_kms::Client::new(&aws)).await;
                settings.extend([
                    ("KEYWARD_MODE", "aws".to_owned()),
                    ("KEYWARD_TABLE_NAME", table.name.clone()),
                    ("KEYWARD_KMS_KEY_ID", key),
                ]);
                (AppState::with_aws(config(&settings), Some(&aws)).expect("aws state"), Some(table))
            }
        };
        let state = Arc::new(state);

        let credentials_file = dir.path().join("credentials.json");
        let entries: Vec<_> = [NOTES_SERVICE, STRANGER]
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
        let gateway = Gateway::start(
            ([127, 0, 0, 1], 0).into(),
            routes.clone(),
            keyward_local::functions(&state),
            credentials,
            REGION.to_owned(),
        )
        .await
        .expect("start gateway");
        Self {
            state,
            client: reqwest::Client::new(),
            base_url: gateway.base_url(),
            routes,
            sandbox,
            credentials_file,
            _gateway: gateway,
            _dir: dir,
            _table: table,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A sandbox user's access token (Auth0's password grant on the stand-in).
    pub async fn user_token(&self, email: &str) -> String {
        let response = self
            .client
            .post(format!("{}oauth/token", self.sandbox.auth0_issuer()))
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

    /// Sends a request signed for `principal` at `time` (SigV4, service `execute-api`).
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
        request.send().await.expect("send signed request")
    }
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
