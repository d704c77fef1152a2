//! Perplexity's Agent API, as `provider-errors.md` §4 describes its answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::json;

use super::{Answer, CallCounts, Provider, Scenario, accept, bearer, body_with};

/// The fields Perplexity's Agent API accepts: it refuses any other with a 400.
const PERPLEXITY_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "tools",
    "preset",
    "stream",
    "temperature",
    "top_p",
    "response_format",
    "reasoning",
    "models",
];

/// Perplexity's nginx answers a refused key with an HTML page, not JSON — also for empty accounts.
const PERPLEXITY_401: &str = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty/1.27.4</center>\r\n</body>\r\n</html>\r\n";

async fn perplexity(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::Perplexity);
    let html_401 = || Answer { status: 401, headers: Vec::new(), body: PERPLEXITY_401.into(), html: true };
    let Some(key) = bearer(&headers) else { return html_401() };
    let bad_request = |message: String, param: &str| {
        Answer::json(
            400,
            json!({"error": {"message": message, "type": "invalid_request", "code": 400, "param": param}}),
        )
    };
    let Some(request) = body_with(&body, &["model", "input"]) else {
        return bad_request("invalid request body: model and input are required".into(), "input");
    };
    if let Some(unknown) = request.keys().find(|k| !PERPLEXITY_FIELDS.contains(&k.as_str())) {
        return bad_request(format!("invalid request body: json: unknown field \"{unknown}\""), unknown);
    }
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        // A 16-token probe ends `incomplete` for `max_output_tokens`: that is success.
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "id": "resp_sandbox", "object": "response", "created_at": 1_763_800_000, "model": model,
                "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}],
                "usage": {"input_tokens": 1, "output_tokens": 16, "total_tokens": 17}
            }),
        ),
        Scenario::RateLimited => Answer::json(
            429,
            json!({"error": {"message": "Rate limit exceeded", "type": "request_rate_limit_exceeded", "code": 429}}),
        )
        .header("x-ratelimit-limit-requests", "50")
        .header("x-ratelimit-remaining-requests", "0")
        .header("retry-after", "7"),
        Scenario::Overloaded => Answer::json(
            503,
            json!({"error": {"message": "Service temporarily unavailable", "type": "service_unavailable", "code": 503}}),
        ),
        _ => html_401(),
    }
}

pub(super) fn router() -> Router<Arc<CallCounts>> {
    Router::new().route("/v1/agent", post(perplexity))
}
