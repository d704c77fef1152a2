//! `login-callback`: web sign-in through Auth0 (authorization code + PKCE S256 + one-time state),
//! keyward sessions (rotating handles; Auth0 refresh tokens never leave keyward), and `GET /me`.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::auth::auth0::Auth0Error;
use keyward::http::{
    ApiError, allowed_return_to, json_body, json_response, no_content, query_param, redirect, route_key,
    route_not_found,
};
use keyward::model::{ClientKind, random_secret, rfc3339};
use keyward::redirects::{self, RedirectError};
use keyward::secret::{RefreshToken, SessionHandle};
use keyward::session::{self, SESSION_COOKIE, handle_hash, refresh_context};
use keyward::store::{ProfileUpdate, SESSION_IDLE_SECS, SessionFamily, StatePurpose, UserProfile, now_epoch};
use keyward::throttle::{self, AnonymousAction};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "login-callback";

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/login-callback" => Ok(health(state, FUNCTION)),
        "GET /auth/config" => Ok(config(state)),
        "GET /auth/login" => login(state, req).await,
        "GET /auth/callback" => callback(state, req).await,
        "POST /auth/refresh" => refresh(state, req).await,
        "POST /auth/logout" => logout(state, req).await,
        "GET /me" => me(state, req).await,
        _ => Err(route_not_found()),
    }
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

/// `GET /auth/login?returnTo=…` → 302 to Auth0 with a fresh state and PKCE challenge, the state
/// bound to this browser by a cookie.
async fn login(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    throttle::admit(&state.store, &state.config.anonymous_limits, req, AnonymousAction::Login, now_epoch()).await?;
    let return_to = match query_param(req, "returnTo") {
        Some(raw) => Some(allowed_return_to(&state.config.auth0.return_origins, raw)?),
        None => state.config.auth0.return_origins.first().map(|origin| format!("{origin}/")),
    };
    let started =
        redirects::start(&state.store, &state.envelope, StatePurpose::Auth0Login, None, return_to, true, now_epoch())
            .await?;
    let url = state.auth0.authorize_url(&started.state, &started.code_challenge)?;
    let mut response = redirect(url.as_str());
    if let Some(cookie) = started.browser_cookie.as_deref() {
        set_cookie(&mut response, cookie);
    }
    Ok(response)
}

/// `GET /auth/callback?code&state` (or `?error&state` from Auth0), in the browser that started the
/// sign-in (its state cookie).
async fn callback(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let invalid_state = || {
        ApiError::bad_request(
            "invalid_state",
            "This sign-in link was already used, has expired, is unknown or was started in another browser; sign \
             in again.",
        )
    };
    let raw_state = query_param(req, "state").ok_or_else(invalid_state)?;
    // Consumed first, whatever else the callback says: a state works once.
    let login = match redirects::finish(&state.store, &state.envelope, StatePurpose::Auth0Login, raw_state, req).await {
        Ok(login) => login,
        Err(RedirectError::InvalidState) => return Err(invalid_state()),
        Err(other) => return Err(other.into()),
    };
    if let Some(error) = query_param(req, "error") {
        let code = if error == "access_denied" { "access_denied" } else { "auth0_error" };
        tracing::info!(error = code, "Auth0 sign-in refused");
        return Err(ApiError::bad_request(
            code,
            "Sign-in was cancelled or refused at Auth0; nothing was stored. Sign in again to retry.",
        ));
    }
    let code = query_param(req, "code")
        .ok_or_else(|| ApiError::bad_request("missing_code", "The callback carries no authorization code."))?;

    let tokens = state.auth0.exchange_code(code, login.verifier.expose_secret()).await.map_err(|e| match e {
        Auth0Error::Refused { .. } => ApiError::bad_request(
            "code_rejected",
            "Auth0 rejected the sign-in code (used, expired or not ours); sign in again.",
        ),
        other => other.into(),
    })?;
    let (identity, handle) = session::complete(state, &tokens, ClientKind::Web).await?;

    let mut response = match login.return_to {
        Some(target) => redirect(&target),
        None => json_response(StatusCode::OK, &serde_json::json!({ "signedIn": true, "user": identity.user.as_str() })),
    };
    set_session_cookie(&mut response, Some(&handle));
    set_cookie(&mut response, &redirects::clear_browser_cookie(raw_state));
    Ok(response)
}

/// Sets (or, with `None`, clears) the session cookie.
fn set_session_cookie(response: &mut Response<Body>, handle: Option<&SessionHandle>) {
    let cookie = match handle {
        Some(h) => format!(
            "{SESSION_COOKIE}={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={SESSION_IDLE_SECS}",
            h.expose()
        ),
        None => format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0"),
    };
    set_cookie(response, &cookie);
}

fn set_cookie(response: &mut Response<Body>, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HandleBody {
    refresh_token: SecretString,
}

/// The session handle of a request: the cookie (browsers) or `{"refreshToken"}` (CLIs).
fn presented_handle(req: &Request) -> Result<(SessionHandle, bool), ApiError> {
    if let Some(handle) = session::cookie_handle(req) {
        return Ok((handle, true));
    }
    let body: HandleBody = json_body(req)?;
    Ok((SessionHandle::new(body.refresh_token.expose_secret()), false))
}

fn session_refused(code: &'static str, detail: &str) -> ApiError {
    ApiError::Unauthorized { code, detail: detail.into() }
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
async fn refresh(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    throttle::admit(&state.store, &state.config.anonymous_limits, req, AnonymousAction::Refresh, now_epoch()).await?;
    let (handle, via_cookie) = presented_handle(req)?;
    let presented = handle_hash(&handle);
    let family =
        state.store.sessions().find(&presented).await?.ok_or_else(|| {
            session_refused("invalid_session", "This session is unknown or has expired; sign in again.")
        })?;
    if !family.active {
        return Err(session_refused("session_revoked", "This session has ended; sign in again."));
    }
    if family.current_handle != presented {
        end_family(state, &family).await?;
        tracing::warn!(user = %family.user, "a rotated session handle was reused; session family revoked");
        return Err(session_refused(
            "session_reused",
            "This session handle was already used; the session has been ended for safety. Sign in again.",
        ));
    }
    let client =
        ClientKind::parse(&family.client).ok_or_else(|| ApiError::Internal("unknown session client".into()))?;
    let context = refresh_context(&family.user, &family.id);
    let current = RefreshToken::new(state.envelope.open_text(&family.sealed_refresh, &context).await?.expose_secret());
    let tokens = match state.auth0.refresh(&current, client).await {
        Ok(tokens) => tokens,
        Err(Auth0Error::Refused { error }) => {
            state.store.sessions().revoke(&family.id, now_epoch()).await?;
            tracing::info!(user = %family.user, error = %error, "Auth0 refused the refresh; session ended");
            return Err(session_refused(
                "reauthentication_required",
                "Auth0 no longer accepts this session; sign in again.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    // Auth0 rotates refresh tokens; without rotation the old one stays valid and is kept.
    let next_refresh = tokens.refresh_token.as_ref().unwrap_or(&current);
    let sealed = state.envelope.seal(next_refresh.expose().as_bytes(), &context).await?;
    let next = SessionHandle::new(random_secret());
    if !state.store.sessions().rotate(&family, &presented, &handle_hash(&next), &sealed, now_epoch()).await? {
        end_family(state, &family).await?;
        return Err(session_refused(
            "session_reused",
            "This session handle was used twice at once; the session has been ended for safety. Sign in again.",
        ));
    }
    let mut response = json_response(
        StatusCode::OK,
        &Refreshed {
            access_token: tokens.access_token.expose(),
            expires_in: tokens.expires_in,
            token_type: &tokens.token_type,
            refresh_token: (!via_cookie).then(|| next.expose()),
        },
    );
    if via_cookie {
        set_session_cookie(&mut response, Some(&next));
    }
    Ok(response)
}

/// Ends a session family here and at Auth0 (revoking its refresh token, and so its Auth0 family).
async fn end_family(state: &AppState, family: &SessionFamily) -> Result<(), ApiError> {
    state.store.sessions().revoke(&family.id, now_epoch()).await?;
    let client = ClientKind::parse(&family.client).unwrap_or(ClientKind::Web);
    let context = refresh_context(&family.user, &family.id);
    let token = RefreshToken::new(state.envelope.open_text(&family.sealed_refresh, &context).await?.expose_secret());
    if let Err(e) = state.auth0.revoke(&token, client).await {
        // The session is already dead here; Auth0's token expires on its own schedule.
        tracing::warn!(error = %e, "Auth0 revocation failed");
    }
    Ok(())
}

/// `POST /auth/logout` → 204: ends the session family and revokes its Auth0 refresh token.
async fn logout(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let (handle, _) = presented_handle(req)?;
    if let Some(family) = state.store.sessions().find(&handle_hash(&handle)).await?.filter(|f| f.active) {
        end_family(state, &family).await?;
        tracing::info!(user = %family.user, "signed out");
    }
    let mut response = no_content();
    set_session_cookie(&mut response, None);
    Ok(response)
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
async fn me(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let profile = match state.store.users().get(&claims.user).await? {
        Some(profile) => profile,
        None => {
            let update = ProfileUpdate {
                id: claims.user.clone(),
                email: claims.email.clone(),
                email_verified: claims.email_verified.unwrap_or(false),
                name: None,
                picture: None,
            };
            state.store.users().upsert(&update, now_epoch()).await?
        }
    };
    Ok(json_response(StatusCode::OK, &Profile::from(profile)))
}
