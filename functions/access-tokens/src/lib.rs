//! `access-tokens`: a signed-in user's personal access tokens (create, list, revoke), adapted from
//! HTTP to the personal tokens use case. No token reaches these routes: making or ending tokens
//! needs a real sign-in.

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::auth::UserCaller;
use keyward::github::MAX_ALERT_BYTES;
use keyward::http::ApiError;
use keyward::http::request::{json_body, path_param, raw_body};
use keyward::http::response::{json_response, no_content};
use keyward::model::{ProblemCode, rfc3339};
use keyward::store::ListedToken;
use keyward::use_cases::access_tokens::NewToken;
use lambda_http::Request;
use lambda_http::http::StatusCode;
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "access-tokens";

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .signed_in("POST /me/tokens", |state, req, caller| Box::pin(create(state, req, caller)))
        .signed_in("GET /me/tokens", |state, _, caller| Box::pin(list(state, caller)))
        .signed_in("DELETE /me/tokens/{id}", |state, req, caller| Box::pin(revoke(state, req, caller)))
        .public("POST /tokens/leaks", |state, req| Box::pin(leaks(state, req)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateToken {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// A token as its owner's list shows it: never the token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenListing {
    id: String,
    name: String,
    preview: String,
    scopes: Vec<String>,
    created_at: String,
    expires_at: String,
    last_used_at: Option<String>,
}

impl From<ListedToken> for TokenListing {
    fn from(t: ListedToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            preview: t.preview,
            scopes: t.scopes,
            created_at: rfc3339(t.created_at),
            expires_at: rfc3339(t.expires_at),
            last_used_at: t.last_used_at.map(rfc3339),
        }
    }
}

/// A new token: the one answer that ever carries its value.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Created<'a> {
    id: &'a str,
    token: &'a str,
    name: &'a str,
    scopes: &'a [String],
    created_at: String,
    expires_at: String,
}

/// `POST /me/tokens` `{"name", "scopes", "expiresInDays"}` → 201 with the token, shown once.
async fn create(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let asked: CreateToken = json_body(req)?;
    let asked = NewToken { name: asked.name, scopes: asked.scopes, expires_in_days: asked.expires_in_days };
    let created = state.personal_tokens().create(caller, asked).await?;
    let listed = &created.listed;
    let body = Created {
        id: &listed.id,
        token: created.token.expose(),
        name: &listed.name,
        scopes: &listed.scopes,
        created_at: rfc3339(listed.created_at),
        expires_at: rfc3339(listed.expires_at),
    };
    Ok(json_response(StatusCode::CREATED, &body))
}

/// `GET /me/tokens` → `{"tokens": [listing, …]}`, oldest first.
async fn list(state: &AppState, caller: &UserCaller) -> Answer {
    let tokens: Vec<TokenListing> =
        state.personal_tokens().list(&caller.user).await?.into_iter().map(Into::into).collect();
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "tokens": tokens })))
}

/// `DELETE /me/tokens/{id}` → 204; another user's, an unknown or a revoked id → 404 alike.
async fn revoke(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let id = path_param(req, "id")
        .ok_or_else(|| ApiError::new(ProblemCode::TokenNotFound, "You have no token with that id."))?;
    state.personal_tokens().revoke(caller, id).await?;
    Ok(no_content())
}

/// `POST /tokens/leaks`: GitHub's secret-scanning partner alert, checked against GitHub's published
/// key before anything in it is read; every live keyward token in it is revoked. The answer is
/// GitHub's feedback format: `[{"token_hash", "token_type", "label"}]`.
async fn leaks(state: &AppState, req: &Request) -> Answer {
    let body = raw_body(req, MAX_ALERT_BYTES)?;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let alerts = state
        .github_alerts
        .verified(body, header("github-public-key-identifier"), header("github-public-key-signature"))
        .await?;
    let feedback = state.personal_tokens().revoke_leaked(&alerts).await?;
    Ok(json_response(StatusCode::OK, &feedback))
}
