//! keyward's shared library: everything the Lambda functions have in common, in layers that point
//! one way (a test in [`layers`] fails on any import cycle between these modules):
//!
//! - model: leaf types parsed once at the edge ([`model::UserId`], [`model::Provider`]), the clock,
//!   random values; [`secret`] values; [`endpoints`].
//! - adapters: [`store`], [`crypto`], [`outbound`], [`aws_client`], [`secret_store`], [`files`],
//!   [`telemetry`].
//! - clients of other services: [`auth`] (Auth0, tokens, IAM callers), [`oauth`] (connection
//!   providers), [`providers`] (LLM providers), [`stripe`].
//! - [`use_cases`]: every rule of the product, one module per capability.
//! - [`config`] (the environment into each component's settings), [`http`] (requests in, problems
//!   out), [`app`] (the state, the route tables, running on Lambda).

pub mod app;
pub mod auth;
pub mod aws_client;
mod aws_http;
pub mod config;
pub mod crypto;
pub mod endpoints;
pub mod files;
pub mod github;
pub mod http;
pub mod model;
pub mod oauth;
pub mod outbound;
pub mod providers;
pub mod published_keys;
pub mod secret;
pub mod secret_store;
pub mod store;
pub mod stripe;
pub mod telemetry;
pub mod use_cases;

#[cfg(test)]
mod layers;
