//! Test harness shared by the workspace's integration tests: a moto server speaking the real AWS
//! protocols, a fresh table or KMS key per test, both store backends, and AWS call counting.

pub mod api;
pub mod iam;
pub mod leaks;
pub mod sign_in;
pub mod stripe;
pub mod table_writer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use keyward::model::UserId;
use keyward::store::{
    Actor, AuditAction, AuditEntry, DynamoTable, EmbeddedTable, NewLlmKey, Store, StoredLlmKey, create_table,
};

/// Stores `new` as `user`'s key the way production does (with its audit entry), without asking
/// the provider: for keys a test wants in a given state.
pub async fn seed_key(store: &Store, user: &UserId, new: &NewLlmKey, now: i64) -> StoredLlmKey {
    let entry = AuditEntry {
        at: now,
        actor: Actor::System,
        action: AuditAction::LlmKeyPut,
        target: Some(new.provider.slug().into()),
        outcome: "seeded".into(),
    };
    store.llm_keys().put_audited(user, new, now, &entry).await.expect("store the key")
}

/// The moto server's URL, from `KEYWARD_TEST_MOTO_URL`: the test command (`scripts/test`) starts one
/// serialized server (`infra/moto/serve.py`) on a free loopback port for all test binaries.
pub fn moto_url() -> String {
    match std::env::var("KEYWARD_TEST_MOTO_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("KEYWARD_TEST_MOTO_URL is not set: run the tests with `scripts/test`, which starts moto"),
    }
}

/// An AWS configuration pointed at moto with dummy credentials.
pub async fn aws() -> SdkConfig {
    aws_at(&moto_url()).await
}

/// keyward's own AWS settings (timeouts included), pointed at `endpoint` with dummy credentials.
pub async fn aws_at(endpoint: &str) -> SdkConfig {
    leaks::init();
    keyward::app::aws_config_loader()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "keyward-tests"))
        .load()
        .await
}

/// A name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", hex(rand::random::<[u8; 6]>()))
}

fn hex(bytes: [u8; 6]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `aws` for a test's own setup calls (its table, key, secret): one attempt that waits as long as
/// moto takes. With keyward's settings (2-second attempts, retried), a create queued behind other
/// tests' requests on a loaded host timed out, and its retry failed on what the first attempt made.
pub fn setup_config(aws: &SdkConfig) -> SdkConfig {
    let patient = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(10))
        .disable_operation_attempt_timeout()
        .disable_operation_timeout()
        .build();
    aws.to_builder().timeout_config(patient).retry_config(RetryConfig::disabled()).build()
}

/// Creates table `name` on the moto `aws` points at, with [`setup_config`].
pub async fn create_test_table(aws: &SdkConfig, name: &str) {
    let client = aws_sdk_dynamodb::Client::new(&setup_config(aws));
    create_table(&client, name).await.expect("create table on moto");
}

/// A fresh DynamoDB table on moto, deleted when dropped.
pub struct TestTable {
    pub name: String,
    pub client: aws_sdk_dynamodb::Client,
}

impl TestTable {
    pub async fn new() -> Self {
        let aws = aws().await;
        let name = unique_name("keyward-test");
        create_test_table(&aws, &name).await;
        Self { name, client: aws_sdk_dynamodb::Client::new(&aws) }
    }

    pub fn store(&self) -> Store {
        Store::new(Arc::new(DynamoTable::new(self.client.clone(), &self.name)))
    }
}

impl Drop for TestTable {
    fn drop(&mut self) {
        let (client, name) = (self.client.clone(), self.name.clone());
        // Drop cannot await; a short-lived runtime on its own thread deletes the table.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                let _ = rt.block_on(client.delete_table().table_name(name).send());
            }
        })
        .join();
    }
}

/// A store on one of the backends, with whatever keeps it alive.
pub enum TestStore {
    Embedded(Store, tempfile::TempDir),
    Dynamo(Store, TestTable),
    Memory(Store),
}

impl TestStore {
    pub fn embedded() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let table = EmbeddedTable::open(dir.path()).expect("open embedded store");
        Self::Embedded(Store::new(Arc::new(table)), dir)
    }

    pub fn memory() -> Self {
        Self::Memory(Store::new(Arc::new(keyward::store::MemoryTable::default())))
    }

    pub async fn dynamo() -> Self {
        let table = TestTable::new().await;
        Self::Dynamo(table.store(), table)
    }

    pub fn store(&self) -> &Store {
        match self {
            Self::Embedded(store, _) | Self::Dynamo(store, _) | Self::Memory(store) => store,
        }
    }
}

/// Creates a symmetric KMS key on the moto `aws` points at, with [`setup_config`]; returns its id.
pub async fn kms_key(aws: &SdkConfig) -> String {
    let client = aws_sdk_kms::Client::new(&setup_config(aws));
    let out = client.create_key().description("keyward test key").send().await.expect("create KMS key on moto");
    out.key_metadata().map(|m| m.key_id().to_owned()).expect("key id")
}

/// Counts AWS operations by `Service.Operation`, as an SDK interceptor sees them, and keeps each
/// DynamoDB request as IAM would authorise it.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<Calls>>);

#[derive(Debug, Default)]
struct Calls {
    counts: BTreeMap<String, usize>,
    /// DynamoDB requests no function was serving (a test's own, or one outside the gateway).
    unattributed: Vec<iam::Access>,
    /// DynamoDB requests by the function that made them, where the gateway named it.
    served: BTreeMap<&'static str, usize>,
    /// DynamoDB requests a function made that its role in `template.yaml` would refuse.
    refused: Vec<String>,
}

impl CallCounter {
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.0.lock().map(|calls| calls.counts.clone()).unwrap_or_default()
    }

    pub fn count(&self, operation: &str) -> usize {
        self.counts().get(operation).copied().unwrap_or(0)
    }

    pub fn reset(&self) {
        if let Ok(mut calls) = self.0.lock() {
            calls.counts.clear();
            calls.unattributed.clear();
            calls.served.clear();
        }
    }

    /// DynamoDB requests since the last take or reset, by the function that made them.
    pub fn served(&self) -> BTreeMap<&'static str, usize> {
        self.0.lock().map(|calls| calls.served.clone()).unwrap_or_default()
    }

    /// Asserts that every DynamoDB request a function made while serving (the local gateway names
    /// it, [`keyward_local::SERVING`]) is one its role in `template.yaml` allows. moto enforces no
    /// IAM, so a request the deployed role would refuse shows here first.
    pub fn assert_roles_allowed(&self) {
        let refused = self.0.lock().map(|mut calls| std::mem::take(&mut calls.refused)).unwrap_or_default();
        assert!(refused.is_empty(), "requests the deployed roles would refuse:\n{}", refused.join("\n"));
    }

    /// The calls since the last take or reset, as `Service.Operation=n` in order, after asserting
    /// that each DynamoDB request among them is one its role in `template.yaml` allows,
    /// `dynamodb:LeadingKeys` conditions included: a function's against its own role, any other
    /// against the role of `function` (a resource name: `LlmKeysFunction`).
    pub fn take_as(&self, function: &str) -> String {
        self.assert_roles_allowed();
        let (counts, unattributed) = self
            .0
            .lock()
            .map(|mut calls| {
                calls.served.clear();
                (std::mem::take(&mut calls.counts), std::mem::take(&mut calls.unattributed))
            })
            .unwrap_or_default();
        let policy = iam::Policy::of(function);
        for access in &unattributed {
            assert!(policy.allows(access), "{function} may not make {access:?}");
        }
        counts.into_iter().map(|(op, n)| format!("{op}={n}")).collect::<Vec<_>>().join(" ")
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    /// Runs once per attempt on the wire, so SDK retries count too.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Both DynamoDB and KMS (and Secrets Manager) speak awsJson: `X-Amz-Target: Service.Operation`.
        let target = context.request().headers().get("x-amz-target").unwrap_or("unknown.unknown");
        let (service, operation) = target.split_once('.').unwrap_or(("unknown", target));
        let service = match service {
            "TrentService" => "KMS",
            s if s.starts_with("DynamoDB") => "DynamoDB",
            "secretsmanager" => "SecretsManager",
            other => other,
        };
        if let Ok(mut calls) = self.0.lock() {
            *calls.counts.entry(format!("{service}.{operation}")).or_default() += 1;
            if service == "DynamoDB" {
                let accesses = iam::accesses(operation, context.request().body().bytes().unwrap_or_default());
                match keyward_local::SERVING.try_with(|function| *function) {
                    Ok(function) => {
                        *calls.served.entry(function).or_default() += 1;
                        iam::record_use(function, &accesses);
                        let role = iam::Policy::of_binary(function);
                        let refused = accesses.iter().filter(|access| !role.allows(access));
                        calls.refused.extend(refused.map(|access| format!("{function}: {access:?}")));
                    }
                    Err(_) => calls.unattributed.extend(accesses),
                }
            }
        }
        Ok(())
    }
}

/// Collects log output in memory, for tests that install a subscriber writing to it.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn text(&self) -> String {
        self.0.lock().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }

    pub fn clear(&self) {
        if let Ok(mut b) = self.0.lock() {
            b.clear();
        }
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
