//! A provider's answer as the classifiers read it, and the readers they share: error envelopes,
//! the numbers and waits a message states, rate-limit headers, and the status-family fallback.

use http::HeaderMap;
use serde_json::Value;

use super::outcome::{FailureKind, RateLimit};

/// A provider's answer, its JSON parsed once.
pub struct Answer<'a> {
    pub status: u16,
    pub headers: &'a HeaderMap,
    /// The body, when it is JSON.
    pub json: Option<&'a Value>,
    /// The `error` object most providers wrap refusals in.
    pub error: ErrorBody<'a>,
}

/// The fields of an `{"error": {…}}` envelope, whichever of them a provider sends.
pub struct ErrorBody<'a> {
    /// `code` as text: Zai sends its business code as a string, Perplexity, Gemini and OpenRouter
    /// send numbers.
    pub code: Option<String>,
    pub kind: Option<&'a str>,
    pub message: &'a str,
    /// Anthropic's `error.details.error_code`.
    pub detail_code: Option<&'a str>,
    /// Gemini's gRPC status name.
    pub status_name: Option<&'a str>,
    /// Gemini's `details[]`.
    pub details: &'a [Value],
    /// OpenRouter's `metadata`.
    pub metadata: Option<&'a Value>,
}

impl<'a> Answer<'a> {
    pub fn new(status: u16, headers: &'a HeaderMap, json: Option<&'a Value>) -> Self {
        let error = json.and_then(|j| j.get("error"));
        let field = |name: &str| error.and_then(|e| e.get(name));
        let error = ErrorBody {
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
            metadata: field("metadata"),
        };
        Self { status, headers, json, error }
    }

    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The status family's meaning, for an answer whose body says nothing keyward knows.
    pub fn by_status(&self) -> FailureKind {
        match self.status {
            401 => FailureKind::InvalidKey,
            402 => FailureKind::NoCredits,
            403 | 404 => FailureKind::NoPermission,
            408 | 500..=599 => FailureKind::Overloaded,
            413 => FailureKind::ContextTooLong,
            429 => FailureKind::RateLimited,
            _ => FailureKind::Unrecognised,
        }
    }

    /// The `x-ratelimit-limit-<metric>` / `x-ratelimit-remaining-<metric>` pair that ran out (OpenAI,
    /// Perplexity): requests first, then tokens.
    pub fn x_ratelimit(&self) -> Option<RateLimit> {
        ["requests", "tokens"].into_iter().find_map(|metric| {
            let number = |kind: &str| self.header(&format!("x-ratelimit-{kind}-{metric}"))?.trim().parse::<u64>().ok();
            let (limit, remaining) = (number("limit")?, number("remaining")?);
            (remaining == 0).then(|| RateLimit::used(metric, limit, limit - remaining))
        })
    }
}

/// The integer right after `label` (digits with optional thousands commas).
pub fn number_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let digits: String =
        text[start..].chars().take_while(|c| c.is_ascii_digit() || *c == ',').filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The wait right after `label`, in whole seconds rounded up: `… try again in 1m26.4s` → 87.
pub fn wait_after(text: &str, label: &str) -> Option<u64> {
    let start = text.find(label)? + label.len();
    let duration: String =
        text[start..].chars().take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'h' | 'm' | 's')).collect();
    duration_secs(duration.trim_end_matches('.'))
}

/// A duration as Go and Google write them (`9.8s`, `1m26.4s`, `250ms`, `1h2m`), in whole seconds
/// rounded up; `None` for anything else.
pub fn duration_secs(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut secs = 0.0_f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = [("ms", 0.001), ("h", 3600.0), ("m", 60.0), ("s", 1.0)]
            .into_iter()
            .find(|(unit, _)| rest.starts_with(unit))?;
        rest = &rest[unit.len()..];
        secs += value * scale;
    }
    (secs.is_finite() && secs < 1e9).then(|| secs.ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_waits_in_every_form_providers_write() {
        assert_eq!(number_after("of 50,000 input tokens", "of "), Some(50_000));
        for (text, secs) in [
            ("Please try again in 1.146s. Visit", Some(2)),
            ("Please try again in 250ms.", Some(1)),
            ("Please try again in 1m26.4s.", Some(87)),
            ("Please try again in 6m0s.", Some(360)),
            ("Please try again in 20s.", Some(20)),
            ("Please try again in a while.", None),
        ] {
            assert_eq!(wait_after(text, "try again in "), secs, "{text}");
        }
        for (text, secs) in [("9.8s", Some(10)), ("1h2m", Some(3720)), ("23s", Some(23)), ("", None), ("5", None)] {
            assert_eq!(duration_secs(text), secs, "{text}");
        }
    }
}
