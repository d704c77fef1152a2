//! OpenAI's chat completions, as `provider-errors.md` §1 describes its answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;

use super::{Answer, CallCounts, Provider, Scenario, accept, bearer, body_with};

/// OpenAI shows the first 8 and last 4 characters of a refused key, masked in between.
fn openai_masked(key: &str) -> String {
    let keep = key.len().min(8);
    let tail = key.len().saturating_sub(4).max(keep);
    format!("{}{}{}", &key[..keep], "*".repeat(tail - keep), &key[tail..])
}

async fn openai(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::OpenAi);
    let Some(key) = bearer(&headers) else {
        return Answer::json(
            401,
            json!({"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let Some(request) = body_with(&body, &["model", "messages"]) else {
        return Answer::json(
            400,
            json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let (model, scenario) = accept(key, &request).await;
    let error = |status, message: String, kind: &str, code: &str| {
        Answer::json(status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
            .header("x-request-id", "req_sandbox0openai")
    };
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(200, json!({
            "id": "chatcmpl-sandbox", "object": "chat.completion", "created": 1_763_800_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "refusal": null}, "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
            "system_fingerprint": "fp_sandbox"
        })).header("x-ratelimit-limit-tokens", "90000").header("x-ratelimit-remaining-tokens", "89991"),
        Scenario::NoPermission => error(404, format!("The model `{model}` does not exist or you do not have access to it."), "invalid_request_error", "model_not_found"),
        Scenario::NoCredits => error(429, "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".into(), "insufficient_quota", "insufficient_quota"),
        Scenario::RateLimited => error(429, "Rate limit reached for gpt-4o-mini in organization org-sandbox on tokens per min (TPM): Limit 90000, Used 85000, Requested 10000. Please try again in 3.333s. Visit https://platform.openai.com/account/rate-limits to learn more.".into(), "tokens", "rate_limit_exceeded")
            .header("x-ratelimit-limit-tokens", "90000")
            .header("x-ratelimit-remaining-tokens", "5000")
            .header("x-ratelimit-reset-tokens", "3.333s"),
        Scenario::Quota => error(429, "Your organization has reached its usage limit.".into(), "insufficient_quota", "organization_usage_limit_exceeded"),
        Scenario::Overloaded => error(503, "The server is overloaded, please try again later.".into(), "server_error", "server_is_overloaded"),
        Scenario::Region => error(403, "Country, region, or territory not supported".into(), "request_forbidden", "unsupported_country_region_territory"),
        Scenario::Invalid | Scenario::Blocked => error(401, format!("Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.", openai_masked(key)), "invalid_request_error", "invalid_api_key"),
    }
}

pub(super) fn router() -> Router<Arc<CallCounts>> {
    Router::new().route("/chat/completions", post(openai))
}
