//! `internal-keys`: Decrypted LLM keys for IAM-authenticated internal services.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::collections::BTreeSet;
use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::auth::Grant;
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::http::{ApiError, json_response, path_user, route_key, route_not_found};
use keyward::model::Provider;
use keyward::store::{Actor, AuditEntry, now_epoch};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "internal-keys";

/// `lastUsedAt` is written at most this often per key, to spare writes on hot keys.
const LAST_USED_INTERVAL_SECS: i64 = 60;

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/internal-keys" => Ok(health(state, FUNCTION)),
        "GET /internal/users/{uid}/llm-keys" => fetch_llm_keys(state, req).await,
        _ => Err(route_not_found()),
    }
}

/// `{"keys": {"openai": "sk-…"}}`: the user's keys for the providers both requested
/// (`?providers=a,b`; all when absent) and granted to the calling principal. A Zai key comes with
/// `"regions": {"zai": "international" | "china"}`, which decides the endpoint it works on.
async fn fetch_llm_keys(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let caller = state.config.internal_principals.caller(req)?;
    let user = path_user(req)?;
    let requested = requested_providers(req)?;
    let granted: BTreeSet<Provider> = requested.into_iter().filter(|p| caller.may(Grant::LlmKey(*p))).collect();
    if granted.is_empty() {
        return Err(ApiError::forbidden("grant_missing", "This IAM principal may not fetch keys of those providers."));
    }

    // Only the granted providers' items are read: another provider's sealed key never leaves the table.
    let granted: Vec<Provider> = granted.into_iter().collect();
    let keys = state.store.llm_keys().get_many(&user, &granted).await?;
    if keys.is_empty() {
        return Err(ApiError::not_found("no_keys", "This user has no stored key for the requested providers."));
    }
    let now = now_epoch();
    let mut out = Map::new();
    let mut regions = Map::new();
    for key in &keys {
        let context = EncryptionContext::new(&user, Purpose::LlmKey, key.provider.slug());
        let plaintext = state.envelope.open_text(&key.sealed, &context).await?;
        out.insert(key.provider.slug().to_owned(), Value::String(plaintext.expose_secret().to_owned()));
        if let Some(region) = key.zai_region {
            regions.insert(key.provider.slug().to_owned(), Value::String(region.slug().to_owned()));
        }
        // The listing just read says whether the mark is due; skip the (conditional) write when not.
        if key.last_used_at.is_none_or(|at| now - at >= LAST_USED_INTERVAL_SECS) {
            state.store.llm_keys().touch_last_used(&user, key.provider, now, LAST_USED_INTERVAL_SECS).await?;
        }
    }
    let audit = AuditEntry {
        at: now,
        actor: Actor::Service(caller.arn.clone()),
        action: "llm_key.fetch".into(),
        target: Some(keys.iter().map(|k| k.provider.slug()).collect::<Vec<_>>().join(",")),
        outcome: "ok".into(),
    };
    state.store.audit().append(&user, &audit).await?;

    tracing::info!(user = %user, caller = %caller.arn, count = keys.len(), "llm keys fetched");
    let mut body = Map::from_iter([("keys".to_owned(), Value::Object(out))]);
    if !regions.is_empty() {
        body.insert("regions".to_owned(), Value::Object(regions));
    }
    // `json_response` marks it `Cache-Control: no-store`, as a response carrying keys must be.
    Ok(json_response(StatusCode::OK, &body))
}

/// The `providers` query parameter: a comma-separated list of provider slugs, every one known.
fn requested_providers(req: &Request) -> Result<BTreeSet<Provider>, ApiError> {
    let query = req.query_string_parameters_ref();
    let Some(raw) = query.and_then(|q| q.first("providers")) else {
        return Ok(Provider::ALL.iter().copied().collect());
    };
    raw.split(',')
        .map(|slug| {
            slug.parse::<Provider>().map_err(|_| {
                let slugs: Vec<&str> = Provider::ALL.iter().map(|p| p.slug()).collect();
                ApiError::bad_request("unknown_provider", format!("`providers` lists only {}.", slugs.join(", ")))
            })
        })
        .collect()
}
