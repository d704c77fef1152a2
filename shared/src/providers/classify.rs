//! Turns a provider's answer (status, headers, body) into an [`Outcome`]: the provider's module
//! judges it, and what every provider shares is kept here — only short codes and request ids
//! survive, never free text, and a wait the answer's `Retry-After` states.

use http::HeaderMap;
use serde_json::Value;

use super::answer::Answer;
use super::outcome::{FailureKind, Outcome};
use super::spec;
use crate::model::Provider;

/// A provider's answer to a validation call.
#[derive(Debug, Clone, Copy)]
pub struct ProviderResponse<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub fn classify(provider: Provider, response: &ProviderResponse<'_>) -> Outcome {
    let json: Option<Value> = serde_json::from_slice(response.body).ok();
    let answer = Answer::new(response.status, response.headers, json.as_ref());
    let judged = if (200..300).contains(&response.status) {
        spec(provider).refusal_in_success(&answer)
    } else {
        Some(spec(provider).judge(&answer))
    };
    let Some(mut failure) = judged else { return Outcome::Valid };
    failure.status = Some(response.status);
    failure.provider_code = failure.provider_code.filter(|c| is_token(c, 64));
    failure.request_id = json
        .as_ref()
        .and_then(|j| j.get("request_id"))
        .and_then(Value::as_str)
        .or_else(|| answer.header("request-id"))
        .or_else(|| answer.header("x-request-id"))
        .filter(|id| is_token(id, 128))
        .map(str::to_owned);
    if matches!(failure.kind, FailureKind::RateLimited | FailureKind::Overloaded) {
        let from_header = answer.header("retry-after").and_then(|v| v.trim().parse::<u64>().ok());
        failure.retry_after_secs = failure.retry_after_secs.or(from_header);
    }
    Outcome::Invalid(failure)
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

    proptest! {
        /// No body, status or header value makes classification panic.
        #[test]
        fn never_panics_on_arbitrary_answers(status in 0u16..1000, body in proptest::collection::vec(any::<u8>(), 0..512), retry in "\\PC{0,12}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = http::HeaderValue::from_str(&retry) {
                headers.insert("retry-after", value.clone());
                headers.insert("x-ratelimit-remaining-requests", value.clone());
                headers.insert("anthropic-ratelimit-tokens-limit", value);
            }
            for provider in Provider::ALL {
                let _ = classify(*provider, &ProviderResponse { status, headers: &headers, body: &body }).clone();
            }
        }

        /// Nor does JSON shaped like the providers' envelopes with arbitrary messages and codes.
        #[test]
        fn never_panics_on_arbitrary_envelopes(status in 200u16..600, message in "\\PC{0,80}", code in "\\PC{0,12}", number in any::<f64>()) {
            let bodies = [
                serde_json::json!({"error": {"message": message, "code": code, "type": code}}),
                serde_json::json!({"type": "error", "error": {"type": code, "message": message, "details": {"error_code": code}}}),
                serde_json::json!({"error": {"code": status, "message": message, "status": code, "details": [{"reason": code, "retryDelay": message, "violations": [{"quotaId": message, "quotaValue": code}]}]}}),
                serde_json::json!({"error": {"code": status, "message": message, "metadata": {"headers": {"X-RateLimit-Limit": code, "X-RateLimit-Remaining": message}}}}),
                serde_json::json!({"data": {"limit": number, "limit_remaining": number, "limit_reset": code}, "status": code}),
            ];
            let headers = HeaderMap::new();
            for body in bodies {
                let bytes = body.to_string().into_bytes();
                for provider in Provider::ALL {
                    if let Outcome::Invalid(failure) = classify(*provider, &ProviderResponse { status, headers: &headers, body: &bytes }) {
                        let _ = failure.message();
                    }
                }
            }
        }
    }
}
