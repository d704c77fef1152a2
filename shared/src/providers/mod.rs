//! The LLM providers whose keys keyward stores. Each provider is one module holding one value of
//! [`LlmProvider`] — its keys' shape, its validation call and auth headers, what its answers mean,
//! its name and console — and [`spec`] is the registry. Everything else here is shared by all.

mod answer;
mod anthropic;
mod classify;
mod gemini;
mod key;
mod openai;
mod openrouter;
mod outcome;
mod perplexity;
mod validate;
mod zai;

pub use answer::Answer;
pub use classify::{ProviderResponse, classify};
pub use key::{KeyShapeError, MAX_KEY_LEN, MIN_KEY_LEN, parse_api_key, preview};
pub use outcome::{Failure, FailureKind, Outcome, RateLimit};
pub use validate::{KeyValidator, ProviderEndpoints};

use http::HeaderMap;
use serde_json::Value;

use crate::endpoints::EndpointSetting;
use crate::model::{Provider, ZaiRegion};
use crate::secret::ApiKey;

/// The registry: each provider's module.
pub fn spec(provider: Provider) -> &'static dyn LlmProvider {
    match provider {
        Provider::Gemini => &gemini::Gemini,
        Provider::OpenAi => &openai::OpenAi,
        Provider::Anthropic => &anthropic::Anthropic,
        Provider::Perplexity => &perplexity::Perplexity,
        Provider::Zai => &zai::Zai,
        Provider::OpenRouter => &openrouter::OpenRouter,
    }
}

/// Every endpoint any provider may be configured with, in registry order.
pub fn endpoint_settings() -> impl Iterator<Item = &'static EndpointSetting> {
    Provider::ALL.iter().flat_map(|p| spec(*p).endpoints())
}

/// The cheapest request that proves a key works and reveals billing trouble (`provider-errors.md` §0).
pub struct Probe {
    pub method: http::Method,
    /// Under the endpoint's base URL.
    pub path: String,
    /// Sent as JSON (`POST`); `None` for a `GET`.
    pub body: Option<Value>,
}

/// One LLM provider, as keyward deals with it.
pub trait LlmProvider: Sync {
    fn provider(&self) -> Provider;

    /// The name users know it by (`Google Gemini`).
    fn display_name(&self) -> &'static str;

    /// What its keys look like, for people about to paste one (`sk-ant-api03-…`).
    fn key_hint(&self) -> &'static str;

    /// Where a user creates a key.
    fn console_url(&self) -> &'static str;

    /// The endpoints configuration sets for it; a key is validated at [`LlmProvider::endpoint`].
    fn endpoints(&self) -> &'static [EndpointSetting];

    /// Where a key of `region` is validated; providers without regions have one endpoint.
    fn endpoint(&self, _region: ZaiRegion) -> &'static EndpointSetting {
        &self.endpoints()[0]
    }

    /// Whether its keys belong to one of several platforms, stored with the key (Zai's two).
    fn has_regions(&self) -> bool {
        false
    }

    /// Refuses, with a sentence, what passed the length and charset checks but certainly is not
    /// one of its keys (a wrong prefix, another product's token).
    fn check_shape(&self, key: &str) -> Result<(), &'static str>;

    fn probe(&self) -> Probe;

    /// Adds the key's auth header (marked sensitive by [`secret_header`]) and any fixed headers.
    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap);

    /// A refusal a `2xx` answer still carries (Perplexity answers 200 for a failed response; a key
    /// past its own credit limit reads fine on OpenRouter's key-info call). `None`: the key works.
    fn refusal_in_success(&self, _answer: &Answer<'_>) -> Option<Failure> {
        None
    }

    /// What a non-`2xx` answer means. Body first (codes, types, reasons), status second: statuses
    /// alone mislead (OpenAI and Zai say 429 for "slow down" and for "out of money").
    fn judge(&self, answer: &Answer<'_>) -> Failure;

    /// A sentence better than the generic one, where the provider's own terms help the user.
    fn sentence(&self, _failure: &Failure) -> Option<String> {
        None
    }
}

/// Sets `name` to `value`, marked sensitive so no Debug print of the request shows it.
pub fn secret_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(mut value) = http::HeaderValue::from_str(value) {
        value.set_sensitive(true);
        headers.insert(name, value);
    }
}

/// The `Authorization: Bearer <key>` most providers take.
fn bearer(key: &ApiKey, headers: &mut HeaderMap) {
    secret_header(headers, "authorization", &format!("Bearer {}", key.expose()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_registered_under_its_own_variant() {
        for provider in Provider::ALL {
            assert_eq!(spec(*provider).provider(), *provider);
        }
    }

    #[test]
    fn endpoint_variables_are_unique_and_official_urls_are_https() {
        let mut vars: Vec<&str> = endpoint_settings().map(|s| s.var).collect();
        let count = vars.len();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(vars.len(), count, "two providers share a variable");
        assert!(endpoint_settings().all(|s| s.official.starts_with("https://") && s.sandbox_path.starts_with('/')));
    }
}
