//! Creates keyward's DynamoDB table and a KMS key (with alias) in the account or endpoint the standard
//! AWS variables point at: moto for local `aws` mode, or a sandbox account. Production gets both from
//! `template.yaml`. Prints the settings to export for `KEYWARD_MODE=aws`.
//!
//! Usage: `keyward-bootstrap [TABLE_NAME]` (default `keyward`).

use aws_config::BehaviorVersion;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("keyward-bootstrap: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let table = std::env::args().nth(1).unwrap_or_else(|| "keyward".to_owned());
    let aws = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws);
    let exists = dynamodb.describe_table().table_name(&table).send().await.is_ok();
    if !exists {
        keyward::store::create_table(&dynamodb, &table).await.map_err(|e| format!("creating table {table}: {e}"))?;
    }
    let kms = aws_sdk_kms::Client::new(&aws);
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
    }
    .ok_or("KMS returned no key id")?;
    println!("export KEYWARD_MODE=aws KEYWARD_TABLE_NAME={table} KEYWARD_KMS_KEY_ID={key_id}");
    Ok(())
}
