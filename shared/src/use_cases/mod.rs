//! The product's rules, one module per capability. Each use case takes what it needs (store,
//! envelope, clients, clock) rather than the application state, answers with its own error enum,
//! and is tested on the embedded store, the local key and a manual clock — without HTTP.

pub mod access_tokens;
pub mod accounts;
pub mod billing;
pub mod connections;
pub mod credits;
pub mod devices;
pub mod keyring;
pub mod keys;
pub mod redirects;
pub mod sessions;
pub mod throttle;

#[cfg(test)]
mod testing;
