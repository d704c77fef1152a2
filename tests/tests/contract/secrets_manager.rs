//! Client secrets from Secrets Manager (moto, through the real SDK): read on first use, then served
//! from the per-environment cache — one GetSecretValue per cold start and TTL.

use keyward::secret_store::SecretReader;
use keyward::secret_store::SecretSetting;
use keyward_tests::{CallCounter, aws, unique_name};

#[tokio::test]
async fn a_secret_is_read_once_and_cached() {
    let sdk = aws().await;
    let counter = CallCounter::default();
    let client = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&sdk).interceptor(counter.clone()).build(),
    );
    let created = client
        .create_secret()
        .name(unique_name("auth0-client-secret"))
        .secret_string("PLANTED-client-secret-0123")
        .send()
        .await
        .expect("create secret on moto");
    let arn = created.arn().expect("arn").to_owned();
    counter.reset();

    let reader = SecretReader::new(SecretSetting::SecretsManager { arn }, Some(client.clone().into()));
    for _ in 0..3 {
        assert_eq!(reader.get().await.unwrap().expose(), "PLANTED-client-secret-0123");
    }
    assert_eq!(counter.count("SecretsManager.GetSecretValue"), 1);
    assert_eq!(format!("{:?}", reader.get().await.unwrap()), "ClientSecret(***)");

    let missing = SecretReader::new(
        SecretSetting::SecretsManager {
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:none-AbCdEf".into(),
        },
        Some(client.into()),
    );
    let err = missing.get().await.unwrap_err();
    assert!(!err.to_string().contains("PLANTED"));
}
