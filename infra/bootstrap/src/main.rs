//! Creates keyward's table and KMS key where the standard AWS variables point, and prints the
//! settings to export for `KEYWARD_MODE=aws`.
//!
//! Usage: `keyward-bootstrap [TABLE_NAME]` (default `keyward`).

#[tokio::main]
async fn main() {
    let table = std::env::args().nth(1).unwrap_or_else(|| "keyward".to_owned());
    let aws = keyward::app::aws_config_loader().load().await;
    match keyward_bootstrap::ensure(&aws, &table).await {
        Ok(key_id) => println!("export KEYWARD_MODE=aws KEYWARD_TABLE_NAME={table} KEYWARD_KMS_KEY_ID={key_id}"),
        Err(e) => {
            eprintln!("keyward-bootstrap: {e}");
            std::process::exit(1);
        }
    }
}
