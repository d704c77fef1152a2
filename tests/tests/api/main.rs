//! The API end to end: the local gateway and the real function handlers on both store backends,
//! the sandbox's stand-ins for every third party, corpora, faults, and what reaches the logs.

mod api_contract;
mod authorization_corpus;
mod connections;
mod faults;
mod functions_wired;
mod input_corpus;
mod keyring_admin;
mod llm_keys_api;
mod local_gateway;
mod personal_tokens;
mod secret_redaction;
mod sign_in;
mod sign_in_logs;
mod stripe_webhook;
