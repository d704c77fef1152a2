//! The one client for calls to identity and LLM providers, built on a function's first outbound
//! call rather than at cold start.
//!
//! Building a rustls client reads the system's root certificates (rustls-platform-verifier loads them
//! eagerly). `internal-keys` and `stripe-webhook` never call a provider, and health checks call
//! nothing, so that work would be pure cold-start cost for them (`BENCHMARKS.md`, "Init").

use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The TLS stack could not be set up (no usable root certificates, for one).
#[derive(Debug, thiserror::Error)]
#[error("outbound HTTP client: {0}")]
pub struct OutboundError(String);

/// Cheap to clone: every clone shares the one client and its connection pool.
#[derive(Clone, Default)]
pub struct Outbound {
    client: Arc<OnceLock<reqwest::Client>>,
}

impl Outbound {
    /// An outbound client with keyward's settings, built when first used.
    pub fn new() -> Self {
        Self::default()
    }

    /// The client, built on first use with short timeouts and no redirects (a redirect could carry a
    /// key to a host keyward did not choose). A failed build is retried on the next call.
    pub fn client(&self) -> Result<&reqwest::Client, OutboundError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let built = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keyward/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OutboundError(e.to_string()))?;
        // Two first calls racing may both build; one client wins and the other is dropped.
        Ok(self.client.get_or_init(|| built))
    }
}

/// A prebuilt client (tests set their own timeouts).
impl From<reqwest::Client> for Outbound {
    fn from(client: reqwest::Client) -> Self {
        Self { client: Arc::new(OnceLock::from(client)) }
    }
}

/// The body of `response`, at most `max` bytes, and whether there was more (never read). An
/// answer is never trusted to be small: a hostile or broken server could stream forever.
pub async fn read_capped(mut response: reqwest::Response, max: usize) -> reqwest::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((body, true));
        }
    }
    Ok((body, false))
}
