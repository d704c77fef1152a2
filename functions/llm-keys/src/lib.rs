//! `llm-keys`: a user's own LLM provider keys (Auth0 bearer token; the user is the token's `sub`,
//! never a path value). A key is stored only after its provider accepted it.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::http::{ApiError, json_body, json_response, no_content, path_param, route_key, route_not_found};
use keyward::model::{Provider, UserId, ZaiRegion, rfc3339};
use keyward::providers::{Outcome, parse_api_key, preview, spec};
use keyward::secret::ApiKey;
use keyward::store::{Actor, Allowance, AuditEntry, KeyStatus, NewLlmKey, StoredLlmKey, TestResult, now_epoch};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "llm-keys";

/// The window of the per-user, per-provider validation allowance.
const VALIDATION_WINDOW_SECS: i64 = 3_600;

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/llm-keys" => Ok(health(state, FUNCTION)),
        "GET /llm-providers" => Ok(providers()),
        "GET /me/llm-keys" => list(state, req).await,
        "DELETE /me/llm-keys" => delete_all(state, req).await,
        "PUT /me/llm-keys/{provider}" => put(state, req).await,
        "POST /me/llm-keys/{provider}/test" => test(state, req).await,
        "DELETE /me/llm-keys/{provider}" => delete(state, req).await,
        _ => Err(route_not_found()),
    }
}

/// One provider as a UI or the CLI shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderListing {
    slug: &'static str,
    display_name: &'static str,
    key_hint: &'static str,
    console_url: &'static str,
    /// The platforms a key may belong to (`region` of a PUT), for providers that have several.
    #[serde(skip_serializing_if = "Option::is_none")]
    regions: Option<[&'static str; 2]>,
}

/// `GET /llm-providers` → `{"providers": [listing, …]}`, public.
fn providers() -> Response<Body> {
    let providers: Vec<ProviderListing> = Provider::ALL
        .iter()
        .map(|p| spec(*p))
        .map(|p| ProviderListing {
            slug: p.provider().slug(),
            display_name: p.display_name(),
            key_hint: p.key_hint(),
            console_url: p.console_url(),
            regions: p.has_regions().then(|| [ZaiRegion::International.slug(), ZaiRegion::China.slug()]),
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::json!({ "providers": providers }))
}

/// One stored key as its owner sees it: never more of the key than its masked preview.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyListing {
    provider: &'static str,
    preview: String,
    status: &'static str,
    /// Zai keys only: `international` (z.ai) or `china` (open.bigmodel.cn).
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'static str>,
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
            region: key.zai_region.map(ZaiRegion::slug),
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PutKey {
    api_key: SecretString,
    /// Zai only: which platform the key belongs to (default `international`).
    #[serde(default)]
    region: Option<String>,
}

/// `PUT /me/llm-keys/{provider}` `{"apiKey": "…"}`: shape-check, validate with the provider, then
/// seal and store. A refused key is never stored, and an existing key stays as it was.
async fn put(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let provider = provider_of(req)?;
    keyward::account::require_verified_email(&state.store, &claims).await?;
    let body: PutKey = json_body(req)?;
    let region = zai_region(provider, body.region.as_deref())?;
    let key = parse_api_key(provider, body.api_key.expose_secret())?;
    drop(body);

    spend_validation(state, &claims.user, provider).await?;
    let outcome = state.validator.validate(provider, region.unwrap_or_default(), &key).await;
    let now = now_epoch();
    if let Outcome::Invalid(failure) = outcome {
        audit(state, &claims.user, "llm_key.put", provider.to_string(), failure.kind.code()).await?;
        return Err(failure.into());
    }

    let context = EncryptionContext::new(&claims.user, Purpose::LlmKey, provider.slug());
    let new = NewLlmKey {
        provider,
        sealed: state.envelope.seal(key.expose().as_bytes(), &context).await?,
        preview: preview(&key),
        status: KeyStatus::Valid,
        test: Some(TestResult { ok: true, message: works(provider), at: now }),
        zai_region: region,
    };
    let entry = audit_entry(&claims.user, "llm_key.put", provider.to_string(), "ok");
    let stored = state.store.llm_keys().put_audited(&claims.user, &new, now, &entry).await?;
    tracing::info!(user = %claims.user, provider = %provider, "llm key stored");
    Ok(json_response(StatusCode::OK, &KeyListing::from(stored)))
}

/// `POST /me/llm-keys/{provider}/test` → `{ok, message, at}` (and `code` when not ok): checks the
/// stored key again and records the result.
async fn test(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let provider = provider_of(req)?;
    keyward::account::require_verified_email(&state.store, &claims).await?;
    let keys = state.store.llm_keys();
    let stored = keys.get(&claims.user, provider).await?.ok_or_else(|| no_key(provider))?;
    spend_validation(state, &claims.user, provider).await?;

    let context = EncryptionContext::new(&claims.user, Purpose::LlmKey, provider.slug());
    let key = ApiKey::new(state.envelope.open_text(&stored.sealed, &context).await?.expose_secret());
    let outcome = state.validator.validate(provider, stored.zai_region.unwrap_or_default(), &key).await;
    let (status, code, message) = match &outcome {
        Outcome::Valid => (KeyStatus::Valid, None, works(provider)),
        // A provider that cannot answer now says nothing about the key: its status stays.
        Outcome::Invalid(f) if f.kind.is_transient() => (stored.status, Some(f.kind.code()), f.message()),
        Outcome::Invalid(f) => (KeyStatus::Invalid, Some(f.kind.code()), f.message()),
    };
    let result = TestResult { ok: code.is_none(), message, at: now_epoch() };
    keys.record_test(&claims.user, provider, status, &result).await?.ok_or_else(|| no_key(provider))?;
    audit(state, &claims.user, "llm_key.test", provider.to_string(), code.unwrap_or("ok")).await?;
    Ok(json_response(
        StatusCode::OK,
        &TestAnswer { ok: result.ok, code, message: result.message, at: rfc3339(result.at) },
    ))
}

#[derive(Serialize)]
struct TestAnswer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    message: String,
    at: String,
}

/// `DELETE /me/llm-keys/{provider}` → 204, whether or not there was a key.
async fn delete(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let provider = provider_of(req)?;
    if state.store.llm_keys().delete(&claims.user, provider).await? {
        audit(state, &claims.user, "llm_key.delete", provider.to_string(), "ok").await?;
    }
    Ok(no_content())
}

/// `DELETE /me/llm-keys` → 204: every key of the user, at once.
async fn delete_all(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let deleted = state.store.llm_keys().delete_all(&claims.user).await?;
    if !deleted.is_empty() {
        let providers = deleted.iter().map(|p| p.slug()).collect::<Vec<_>>().join(",");
        audit(state, &claims.user, "llm_key.delete_all", providers, "ok").await?;
    }
    Ok(no_content())
}

fn provider_of(req: &Request) -> Result<Provider, ApiError> {
    path_param(req, "provider").and_then(|raw| raw.parse().ok()).ok_or_else(|| {
        let slugs: Vec<&str> = Provider::ALL.iter().map(|p| p.slug()).collect();
        ApiError::not_found("unknown_provider", format!("keyward stores keys for {}.", slugs.join(", ")))
    })
}

fn zai_region(provider: Provider, raw: Option<&str>) -> Result<Option<ZaiRegion>, ApiError> {
    match (provider, raw) {
        (Provider::Zai, None) => Ok(Some(ZaiRegion::International)),
        (Provider::Zai, Some(raw)) => ZaiRegion::parse(raw).map(Some).ok_or_else(|| {
            ApiError::bad_request("invalid_region", "`region` is `international` (z.ai) or `china` (open.bigmodel.cn).")
        }),
        (_, None) => Ok(None),
        (_, Some(_)) => Err(ApiError::bad_request("invalid_region", "`region` applies to Zai keys only.")),
    }
}

/// Takes one validation from the user's hourly allowance for the provider, or refuses with 429.
async fn spend_validation(state: &AppState, user: &UserId, provider: Provider) -> Result<(), ApiError> {
    let limit = state.config.validations_per_hour;
    let bucket = format!("validate:{provider}");
    match state.store.limits().take(user, &bucket, limit, VALIDATION_WINDOW_SECS, now_epoch()).await? {
        Allowance::Granted => Ok(()),
        Allowance::Refused { retry_after_secs } => Err(ApiError::TooManyRequests {
            code: "validation_limit",
            detail: format!(
                "{} keys can be checked at most {limit} times an hour (each check spends your provider credit) — \
                 try again in {} minutes.",
                spec(provider).display_name(),
                retry_after_secs.div_ceil(60)
            ),
            retry_after_secs,
        }),
    }
}

/// Records what the user did to their keys and how it ended (never the key).
async fn audit(state: &AppState, user: &UserId, action: &str, target: String, outcome: &str) -> Result<(), ApiError> {
    Ok(state.store.audit().append(user, &audit_entry(user, action, target, outcome)).await?)
}

fn audit_entry(user: &UserId, action: &str, target: String, outcome: &str) -> AuditEntry {
    AuditEntry {
        at: now_epoch(),
        actor: Actor::User(user.clone()),
        action: action.into(),
        target: Some(target),
        outcome: outcome.into(),
    }
}

fn works(provider: Provider) -> String {
    format!("The {} key works.", spec(provider).display_name())
}

fn no_key(provider: Provider) -> ApiError {
    ApiError::not_found("no_key", format!("No {} key is stored.", spec(provider).display_name()))
}
