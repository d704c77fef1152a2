//! Planted secrets never reach a log line, an error body or a panic message: with keyward logging
//! at TRACE (third-party crates capped at INFO, as everywhere) while the code paths that handle
//! them run, and from the real function binaries under a Lambda Runtime API emulator with
//! `AWS_LAMBDA_LOG_LEVEL=TRACE`, which once made `lambda_runtime` log every raw event.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keyward::crypto::{EncryptionContext, Envelope, KeyProvider, KmsKeyProvider, Purpose};
use keyward::http::{ApiError, json_body};
use keyward::model::UserId;
use keyward::providers::Provider;
use keyward::secret::{ApiKey, RefreshToken};
use keyward::store::{KeyStatus, NewLlmKey, TestResult};
use keyward_tests::{LogCapture, TestStore, aws, kms_key};
use tracing::Instrument;

const API_KEY: &str = "sk-proj-PLANTED0api0key0Zq81kY2w9x";
const REFRESH: &str = "v1.PLANTED0refresh0token0MTIzNDU2";
const BEARER: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3Qta2V5LTEifQ.eyJQTEFOVEVEIjoiYmVhcmVyIn0.PLANTED0bearer0sig";

fn problem_body(err: ApiError) -> String {
    match err.into_response().into_body() {
        lambda_http::Body::Text(text) => text,
        other => panic!("problem bodies are text, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_secrets_never_reach_logs_errors_or_panics() {
    let capture = LogCapture::default();
    let sink = capture.clone();
    keyward::telemetry::install(
        move || sink.clone(),
        keyward::telemetry::LogLevels::parse("trace").expect("filter directives"),
    );

    let mut exposed: Vec<String> = vec![API_KEY.into(), REFRESH.into(), BEARER.into()];
    let mut bodies = Vec::new();
    let span = keyward::telemetry::request_span("req-redaction-1", "PUT /me/llm-keys/{provider}");
    async {
        let sdk = aws().await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let key_id = kms_key(&kms).await;
        let provider = Arc::new(KmsKeyProvider::new(kms, &key_id));
        let user = UserId::parse("auth0|alice").unwrap();
        let context = EncryptionContext::new(&user, Purpose::LlmKey, "openai");

        // A data key straight from KMS: its bytes, in every encoding, must stay out of the logs.
        let (data_key, _) = provider.generate(&context).await.unwrap();
        exposed.push(base64::engine::general_purpose::STANDARD.encode(data_key.expose()));
        exposed.push(hex_lower(data_key.expose()));
        tracing::debug!(target: "keyward_tests", ?data_key, "generated");

        let api_key = ApiKey::new(API_KEY);
        let refresh = RefreshToken::new(REFRESH);
        tracing::trace!(target: "keyward_tests", ?api_key, %refresh, "handling secrets");
        let envelope = Envelope::new(provider.clone(), Duration::from_secs(300));
        let sealed = envelope.seal(api_key.expose().as_bytes(), &context).await.unwrap();

        let backend = TestStore::dynamo().await;
        let new = NewLlmKey {
            provider: Provider::OpenAi,
            sealed: sealed.clone(),
            preview: "sk-p…9x".into(),
            status: KeyStatus::Valid,
            test: Some(TestResult { ok: true, message: "The key works.".into(), at: 1 }),
            zai_region: None,
        };
        let stored = backend.store().llm_keys().put(&user, &new, 1).await.unwrap();
        tracing::debug!(target: "keyward_tests", ?stored, "stored");
        let opened = envelope.open(&stored.sealed, &context).await.unwrap();
        assert_eq!(&opened[..], API_KEY.as_bytes());

        // Error paths: the wrong owner, a cold cache (so KMS is asked), malformed and bad bodies.
        let bob = EncryptionContext::new(&UserId::parse("auth0|bob").unwrap(), Purpose::LlmKey, "openai");
        let cold = Envelope::new(provider, Duration::ZERO);
        let refused = cold.open(&sealed, &bob).await.unwrap_err();
        bodies.push(problem_body(ApiError::from(refused)));
        for body in [
            format!(r#"{{"apiKey": "{API_KEY}""#),
            format!(r#"{{"apiKey": ["{API_KEY}"]}}"#),
            format!(r#"{{"{API_KEY}": 1}}"#),
        ] {
            let request = lambda_http::http::Request::builder()
                .header("content-type", "application/json")
                .body(lambda_http::Body::from(body))
                .unwrap();
            #[derive(Debug, serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            #[allow(dead_code)]
            struct Put {
                #[serde(rename = "apiKey")]
                api_key: String,
            }
            bodies.push(problem_body(json_body::<Put>(&request).unwrap_err()));
        }

        // A bearer token that fails verification (no JWKS reachable) is never echoed.
        let settings = keyward::config::TokenSettings {
            issuer: "https://tenant.example.auth0.com/".into(),
            audience: "https://api.keyward.dev".into(),
            jwks_url: "http://127.0.0.1:9/.well-known/jwks.json".parse().unwrap(),
            required_scope: None,
            email_verified_claim: None,
        };
        let verifier = keyward::auth::TokenVerifier::new(settings, keyward::outbound::Outbound::new());
        let rejected = verifier.verify(BEARER).await.unwrap_err();
        tracing::warn!(?rejected, "token rejected");
        bodies.push(problem_body(ApiError::from(rejected)));
    }
    .instrument(span)
    .await;

    // A panic that formats a secret shows only its redacted form.
    let api_key = ApiKey::new(API_KEY);
    let panic = std::panic::catch_unwind(|| panic!("could not use {api_key:?} / {api_key}")).unwrap_err();
    let panic_message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(panic_message.contains("ApiKey(***)"), "{panic_message}");

    let logs = capture.text();
    // The capture really saw the paths above at TRACE, and nothing of a third party's below INFO.
    let lines: Vec<serde_json::Value> = logs.lines().map(|l| serde_json::from_str(l).expect("JSON lines")).collect();
    assert!(lines.len() >= 5, "too few log lines captured: {}", lines.len());
    assert!(logs.contains("\"level\":\"TRACE\""), "no TRACE lines captured");
    for line in &lines {
        let (level, target) = (line["level"].as_str().unwrap_or(""), line["target"].as_str().unwrap_or(""));
        assert!(target.starts_with("keyward") || !matches!(level, "DEBUG" | "TRACE"), "{target} logged at {level}");
    }
    assert!(logs.contains("req-redaction-1") && logs.contains("PUT /me/llm-keys/{provider}"));
    assert!(logs.contains("ApiKey(***)"), "the redacted key should appear where it was logged");
    for secret in &exposed {
        assert!(!logs.contains(secret.as_str()), "a planted secret reached the logs");
        assert!(!panic_message.contains(secret.as_str()), "a planted secret reached a panic message");
        for body in &bodies {
            assert!(!body.contains(secret.as_str()), "a planted secret reached an error body: {body}");
        }
    }
    for marker in ["PLANTED", "\"Plaintext\""] {
        assert!(!logs.contains(marker), "`{marker}` reached the logs");
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A function binary of this build, beside the test binaries' folder (`target/<profile>/`).
fn function_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(std::path::Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: scripts/test builds the function binaries (`cargo build --workspace --all-targets`) \
         before the tests",
        path.display()
    );
    path
}

/// One real function process under a Lambda Runtime API emulator, its stdout and stderr collected.
struct FunctionProcess {
    emulator: keyward_sandbox::lambda_runtime::Emulator,
    child: tokio::process::Child,
    output: Vec<tokio::task::JoinHandle<Vec<u8>>>,
}

impl FunctionProcess {
    async fn start(name: &str, env: &[(&str, String)]) -> Self {
        let mut emulator = keyward_sandbox::lambda_runtime::Emulator::start().await.expect("start the emulator");
        let mut child = tokio::process::Command::new(function_binary(name))
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", emulator.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "trace-run")
            // What `LogLevel: TRACE` in template.yaml sets.
            .env("AWS_LAMBDA_LOG_LEVEL", "TRACE")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        // Read both pipes as the process writes, so a chatty process never blocks on a full pipe.
        let readers = [child.stdout.take().map(read_all), child.stderr.take().map(read_all)];
        let output = readers.into_iter().flatten().collect();
        emulator.first_next(Duration::from_secs(30)).await.unwrap_or_else(|| panic!("{name} never asked for an event"));
        Self { emulator, child, output }
    }

    /// Delivers `event` and returns the function's API Gateway response (status and body).
    async fn invoke(&mut self, event: &serde_json::Value) -> (u64, serde_json::Value) {
        let (_, answer) = self.emulator.invoke(event.to_string().as_bytes()).await.expect("an answer");
        assert!(answer.ok, "the invocation failed: {}", String::from_utf8_lossy(&answer.body));
        let response: serde_json::Value = serde_json::from_slice(&answer.body).expect("a JSON response");
        let body = response["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or_default();
        (response["statusCode"].as_u64().unwrap_or(0), body)
    }

    /// Stops the process and returns everything it wrote to stdout and stderr.
    async fn finish(mut self) -> String {
        let _ = self.child.kill().await;
        let mut text = String::new();
        for reader in self.output {
            text.push_str(&String::from_utf8_lossy(&reader.await.unwrap_or_default()));
        }
        text
    }
}

fn read_all(mut pipe: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut bytes).await;
        bytes
    })
}

/// An HTTP API (v2) event of the local API, the way API Gateway delivers one.
fn http_event(
    route_key: &str,
    path: &str,
    headers: serde_json::Value,
    cookies: &[String],
    body: Option<&str>,
) -> serde_json::Value {
    let method = route_key.split(' ').next().unwrap_or("GET");
    let mut event = serde_json::json!({
        "version": "2.0", "routeKey": route_key, "rawPath": path, "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": keyward::config::LOCAL_ACCOUNT_ID, "apiId": keyward::config::LOCAL_API_ID,
            "domainName": "localhost", "domainPrefix": "localhost",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "t"},
            "requestId": format!("trace-{}", keyward_tests::unique_name("r")), "routeKey": route_key,
            "stage": "$default", "time": "04/Dec/2026:01:00:00 +0000", "timeEpoch": 1_796_000_000_000_i64
        },
        "isBase64Encoded": false
    });
    if !cookies.is_empty() {
        event["cookies"] = serde_json::json!(cookies);
    }
    if let Some(body) = body {
        event["body"] = serde_json::json!(body);
    }
    event
}

/// The real function binaries, under a Lambda Runtime API emulator at `AWS_LAMBDA_LOG_LEVEL=TRACE`
/// (what `LogLevel: TRACE` deploys), fed events that carry a key in a PUT body, a bearer token,
/// session handles in a cookie and a body, a device code, and a callback's code and state: none
/// reaches their stdout or stderr. Without the cap on third-party targets, `lambda_runtime` logs
/// each raw event.
#[tokio::test(flavor = "multi_thread")]
async fn function_binaries_at_trace_write_no_planted_secret() {
    keyward_tests::leaks::init();
    let sandbox = keyward_sandbox::Sandbox::start(([127, 0, 0, 1], 0).into()).await.expect("start the sandbox");
    let sdk = aws().await;
    let table = keyward_tests::TestTable::new().await;
    let key_id = kms_key(&aws_sdk_kms::Client::new(&sdk)).await;
    let env: Vec<(&str, String)> = vec![
        ("KEYWARD_MODE", "aws".into()),
        ("KEYWARD_TABLE_NAME", table.name.clone()),
        ("KEYWARD_KMS_KEY_ID", key_id),
        ("KEYWARD_AUTH0_ISSUER", sandbox.auth0_issuer()),
        ("KEYWARD_AUTH0_AUDIENCE", keyward::config::LOCAL_AUDIENCE.into()),
        ("KEYWARD_AUTH0_CALLBACK_URL", "http://127.0.0.1:8700/auth/callback".into()),
        ("KEYWARD_API_ID", keyward::config::LOCAL_API_ID.into()),
        ("KEYWARD_ACCOUNT_ID", keyward::config::LOCAL_ACCOUNT_ID.into()),
        ("KEYWARD_INTERNAL_PRINCIPALS", r#"{"arn:aws:iam::111122223333:role/notes-service":["openai"]}"#.into()),
        ("KEYWARD_PROVIDER_TIMEOUT_SECS", "1".into()),
        ("AWS_ENDPOINT_URL", keyward_tests::moto_url()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ];

    let bearer = keyward_tests::api::sandbox_token(&reqwest::Client::new(), &sandbox, "trace-run@example.com").await;
    let api_key = format!("sk-proj-PLANTED0trace0{}", keyward_tests::unique_name("k"));
    let cookie_handle = format!("PLANTED0cookie0handle0{}", keyward_tests::unique_name("h"));
    let body_handle = format!("PLANTED0body0handle0{}", keyward_tests::unique_name("h"));
    let device_code = format!("PLANTED0device0code0{}", keyward_tests::unique_name("d"));
    let (code, state) = (keyward_tests::unique_name("PLANTED0code"), keyward_tests::unique_name("PLANTED0state"));
    let planted = [&bearer, &api_key, &cookie_handle, &body_handle, &device_code, &code, &state];
    for secret in planted {
        keyward_tests::leaks::plant(secret);
    }
    let json = serde_json::json!({"content-type": "application/json"});

    let mut output = String::new();
    let mut llm_keys = FunctionProcess::start("llm-keys", &env).await;
    let mut put = http_event(
        "PUT /me/llm-keys/{provider}",
        "/me/llm-keys/openai",
        serde_json::json!({"content-type": "application/json", "authorization": format!("Bearer {bearer}")}),
        &[],
        Some(&format!(r#"{{"apiKey":"{api_key}"}}"#)),
    );
    put["pathParameters"] = serde_json::json!({"provider": "openai"});
    let (status, body) = llm_keys.invoke(&put).await;
    // Past the token and the body: the one OpenAI host keyward may call cannot be reached from here.
    assert_eq!((status, body["code"].as_str()), (502, Some("provider_unreachable")), "{body}");
    output.push_str(&llm_keys.finish().await);

    let mut login = FunctionProcess::start("login-callback", &env).await;
    let cookie = format!("{}={cookie_handle}", keyward::session::SESSION_COOKIE);
    let (status, _) =
        login.invoke(&http_event("POST /auth/refresh", "/auth/refresh", json.clone(), &[cookie], None)).await;
    assert_eq!(status, 401);
    let refresh_body = format!(r#"{{"refreshToken":"{body_handle}"}}"#);
    let (status, _) =
        login.invoke(&http_event("POST /auth/refresh", "/auth/refresh", json.clone(), &[], Some(&refresh_body))).await;
    assert_eq!(status, 401);
    let mut callback = http_event("GET /auth/callback", "/auth/callback", serde_json::json!({}), &[], None);
    callback["rawQueryString"] = format!("code={code}&state={state}").into();
    callback["queryStringParameters"] = serde_json::json!({"code": code, "state": state});
    let (status, body) = login.invoke(&callback).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_state")), "{body}");
    output.push_str(&login.finish().await);

    let mut device = FunctionProcess::start("device-auth", &env).await;
    let poll_body = format!(r#"{{"deviceCode":"{device_code}"}}"#);
    let (status, body) =
        device.invoke(&http_event("POST /auth/device/poll", "/auth/device/poll", json, &[], Some(&poll_body))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    output.push_str(&device.finish().await);

    keyward_tests::leaks::capture("trace-run", &output);
    let lines: Vec<serde_json::Value> = output
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("a line that is not JSON: {l:.200}")))
        .collect();
    // The run was really at TRACE for keyward (its DEBUG line of the JWKS fetch), served every event,
    // and capped every other crate at INFO.
    assert!(lines.iter().any(|l| l["level"] == "DEBUG" && l["message"] == "JWKS fetched"), "{output:.2000}");
    assert_eq!(lines.iter().filter(|l| l["message"] == "served").count(), 5, "{output:.2000}");
    for line in &lines {
        let (level, target) = (line["level"].as_str().unwrap_or(""), line["target"].as_str().unwrap_or(""));
        assert!(target.starts_with("keyward") || !matches!(level, "DEBUG" | "TRACE"), "{target} logged at {level}");
    }
    for secret in planted {
        assert!(!output.contains(secret.as_str()), "a planted secret reached a function's stdout or stderr");
    }
    assert!(!output.contains("PLANTED"), "a planted value reached a function's stdout or stderr");
}
