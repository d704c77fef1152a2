//! `oauth-refresh`: Google account connections and fresh access tokens for internal services.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::http::{ApiError, route_key, route_not_found};
use lambda_http::{Body, Request, Response};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "oauth-refresh";

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/oauth-refresh" => Ok(health(state, FUNCTION)),
        _ => Err(route_not_found()),
    }
}
