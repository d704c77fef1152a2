//! Every function is wired end to end: its handler, given the API Gateway HTTP API (v2) event Lambda
//! would deliver, serves its liveness route on both modes and answers anything else with problem+json;
//! a forged direct invoke is refused; and the real binaries under a Lambda Runtime API emulator at
//! `AWS_LAMBDA_LOG_LEVEL=TRACE` write no planted secret (`lambda_runtime` logs raw events at TRACE).

use std::sync::Arc;
use std::time::Duration;

use keyward::app::{AppState, AwsClients};
use keyward::config::Config;
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::{Provider, UserId};
use keyward::store::{AuditAction, KeyStatus, NewLlmKey, now_epoch};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde_json::Value;

fn event(method: &str, path: &str) -> Request {
    let json = serde_json::json!({
        "version": "2.0",
        "routeKey": format!("{method} {path}"),
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"accept": "application/json"},
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": "api.example.com", "domainPrefix": "api",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "req-1", "routeKey": format!("{method} {path}"), "stage": "$default",
            "time": "22/Nov/2026:12:00:00 +0000", "timeEpoch": 1_795_000_000_000_i64
        },
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&json.to_string()).unwrap()
}

fn json(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

/// A local-mode state on the embedded store, kept in a fresh temporary folder.
fn local_state() -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let config = Config::from_lookup(|k| (k == "KEYWARD_DATA_DIR").then(|| data_dir.clone())).unwrap();
    (Arc::new(AppState::with_aws(config, None).unwrap()), dir)
}

async fn check_all(state: Arc<AppState>, store: &str) {
    for routes in keyward_local::all_routes() {
        let name = routes.function();
        let response = routes.serve(&state, &event("GET", &format!("/health/{name}"))).await;
        assert_eq!(response.status(), 200, "{name}");
        let body = json(&response);
        assert_eq!((body["function"].as_str(), body["store"].as_str()), (Some(name), Some(store)), "{body}");

        let response = routes.serve(&state, &event("GET", "/health/another-function")).await;
        assert_eq!(response.status(), 404, "{name} serves only its own routes");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert_eq!(json(&response)["code"], "route_not_found");
    }
}

#[tokio::test]
async fn every_function_serves_liveness_in_local_mode() {
    let (state, dir) = local_state();
    check_all(state, "embedded").await;
    assert!(dir.path().join("master.key").exists() && dir.path().join("keyward.sqlite3").exists());
}

/// aws-mode settings for a function on moto's `table` and KMS `key`.
fn aws_settings(table: &str, key: &str) -> Vec<(&'static str, String)> {
    [
        ("KEYWARD_MODE", "aws"),
        ("KEYWARD_TABLE_NAME", table),
        ("KEYWARD_KMS_KEY_ID", key),
        ("KEYWARD_AUTH0_ISSUER", "https://tenant.example.auth0.com/"),
        ("KEYWARD_AUTH0_AUDIENCE", "https://api.keyward.dev"),
        ("KEYWARD_AUTH0_CLIENT_ID", "web-client"),
        ("KEYWARD_AUTH0_DEVICE_CLIENT_ID", "cli-client"),
        ("KEYWARD_AUTH0_CLIENT_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:auth0-AbCdEf"),
        ("KEYWARD_AUTH0_CALLBACK_URL", "https://api.keyward.dev/auth/callback"),
    ]
    .map(|(name, value)| (name, value.to_owned()))
    .to_vec()
}

fn lookup(vars: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> {
    |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn every_function_serves_liveness_in_aws_mode_on_moto() {
    let table = keyward_tests::TestTable::new().await;
    let sdk = keyward_tests::aws().await;
    let key = keyward_tests::kms_key(&sdk).await;
    let config = Config::from_lookup(lookup(&aws_settings(&table.name, &key))).unwrap();
    let state = Arc::new(AppState::with_aws(config, Some(AwsClients::new(&sdk))).unwrap());
    check_all(state, "dynamodb").await;
}

/// What `main.rs` does inside Lambda: the AWS clients come from Lambda's own variables alone (no
/// profile, no metadata service), and they sign calls DynamoDB and KMS accept.
#[tokio::test]
async fn a_cold_start_on_lambdas_variables_reaches_dynamodb_and_kms() {
    let table = keyward_tests::TestTable::new().await;
    let key = keyward_tests::kms_key(&keyward_tests::aws().await).await;
    let mut vars = aws_settings(&table.name, &key);
    vars.extend([
        ("AWS_LAMBDA_FUNCTION_NAME", "internal-keys".to_owned()),
        ("KEYWARD_API_ID", keyward::config::LOCAL_API_ID.to_owned()),
        ("KEYWARD_ACCOUNT_ID", keyward::config::LOCAL_ACCOUNT_ID.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_SESSION_TOKEN", "testing-session".to_owned()),
        ("AWS_ENDPOINT_URL", keyward_tests::moto_url()),
    ]);
    let config = Config::from_lookup(lookup(&vars)).unwrap();
    let state = Arc::new(AppState::on_lambda(config, lookup(&vars)).unwrap());
    check_all(Arc::clone(&state), "dynamodb").await;

    let user = UserId::parse("auth0|lambda-variables").unwrap();
    let context = EncryptionContext::new(&user, Purpose::LlmKey, Provider::OpenAi.slug());
    let sealed = state.envelope.seal(b"sk-proj-lambda-variables", &context).await.expect("KMS GenerateDataKey");
    let new = NewLlmKey {
        provider: Provider::OpenAi,
        sealed,
        preview: "sk-p…bles".into(),
        status: KeyStatus::Unchecked,
        test: None,
        zai_region: None,
    };
    keyward_tests::seed_key(&state.store, &user, &new, now_epoch()).await;
    let stored = state.store.llm_keys().get(&user, Provider::OpenAi).await.expect("DynamoDB GetItem").unwrap();
    // A state of its own, so the data key comes from KMS Decrypt rather than the sealing cache.
    let fresh = AppState::on_lambda(Config::from_lookup(lookup(&vars)).unwrap(), lookup(&vars)).unwrap();
    let opened = fresh.envelope.open_text(&stored.sealed, &context).await.expect("KMS Decrypt");
    assert_eq!(opened.expose_secret(), "sk-proj-lambda-variables");
}

/// A direct Lambda invoke can name any caller in `requestContext.authorizer.iam`. One that names
/// an allow-listed principal but another API (as anyone with `lambda:InvokeFunction` could send)
/// gets 403 from `internal-keys` before any AWS call: nothing read, nothing handed out, nothing
/// audited. The same event naming this stack's API is served.
#[tokio::test]
async fn a_forged_direct_invoke_of_internal_keys_reads_and_audits_nothing() {
    use lambda_http::Service;
    let table = keyward_tests::TestTable::new().await;
    let sdk = keyward_tests::aws().await;
    let key = keyward_tests::kms_key(&sdk).await;
    let mut vars = aws_settings(&table.name, &key);
    let principal = "arn:aws:iam::111122223333:role/notes-service";
    vars.push(("KEYWARD_INTERNAL_PRINCIPALS", format!(r#"{{"{principal}": ["openai"]}}"#)));
    let calls = keyward_tests::CallCounter::default();
    let clients = AwsClients {
        dynamodb: aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(calls.clone()).build(),
        )
        .into(),
        kms: aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk).interceptor(calls.clone()).build(),
        )
        .into(),
        secrets: aws_sdk_secretsmanager::Client::new(&sdk).into(),
    };
    let state = Arc::new(AppState::with_aws(Config::from_lookup(lookup(&vars)).unwrap(), Some(clients)).unwrap());
    let user = UserId::parse("auth0|victim").unwrap();
    let context = EncryptionContext::new(&user, Purpose::LlmKey, Provider::OpenAi.slug());
    let sealed = state.envelope.seal(b"sk-proj-victims-key", &context).await.unwrap();
    let new = NewLlmKey {
        provider: Provider::OpenAi,
        sealed,
        preview: "sk-p…key".into(),
        status: KeyStatus::Valid,
        test: None,
        zai_region: None,
    };
    keyward_tests::seed_key(&state.store, &user, &new, now_epoch()).await;
    calls.reset();

    let invoke = |api_id: &str| {
        let path = "/internal/users/auth0|victim/llm-keys";
        let json = serde_json::json!({
            "version": "2.0", "routeKey": "GET /internal/users/{uid}/llm-keys", "rawPath": path,
            "rawQueryString": "", "headers": {}, "pathParameters": {"uid": "auth0|victim"},
            "requestContext": {
                "accountId": keyward::config::LOCAL_ACCOUNT_ID, "apiId": api_id, "domainName": "x", "domainPrefix": "x",
                "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.9", "userAgent": "boto3"},
                "requestId": "forged", "routeKey": "GET /internal/users/{uid}/llm-keys", "stage": "$default",
                "time": "04/Dec/2026:01:00:00 +0000", "timeEpoch": 1,
                "authorizer": {"iam": {"userArn": principal, "accountId": "111122223333", "accessKey": "AKIAFORGED"}}
            },
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&json.to_string()).unwrap()
    };
    let mut service = keyward::app::service(Arc::clone(&state), Arc::new(internal_keys::routes()));
    let refused = service.call(invoke("zz9plural9")).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(json(&refused)["code"], "foreign_invocation");
    assert!(!format!("{:?}", refused.body()).contains("sk-proj"));
    assert_eq!(calls.counts(), Default::default(), "no AWS call at all");
    let trail = state.store.audit().list(&user, 10, None).await.unwrap().items;
    assert!(trail.iter().all(|e| e.action != AuditAction::LlmKeyFetch), "nothing audited as a fetch: {trail:?}");

    let served = service.call(invoke(keyward::config::LOCAL_API_ID)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(json(&served)["keys"]["openai"], "sk-proj-victims-key");
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
    let sdk = keyward_tests::aws().await;
    let table = keyward_tests::TestTable::new().await;
    let key_id = keyward_tests::kms_key(&sdk).await;
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
    let cookie = format!("{}={cookie_handle}", keyward::use_cases::sessions::SESSION_COOKIE);
    let from_page = serde_json::json!({"content-type": "application/json", "origin": keyward::config::LOCAL_BASE_URL});
    let (status, _) =
        login.invoke(&http_event("POST /auth/refresh", "/auth/refresh", from_page, &[cookie], None)).await;
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
