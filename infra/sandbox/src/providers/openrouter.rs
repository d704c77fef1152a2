//! OpenRouter's key-info call (`GET /api/v1/key`), as `platform-notes.md` §2 describes its answers:
//! the key's `data` on 200 — including a key that spent the credit limit set on it — and
//! OpenRouter's `{"error": {"code", "message", "metadata"?}}` envelope otherwise.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};

use super::{Answer, CallCounts, Provider, Scenario, bearer, scenario_of};

pub(super) fn router() -> Router<Arc<CallCounts>> {
    Router::new().route("/key", get(key_info))
}

async fn key_info(State(counts): State<Arc<CallCounts>>, headers: HeaderMap) -> Answer {
    counts.count(Provider::OpenRouter);
    let error = |status: u16, message: &str, metadata: Option<Value>| {
        let mut error = json!({"message": message, "code": status});
        if let Some(metadata) = metadata {
            error["metadata"] = metadata;
        }
        Answer::json(status, json!({ "error": error }))
    };
    let Some(key) = bearer(&headers) else { return error(401, "No auth credentials found", None) };
    let data = |limit: Value, remaining: Value, reset: Value| {
        let label = format!("{}...{}", &key[..key.len().min(12)], &key[key.len().saturating_sub(3)..]);
        Answer::json(
            200,
            json!({"data": {
                "label": label, "limit": limit, "limit_remaining": remaining, "limit_reset": reset,
                "include_byok_in_limit": false, "usage": 12.5, "usage_daily": 0.5, "usage_weekly": 2.0,
                "usage_monthly": 12.5, "byok_usage": 0, "byok_usage_daily": 0, "byok_usage_weekly": 0,
                "byok_usage_monthly": 0, "is_free_tier": false, "is_management_key": false,
                "is_provisioning_key": false, "rate_limit": {"requests": -1, "interval": "10s", "note": "deprecated"}
            }}),
        )
    };
    match scenario_of(key).await {
        Scenario::Valid | Scenario::Slow => data(Value::Null, Value::Null, Value::Null),
        // The key's own limit, set when it was made: spent for good, or until the monthly reset.
        Scenario::NoCredits => data(json!(10), json!(0), Value::Null),
        Scenario::Quota => data(json!(25), json!(-0.0004), json!("monthly")),
        Scenario::RateLimited => error(
            429,
            "Rate limit exceeded: limit_rpm/keyward/sandbox. High demand for this key; retry shortly.",
            Some(json!({"headers": {"X-RateLimit-Limit": "20", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1763800060000"}})),
        )
        .header("retry-after", "9"),
        Scenario::Overloaded => error(503, "No instances available", None),
        Scenario::Invalid | Scenario::Blocked | Scenario::NoPermission | Scenario::Region => {
            error(401, "User not found.", None)
        }
    }
}
