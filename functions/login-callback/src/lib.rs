//! `login-callback`: web sign-in through Auth0, keyward sessions, and `GET /me` — adapted from
//! HTTP to the sessions and accounts use cases.

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::auth::UserCaller;
use keyward::http::request::{client_address, cookie, json_body, query_param};
use keyward::http::response::{json_response, no_content, redirect, with_cookies};
use keyward::model::{Cookie, Scope, rfc3339};
use keyward::secret::SessionHandle;
use keyward::store::UserProfile;
use keyward::use_cases::redirects::browser_cookie_name;
use keyward::use_cases::sessions::{LoginCallback, Presented, SESSION_COOKIE, session_cookie};
use lambda_http::http::StatusCode;
use lambda_http::http::header::ORIGIN;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "login-callback";

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .public("GET /auth/config", |state, _| Box::pin(async { Ok(config(state)) }))
        .public("GET /auth/login", |state, req| Box::pin(login(state, req)))
        .public("GET /auth/callback", |state, req| Box::pin(callback(state, req)))
        .public("POST /auth/refresh", |state, req| Box::pin(refresh(state, req)))
        .public("POST /auth/logout", |state, req| Box::pin(logout(state, req)))
        .user("GET /me", Scope::ProfileRead, |state, _, caller| Box::pin(me(state, caller)))
}

/// `GET /auth/config`: what a client needs to sign in, all public.
fn config(state: &AppState) -> Response<Body> {
    let auth0 = state.auth0.settings();
    json_response(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": state.config.tokens.issuer,
            "audience": state.config.tokens.audience,
            "jwksUrl": state.config.tokens.jwks_url.as_str(),
            "clientId": auth0.web_client_id,
            "deviceClientId": auth0.device_client_id,
            "deviceVerificationUrl": auth0.issuer.join("activate").map(|u| u.to_string()).unwrap_or_default(),
        }),
    )
}

/// `GET /auth/login?returnTo=…` → 302 to Auth0, the sign-in bound to this browser by a cookie.
async fn login(state: &AppState, req: &Request) -> Answer {
    let login = state.sessions().begin_web_login(&client_address(req), query_param(req, "returnTo")).await?;
    Ok(with_cookies(redirect(login.authorize_url.as_str()), [&login.browser_cookie]))
}

/// `GET /auth/callback?code&state` (or `?error&state`), in the browser that started the sign-in.
async fn callback(state: &AppState, req: &Request) -> Answer {
    let sign_in_state = query_param(req, "state");
    let callback = LoginCallback {
        state: sign_in_state,
        browser_nonce: sign_in_state.and_then(|s| cookie(req, &browser_cookie_name(s))),
        code: query_param(req, "code"),
        error: query_param(req, "error"),
    };
    let signed_in = state.sessions().finish_web_login(&callback).await?;
    let response = match &signed_in.return_to {
        Some(target) => redirect(target),
        None => {
            json_response(StatusCode::OK, &serde_json::json!({ "signedIn": true, "user": signed_in.user.as_str() }))
        }
    };
    Ok(with_cookies(response, &signed_in.cookies))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HandleBody {
    refresh_token: SecretString,
}

/// The session handle of a request: the cookie (browsers, with their `Origin`) or
/// `{"refreshToken"}` (CLIs).
fn presented_handle(req: &Request) -> Result<Presented<'_>, keyward::http::ApiError> {
    if let Some(handle) = cookie(req, SESSION_COOKIE) {
        let origin = req.headers().get(ORIGIN).and_then(|o| o.to_str().ok());
        return Ok(Presented::Cookie { handle: SessionHandle::new(handle), origin });
    }
    let body: HandleBody = json_body(req)?;
    Ok(Presented::Body(SessionHandle::new(body.refresh_token.expose_secret())))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Refreshed<'a> {
    access_token: &'a str,
    expires_in: u64,
    token_type: &'a str,
    /// The next session handle, for a client that presented its handle in the body: the one it
    /// presented no longer works. A browser gets it only in its cookie, out of script's reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// `POST /auth/refresh`: a new access token for a session handle, which rotates.
async fn refresh(state: &AppState, req: &Request) -> Answer {
    let presented = presented_handle(req)?;
    let via_cookie = presented.via_cookie();
    let refreshed = state.sessions().refresh(&client_address(req), &presented).await?;
    let body = Refreshed {
        access_token: refreshed.access_token.expose(),
        expires_in: refreshed.expires_in,
        token_type: &refreshed.token_type,
        refresh_token: (!via_cookie).then(|| refreshed.next.expose()),
    };
    let cookie = via_cookie.then(|| session_cookie(&refreshed.next));
    Ok(with_cookies(json_response(StatusCode::OK, &body), &cookie))
}

/// `POST /auth/logout` → 204: ends the session family and revokes its Auth0 refresh token.
async fn logout(state: &AppState, req: &Request) -> Answer {
    state.sessions().logout(&presented_handle(req)?).await?;
    Ok(with_cookies(no_content(), [&Cookie::cleared(SESSION_COOKIE)]))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    id: String,
    email: Option<String>,
    email_verified: bool,
    name: Option<String>,
    picture: Option<String>,
    created_at: String,
    last_login_at: String,
}

impl From<UserProfile> for Profile {
    fn from(p: UserProfile) -> Self {
        Self {
            id: p.id.to_string(),
            email: p.email,
            email_verified: p.email_verified,
            name: p.name,
            picture: p.picture,
            created_at: rfc3339(p.created_at),
            last_login_at: rfc3339(p.last_login_at),
        }
    }
}

/// `GET /me`: the caller's profile, created on first sight of a valid token.
async fn me(state: &AppState, caller: &UserCaller) -> Answer {
    Ok(json_response(StatusCode::OK, &Profile::from(state.accounts().profile(caller).await?)))
}
