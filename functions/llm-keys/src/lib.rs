//! `llm-keys`: a user's own LLM provider keys (Auth0 bearer token; the user is the token's `sub`).
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::http::{ApiError, json_response, rfc3339, route_key, route_not_found};
use keyward::store::StoredLlmKey;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "llm-keys";

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/llm-keys" => Ok(health(state, FUNCTION)),
        "GET /me/llm-keys" => list(state, req).await,
        _ => Err(route_not_found()),
    }
}

/// One stored key as its owner sees it: never more of the key than its masked preview.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyListing {
    provider: &'static str,
    preview: String,
    status: &'static str,
    last_validated_at: Option<String>,
    last_test: Option<LastTest>,
    last_used_at: Option<String>,
    created_at: String,
    updated_at: String,
}

#[derive(Serialize)]
struct LastTest {
    ok: bool,
    message: String,
    at: String,
}

impl From<StoredLlmKey> for KeyListing {
    fn from(key: StoredLlmKey) -> Self {
        Self {
            provider: key.provider.slug(),
            preview: key.preview,
            status: key.status.as_str(),
            last_validated_at: key.last_validated_at.map(rfc3339),
            last_test: key.last_test.map(|t| LastTest { ok: t.ok, message: t.message, at: rfc3339(t.at) }),
            last_used_at: key.last_used_at.map(rfc3339),
            created_at: rfc3339(key.created_at),
            updated_at: rfc3339(key.updated_at),
        }
    }
}

/// `GET /me/llm-keys` → `{"keys": [listing, …]}`.
async fn list(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let keys: Vec<KeyListing> = state.store.llm_keys().list(&claims.user).await?.into_iter().map(Into::into).collect();
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "keys": keys })))
}
