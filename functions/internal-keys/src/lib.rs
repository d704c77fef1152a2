//! `internal-keys`: decrypted LLM keys for internal services signing with IAM, adapted from HTTP
//! to the keys use case.

use std::collections::{BTreeMap, BTreeSet};

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::auth::{Need, ServiceCaller};
use keyward::http::ApiError;
use keyward::http::request::{path_user, query_param};
use keyward::http::response::json_response;
use keyward::model::{ProblemCode, Provider};
use lambda_http::Request;
use lambda_http::http::StatusCode;
use secrecy::ExposeSecret;
use serde::Serialize;

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "internal-keys";

pub fn routes() -> Routes {
    Routes::new(FUNCTION).service("GET /internal/users/{uid}/llm-keys", Need::AnyLlmKey, |state, req, caller| {
        Box::pin(fetch_llm_keys(state, req, caller))
    })
}

/// `{"keys": {"openai": "sk-…"}}`: the user's keys for the providers both requested
/// (`?providers=a,b`; all when absent) and granted to the caller. A Zai key comes with
/// `"regions": {"zai": "international" | "china"}`, which decides the endpoint it works on.
async fn fetch_llm_keys(state: &AppState, req: &Request, caller: &ServiceCaller) -> Answer {
    let user = path_user(req)?;
    let fetched = state.keys().fetch_for(caller, &user, requested_providers(req)?).await?;
    // Borrowed from the fetched keys (zeroized when dropped): the serialized body is the one
    // plaintext copy keyward makes, and it goes to the runtime.
    let body = FetchedKeys {
        keys: fetched.iter().map(|k| (k.provider.slug(), k.key.expose_secret())).collect(),
        regions: fetched.iter().filter_map(|k| Some((k.provider.slug(), k.region?.slug()))).collect(),
    };
    // `json_response` marks it `Cache-Control: no-store`, as a response carrying keys must be.
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Serialize)]
struct FetchedKeys<'a> {
    keys: BTreeMap<&'static str, &'a str>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    regions: BTreeMap<&'static str, &'static str>,
}

/// The `providers` query parameter: a comma-separated list of provider slugs, every one known.
fn requested_providers(req: &Request) -> Result<Option<BTreeSet<Provider>>, ApiError> {
    let Some(raw) = query_param(req, "providers") else { return Ok(None) };
    let unknown = || {
        let slugs: Vec<&str> = Provider::ALL.iter().map(|p| p.slug()).collect();
        ApiError::new(ProblemCode::UnknownProviderListed, format!("`providers` lists only {}.", slugs.join(", ")))
    };
    raw.split(',').map(|slug| slug.parse::<Provider>().map_err(|_| unknown())).collect::<Result<_, _>>().map(Some)
}
