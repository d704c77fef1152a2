//! What a provider's answer means, and the one sentence keyward tells the user about it — in
//! keyward's own words, never the provider's text (which can echo key fragments).

use std::fmt::Write as _;

use super::spec;
use crate::model::{ProblemCode, Provider};

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
    /// The key or its whole account is blocked (leaked, deactivated, disabled, suspended).
    KeyBlocked,
    NoPermission,
    /// Out of money: no balance, no billing, a hard billing limit.
    NoCredits,
    RateLimited,
    /// A usage or spend cap that resets on its own (daily, monthly).
    QuotaExhausted,
    Overloaded,
    ContextTooLong,
    RegionUnsupported,
    Unreachable,
    Timeout,
    Unrecognised,
}

impl FailureKind {
    /// The problem clients switch on; its name is also what a key's last test records.
    pub fn code(self) -> ProblemCode {
        match self {
            Self::InvalidKey => ProblemCode::InvalidKey,
            Self::KeyBlocked => ProblemCode::KeyBlocked,
            Self::NoPermission => ProblemCode::NoPermission,
            Self::NoCredits => ProblemCode::NoCredits,
            Self::RateLimited => ProblemCode::ProviderRateLimited,
            Self::QuotaExhausted => ProblemCode::QuotaExhausted,
            Self::Overloaded => ProblemCode::ProviderOverloaded,
            Self::ContextTooLong => ProblemCode::ContextTooLong,
            Self::RegionUnsupported => ProblemCode::RegionUnsupported,
            Self::Unreachable => ProblemCode::ProviderUnreachable,
            Self::Timeout => ProblemCode::ProviderTimeout,
            Self::Unrecognised => ProblemCode::ProviderError,
        }
    }

    /// Whether trying again later can succeed without the user changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::RateLimited | Self::Overloaded | Self::Unreachable | Self::Timeout)
    }
}

/// A rate limit's numbers, as far as the provider stated them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// What is limited, as the provider names it, e.g. `tokens` or `tokens per min (TPM)`.
    pub metric: String,
    pub limit: u64,
    /// Absent when one request alone exceeds the limit, or the provider states only the limit.
    pub used: Option<u64>,
    pub requested: Option<u64>,
}

impl RateLimit {
    /// `used` of `limit` spent, nothing said of the request.
    pub fn used(metric: &str, limit: u64, used: u64) -> Self {
        Self { metric: metric.to_owned(), limit, used: Some(used), requested: None }
    }

    /// The metric as a sentence says it: `tokens per min (TPM)` → `tokens per minute`.
    fn metric_in_words(&self) -> String {
        let words = match self.metric.split_once(" (") {
            Some((words, abbreviation)) if abbreviation.ends_with(')') => words,
            _ => self.metric.as_str(),
        };
        words.split(' ').map(|w| if w == "min" { "minute" } else { w }).collect::<Vec<_>>().join(" ")
    }

    /// `tokens per minute 85000/90000 used, need 10000 more`, `at most 3 requests per minute`.
    fn in_words(&self) -> String {
        let metric = self.metric_in_words();
        // "tokens per minute 85000/90000", "tokens: 85000/90000": a bare quantity takes a colon.
        let sep = if metric.contains(" per ") { " " } else { ": " };
        match (self.used, self.requested) {
            (Some(used), Some(requested)) => {
                format!("{metric}{sep}{used}/{} used, need {requested} more", self.limit)
            }
            (Some(used), None) => format!("{metric}{sep}{used}/{} used", self.limit),
            (None, Some(requested)) => {
                format!("one request needs {requested} {metric}, over the limit of {}", self.limit)
            }
            (None, None) => format!("at most {} {metric}", self.limit),
        }
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
    /// The quota that ran out, e.g. `daily request`.
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

    /// One clear, actionable sentence for the user: the provider's own, or keyward's for the kind.
    pub fn message(&self) -> String {
        let provider = spec(self.provider);
        if let Some(sentence) = provider.sentence(self) {
            return sentence;
        }
        let name = provider.display_name();
        let console = provider.console_url();
        match self.kind {
            FailureKind::InvalidKey => {
                format!(
                    "The {name} API key is invalid, expired or revoked — copy the whole key again or create a new one."
                )
            }
            FailureKind::KeyBlocked => format!(
                "{name} has blocked this key or its account (for example after it was reported as leaked) — create a \
                 new key, or ask {name} why the account was blocked."
            ),
            FailureKind::NoPermission => format!(
                "The {name} key is valid but has no access to the model or API keyward checks with — check the key's \
                 project and model permissions."
            ),
            FailureKind::NoCredits => {
                format!("The {name} account is out of API credits or billing stopped it — add funds at {console}.")
            }
            FailureKind::RateLimited => {
                let mut text = format!("{name} rate limit reached");
                if let Some(rate) = &self.rate_limit {
                    let _ = write!(text, ": {}", rate.in_words());
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
            FailureKind::Unrecognised => match self.status {
                Some(status) => format!(
                    "{name} refused the key check with HTTP {status} and no reason keyward knows — try again, or \
                     check the key and its account at {console}."
                ),
                None => format!("{name} refused the key check — try again, or check the key at {console}."),
            },
        }
    }
}
