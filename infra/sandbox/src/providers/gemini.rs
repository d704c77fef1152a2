//! Gemini's `generateContent`, as `provider-errors.md` §3 describes its answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use super::{Answer, CallCounts, Provider, Scenario, accept, body_with, header_str};

async fn gemini(
    State(counts): State<Arc<CallCounts>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    counts.count(Provider::Gemini);
    let error = |status: u16, message: &str, grpc: &str, details: Value| {
        Answer::json(status, json!({"error": {"code": status, "message": message, "status": grpc, "details": details}}))
    };
    let Some((model, "generateContent")) = call.split_once(':') else {
        return error(404, "Method not found.", "NOT_FOUND", json!([]));
    };
    let Some(key) = header_str(&headers, "x-goog-api-key") else {
        return error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
            json!([]),
        );
    };
    let Some(request) = body_with(&body, &["contents"]) else {
        return error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT", json!([]));
    };
    let info = |reason: &str| json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]);
    let quota = |quota_id: &str, value: &str, retry: &str| {
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": model}, "quotaValue": value}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry}
        ])
    };
    // Gemini packs a free-tier quota refusal into one message and QuotaFailure details.
    let exhausted = |limit: &str, period: &str, retry: &str, hint: &str| {
        let message = format!(
            "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: \
             generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, model: {model}{hint}"
        );
        let quota_id = format!("GenerateRequestsPer{period}PerProjectPerModel-FreeTier");
        error(429, &message, "RESOURCE_EXHAUSTED", quota(&quota_id, limit, retry))
    };
    // Gemini names the model in the path, not the body.
    let (_, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
                "modelVersion": model, "responseId": "sandbox"
            }),
        ),
        Scenario::Blocked => error(
            403,
            "Your API key was reported as leaked. Please use another API key.",
            "PERMISSION_DENIED",
            json!([]),
        ),
        Scenario::NoPermission => error(
            404,
            &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
            "NOT_FOUND",
            json!([]),
        ),
        Scenario::NoCredits => exhausted("0", "Minute", "23s", ""),
        Scenario::RateLimited => exhausted("15", "Minute", "23s", " Please retry in 22.5s."),
        Scenario::Quota => exhausted("20", "Day", "41s", ""),
        Scenario::Overloaded => {
            error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE", json!([]))
        }
        Scenario::Region => {
            error(400, "User location is not supported for the API use.", "FAILED_PRECONDITION", json!([]))
        }
        Scenario::Invalid => {
            error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", info("API_KEY_INVALID"))
        }
    }
}

pub(super) fn router() -> Router<Arc<CallCounts>> {
    Router::new().route("/models/{call}", post(gemini))
}
