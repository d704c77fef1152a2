//! Zai's chat completions on both platforms, as `provider-errors.md` §5 describes its answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;

use super::{Answer, CallCounts, Provider, Scenario, accept, bearer, body_with};

/// Both Zai platforms answer alike, with a business code in the body.
async fn zai(headers: &HeaderMap, body: &[u8]) -> Answer {
    let error =
        |status, code: &str, message: &str| Answer::json(status, json!({"error": {"code": code, "message": message}}));
    let Some(key) = bearer(headers) else {
        return error(401, "1001", "Authentication parameter not received in Header, unable to authenticate.");
    };
    let Some(request) = body_with(body, &["model", "messages"]) else {
        return error(400, "1214", "Input cannot be empty");
    };
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "id": "sandbox", "request_id": "sandbox", "created": 1_763_800_000, "model": model,
                "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi"}}],
                "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}
            }),
        ),
        Scenario::Blocked => {
            error(429, "1112", "Your account has been locked, please contact customer service to unlock.")
        }
        Scenario::NoPermission => error(403, "1220", "You do not have permission to access this API."),
        Scenario::NoCredits => error(429, "1113", "Insufficient balance or no resource package. Please recharge."),
        Scenario::RateLimited => error(429, "1302", "Rate limit reached for requests"),
        Scenario::Quota => error(429, "1304", "The daily call limit for this API has been reached."),
        Scenario::Overloaded => error(429, "1305", "The service may be temporarily overloaded, please try again later"),
        Scenario::Invalid | Scenario::Region => error(
            401,
            "1002",
            "Authorization Token is invalid, please ensure that the Authorization Token is correctly provided.",
        ),
    }
}

/// One platform's stand-in: both answer alike, each counting its own calls.
pub(super) fn router(platform: Provider) -> Router<Arc<CallCounts>> {
    let answer = move |State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes| async move {
        counts.count(platform);
        zai(&headers, &body).await
    };
    Router::new().route("/chat/completions", post(answer))
}
