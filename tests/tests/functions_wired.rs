//! Every function is wired end to end: its handler, given the API Gateway HTTP API (v2) event Lambda
//! would deliver, serves its liveness route on both modes and answers anything else with problem+json.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use keyward::app::{AppState, AwsClients};
use keyward::config::Config;
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::UserId;
use keyward::providers::Provider;
use keyward::store::{KeyStatus, NewLlmKey, now_epoch};
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde_json::Value;

type Handler = fn(Arc<AppState>, Request) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

macro_rules! handlers {
    ($($krate:ident),*) => {
        vec![$((
            $krate::FUNCTION,
            (|state, req| Box::pin($krate::handle(state, req))) as Handler,
        )),*]
    };
}

fn functions() -> Vec<(&'static str, Handler)> {
    handlers!(login_callback, device_auth, llm_keys, internal_keys, oauth_refresh, stripe_webhook)
}

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
    for (name, handle) in functions() {
        let response = handle(Arc::clone(&state), event("GET", &format!("/health/{name}"))).await;
        assert_eq!(response.status(), 200, "{name}");
        let body = json(&response);
        assert_eq!((body["function"].as_str(), body["store"].as_str()), (Some(name), Some(store)), "{body}");

        let response = handle(Arc::clone(&state), event("GET", "/health/another-function")).await;
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
    let key = keyward_tests::kms_key(&aws_sdk_kms::Client::new(&sdk)).await;
    let config = Config::from_lookup(lookup(&aws_settings(&table.name, &key))).unwrap();
    let state = Arc::new(AppState::with_aws(config, Some(AwsClients::new(&sdk))).unwrap());
    check_all(state, "dynamodb").await;
}

/// What `main.rs` does inside Lambda: the AWS clients come from Lambda's own variables alone (no
/// profile, no metadata service), and they sign calls DynamoDB and KMS accept.
#[tokio::test]
async fn a_cold_start_on_lambdas_variables_reaches_dynamodb_and_kms() {
    let table = keyward_tests::TestTable::new().await;
    let key = keyward_tests::kms_key(&aws_sdk_kms::Client::new(&keyward_tests::aws().await)).await;
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
    state.store.llm_keys().put(&user, &new, now_epoch()).await.expect("DynamoDB UpdateItem");
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
    let key = keyward_tests::kms_key(&aws_sdk_kms::Client::new(&sdk)).await;
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
    state.store.llm_keys().put(&user, &new, now_epoch()).await.unwrap();
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
    let mut service = keyward::app::service(Arc::clone(&state), internal_keys::handle);
    let refused = service.call(invoke("zz9plural9")).await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(json(&refused)["code"], "foreign_invocation");
    assert!(!format!("{:?}", refused.body()).contains("sk-proj"));
    assert_eq!(calls.counts(), Default::default(), "no AWS call at all");
    let trail = state.store.audit().list(&user, 10, None).await.unwrap().items;
    assert!(trail.is_empty(), "nothing audited as a fetch: {trail:?}");

    let served = service.call(invoke(keyward::config::LOCAL_API_ID)).await.unwrap();
    assert_eq!(served.status(), 200);
    assert_eq!(json(&served)["keys"]["openai"], "sk-proj-victims-key");
}
