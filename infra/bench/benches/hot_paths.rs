//! Criterion benches of the hot pure code: envelope seal and open (branch key cached, as on a warm
//! Lambda), Auth0 JWT verification with the JWKS cached, provider error classification and Stripe
//! signature verification. `cargo bench -p keyward-bench` (scripts/bench runs it too).

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward::auth::TokenVerifier;
use keyward::config::{Config, LOCAL_AUDIENCE};
use keyward::crypto::{EncryptionContext, Envelope, LocalKeyProvider, Purpose};
use keyward::model::Provider;
use keyward::model::SystemClock;
use keyward::model::UserId;
use keyward::providers::{ProviderResponse, classify};
use keyward::store::{MemoryTable, Store};
use keyward::stripe::signature;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn envelope(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = LocalKeyProvider::open_or_create(dir.path()).expect("local key");
    let branch_keys = Arc::new(Store::new(Arc::new(MemoryTable::default())));
    let envelope = Envelope::new(Arc::new(provider), branch_keys, Duration::from_secs(300), Arc::new(SystemClock));
    let context = EncryptionContext::new(
        &UserId::parse("auth0|b5fc85e55755f9e0d030a10a").expect("user"),
        Purpose::LlmKey,
        "openai",
    );
    let key = b"sk-proj-bench-0123456789abcdefghijklmnopqrstuvwxyz0123456789";
    c.bench_function("envelope seal (branch key cached: HKDF + AES-GCM)", |b| {
        b.iter(|| rt.block_on(envelope.seal(key, &context)).expect("seal"))
    });
    let sealed = rt.block_on(envelope.seal(key, &context)).expect("seal");
    rt.block_on(envelope.open(&sealed, &context)).expect("warm the branch-key cache");
    c.bench_function("envelope open (branch key cached: HKDF + commitment + AES-GCM)", |b| {
        b.iter(|| rt.block_on(envelope.open(&sealed, &context)).expect("open"))
    });
}

fn jwt(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = rt
        .block_on(keyward_sandbox::Sandbox::start_with(
            ([127, 0, 0, 1], 0).into(),
            keyward_sandbox::auth0::DeviceTimings::default(),
        ))
        .expect("sandbox");
    let issuer = sandbox.auth0_issuer();
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().display().to_string();
    let config = Config::from_lookup(|k| match k {
        "KEYWARD_DATA_DIR" => Some(data_dir.clone()),
        "KEYWARD_AUTH0_ISSUER" => Some(issuer.clone()),
        _ => None,
    })
    .expect("config");
    let http = reqwest::Client::new();
    let token = rt.block_on(async {
        let answer: serde_json::Value = http
            .post(format!("{issuer}oauth/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", "ada@example.com"),
                ("password", keyward_sandbox::auth0::SANDBOX_PASSWORD),
                ("audience", LOCAL_AUDIENCE),
            ])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token JSON");
        answer["access_token"].as_str().expect("access token").to_owned()
    });
    let verifier = TokenVerifier::new(config.tokens.clone(), http.into());
    rt.block_on(verifier.verify(&token)).expect("first verification fetches the JWKS");
    c.bench_function("JWT verify (RS256, JWKS cached)", |b| {
        b.iter(|| rt.block_on(verifier.verify(&token)).expect("verify"))
    });
}

fn classification(c: &mut Criterion) {
    let headers = http::HeaderMap::new();
    let body = br#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let response = ProviderResponse { status: 429, headers: &headers, body };
    c.bench_function("classify OpenAI insufficient_quota", |b| b.iter(|| classify(Provider::OpenAi, &response)));
}

fn stripe(c: &mut Criterion) {
    use hmac::{Hmac, Mac};
    let secret = "whsec_keyward_sandbox_0123456789abcdef";
    let body =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/stripe/checkout.session.completed.json"))
            .expect("event");
    let now = 1_795_000_000_i64;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{now}.").as_bytes());
    mac.update(&body);
    let header = format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()));
    let secrets = signature::secrets_of(&format!("whsec_previous_0123456789abcdef,{secret}"));
    c.bench_function("Stripe signature verify (2 secrets, 1.8 KB body)", |b| {
        b.iter(|| signature::verify(Some(&header), &body, &secrets, now).expect("valid"))
    });
}

criterion_group!(benches, envelope, jwt, classification, stripe);
criterion_main!(benches);
