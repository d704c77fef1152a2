//! Anthropic's messages API, as `provider-errors.md` §2 describes its answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;

use super::{Answer, CallCounts, Provider, Scenario, accept, body_with, header_str};

async fn anthropic(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::Anthropic);
    let error = |status, kind: &str, message: String| {
        Answer::json(status, json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011SandboxAnthropic"}))
            .header("request-id", "req_011SandboxAnthropic")
    };
    let Some(key) = header_str(&headers, "x-api-key") else {
        return error(401, "authentication_error", "x-api-key header is required".into());
    };
    if header_str(&headers, "anthropic-version").is_none() {
        return error(400, "invalid_request_error", "anthropic-version: header is required".into());
    }
    let Some(request) = body_with(&body, &["model", "max_tokens", "messages"]) else {
        return error(400, "invalid_request_error", "max_tokens: Field required".into());
    };
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(200, json!({
            "id": "msg_sandbox", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 8, "output_tokens": 1}
        })).header("anthropic-ratelimit-requests-limit", "50"),
        Scenario::NoPermission => error(404, "not_found_error", format!("model: {model}")),
        Scenario::NoCredits => error(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".into()),
        Scenario::RateLimited => error(429, "rate_limit_error", "This request would exceed the rate limit for your organization (00000000-0000-0000-0000-000000000000) of 50,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.".into())
            .header("retry-after", "11"),
        Scenario::Quota => error(400, "invalid_request_error", "You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC.".into()),
        Scenario::Overloaded => error(529, "overloaded_error", "Overloaded".into()),
        Scenario::Invalid | Scenario::Blocked | Scenario::Region => error(401, "authentication_error", "invalid x-api-key".into()),
    }
}

pub(super) fn router() -> Router<Arc<CallCounts>> {
    Router::new().route("/messages", post(anthropic))
}
