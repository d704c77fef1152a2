//! Planted secrets never reach a log line, an error body or a panic message, with keyward logging
//! at TRACE (third-party crates capped at INFO, as everywhere) while the code paths that handle
//! them run. (The real function binaries at TRACE: `functions_wired.rs`.)

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use keyward::crypto::{EncryptionContext, Envelope, KeyContext, KeyProvider, KmsKeyProvider, Purpose};
use keyward::http::ApiError;
use keyward::http::request::json_body;
use keyward::model::{Provider, SystemClock, UserId};
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

#[tokio::test]
async fn planted_secrets_never_reach_logs_errors_or_panics() {
    let capture = LogCapture::default();
    let _logs = keyward_tests::leaks::capture_logs(&capture, "trace");

    let mut exposed: Vec<String> = vec![API_KEY.into(), REFRESH.into(), BEARER.into()];
    let mut bodies = Vec::new();
    let span = keyward::telemetry::request_span("req-redaction-1", "PUT /me/llm-keys/{provider}");
    async {
        let sdk = aws().await;
        let kms = aws_sdk_kms::Client::new(&sdk);
        let key_id = kms_key(&sdk).await;
        let provider = Arc::new(KmsKeyProvider::new(kms, &key_id));
        let user = UserId::parse("auth0|alice").unwrap();
        let context = EncryptionContext::new(&user, Purpose::LlmKey, "openai");

        // A data key straight from KMS: its bytes, in every encoding, must stay out of the logs.
        let (data_key, _) = provider.generate(&KeyContext::Record(&context)).await.unwrap();
        exposed.push(base64::engine::general_purpose::STANDARD.encode(data_key.expose()));
        exposed.push(hex_lower(data_key.expose()));
        tracing::debug!(target: "keyward_tests", ?data_key, "generated");
        let backend = TestStore::dynamo().await;
        let envelope_on =
            |ttl| Envelope::new(provider.clone(), Arc::new(backend.store().clone()), ttl, Arc::new(SystemClock));

        let api_key = ApiKey::new(API_KEY);
        let refresh = RefreshToken::new(REFRESH);
        tracing::trace!(target: "keyward_tests", ?api_key, %refresh, "handling secrets");
        let envelope = envelope_on(Duration::from_secs(300));
        let sealed = envelope.seal(api_key.expose().as_bytes(), &context).await.unwrap();
        // The branch key the seal made, unwrapped: its bytes must stay out of the logs too.
        let branch = backend.store().keyring().active(Purpose::LlmKey).await.unwrap().expect("a branch key");
        let branch_context = KeyContext::BranchKey { purpose: branch.purpose, version: branch.version };
        let branch_key = provider.unwrap(&branch.key_id, &branch.wrapped, &branch_context).await.unwrap();
        exposed.push(base64::engine::general_purpose::STANDARD.encode(branch_key.expose()));
        exposed.push(hex_lower(branch_key.expose()));
        tracing::debug!(target: "keyward_tests", ?branch, ?branch_key, "branch key");

        let new = NewLlmKey {
            provider: Provider::OpenAi,
            sealed: sealed.clone(),
            preview: "sk-p…9x".into(),
            status: KeyStatus::Valid,
            test: Some(TestResult { ok: true, message: "The key works.".into(), at: 1 }),
            zai_region: None,
        };
        let stored = keyward_tests::seed_key(backend.store(), &user, &new, 1).await;
        tracing::debug!(target: "keyward_tests", ?stored, "stored");
        let opened = envelope.open(&stored.sealed, &context).await.unwrap();
        assert_eq!(&opened[..], API_KEY.as_bytes());

        // Error paths: the wrong owner, a cold cache (so KMS is asked), malformed and bad bodies.
        let bob = EncryptionContext::new(&UserId::parse("auth0|bob").unwrap(), Purpose::LlmKey, "openai");
        let cold = envelope_on(Duration::ZERO);
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
        let settings = keyward::auth::jwt::TokenSettings {
            issuer: "https://tenant.example.auth0.com/".into(),
            audience: "https://api.keyward.dev".into(),
            jwks_url: "http://127.0.0.1:9/.well-known/jwks.json".parse().unwrap(),
            required_scope: None,
            allowed_clients: Vec::new(),
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
