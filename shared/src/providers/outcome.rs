//! What a provider's answer means, and the one sentence keyward tells the user about it — in
//! keyward's own words, never the provider's text (which can echo key fragments).

use std::fmt::Write as _;

use super::Provider;

/// The result of checking a key with its provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Valid,
    Invalid(Failure),
}

/// Why a provider refused (or could not answer) a validation call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    InvalidKey,
    KeyBlocked,
    NoPermission,
    NoCredits,
    RateLimited,
    QuotaExhausted,
    Overloaded,
    ContextTooLong,
    RegionUnsupported,
    Unreachable,
    Timeout,
    Unrecognised,
}

impl FailureKind {
    /// The stable machine code clients switch on.
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid_key",
            Self::KeyBlocked => "key_blocked",
            Self::NoPermission => "no_permission",
            Self::NoCredits => "no_credits",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::Overloaded => "provider_overloaded",
            Self::ContextTooLong => "context_too_long",
            Self::RegionUnsupported => "region_unsupported",
            Self::Unreachable => "provider_unreachable",
            Self::Timeout => "provider_timeout",
            Self::Unrecognised => "provider_error",
        }
    }

    /// Whether trying again later can succeed without the user changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::RateLimited | Self::Overloaded | Self::Unreachable | Self::Timeout)
    }
}

/// A rate limit's numbers, as the provider stated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// What is limited, as the provider names it, e.g. `tokens` or `tokens per min (TPM)`.
    pub metric: String,
    pub limit: u64,
    /// Absent when one request alone exceeds the limit.
    pub used: Option<u64>,
    pub requested: u64,
}

impl RateLimit {
    /// The metric as a sentence says it: `tokens per min (TPM)` → `tokens per minute`.
    fn metric_in_words(&self) -> String {
        let words = match self.metric.split_once(" (") {
            Some((words, abbreviation)) if abbreviation.ends_with(')') => words,
            _ => self.metric.as_str(),
        };
        words.split(' ').map(|w| if w == "min" { "minute" } else { w }).collect::<Vec<_>>().join(" ")
    }
}

/// A refusal: its kind, and only the facts keyward may keep (never the provider's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub provider: Provider,
    pub status: Option<u16>,
    /// The provider's own error code (`invalid_api_key`, `1113`, `API_KEY_INVALID`…).
    pub provider_code: Option<String>,
    pub request_id: Option<String>,
    pub rate_limit: Option<RateLimit>,
    pub retry_after_secs: Option<u64>,
    /// Tokens sent and the maximum allowed, for context-length errors.
    pub tokens: Option<(u64, u64)>,
    /// The quota that ran out, e.g. `daily requests`.
    pub quota: Option<String>,
}

impl Failure {
    pub fn new(provider: Provider, kind: FailureKind) -> Self {
        Self {
            kind,
            provider,
            status: None,
            provider_code: None,
            request_id: None,
            rate_limit: None,
            retry_after_secs: None,
            tokens: None,
            quota: None,
        }
    }

    /// One clear, actionable sentence for the user.
    pub fn message(&self) -> String {
        let name = self.provider.display_name();
        match self.kind {
            FailureKind::InvalidKey if self.provider == Provider::Perplexity => {
                "Perplexity refused the key: it is invalid or revoked, or the account is out of API credits — check \
                 both in Perplexity's API settings."
                    .to_owned()
            }
            FailureKind::InvalidKey => {
                format!(
                    "The {name} API key is invalid, expired or revoked — copy the whole key again or create a new one."
                )
            }
            FailureKind::KeyBlocked => format!(
                "{name} has blocked this key or its account (for example after it was reported as leaked) — create a \
                 new key."
            ),
            FailureKind::NoPermission => format!(
                "The {name} key is valid but has no access to the model or API keyward checks with — check the key's \
                 project and model permissions."
            ),
            FailureKind::NoCredits => no_credits_message(self.provider, self.provider_code.as_deref()),
            FailureKind::RateLimited => {
                let mut text = format!("{name} rate limit reached");
                if let Some(rate) = &self.rate_limit {
                    let metric = rate.metric_in_words();
                    // "tokens per minute 85000/90000", "tokens: 85000/90000": a bare quantity takes a colon.
                    let sep = if metric.contains(" per ") { " " } else { ": " };
                    let _ = match rate.used {
                        Some(used) => {
                            write!(text, ": {metric}{sep}{used}/{} used, need {} more", rate.limit, rate.requested)
                        }
                        None => write!(
                            text,
                            ": one request needs {} {metric}, over the limit of {}",
                            rate.requested, rate.limit
                        ),
                    };
                }
                match self.retry_after_secs {
                    Some(secs) => {
                        let _ = write!(text, ". Try again in {secs} s.");
                    }
                    None => text.push_str(". Try again shortly."),
                }
                text
            }
            FailureKind::QuotaExhausted => {
                let quota = self.quota.as_deref().unwrap_or("usage");
                format!(
                    "The {name} {quota} quota is used up until it resets — wait for the reset or raise the limit in {name}'s console."
                )
            }
            FailureKind::Overloaded => format!("{name} is overloaded or having an outage — try again shortly."),
            FailureKind::ContextTooLong => match self.tokens {
                Some((sent, max)) => {
                    format!("The request was too long for {name} ({sent} tokens, at most {max}) — shorten it.")
                }
                None => format!("The request was too long for {name} — shorten it."),
            },
            FailureKind::RegionUnsupported => format!(
                "{name} does not serve the country or region the request came from — use a key for a supported region."
            ),
            FailureKind::Unreachable => format!("{name} could not be reached — try again shortly."),
            FailureKind::Timeout => format!("{name} did not answer in time — try again shortly."),
            FailureKind::Unrecognised => format!(
                "{name} refused the key with an answer keyward does not recognise — try again, or check the key in \
                 {name}'s console."
            ),
        }
    }
}

fn no_credits_message(provider: Provider, code: Option<&str>) -> String {
    match provider {
        Provider::Anthropic if code == Some("enforced_spend_limit_reached") => {
            "Insufficient Anthropic API credits: the organisation reached its monthly spend limit — raise it in the \
             Claude Console (Settings → Limits)."
                .into()
        }
        Provider::Anthropic => {
            "Insufficient Anthropic API credits — add funds at console.anthropic.com (Plans & Billing).".into()
        }
        Provider::OpenAi => {
            "OpenAI API quota exceeded — check your plan and billing details at platform.openai.com.".into()
        }
        Provider::Google => {
            "Gemini refused for billing reasons: this model or region is not covered by the key's free tier — enable \
             billing for the project in Google AI Studio."
                .into()
        }
        Provider::Perplexity => {
            "Perplexity account is out of API credits — add credits in Perplexity's API settings.".into()
        }
        Provider::Zai => {
            "Zai balance is empty or your resource package doesn't cover this model — recharge at z.ai.".into()
        }
    }
}
