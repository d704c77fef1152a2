//! Envelope encryption on AWS KMS (moto's server through the real SDK): round trips, refusals, and
//! the data-key cache measured in KMS calls.

use std::sync::Arc;
use std::time::Duration;

use keyward::crypto::{CryptoError, EncryptionContext, Envelope, KmsKeyProvider, Purpose, Sealed};
use keyward::model::UserId;
use keyward_tests::{CallCounter, aws, kms_key};

const SECRET: &[u8] = b"sk-ant-api03-PLANTED-kms-0123456789abcdefghijklmnopqrstuvwxyz";

async fn kms(counter: &CallCounter) -> (aws_sdk_kms::Client, String) {
    let sdk = aws().await;
    let conf = aws_sdk_kms::config::Builder::from(&sdk).interceptor(counter.clone()).build();
    let client = aws_sdk_kms::Client::from_conf(conf);
    let key = kms_key(&client).await;
    (client, key)
}

fn ctx(user: &str, name: &str) -> EncryptionContext {
    EncryptionContext::new(&UserId::parse(user).unwrap(), Purpose::LlmKey, name)
}

#[tokio::test]
async fn seal_and_open_with_one_kms_call_each_way() {
    let counter = CallCounter::default();
    let (client, key) = kms(&counter).await;
    counter.reset();
    let writer = Envelope::new(Arc::new(KmsKeyProvider::new(client.clone(), &key)), Duration::from_secs(300));
    let alice = ctx("auth0|alice", "anthropic");
    let sealed = writer.seal(SECRET, &alice).await.unwrap();
    assert_eq!(counter.count("KMS.GenerateDataKey"), 1, "one data key per seal");
    assert_eq!(sealed.key_id, key);

    // A new execution environment: the first open unwraps, warm opens are served from the cache.
    let reader = Envelope::new(Arc::new(KmsKeyProvider::new(client, &key)), Duration::from_secs(300));
    let stored = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    for _ in 0..10 {
        assert_eq!(&reader.open(&stored, &alice).await.unwrap()[..], SECRET);
    }
    assert_eq!(counter.count("KMS.Decrypt"), 1, "warm reads make no KMS call: {:?}", counter.counts());
}

#[tokio::test]
async fn kms_itself_refuses_another_context() {
    let counter = CallCounter::default();
    let (client, key) = kms(&counter).await;
    let provider = Arc::new(KmsKeyProvider::new(client, &key));
    let sealed = Envelope::new(provider.clone(), Duration::from_secs(300))
        .seal(SECRET, &ctx("auth0|alice", "openai"))
        .await
        .unwrap();
    // No cache: the refusal must come from KMS's encryption-context check, not only from AES-GCM.
    let cold = Envelope::new(provider, Duration::ZERO);
    counter.reset();
    for other in [ctx("auth0|bob", "openai"), ctx("auth0|alice", "anthropic")] {
        assert!(matches!(cold.open(&sealed, &other).await, Err(CryptoError::Refused)), "{other:?}");
    }
    assert_eq!(counter.count("KMS.Decrypt"), 2, "{:?}", counter.counts());
}

#[tokio::test]
async fn tampered_wrapped_keys_and_foreign_keys_are_refused() {
    let counter = CallCounter::default();
    let (client, key) = kms(&counter).await;
    let provider = Arc::new(KmsKeyProvider::new(client.clone(), &key));
    let alice = ctx("auth0|alice", "openai");
    let sealed = Envelope::new(provider.clone(), Duration::from_secs(300)).seal(SECRET, &alice).await.unwrap();
    let cold = Envelope::new(provider, Duration::ZERO);
    for i in [0, sealed.wrapped_key.len() / 2, sealed.wrapped_key.len() - 1] {
        let mut tampered = sealed.clone();
        tampered.wrapped_key[i] ^= 0x01;
        assert!(cold.open(&tampered, &alice).await.is_err(), "wrapped key byte {i}");
    }
    // A record made under another KMS key is refused before any KMS call.
    let other_key = kms_key(&client).await;
    let other = Envelope::new(Arc::new(KmsKeyProvider::new(client, &other_key)), Duration::ZERO);
    counter.reset();
    assert!(matches!(other.open(&sealed, &alice).await, Err(CryptoError::ForeignKey(_))));
    assert_eq!(counter.counts().len(), 0);
}

#[tokio::test]
async fn an_unknown_kms_key_is_a_provider_error_not_a_panic() {
    let counter = CallCounter::default();
    let (client, _) = kms(&counter).await;
    let missing = Envelope::new(
        Arc::new(KmsKeyProvider::new(
            client,
            "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        )),
        Duration::from_secs(300),
    );
    assert!(missing.seal(SECRET, &ctx("auth0|alice", "openai")).await.is_err());
}
