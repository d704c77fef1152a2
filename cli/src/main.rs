//! `keyward`: a terminal client of a keyward API. Signs in with the device flow, keeps the session
//! handle in the user's config folder (mode 0600), refreshes access tokens on its own, and manages
//! the user's LLM provider keys. A key is read from a hidden prompt or stdin, never from argv
//! (argv is visible to every user of the machine and lands in shell history).

mod api;
mod commands;
mod session;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The exit codes scripts can switch on.
const AFTER_HELP: &str = "Exit codes: 0 success, 1 refused or failed, 2 usage, 3 not signed in.\n\
The session lives in $KEYWARD_CONFIG_DIR (default: your config folder's keyward/), readable by you only.\n\
With $KEYWARD_TOKEN set (a personal access token), commands act with it instead of a sign-in.";

#[derive(Parser)]
#[command(name = "keyward", version, about = "Sign in to keyward and manage your LLM provider keys.", after_help = AFTER_HELP)]
struct Cli {
    /// The keyward API's base URL; defaults to the signed-in session's, else the local run's.
    #[arg(long, env = "KEYWARD_URL", global = true)]
    url: Option<url::Url>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign in with the device flow: confirm a code in your browser.
    Login {
        /// Do not offer to open the browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// End the session here and at keyward.
    Logout,
    /// Show who is signed in.
    Whoami,
    /// Your LLM provider keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Personal access tokens for scripts and CI (making and revoking them needs a sign-in).
    #[command(subcommand)]
    Tokens(TokensCommand),
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Make a token; it is printed once, on stdout.
    Create {
        name: String,
        /// A scope it carries (repeat for more): profile:read, keys:read, keys:write, credits:read,
        /// connections:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until it expires.
        #[arg(long)]
        days: u32,
    },
    /// List your tokens (never their values).
    List,
    /// Revoke a token by its id; it is refused from its next request on.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List your stored keys (masked).
    List,
    /// Store a key, read from a hidden prompt or stdin; keyward checks it with the provider first.
    Set {
        /// A provider's slug, as `GET /llm-providers` lists them (`openai`, `anthropic`, …).
        provider: String,
        /// Zai keys only: `international` (z.ai) or `china` (open.bigmodel.cn).
        #[arg(long)]
        region: Option<String>,
        /// Catches a key typed as an argument, so clap's error cannot echo it.
        #[arg(hide = true, num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true)]
        stray: Vec<String>,
    },
    /// Check a stored key with its provider again.
    Test { provider: String },
    /// Forget a stored key.
    Rm { provider: String },
}

/// Why a command failed; each has its exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("not signed in; run `keyward login` first")]
    NotSignedIn,
    #[error("your session has ended; run `keyward login` again")]
    SessionEnded,
    /// keyward answered with a problem; `detail` is its human message.
    #[error("{detail}")]
    Refused { status: u16, code: String, detail: String },
    #[error("cannot reach keyward at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Usage(&'static str),
    /// A provider the API does not list; the message names those it does.
    #[error("unknown provider `{given}`; keyward stores keys for {known}")]
    UnknownProvider { given: String, known: String },
}

impl CliError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::UnknownProvider { .. } => 2,
            Self::NotSignedIn | Self::SessionEnded => 3,
            _ => 1,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Login { no_browser } => commands::login(cli.url, no_browser).await,
        Command::Logout => commands::logout(cli.url).await,
        Command::Whoami => commands::whoami(cli.url).await,
        Command::Keys(KeysCommand::List) => commands::keys_list(cli.url).await,
        Command::Keys(KeysCommand::Set { stray, .. }) if !stray.is_empty() => Err(CliError::Usage(
            "keys are read from the prompt or stdin, never from the command line (other users can see \
             arguments, and shells save them): run `keyward keys set <provider>` and type or pipe the key",
        )),
        Command::Keys(KeysCommand::Set { provider, region, .. }) => {
            commands::keys_set(cli.url, &provider, region).await
        }
        Command::Keys(KeysCommand::Test { provider }) => commands::keys_test(cli.url, &provider).await,
        Command::Keys(KeysCommand::Rm { provider }) => commands::keys_rm(cli.url, &provider).await,
        Command::Tokens(TokensCommand::Create { name, scopes, days }) => {
            commands::tokens_create(cli.url, &name, &scopes, days).await
        }
        Command::Tokens(TokensCommand::List) => commands::tokens_list(cli.url).await,
        Command::Tokens(TokensCommand::Revoke { id }) => commands::tokens_revoke(cli.url, &id).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
