//! `llm-keys`: a user's own LLM provider keys (the user is the token's `sub`, never a path value),
//! and the list of providers — adapted from HTTP to the keys use case.

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::auth::UserCaller;
use keyward::http::ApiError;
use keyward::http::request::{json_body, path_as};
use keyward::http::response::{json_response, no_content};
use keyward::model::{ProblemCode, Provider, Scope, ZaiRegion, rfc3339};
use keyward::store::StoredLlmKey;
use keyward::use_cases::keys::Keys;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "llm-keys";

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .public("GET /llm-providers", |_, _| Box::pin(async { Ok(providers()) }))
        .user("GET /me/llm-keys", Scope::KeysRead, |state, _, caller| Box::pin(list(state, caller)))
        .user("DELETE /me/llm-keys", Scope::KeysWrite, |state, _, caller| Box::pin(delete_all(state, caller)))
        .user("PUT /me/llm-keys/{provider}", Scope::KeysWrite, |state, req, caller| Box::pin(put(state, req, caller)))
        .user("POST /me/llm-keys/{provider}/test", Scope::KeysRead, |state, req, caller| {
            Box::pin(test(state, req, caller))
        })
        .user("DELETE /me/llm-keys/{provider}", Scope::KeysWrite, |state, req, caller| {
            Box::pin(delete(state, req, caller))
        })
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

/// `GET /llm-providers` → `{"providers": [listing, …]}`.
fn providers() -> Response<Body> {
    let providers: Vec<ProviderListing> = Keys::providers()
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

/// The `{provider}` of the path, or 404 naming those keyward stores keys for.
fn provider_of(req: &Request) -> Result<Provider, ApiError> {
    path_as(req, "provider", || {
        let slugs: Vec<&str> = Provider::ALL.iter().map(|p| p.slug()).collect();
        ApiError::new(ProblemCode::UnknownProvider, format!("keyward stores keys for {}.", slugs.join(", ")))
    })
}

/// `GET /me/llm-keys` → `{"keys": [listing, …]}`.
async fn list(state: &AppState, caller: &UserCaller) -> Answer {
    let keys: Vec<KeyListing> = state.keys().list(&caller.user).await?.into_iter().map(Into::into).collect();
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

/// `PUT /me/llm-keys/{provider}` `{"apiKey": "…"}` → the stored key's listing.
async fn put(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let provider = provider_of(req)?;
    let body: PutKey = json_body(req)?;
    let stored = state.keys().store_key(caller, provider, &body.api_key, body.region.as_deref()).await?;
    Ok(json_response(StatusCode::OK, &KeyListing::from(stored)))
}

#[derive(Serialize)]
struct TestAnswer {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'static str>,
    message: String,
    at: String,
}

/// `POST /me/llm-keys/{provider}/test` → `{ok, message, at}` (and `code` when not ok).
async fn test(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let tested = state.keys().test(caller, provider_of(req)?).await?;
    Ok(json_response(
        StatusCode::OK,
        &TestAnswer { ok: tested.ok, code: tested.code, message: tested.message, at: rfc3339(tested.at) },
    ))
}

/// `DELETE /me/llm-keys/{provider}` → 204, whether or not there was a key.
async fn delete(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    state.keys().delete(caller, provider_of(req)?).await?;
    Ok(no_content())
}

/// `DELETE /me/llm-keys` → 204: every key of the user, at once.
async fn delete_all(state: &AppState, caller: &UserCaller) -> Answer {
    state.keys().delete_all(caller).await?;
    Ok(no_content())
}
