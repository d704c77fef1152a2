//! Creates keyward's DynamoDB table and a KMS key (with alias `alias/<table>`) in the account or
//! endpoint an AWS configuration points at: moto for local `aws` mode, or a sandbox account.
//! Production gets both from `template.yaml`. Idempotent: what exists is reused.

use aws_config::SdkConfig;

/// Ensures the table and its key exist; returns the KMS key id.
pub async fn ensure(aws: &SdkConfig, table: &str) -> Result<String, String> {
    let dynamodb = aws_sdk_dynamodb::Client::new(aws);
    let exists = dynamodb.describe_table().table_name(table).send().await.is_ok();
    if !exists {
        keyward::store::create_table(&dynamodb, table).await.map_err(|e| format!("creating table {table}: {e}"))?;
    }
    let kms = aws_sdk_kms::Client::new(aws);
    let alias = format!("alias/{table}");
    let key_id = match kms.describe_key().key_id(&alias).send().await {
        Ok(found) => found.key_metadata().map(|m| m.key_id().to_owned()),
        Err(_) => {
            let created = kms
                .create_key()
                .description("keyward data-key wrapping key")
                .send()
                .await
                .map_err(|e| format!("creating KMS key: {e}"))?;
            let id = created.key_metadata().map(|m| m.key_id().to_owned());
            if let Some(id) = &id {
                kms.create_alias()
                    .alias_name(&alias)
                    .target_key_id(id)
                    .send()
                    .await
                    .map_err(|e| format!("creating alias {alias}: {e}"))?;
            }
            id
        }
    };
    key_id.ok_or_else(|| "KMS returned no key id".to_owned())
}
