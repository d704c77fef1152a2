//! Turns a provider's answer (status, headers, body) into an [`Outcome`]. Body first (the error
//! code, type, business code or reason), status second, headers third: statuses alone mislead
//! (OpenAI and Zai say 429 for both "slow down" and "out of money"; Gemini says 400 for a bad key;
//! Perplexity says 401 for a bad key and for no credits). Billing refusals are checked before rate
//! limits, rate limits before key errors. Nothing of the provider's free text is kept: only its
//! error code and request id, and the numbers a message states.

use http::HeaderMap;
use serde_json::Value;

use super::Provider;
use super::outcome::{Failure, FailureKind, Outcome, RateLimit};

/// A provider's answer to a validation call.
#[derive(Debug, Clone, Copy)]
pub struct ProviderResponse<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub fn classify(provider: Provider, response: &ProviderResponse<'_>) -> Outcome {
    let json: Option<Value> = serde_json::from_slice(response.body).ok();
    if (200..300).contains(&response.status) {
        // Perplexity's Agent API answers HTTP 200 for failed and cancelled responses too.
        let status = json.as_ref().and_then(|j| j.get("status")).and_then(Value::as_str);
        if provider == Provider::Perplexity && matches!(status, Some("failed" | "cancelled")) {
            let mut failure = Failure::new(provider, FailureKind::Unrecognised);
            failure.status = Some(response.status);
            return Outcome::Invalid(failure);
        }
        return Outcome::Valid;
    }
    let error = Error::of(json.as_ref());
    let mut failure = match provider {
        Provider::OpenAi => openai(response.status, &error),
        Provider::Anthropic => anthropic(response.status, &error),
        Provider::Google => gemini(response.status, &error),
        Provider::Perplexity => perplexity(response.status, &error),
        Provider::Zai => zai(response.status, &error),
    };
    failure.status = Some(response.status);
    failure.provider_code = failure.provider_code.filter(|c| is_token(c, 64));
    failure.request_id = json
        .as_ref()
        .and_then(|j| j.get("request_id"))
        .and_then(Value::as_str)
        .or_else(|| header(response.headers, "request-id"))
        .or_else(|| header(response.headers, "x-request-id"))
        .filter(|id| is_token(id, 128))
        .map(str::to_owned);
    if failure.kind == FailureKind::RateLimited || failure.kind == FailureKind::Overloaded {
        let from_header = header(response.headers, "retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        failure.retry_after_secs = failure.retry_after_secs.or(from_header);
    }
    Outcome::Invalid(failure)
}

/// The parts of an error body classification reads, whatever the provider's envelope.
struct Error<'a> {
    code: Option<String>,
    kind: Option<&'a str>,
    message: &'a str,
    /// Anthropic's `error.details.error_code`.
    detail_code: Option<&'a str>,
    /// Gemini's gRPC status name and `details[]`.
    status_name: Option<&'a str>,
    details: &'a [Value],
}

impl<'a> Error<'a> {
    fn of(json: Option<&'a Value>) -> Self {
        let error = json.and_then(|j| j.get("error"));
        let field = |name: &str| error.and_then(|e| e.get(name));
        Self {
            // Zai sends its business code as a string, Perplexity and Gemini as a number.
            code: field("code").and_then(|c| match c {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }),
            kind: field("type").and_then(Value::as_str),
            message: field("message").and_then(Value::as_str).unwrap_or(""),
            detail_code: field("details").and_then(|d| d.get("error_code")).and_then(Value::as_str),
            status_name: field("status").and_then(Value::as_str),
            details: field("details").and_then(Value::as_array).map_or(&[], Vec::as_slice),
        }
    }
}

fn by_status(status: u16) -> FailureKind {
    match status {
        401 => FailureKind::InvalidKey,
        402 => FailureKind::NoCredits,
        403 | 404 => FailureKind::NoPermission,
        413 => FailureKind::ContextTooLong,
        429 => FailureKind::RateLimited,
        500..=599 => FailureKind::Overloaded,
        _ => FailureKind::Unrecognised,
    }
}

fn openai(status: u16, error: &Error<'_>) -> Failure {
    let code = error.code.as_deref().or(error.kind);
    let kind = match code {
        Some(
            "insufficient_quota"
            | "credit_balance_exhausted"
            | "organization_spend_limit_exceeded"
            | "project_spend_limit_exceeded",
        ) => FailureKind::NoCredits,
        // In the `insufficient_quota` family the code names the cause: this one is the usage limit
        // OpenAI assigned, not money.
        Some("organization_usage_limit_exceeded") => FailureKind::QuotaExhausted,
        _ if error.kind == Some("insufficient_quota") => FailureKind::NoCredits,
        _ if error.message.starts_with("Request too large") => FailureKind::ContextTooLong,
        Some("rate_limit_exceeded" | "slow_down") => FailureKind::RateLimited,
        _ if error.message.starts_with("Rate limit reached") => FailureKind::RateLimited,
        Some("invalid_api_key") => FailureKind::InvalidKey,
        Some("unsupported_country_region_territory") => FailureKind::RegionUnsupported,
        Some("model_not_found") => FailureKind::NoPermission,
        Some("context_length_exceeded") => FailureKind::ContextTooLong,
        Some("server_is_overloaded") => FailureKind::Overloaded,
        _ => by_status(status),
    };
    let mut failure = Failure::new(Provider::OpenAi, kind);
    failure.provider_code = error.code.clone();
    match kind {
        FailureKind::RateLimited | FailureKind::ContextTooLong => {
            failure.rate_limit = rate_limit(error.message);
            failure.retry_after_secs = seconds_after(error.message, "try again in ");
            if kind == FailureKind::ContextTooLong {
                let max = number_after(error.message, "maximum context length is ");
                let sent = number_after(error.message, "resulted in ");
                failure.tokens = sent.zip(max);
            }
        }
        FailureKind::QuotaExhausted => failure.quota = Some("organisation usage".into()),
        _ => {}
    }
    failure
}

fn anthropic(status: u16, error: &Error<'_>) -> Failure {
    let message = error.message;
    let kind = if error.detail_code == Some("enforced_spend_limit_reached")
        || message.to_ascii_lowercase().contains("credit balance")
        || error.kind == Some("billing_error")
    {
        FailureKind::NoCredits
    } else if message.starts_with("You have reached your specified API usage limits") {
        FailureKind::QuotaExhausted
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
            _ => by_status(status),
        }
    };
    let mut failure = Failure::new(Provider::Anthropic, kind);
    failure.provider_code = error.detail_code.or(error.kind).map(str::to_owned);
    match kind {
        FailureKind::ContextTooLong => {
            failure.tokens = number_after(message, "too long: ").zip(number_after(message, "> "));
        }
        FailureKind::QuotaExhausted => failure.quota = Some("monthly usage".into()),
        _ => {}
    }
    failure
}

fn gemini(status: u16, error: &Error<'_>) -> Failure {
    let reasons: Vec<&str> = error.details.iter().filter_map(|d| d.get("reason")).filter_map(Value::as_str).collect();
    let violations: Vec<&Value> =
        error.details.iter().filter_map(|d| d.get("violations")).filter_map(Value::as_array).flatten().collect();
    let message = error.message;
    let exhausted = error.status_name == Some("RESOURCE_EXHAUSTED") || status == 429;
    let zero_limit = violations.iter().any(|v| v.get("quotaValue").and_then(Value::as_str) == Some("0"))
        || message.contains("limit: 0,");
    let per_day =
        violations.iter().filter_map(|v| v.get("quotaId").and_then(Value::as_str)).find(|id| id.contains("PerDay"));
    let kind = if reasons.contains(&"API_KEY_INVALID") || error.status_name == Some("UNAUTHENTICATED") {
        FailureKind::InvalidKey
    } else if reasons.contains(&"API_KEY_SERVICE_BLOCKED") || message.contains("reported as leaked") {
        FailureKind::KeyBlocked
    } else if exhausted && zero_limit {
        FailureKind::NoCredits
    } else if exhausted && per_day.is_some() {
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
            _ => by_status(status),
        }
    };
    let mut failure = Failure::new(Provider::Google, kind);
    failure.provider_code = reasons.first().copied().or(error.status_name).map(str::to_owned);
    match kind {
        FailureKind::RateLimited => {
            failure.retry_after_secs = error
                .details
                .iter()
                .filter_map(|d| d.get("retryDelay"))
                .filter_map(Value::as_str)
                .find_map(|delay| delay.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()))
                .map(|secs| secs.ceil() as u64);
        }
        FailureKind::QuotaExhausted => failure.quota = Some("daily request".into()),
        FailureKind::ContextTooLong => {
            failure.tokens = number_after(message, "count (").zip(number_after(message, "allowed ("));
        }
        _ => {}
    }
    failure
}

fn perplexity(status: u16, error: &Error<'_>) -> Failure {
    let mut failure = Failure::new(Provider::Perplexity, by_status(status));
    if failure.kind == FailureKind::NoPermission && status == 404 {
        failure.kind = FailureKind::Unrecognised;
    }
    failure.provider_code = error.kind.map(str::to_owned).or_else(|| error.code.clone());
    failure
}

fn zai(status: u16, error: &Error<'_>) -> Failure {
    let kind = match error.code.as_deref() {
        Some("1000" | "1001" | "1002" | "1003" | "1004") => FailureKind::InvalidKey,
        Some("1110" | "1111" | "1112" | "1121") => FailureKind::KeyBlocked,
        Some("1113" | "1309") => FailureKind::NoCredits,
        Some("1005" | "1211" | "1220" | "1221" | "1222" | "1311") => FailureKind::NoPermission,
        Some("1261") => FailureKind::ContextTooLong,
        Some("1302" | "1303" | "1313") => FailureKind::RateLimited,
        Some("1304" | "1308" | "1310") => FailureKind::QuotaExhausted,
        Some("1120" | "1305" | "1312") => FailureKind::Overloaded,
        _ => by_status(status),
    };
    let mut failure = Failure::new(Provider::Zai, kind);
    failure.provider_code = error.code.clone();
    failure.quota = match error.code.as_deref() {
        Some("1304") => Some("daily call".into()),
        Some("1310") => Some("weekly or monthly".into()),
        Some("1308") => Some("plan usage".into()),
        _ => None,
    };
    failure
}

/// OpenAI's `… on tokens: Limit 90000, Used 85000, Requested 10000.` (Used is absent when one
/// request alone is too large).
fn rate_limit(message: &str) -> Option<RateLimit> {
    let at = message.find("Limit ")?;
    let head = &message[..at];
    let metric = head.rfind(" on ").map(|i| &head[i + 4..])?.trim().trim_end_matches(':').trim();
    if metric.is_empty() || metric.len() > 40 {
        return None;
    }
    Some(RateLimit {
        metric: metric.to_owned(),
        limit: number_after(message, "Limit ")?,
        used: number_after(message, "Used "),
        requested: number_after(message, "Requested ")?,
    })
}

/// The integer right after `label` (digits with optional thousands commas).
fn number_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let digits: String =
        text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == ',').filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `… try again in 1.146s` → 2 (whole seconds, rounded up).
fn seconds_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let number: String = text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let rest = &text[start + number.len()..];
    let secs: f64 = number.parse().ok()?;
    let secs = if rest.starts_with("ms") {
        secs / 1000.0
    } else if rest.starts_with('s') {
        secs
    } else {
        return None;
    };
    Some(secs.ceil() as u64)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Codes and ids are short tokens; anything else (which could echo a key) is not kept.
fn is_token(value: &str, max: usize) -> bool {
    !value.is_empty()
        && value.len() <= max
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_numbers_and_waits_from_messages() {
        assert_eq!(number_after("of 50,000 input tokens", "of "), Some(50_000));
        assert_eq!(seconds_after("Please try again in 1.146s. Visit", "try again in "), Some(2));
        assert_eq!(seconds_after("Please try again in 250ms.", "try again in "), Some(1));
        assert_eq!(seconds_after("Please try again in a while.", "try again in "), None);
        assert_eq!(rate_limit("no numbers here"), None);
    }

    proptest! {
        /// No body, status or header value makes classification panic.
        #[test]
        fn never_panics_on_arbitrary_answers(status in 0u16..1000, body in proptest::collection::vec(any::<u8>(), 0..512), retry in "\\PC{0,12}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&retry) {
                headers.insert("retry-after", value);
            }
            for provider in Provider::ALL {
                let _ = classify(provider, &ProviderResponse { status, headers: &headers, body: &body }).clone();
            }
        }

        /// Nor does JSON shaped like the providers' envelopes with arbitrary messages and codes.
        #[test]
        fn never_panics_on_arbitrary_envelopes(status in 400u16..600, message in "\\PC{0,80}", code in "\\PC{0,12}") {
            let bodies = [
                serde_json::json!({"error": {"message": message, "code": code, "type": code}}),
                serde_json::json!({"type": "error", "error": {"type": code, "message": message, "details": {"error_code": code}}}),
                serde_json::json!({"error": {"code": status, "message": message, "status": code, "details": [{"reason": code, "retryDelay": message, "violations": [{"quotaId": message, "quotaValue": code}]}]}}),
            ];
            let headers = HeaderMap::new();
            for body in bodies {
                let bytes = body.to_string().into_bytes();
                for provider in Provider::ALL {
                    if let Outcome::Invalid(failure) = classify(provider, &ProviderResponse { status, headers: &headers, body: &bytes }) {
                        let _ = failure.message();
                    }
                }
            }
        }
    }
}
