//! The fast contract tests: the store on both backends, providers' answers, tokens, the
//! ciphertext corpus, configuration and the template — everything that needs no running API.

mod auth_tokens;
mod ciphertext_corpus;
mod crypto_kms;
mod provider_golden;
mod provider_validation;
mod sample_events;
mod scanner_rules;
mod secrets_manager;
mod store_contract;
mod telemetry_lines;
mod template_policy;
