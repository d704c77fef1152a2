//! Anthropic (`provider-errors.md` §2). The probe is a one-token message on the cheapest model.

use http::{HeaderMap, HeaderValue};
use serde_json::json;

use super::answer::{Answer, number_after};
use super::outcome::{Failure, FailureKind, RateLimit};
use super::{LlmProvider, Probe, secret_header};
use crate::endpoints::EndpointSetting;
use crate::model::Provider;
use crate::secret::ApiKey;

const MODEL: &str = "claude-haiku-4-5";

/// The limits Anthropic reports in `anthropic-ratelimit-<name>-{limit,remaining}` headers, each a
/// per-minute limit, by the words a sentence names it with.
const LIMITS: [(&str, &str); 4] = [
    ("requests", "requests per minute"),
    ("input-tokens", "input tokens per minute"),
    ("output-tokens", "output tokens per minute"),
    ("tokens", "tokens per minute"),
];

pub struct Anthropic;

impl LlmProvider for Anthropic {
    fn provider(&self) -> Provider {
        Provider::Anthropic
    }

    fn display_name(&self) -> &'static str {
        "Anthropic"
    }

    fn key_hint(&self) -> &'static str {
        "sk-ant-api03-…"
    }

    fn console_url(&self) -> &'static str {
        "https://console.anthropic.com/settings/keys"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &[EndpointSetting {
            name: "anthropic",
            var: "KEYWARD_ANTHROPIC_BASE_URL",
            official: "https://api.anthropic.com/v1",
            sandbox_path: "/anthropic/v1",
        }]
    }

    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        if key.starts_with("sk-ant-oat") {
            Err(
                "This is a Claude subscription (OAuth) token, not an API key — create an API key in the Claude Console.",
            )
        } else if key.starts_with("sk-ant-") {
            Ok(())
        } else {
            Err("Anthropic API keys start with `sk-ant-`.")
        }
    }

    fn probe(&self) -> Probe {
        Probe {
            method: http::Method::POST,
            path: "/messages".into(),
            body: Some(json!({ "model": MODEL, "max_tokens": 1, "messages": [{ "role": "user", "content": "ping" }] })),
        }
    }

    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        secret_header(headers, "x-api-key", key.expose());
        headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
    }

    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let error = &answer.error;
        let message = error.message;
        let lower = message.to_ascii_lowercase();
        // The spend limit Anthropic enforces per usage tier, or one the organisation set, resets on
        // its own: a quota, not money.
        let spend_limit = error.detail_code == Some("enforced_spend_limit_reached")
            || message.starts_with("You have reached your specified API usage limits")
            || message.starts_with("You have reached your API usage limits");
        let kind = if spend_limit {
            FailureKind::QuotaExhausted
        } else if lower.contains("credit balance") || error.kind == Some("billing_error") {
            FailureKind::NoCredits
        } else if lower.contains("organization has been disabled") || lower.contains("account has been disabled") {
            FailureKind::KeyBlocked
        } else {
            match error.kind {
                Some("rate_limit_error") => FailureKind::RateLimited,
                Some("overloaded_error" | "api_error" | "timeout_error") => FailureKind::Overloaded,
                _ if message.starts_with("prompt is too long") => FailureKind::ContextTooLong,
                Some("request_too_large") => FailureKind::ContextTooLong,
                // A browser Origin header was sent: keyward's fault, not the key's.
                Some("authentication_error") if message.starts_with("CORS requests") => FailureKind::Unrecognised,
                Some("authentication_error") => FailureKind::InvalidKey,
                Some("permission_error" | "not_found_error") => FailureKind::NoPermission,
                _ => answer.by_status(),
            }
        };
        let mut failure = Failure::new(Provider::Anthropic, kind);
        failure.provider_code = error.detail_code.or(error.kind).map(str::to_owned);
        match kind {
            FailureKind::RateLimited => failure.rate_limit = rate_limit(answer),
            FailureKind::ContextTooLong => {
                failure.tokens = number_after(message, "too long: ").zip(number_after(message, "> "));
            }
            FailureKind::QuotaExhausted => failure.quota = Some("monthly spend".into()),
            _ => {}
        }
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        match failure.kind {
            FailureKind::NoCredits => Some(
                "Insufficient Anthropic API credits — add funds at console.anthropic.com (Plans & Billing).".into(),
            ),
            FailureKind::QuotaExhausted => Some(
                "The Anthropic organisation reached its monthly spend limit until the limit resets — raise it in the \
                 Claude Console (Settings → Limits)."
                    .into(),
            ),
            FailureKind::KeyBlocked => Some(
                "Anthropic has disabled the organisation this key belongs to — check the organisation's email from \
                 Anthropic, or use a key of another organisation."
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The limit that ran out, from the `anthropic-ratelimit-*` headers, else the message's
/// `… of 50,000 input tokens per minute`.
fn rate_limit(answer: &Answer<'_>) -> Option<RateLimit> {
    let from_headers = LIMITS.into_iter().find_map(|(name, words)| {
        let number =
            |part: &str| answer.header(&format!("anthropic-ratelimit-{name}-{part}"))?.trim().parse::<u64>().ok();
        let (limit, remaining) = (number("limit")?, number("remaining")?);
        (remaining == 0).then(|| RateLimit::used(words, limit, limit))
    });
    from_headers.or_else(|| {
        let message = answer.error.message;
        let limit = number_after(message, " of ")?;
        let words = LIMITS.into_iter().map(|(_, words)| words).find(|words| message.contains(words))?;
        Some(RateLimit { metric: words.to_owned(), limit, used: None, requested: None })
    })
}
