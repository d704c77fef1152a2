//! Google Gemini (`provider-errors.md` §3): the Generative Language API with an AI Studio key. The
//! probe is a one-token `generateContent` on the cheapest model.

use http::HeaderMap;
use serde_json::{Value, json};

use super::answer::{Answer, duration_secs, number_after, wait_after};
use super::outcome::{Failure, FailureKind, RateLimit};
use super::{LlmProvider, Probe, secret_header};
use crate::endpoints::EndpointSetting;
use crate::model::Provider;
use crate::secret::ApiKey;

const MODEL: &str = "gemini-2.5-flash-lite";

/// What ran out when a prepaid project has no money left.
const PREPAID: &str = "prepaid credit";

pub struct Gemini;

impl LlmProvider for Gemini {
    fn provider(&self) -> Provider {
        Provider::Gemini
    }

    fn display_name(&self) -> &'static str {
        "Google Gemini"
    }

    fn key_hint(&self) -> &'static str {
        "AIza…"
    }

    fn console_url(&self) -> &'static str {
        "https://aistudio.google.com/app/apikey"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &[EndpointSetting {
            name: "gemini",
            var: "KEYWARD_GEMINI_BASE_URL",
            official: "https://generativelanguage.googleapis.com/v1beta",
            sandbox_path: "/gemini/v1beta",
        }]
    }

    /// Gemini keys changed form in 2026 (`AIza…`, `AQ.…`): refuse only what is certainly not a key.
    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        if key.starts_with("ya29.") || key.starts_with("eyJ") {
            Err("This is a Google OAuth token or JWT, not a Gemini API key — create an API key in Google AI Studio.")
        } else {
            Ok(())
        }
    }

    fn probe(&self) -> Probe {
        Probe {
            method: http::Method::POST,
            path: format!("/models/{MODEL}:generateContent"),
            body: Some(json!({
                "contents": [{ "role": "user", "parts": [{ "text": "ping" }] }],
                "generationConfig": { "maxOutputTokens": 1 }
            })),
        }
    }

    /// The header form: `?key=` would put the key into URLs, and so into logs.
    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        secret_header(headers, "x-goog-api-key", key.expose());
    }

    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let error = &answer.error;
        let reasons: Vec<&str> =
            error.details.iter().filter_map(|d| d.get("reason")).filter_map(Value::as_str).collect();
        let violations: Vec<&Value> =
            error.details.iter().filter_map(|d| d.get("violations")).filter_map(Value::as_array).flatten().collect();
        let message = error.message;
        let exhausted = error.status_name == Some("RESOURCE_EXHAUSTED") || answer.status == 429;
        let zero_limit = violations.iter().any(|v| v.get("quotaValue").and_then(Value::as_str) == Some("0"))
            || message.contains("limit: 0,");
        let per_day =
            violations.iter().filter_map(|v| v.get("quotaId").and_then(Value::as_str)).any(|id| id.contains("PerDay"));
        let kind = if reasons.contains(&"API_KEY_INVALID") || error.status_name == Some("UNAUTHENTICATED") {
            FailureKind::InvalidKey
        } else if reasons.iter().any(|r| matches!(*r, "API_KEY_SERVICE_BLOCKED" | "CONSUMER_SUSPENDED"))
            || message.contains("reported as leaked")
        {
            FailureKind::KeyBlocked
        } else if answer.status == 402
            || message.contains("prepayment credits are depleted")
            || (exhausted && zero_limit)
        {
            FailureKind::NoCredits
        } else if exhausted && per_day {
            FailureKind::QuotaExhausted
        } else if exhausted {
            FailureKind::RateLimited
        } else if message.contains("free tier is not available") {
            FailureKind::NoCredits
        } else if message.contains("location is not supported") {
            FailureKind::RegionUnsupported
        } else if message.contains("input token count") {
            FailureKind::ContextTooLong
        } else {
            match error.status_name {
                Some("PERMISSION_DENIED" | "NOT_FOUND") => FailureKind::NoPermission,
                Some("UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED") => FailureKind::Overloaded,
                _ => answer.by_status(),
            }
        };
        let mut failure = Failure::new(Provider::Gemini, kind);
        failure.provider_code = reasons.first().copied().or(error.status_name).map(str::to_owned);
        match kind {
            FailureKind::RateLimited => {
                failure.retry_after_secs = error
                    .details
                    .iter()
                    .filter_map(|d| d.get("retryDelay"))
                    .filter_map(Value::as_str)
                    .find_map(duration_secs)
                    .or_else(|| wait_after(message, "retry in "));
                failure.rate_limit = violations.iter().find_map(|v| {
                    let limit = v.get("quotaValue").and_then(Value::as_str)?.parse().ok()?;
                    let id = v.get("quotaId").and_then(Value::as_str)?;
                    let per = ["Minute", "Hour", "Day"].into_iter().find(|p| id.contains(&format!("Per{p}")))?;
                    let what = if id.contains("Token") { "input tokens" } else { "requests" };
                    let metric = format!("{what} per {}", per.to_ascii_lowercase());
                    Some(RateLimit { metric, limit, used: None, requested: None })
                });
            }
            FailureKind::QuotaExhausted => failure.quota = Some("daily request".into()),
            // Prepaid projects run out of money, whatever status says so (402, or 429).
            FailureKind::NoCredits if answer.status == 402 || message.contains("prepayment credits are depleted") => {
                failure.quota = Some(PREPAID.into());
            }
            FailureKind::ContextTooLong => {
                failure.tokens = number_after(message, "count (").zip(number_after(message, "allowed ("));
            }
            _ => {}
        }
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        match (failure.kind, failure.quota.as_deref()) {
            (FailureKind::NoCredits, Some(PREPAID)) => Some(
                "Gemini refused for billing reasons: the project's prepaid credits are used up — add credits at \
                 aistudio.google.com/projects (the project's Billing), or switch it to postpaid billing there."
                    .into(),
            ),
            (FailureKind::NoCredits, _) => Some(
                "Gemini refused for billing reasons: this model or region is not covered by the key's free tier — \
                 enable billing for the project at aistudio.google.com/projects."
                    .into(),
            ),
            (FailureKind::KeyBlocked, _) => Some(
                "Google has blocked or suspended this Gemini key or its project (for example after it was reported \
                 as leaked) — create a new key in Google AI Studio."
                    .into(),
            ),
            _ => None,
        }
    }
}
