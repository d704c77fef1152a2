//! keyward's shared library: everything the Lambda functions have in common.
//!
//! Each module is named for what it does. Edge types ([`model::UserId`], [`model::Provider`],
//! [`secret::ApiKey`]) are parsed once where input enters; inner code never re-checks strings.

pub mod account;
pub mod app;
pub mod auth;
pub mod aws_client;
mod aws_trust;
pub mod billing;
pub mod config;
pub mod crypto;
pub mod endpoints;
pub mod files;
pub mod http;
pub mod model;
pub mod oauth;
pub mod outbound;
pub mod providers;
pub mod redirects;
pub mod secret;
pub mod secrets;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod throttle;
