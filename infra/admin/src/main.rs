//! `keyward-admin`: operators' commands, one per job, over the same environment the functions
//! read (`KEYWARD_MODE`, `KEYWARD_TABLE_NAME`, `KEYWARD_KMS_KEY_ID`, `KEYWARD_KMS_PREVIOUS_KEY_IDS`,
//! or `KEYWARD_DATA_DIR` in local mode) and the standard AWS credential chain. `docs/crypto.md`
//! says when to run the keyring's; README's deploy steps end with `doctor`.

mod doctor;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use keyward::config::Mode;
use keyward::crypto::{BranchVersion, Envelope, Purpose};
use keyward::model::SystemClock;
use keyward::store::Store;
use keyward::telemetry::LogLevels;
use keyward::use_cases::keyring::{Keyring, KeyringError};

#[derive(Parser)]
#[command(name = "keyward-admin", about = "Operators' commands for a keyward deployment")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The keyring: branch keys per purpose, their versions and the records each seals.
    #[command(subcommand)]
    Keyring(KeyringCommand),
    /// Lists the account's roles and users that may invoke keyward's functions directly (outside
    /// the invoke guard), by IAM's policy simulator.
    Doctor {
        /// The functions' ARNs, comma-separated: the stack's `FunctionArns` output.
        #[arg(long, env = "KEYWARD_FUNCTION_ARNS", value_delimiter = ',', required = true)]
        functions: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeyringCommand {
    /// Every purpose's branch key versions, the active one, and how many records each seals.
    Status,
    /// Makes a new branch key version active for new seals (old versions still open).
    Rotate {
        /// `llm-key`, `auth0-refresh`, `google-oauth`, `microsoft-oauth` or `oauth-state`.
        #[arg(value_parser = purpose, required_unless_present = "all")]
        purpose: Option<Purpose>,
        /// Every purpose.
        #[arg(long, conflicts_with = "purpose")]
        all: bool,
    },
    /// Re-seals every record not under its purpose's active version; resumes where a stopped run
    /// left off, and prints its progress after each page.
    Rewrap {
        /// Items read per page of the table.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        page_size: u32,
        /// Stop after this many pages (the next run resumes); the whole table when absent.
        #[arg(long)]
        pages: Option<u32>,
    },
    /// Deletes a branch key version that is not active and that no record uses.
    Retire {
        #[arg(value_parser = purpose)]
        purpose: Purpose,
        /// The version, as `status` prints it (32 hex digits).
        #[arg(value_parser = version)]
        version: BranchVersion,
    },
    /// Re-wraps every branch key under the current KMS key (`KEYWARD_KMS_KEY_ID`) inside KMS, from
    /// the keys in `KEYWARD_KMS_PREVIOUS_KEY_IDS`.
    MoveKms,
}

fn purpose(name: &str) -> Result<Purpose, String> {
    Purpose::all().find(|p| p.name() == name).ok_or_else(|| {
        let names: Vec<String> = Purpose::all().map(Purpose::name).collect();
        format!("not a purpose; one of {}", names.join(", "))
    })
}

fn version(hex: &str) -> Result<BranchVersion, String> {
    BranchVersion::parse(hex).ok_or_else(|| "not a branch key version (32 hex digits)".into())
}

#[tokio::main]
async fn main() -> ExitCode {
    // Logs (JSON lines) to stderr, so stdout holds only the command's answer.
    keyward::telemetry::install(std::io::stderr, LogLevels::from_lookup(|name| std::env::var(name).ok()));
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keyward-admin: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Keyring(command) => keyring(command).await,
        Command::Doctor { functions } => doctor(&functions).await,
    }
}

/// `doctor`: who may invoke the functions directly.
async fn doctor(functions: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let iam = aws_sdk_iam::Client::new(&keyward::app::aws_config_loader().load().await);
    let report = doctor::check(&iam, functions).await?;
    match report.exposed.len() {
        0 => println!("doctor: none of {} principal(s) may invoke keyward's functions directly", report.principals),
        n => println!(
            "doctor: {n} of {} principal(s) may invoke keyward's functions directly, outside the invoke guard \
             (only deploy roles should):",
            report.principals
        ),
    }
    for exposure in &report.exposed {
        let functions: Vec<&str> = exposure.functions.iter().map(String::as_str).collect();
        println!("  {}: {}", exposure.principal, functions.join(", "));
    }
    if !report.unevaluated.is_empty() {
        println!("doctor: statements with conditions the simulator cannot evaluate without a request:");
        for (principal, key) in &report.unevaluated {
            println!("  {principal}: a condition on {key}; check it by hand");
        }
    }
    Ok(())
}

/// The keyring's commands, on the deployment's table and KMS key (or local mode's folder).
async fn keyring(command: KeyringCommand) -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str| std::env::var(name).ok();
    let mode = Mode::from_lookup(env)?;
    let aws = match mode {
        Mode::Aws { .. } => Some(keyward::app::AwsClients::new(&keyward::app::aws_config_loader().load().await)),
        Mode::Local { .. } => None,
    };
    // One run is one instance: branch keys are unwrapped once each, for the whole run.
    let clock = Arc::new(SystemClock);
    let (store, envelope) = keyward::app::storage(&mode, Envelope::MAX_CACHE_TTL, aws.as_ref(), clock.clone())?;
    let provider = keyward::app::key_maintenance(&mode, aws.as_ref())?;
    let page_size = match command {
        KeyringCommand::Rewrap { page_size, .. } => page_size,
        _ => 100,
    };
    let keyring =
        Keyring { store: &store, envelope: &envelope, provider: provider.as_ref(), clock: clock.as_ref(), page_size };
    match command {
        KeyringCommand::Status => print_status(&keyring, &store).await?,
        KeyringCommand::Rotate { purpose, all } => {
            let purposes: Vec<Purpose> = if all { Purpose::all().collect() } else { purpose.into_iter().collect() };
            for purpose in purposes {
                let next = keyring.rotate(purpose).await?;
                println!("{}: version {} is active", purpose.name(), next.version);
            }
        }
        KeyringCommand::Rewrap { pages, .. } => {
            let mut done = 0;
            loop {
                let progress = keyring.rewrap_step().await?;
                done += 1;
                println!(
                    "rewrap: {} seen, {} re-sealed, {} already current, {} changed meanwhile, {} refused{}",
                    progress.seen,
                    progress.resealed,
                    progress.current,
                    progress.changed_meanwhile,
                    progress.refused,
                    if progress.finished { "; finished" } else { "" }
                );
                if progress.finished {
                    if progress.refused > 0 {
                        return Err(format!("{} record(s) did not open (see the warnings)", progress.refused).into());
                    }
                    break;
                }
                if pages.is_some_and(|pages| done >= pages) {
                    println!("rewrap: stopped after {done} page(s); run it again to go on");
                    break;
                }
            }
        }
        KeyringCommand::Retire { purpose, version } => {
            keyring.retire(purpose, version).await?;
            println!("{}: version {version} retired", purpose.name());
        }
        KeyringCommand::MoveKms => {
            let moved = keyring.move_to_current_key().await?;
            println!(
                "move-kms: {} branch key version(s) re-wrapped under {}, {} already were",
                moved.moved,
                envelope.key_id(),
                moved.already_there
            );
            if !moved.finished() {
                return Err(format!(
                    "move-kms: not finished: {}; keep those keys in PreviousKmsKeyArns, run `keyward-admin keyring \
                     rewrap` (it re-seals such records under the branch keys), then move-kms again",
                    left_behind(&moved.left_behind)
                )
                .into());
            }
            println!("move-kms: finished: nothing needs another KMS key");
        }
    }
    Ok(())
}

/// `N format-1 record(s) still need KEY`, for each key.
fn left_behind(by_key: &std::collections::BTreeMap<String, u64>) -> String {
    let each = by_key.iter().map(|(key, n)| format!("{n} format-1 record(s) still need {key}"));
    each.collect::<Vec<_>>().join(", ")
}

async fn print_status(keyring: &Keyring<'_>, store: &Store) -> Result<(), KeyringError> {
    let status = keyring.status().await?;
    let current = keyring.provider.key_id();
    if status.all_on_current_key() {
        println!("kms: everything is under {current}");
    } else {
        let mut unfinished = vec![format!("{} branch key version(s) under other keys", status.branch_keys_elsewhere)];
        unfinished.extend((!status.left_behind.is_empty()).then(|| left_behind(&status.left_behind)));
        println!("kms: a move to {current} is unfinished: {}", unfinished.join(", "));
    }
    for status in status.purposes {
        println!(
            "{}: {} version(s), {} format-1 record(s)",
            status.purpose.name(),
            status.versions.len(),
            status.format_one_records
        );
        for version in &status.versions {
            println!(
                "  {} {} created_at={} records={} kms={}",
                version.version,
                if version.active { "active  " } else { "inactive" },
                version.created_at,
                version.records,
                version.kms_key_id
            );
        }
    }
    if let Some(progress) = store.keyring().rewrap_progress().load().await? {
        println!(
            "rewrap: {} (started_at={}, updated_at={}): {} seen, {} re-sealed, {} refused",
            if progress.finished { "finished" } else { "in progress" },
            progress.started_at,
            progress.updated_at,
            progress.seen,
            progress.resealed,
            progress.refused
        );
    }
    Ok(())
}
