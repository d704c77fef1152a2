//! Envelope encryption on AWS KMS and DynamoDB (moto's servers through the real SDK, every call
//! counted by an SDK interceptor): a warm instance seals and opens with no KMS call, branch keys are
//! unwrapped once per instance and TTL, KMS itself binds a branch key to its purpose and version,
//! and records of format 1 still open.

use std::sync::Arc;
use std::time::Duration;

use keyward::crypto::{
    CryptoError, EncryptionContext, Envelope, KeyContext, KeyProvider, KmsKeyProvider, Purpose, SealFormat, Sealed,
};
use keyward::model::{ManualClock, OAuthProvider, UserId};
use keyward::store::Store;
use keyward_tests::{CallCounter, TestTable, aws, create_test_table, kms_key, unique_name};

const SECRET: &[u8] = b"sk-ant-api03-PLANTED-kms-0123456789abcdefghijklmnopqrstuvwxyz";

/// A KMS key and a table on moto, both behind one call counter.
struct Deployment {
    counter: CallCounter,
    kms: aws_sdk_kms::Client,
    key: String,
    table: TestTable,
    clock: Arc<ManualClock>,
}

impl Deployment {
    async fn new() -> Self {
        let counter = CallCounter::default();
        let sdk = aws().await;
        let kms = aws_sdk_kms::Client::from_conf(
            aws_sdk_kms::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
        );
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
        );
        let name = unique_name("keyward-crypto");
        create_test_table(&sdk, &name).await;
        let key = kms_key(&sdk).await;
        counter.reset();
        Self {
            counter,
            kms,
            key,
            table: TestTable { name, client: dynamodb },
            clock: Arc::new(ManualClock::at(1_800_000_000)),
        }
    }

    fn store(&self) -> Store {
        self.table.store()
    }

    fn provider(&self) -> Arc<KmsKeyProvider> {
        Arc::new(KmsKeyProvider::new(self.kms.clone(), &self.key))
    }

    /// A new instance (cold start) with its own cache.
    fn instance(&self, ttl: Duration) -> Envelope {
        Envelope::new(self.provider(), Arc::new(self.store()), ttl, self.clock.clone())
    }

    fn warm(&self) -> Envelope {
        self.instance(Duration::from_secs(300))
    }

    /// The calls since the last look, as `Service.Operation=n`.
    fn calls(&self) -> String {
        let counts = self.counter.counts();
        self.counter.reset();
        counts.into_iter().map(|(op, n)| format!("{op}={n}")).collect::<Vec<_>>().join(" ")
    }
}

fn ctx(user: &str, name: &str) -> EncryptionContext {
    EncryptionContext::new(&UserId::parse(user).unwrap(), Purpose::LlmKey, name)
}

#[tokio::test]
async fn a_warm_instance_makes_no_kms_call_per_read_or_write() {
    let deployment = Deployment::new().await;
    let writer = deployment.warm();
    let alice = ctx("auth0|alice", "anthropic");
    let first = writer.seal(SECRET, &alice).await.unwrap();
    assert_eq!(first.format(), 2);
    // The purpose's first seal makes its first branch key: one GenerateDataKey, and one
    // transaction storing it (the version's item and the ACTIVE copy), after a look for one.
    assert_eq!(deployment.calls(), "DynamoDB.GetItem=1 DynamoDB.TransactWriteItems=1 KMS.GenerateDataKey=1");
    for i in 0..50 {
        let sealed = writer.seal(SECRET, &ctx(&format!("auth0|user{i}"), "openai")).await.unwrap();
        assert_eq!(&writer.open(&sealed, &ctx(&format!("auth0|user{i}"), "openai")).await.unwrap()[..], SECRET);
    }
    assert_eq!(deployment.calls(), "", "warm seals and opens make no AWS call at all");

    // A new execution environment: its first open reads and unwraps the branch key once.
    let reader = deployment.warm();
    let stored = Sealed::from_bytes(&first.to_bytes()).unwrap();
    assert_eq!(&reader.open(&stored, &alice).await.unwrap()[..], SECRET);
    assert_eq!(deployment.calls(), "DynamoDB.GetItem=1 KMS.Decrypt=1");
    for _ in 0..50 {
        assert_eq!(&reader.open(&stored, &alice).await.unwrap()[..], SECRET);
    }
    // Its first seal looks up which version is active: the one it already holds, so no unwrap.
    reader.seal(SECRET, &alice).await.unwrap();
    assert_eq!(deployment.calls(), "DynamoDB.GetItem=1");
    for _ in 0..50 {
        reader.seal(SECRET, &alice).await.unwrap();
    }
    assert_eq!(deployment.calls(), "");

    // Past the TTL the branch key is unwrapped again, once.
    deployment.clock.advance(301);
    for _ in 0..10 {
        assert_eq!(&reader.open(&stored, &alice).await.unwrap()[..], SECRET);
    }
    assert_eq!(deployment.calls(), "DynamoDB.GetItem=1 KMS.Decrypt=1");
}

#[tokio::test]
async fn each_purpose_has_its_own_branch_key() {
    let deployment = Deployment::new().await;
    let envelope = deployment.warm();
    let user = UserId::parse("auth0|alice").unwrap();
    let purposes =
        [Purpose::LlmKey, Purpose::Auth0Refresh, Purpose::Connection(OAuthProvider::Google), Purpose::OAuthState];
    let mut versions = Vec::new();
    for purpose in purposes {
        let sealed = envelope.seal(SECRET, &EncryptionContext::new(&user, purpose, "name")).await.unwrap();
        versions.push(sealed.branch_version().unwrap());
    }
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), purposes.len());
    assert_eq!(deployment.counter.count("KMS.GenerateDataKey"), purposes.len());
}

#[tokio::test]
async fn kms_binds_a_branch_key_to_its_purpose_and_version() {
    let deployment = Deployment::new().await;
    deployment.warm().seal(SECRET, &ctx("auth0|alice", "openai")).await.unwrap();
    let stored = deployment.store().keyring().active(Purpose::LlmKey).await.unwrap().expect("branch key");
    let provider = deployment.provider();
    let own = KeyContext::BranchKey { purpose: Purpose::LlmKey, version: stored.version };
    provider.unwrap(&stored.key_id, &stored.wrapped, &own).await.expect("its own context opens it");
    // The key policy matches on `keyward:purpose`: a branch key must not unwrap as another's.
    deployment.calls();
    for other in [
        KeyContext::BranchKey { purpose: Purpose::Auth0Refresh, version: stored.version },
        KeyContext::BranchKey { purpose: Purpose::LlmKey, version: keyward::crypto::BranchVersion::random() },
    ] {
        let refused = provider.unwrap(&stored.key_id, &stored.wrapped, &other).await;
        assert!(matches!(refused, Err(CryptoError::Refused)), "{other:?}: {refused:?}");
    }
    assert_eq!(deployment.calls(), "KMS.Decrypt=2", "the refusals are KMS's own");
}

#[tokio::test]
async fn a_tampered_or_foreign_branch_key_is_refused() {
    let deployment = Deployment::new().await;
    let alice = ctx("auth0|alice", "openai");
    let sealed = deployment.warm().seal(SECRET, &alice).await.unwrap();
    let store = deployment.store();
    let keyring = store.keyring();
    let stored = keyring.active(Purpose::LlmKey).await.unwrap().expect("branch key");
    for i in [0, stored.wrapped.len() / 2, stored.wrapped.len() - 1] {
        let mut tampered = stored.clone();
        tampered.wrapped[i] ^= 0x01;
        assert!(keyring.rewrapped(&stored, &tampered, true).await.unwrap());
        let opened = deployment.warm().open(&sealed, &alice).await;
        assert!(opened.is_err(), "wrapped branch key byte {i}: {opened:?}");
        assert!(keyring.rewrapped(&tampered, &stored, true).await.unwrap());
    }
    assert_eq!(&deployment.warm().open(&sealed, &alice).await.unwrap()[..], SECRET);

    // A branch key wrapped under a KMS key this deployment does not accept: refused before any KMS call.
    let other_key = kms_key(&aws().await).await;
    let other = Envelope::new(
        Arc::new(KmsKeyProvider::new(deployment.kms.clone(), &other_key)),
        Arc::new(deployment.store()),
        Duration::ZERO,
        deployment.clock.clone(),
    );
    deployment.calls();
    assert!(matches!(other.open(&sealed, &alice).await, Err(CryptoError::ForeignKey(_))));
    assert_eq!(deployment.calls(), "DynamoDB.GetItem=1");
}

#[tokio::test]
async fn format_one_records_still_open_and_kms_checks_their_context() {
    let deployment = Deployment::new().await;
    let old = deployment.warm().writing(SealFormat::DataKeyPerRecord);
    let alice = ctx("auth0|alice", "openai");
    let sealed = old.seal(SECRET, &alice).await.unwrap();
    assert_eq!(sealed.format(), 1);
    assert_eq!(deployment.calls(), "KMS.GenerateDataKey=1");

    // Today's instances open it: one Decrypt, then from the cache.
    let reader = deployment.warm();
    let stored = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    for _ in 0..10 {
        assert_eq!(&reader.open(&stored, &alice).await.unwrap()[..], SECRET);
    }
    assert_eq!(deployment.calls(), "KMS.Decrypt=1");

    // No cache: the refusal of another context comes from KMS's encryption-context check.
    let cold = deployment.instance(Duration::ZERO);
    for other in [ctx("auth0|bob", "openai"), ctx("auth0|alice", "anthropic")] {
        assert!(matches!(cold.open(&stored, &other).await, Err(CryptoError::Refused)), "{other:?}");
    }
    assert_eq!(deployment.calls(), "KMS.Decrypt=2");
}

#[tokio::test]
async fn an_unknown_kms_key_is_a_provider_error_not_a_panic() {
    let deployment = Deployment::new().await;
    let missing = Envelope::new(
        Arc::new(KmsKeyProvider::new(
            deployment.kms.clone(),
            "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
        )),
        Arc::new(deployment.store()),
        Duration::from_secs(300),
        deployment.clock.clone(),
    );
    assert!(missing.seal(SECRET, &ctx("auth0|alice", "openai")).await.is_err());
}
