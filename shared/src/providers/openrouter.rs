//! OpenRouter (`platform-notes.md` §2): one key for many models. A key is checked with the free
//! key-info call (`GET /key`), which also tells whether the key reached the credit limit set on it;
//! refusals use OpenRouter's envelope, whose `code` is the HTTP status.

use http::HeaderMap;
use serde_json::Value;

use super::answer::Answer;
use super::outcome::{Failure, FailureKind, RateLimit};
use super::{LlmProvider, Probe, bearer};
use crate::endpoints::EndpointSetting;
use crate::model::Provider;
use crate::secret::ApiKey;

pub struct OpenRouter;

impl LlmProvider for OpenRouter {
    fn provider(&self) -> Provider {
        Provider::OpenRouter
    }

    fn display_name(&self) -> &'static str {
        "OpenRouter"
    }

    fn key_hint(&self) -> &'static str {
        "sk-or-v1-…"
    }

    fn console_url(&self) -> &'static str {
        "https://openrouter.ai/settings/keys"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &[EndpointSetting {
            name: "openrouter",
            var: "KEYWARD_OPENROUTER_BASE_URL",
            official: "https://openrouter.ai/api/v1",
            sandbox_path: "/openrouter/api/v1",
        }]
    }

    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        if key.starts_with("sk-or-") { Ok(()) } else { Err("OpenRouter API keys start with `sk-or-v1-`.") }
    }

    fn probe(&self) -> Probe {
        Probe { method: http::Method::GET, path: "/key".into(), body: None }
    }

    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        bearer(key, headers);
    }

    /// The key works, but may have spent the credit limit set on it (`limit_remaining` ≤ 0).
    fn refusal_in_success(&self, answer: &Answer<'_>) -> Option<Failure> {
        let data = answer.json?.get("data")?;
        let remaining = data.get("limit_remaining")?.as_f64()?;
        if remaining > 0.0 {
            return None;
        }
        let resets = data.get("limit_reset").and_then(Value::as_str).filter(|r| is_word(r));
        let kind = if resets.is_some() { FailureKind::QuotaExhausted } else { FailureKind::NoCredits };
        let mut failure = Failure::new(Provider::OpenRouter, kind);
        failure.quota = resets.map(|period| format!("key's {period} credit"));
        Some(failure)
    }

    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let message = answer.error.message;
        // `Rate limit exceeded: free-models-per-day. …`: the limit's name says its window.
        let limit_name = message
            .strip_prefix("Rate limit exceeded: ")
            .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next().unwrap_or_default())
            .filter(|name| !name.is_empty());
        let kind = match (answer.status, limit_name) {
            (429, Some(name)) if name.ends_with("-per-day") => FailureKind::QuotaExhausted,
            _ => answer.by_status(),
        };
        let mut failure = Failure::new(Provider::OpenRouter, kind);
        failure.provider_code = limit_name.map(str::to_owned).or_else(|| answer.error.code.clone());
        match kind {
            FailureKind::QuotaExhausted => failure.quota = Some("free-model daily request".into()),
            FailureKind::RateLimited => failure.rate_limit = rate_limit(answer),
            _ => {}
        }
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        match (failure.kind, failure.status) {
            (FailureKind::NoCredits, Some(200..=299)) => Some(
                "The OpenRouter key reached the credit limit set on it — raise the key's limit at \
                 openrouter.ai/settings/keys."
                    .into(),
            ),
            (FailureKind::NoCredits, _) => Some(
                "The OpenRouter account is out of credits (or its balance is negative) — add credits at \
                 openrouter.ai/settings/credits."
                    .into(),
            ),
            (FailureKind::QuotaExhausted, Some(429)) => Some(
                "The OpenRouter account used its free-model requests for today — wait for the daily reset, or buy \
                 credits at openrouter.ai/settings/credits to raise the limit."
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The numbers OpenRouter copies into `metadata.headers` (`X-RateLimit-Limit`, `-Remaining`).
fn rate_limit(answer: &Answer<'_>) -> Option<RateLimit> {
    let headers = answer.error.metadata?.get("headers")?;
    let number = |name: &str| match headers.get(name)? {
        Value::String(s) => s.parse::<u64>().ok(),
        other => other.as_u64(),
    };
    let limit = number("X-RateLimit-Limit")?;
    let remaining = number("X-RateLimit-Remaining")?;
    Some(RateLimit::used("requests", limit, limit.saturating_sub(remaining)))
}

/// A reset period is one lowercase word (`daily`, `monthly`); anything else is not repeated.
fn is_word(text: &str) -> bool {
    !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_lowercase())
}
