//! OpenAI (`provider-errors.md` §1). The probe is a one-token chat completion on a dated snapshot,
//! which reveals `insufficient_quota` where an alias may not.

use http::HeaderMap;
use serde_json::json;

use super::answer::{Answer, number_after, wait_after};
use super::outcome::{Failure, FailureKind, RateLimit};
use super::{LlmProvider, Probe, bearer};
use crate::endpoints::EndpointSetting;
use crate::model::Provider;
use crate::secret::ApiKey;

const MODEL: &str = "gpt-4o-mini-2024-07-18";

pub struct OpenAi;

impl LlmProvider for OpenAi {
    fn provider(&self) -> Provider {
        Provider::OpenAi
    }

    fn display_name(&self) -> &'static str {
        "OpenAI"
    }

    fn key_hint(&self) -> &'static str {
        "sk-proj-…"
    }

    fn console_url(&self) -> &'static str {
        "https://platform.openai.com/api-keys"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &[EndpointSetting {
            name: "openai",
            var: "KEYWARD_OPENAI_BASE_URL",
            official: "https://api.openai.com/v1",
            sandbox_path: "/openai/v1",
        }]
    }

    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        match key {
            k if k.starts_with("sk-or-") => {
                Err("This is an OpenRouter key, not an OpenAI key — store it as `openrouter`.")
            }
            k if k.starts_with("sk-") => Ok(()),
            _ => Err("OpenAI API keys start with `sk-`."),
        }
    }

    fn probe(&self) -> Probe {
        Probe {
            method: http::Method::POST,
            path: "/chat/completions".into(),
            body: Some(json!({
                "model": MODEL,
                "messages": [{ "role": "user", "content": "ping" }],
                "max_completion_tokens": 1
            })),
        }
    }

    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        bearer(key, headers);
    }

    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let error = &answer.error;
        let message = error.message;
        let code = error.code.as_deref().or(error.kind);
        let kind = match code {
            Some(
                "insufficient_quota"
                | "credit_balance_exhausted"
                | "billing_hard_limit_reached"
                | "organization_spend_limit_exceeded"
                | "project_spend_limit_exceeded",
            ) => FailureKind::NoCredits,
            // In the `insufficient_quota` family the code names the cause: this one is the usage
            // limit OpenAI assigned, not money.
            Some("organization_usage_limit_exceeded") => FailureKind::QuotaExhausted,
            Some("account_deactivated") => FailureKind::KeyBlocked,
            _ if error.kind == Some("insufficient_quota") => FailureKind::NoCredits,
            _ if message.starts_with("Request too large") => FailureKind::ContextTooLong,
            Some("rate_limit_exceeded" | "slow_down") => FailureKind::RateLimited,
            _ if message.starts_with("Rate limit reached") => FailureKind::RateLimited,
            Some("invalid_api_key") => FailureKind::InvalidKey,
            Some("unsupported_country_region_territory") => FailureKind::RegionUnsupported,
            Some("model_not_found") => FailureKind::NoPermission,
            Some("context_length_exceeded") => FailureKind::ContextTooLong,
            Some("server_is_overloaded") => FailureKind::Overloaded,
            _ => answer.by_status(),
        };
        let mut failure = Failure::new(Provider::OpenAi, kind);
        failure.provider_code = error.code.clone();
        match kind {
            FailureKind::RateLimited | FailureKind::ContextTooLong => {
                failure.rate_limit = rate_limit(message).or_else(|| answer.x_ratelimit());
                failure.retry_after_secs = wait_after(message, "try again in ").or_else(|| {
                    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
                        .into_iter()
                        .filter_map(|h| answer.header(h).and_then(super::answer::duration_secs))
                        .max()
                });
                if kind == FailureKind::ContextTooLong {
                    let max = number_after(message, "maximum context length is ");
                    let sent = number_after(message, "resulted in ");
                    failure.tokens = sent.zip(max);
                }
            }
            FailureKind::QuotaExhausted => failure.quota = Some("organisation usage".into()),
            _ => {}
        }
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        match (failure.kind, failure.provider_code.as_deref()) {
            (FailureKind::NoCredits, Some("billing_hard_limit_reached")) => Some(
                "OpenAI stopped the key at the account's billing hard limit — raise the limit or add funds at \
                 platform.openai.com (Settings → Billing)."
                    .into(),
            ),
            (FailureKind::NoCredits, _) => Some(
                "OpenAI API quota exceeded — add funds or raise the spend limits at \
                     platform.openai.com/settings/organization/billing."
                    .into(),
            ),
            (FailureKind::KeyBlocked, _) => Some(
                "OpenAI deactivated the account this key belongs to — check the account's email from OpenAI, or \
                 use a key of another account."
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The numbers of OpenAI's rate-limit messages, in every wording: `… on tokens per min (TPM): Limit
/// 90000, Used 85000, Requested 10000.` (no `Used` when one request alone is too large), the older
/// `… on requests per min. Limit: 3 / min.`, and the oldest, which says what was used as `Current`
/// (`Limit: 10000.000000 / min. Current: 10020.000000 / min.`).
fn rate_limit(message: &str) -> Option<RateLimit> {
    let at = message.find("Limit")?;
    let head = &message[..at];
    let metric = head.rfind(" on ").map(|i| &head[i + 4..])?.trim().trim_end_matches(['.', ':']).trim();
    if metric.is_empty() || metric.len() > 40 {
        return None;
    }
    let limit = number_after(&message[at..], "Limit ").or_else(|| number_after(&message[at..], "Limit: "))?;
    Some(RateLimit {
        metric: metric.to_owned(),
        limit,
        used: number_after(message, "Used ").or_else(|| number_after(message, "Current: ")),
        requested: number_after(message, "Requested "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rate_limit_wordings_give_their_numbers() {
        let current =
            rate_limit("Rate limit reached for x on tokens per min (TPM): Limit 90000, Used 85000, Requested 10000.");
        assert_eq!(
            current,
            Some(RateLimit {
                metric: "tokens per min (TPM)".into(),
                limit: 90_000,
                used: Some(85_000),
                requested: Some(10_000)
            })
        );
        let legacy = rate_limit(
            "Rate limit reached for default-gpt-3.5-turbo in organization org-x on requests per min. Limit: 3 / min. Please try again in 20s.",
        );
        assert_eq!(
            legacy,
            Some(RateLimit { metric: "requests per min".into(), limit: 3, used: None, requested: None })
        );
        let per_minute = rate_limit(
            "Rate limit reached for default-text-davinci-002 in organization org-x on tokens per min. Limit: \
             10000.000000 / min. Current: 10020.000000 / min. Contact us through our help center at \
             help.openai.com if you continue to have issues.",
        );
        assert_eq!(
            per_minute,
            Some(RateLimit { metric: "tokens per min".into(), limit: 10_000, used: Some(10_020), requested: None })
        );
        assert_eq!(rate_limit("no numbers here"), None);
    }
}
