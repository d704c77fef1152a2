//! `oauth-refresh`: Google account connections, and fresh Google access tokens for internal
//! services. Tokens are sealed per user (`google-oauth`); a refresh is serialised per user by a
//! short lease on the connection, so concurrent callers cause one call to Google, not many.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use keyward::app::{AppState, health};
use keyward::auth::Grant;
use keyward::crypto::{EncryptionContext, Purpose, Sealed};
use keyward::http::{
    ApiError, allowed_return_to, json_response, no_content, path_user, query_param, redirect, route_key,
    route_not_found,
};
use keyward::model::{UserId, rfc3339};
use keyward::oauth::google::{GoogleClient, GoogleError};
use keyward::redirects::{self, RedirectError};
use keyward::secret::RefreshToken;
use keyward::session::{self, handle_hash};
use keyward::store::{Actor, AuditEntry, ConnectionStatus, OAuthConnection, StatePurpose, now_epoch};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "oauth-refresh";

/// How long one caller may hold the refresh of a connection: longer than a Google call may take
/// (the outbound client gives up after 10 s), so a lease outlives its holder only if that one died.
const LEASE_SECS: i64 = 15;
/// How often a caller waiting for another's refresh looks at the connection again.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/oauth-refresh" => Ok(health(state, FUNCTION)),
        "GET /me/oauth/google/connect" => connect(state, req).await,
        "GET /oauth/google/callback" => callback(state, req).await,
        "GET /me/oauth/google" => status(state, req).await,
        "DELETE /me/oauth/google" => disconnect(state, req).await,
        "GET /internal/users/{uid}/oauth/google/token" => internal_token(state, req).await,
        _ => Err(route_not_found()),
    }
}

fn google(state: &AppState) -> Result<&GoogleClient, ApiError> {
    state.google.as_ref().ok_or_else(|| ApiError::Unavailable {
        code: "google_not_configured",
        detail: "Google connections are not configured on this keyward deployment.".into(),
        retry_after_secs: 3600,
    })
}

/// The encryption context of one of a connection's tokens (`refresh-token` or `access-token`), so
/// neither can be opened as the other, nor as another user's.
fn token_context(user: &UserId, which: &str) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::GoogleOAuth, which)
}

async fn seal(state: &AppState, user: &UserId, which: &str, token: &str) -> Result<Sealed, ApiError> {
    Ok(state.envelope.seal(token.as_bytes(), &token_context(user, which)).await?)
}

async fn open(state: &AppState, user: &UserId, which: &str, sealed: &Sealed) -> Result<SecretString, ApiError> {
    Ok(state.envelope.open_text(sealed, &token_context(user, which)).await?)
}

async fn audit(state: &AppState, user: &UserId, actor: Actor, action: &str, outcome: &str) -> Result<(), ApiError> {
    let entry = AuditEntry {
        at: now_epoch(),
        actor,
        action: action.into(),
        target: Some("google".into()),
        outcome: outcome.into(),
    };
    Ok(state.store.audit().append(user, &entry).await?)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Consent {
    authorization_url: String,
}

/// `GET /me/oauth/google/connect?returnTo=…` → Google's consent URL, with a one-time state bound to
/// the user (and the validated `returnTo`) and a PKCE challenge.
async fn connect(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let google = google(state)?;
    keyward::account::require_verified_email(&state.store, &claims).await?;
    let return_to = query_param(req, "returnTo")
        .map(|raw| allowed_return_to(&state.config.auth0.return_origins, raw))
        .transpose()?;
    let purpose = StatePurpose::GoogleConnect;
    let started =
        redirects::start(&state.store, &state.envelope, purpose, Some(claims.user), return_to, false, now_epoch())
            .await?;
    let url = google.authorize_url(&started.state, &started.code_challenge);
    Ok(json_response(StatusCode::OK, &Consent { authorization_url: url.into() }))
}

/// `GET /oauth/google/callback?code&state` (or `?error&state`): Google sends the browser here.
async fn callback(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let google = google(state)?;
    let invalid_state = || {
        ApiError::bad_request(
            "invalid_state",
            "This connect link was already used, has expired or is unknown; connect again.",
        )
    };
    let raw_state = query_param(req, "state").ok_or_else(invalid_state)?;
    // Consumed first, whatever else the callback says: a state works once.
    let started =
        match redirects::finish(&state.store, &state.envelope, StatePurpose::GoogleConnect, raw_state, req).await {
            Ok(started) => started,
            Err(RedirectError::InvalidState) => return Err(invalid_state()),
            Err(other) => return Err(other.into()),
        };
    let user = started.user.ok_or_else(|| ApiError::Internal("a Google connect state without a user".into()))?;
    require_same_browser_user(state, req, &user).await?;
    if let Some(error) = query_param(req, "error") {
        let code = if error == "access_denied" { "access_denied" } else { "google_error" };
        audit(state, &user, Actor::User(user.clone()), "google.connect", code).await?;
        return Err(ApiError::bad_request(
            code,
            "Connecting Google was cancelled or refused at Google; nothing was stored. Connect again to retry.",
        ));
    }
    let code = query_param(req, "code")
        .ok_or_else(|| ApiError::bad_request("missing_code", "The callback carries no authorization code."))?;
    let tokens = google.exchange_code(code, started.verifier.expose_secret()).await.map_err(|e| match e {
        GoogleError::Refused { .. } => ApiError::bad_request(
            "code_rejected",
            "Google rejected the authorization code (used or expired); connect again.",
        ),
        other => other.into(),
    })?;
    let account = google.account(&tokens.access_token).await?;
    let existing = state.store.oauth_connections().get(&user).await?;
    let now = now_epoch();
    let refresh_token = match (&tokens.refresh_token, &existing) {
        (Some(fresh), _) => Some(seal(state, &user, "refresh-token", fresh.expose()).await?),
        // Google sends a refresh token only with consent; the stored one still serves the same account.
        (None, Some(stored)) if stored.email == account.email && stored.refresh_token.is_some() => {
            stored.refresh_token.clone()
        }
        (None, _) => {
            audit(state, &user, Actor::User(user.clone()), "google.connect", "consent_required").await?;
            return Err(ApiError::bad_request(
                "consent_required",
                "Google granted no offline access, so keyward cannot keep the connection fresh. Remove keyward at \
                 https://myaccount.google.com/permissions, then connect again and approve access.",
            ));
        }
    };
    let connection = OAuthConnection {
        user: user.clone(),
        email: account.email,
        scopes: tokens.scopes.clone().unwrap_or_else(|| google.settings().scopes.clone()),
        refresh_token,
        access_token: seal(state, &user, "access-token", tokens.access_token.expose()).await?,
        access_expires_at: now + tokens.expires_in as i64,
        status: ConnectionStatus::Connected,
        connected_at: now,
        last_refreshed_at: None,
        version: 0,
        refresh_lease_until: None,
    };
    let saved =
        state.store.oauth_connections().save(&connection, existing.map(|c| c.version)).await?.ok_or_else(|| {
            ApiError::Conflict {
                code: "concurrent_change",
                detail: "The Google connection changed meanwhile; connect again.".into(),
            }
        })?;
    audit(state, &user, Actor::User(user.clone()), "google.connect", "ok").await?;
    tracing::info!(user = %user, "google connected");
    Ok(match started.return_to {
        Some(target) => redirect(&target),
        None => json_response(StatusCode::OK, &ConnectionView::from(Some(&saved))),
    })
}

/// A connect completes only in the browser of the user who started it: its keyward session cookie
/// must be that user's current handle. Otherwise a link made by one user could attach another
/// person's Google account to it (CSRF on account linking).
async fn require_same_browser_user(state: &AppState, req: &Request, user: &UserId) -> Result<(), ApiError> {
    let Some(handle) = session::cookie_handle(req) else {
        return Err(ApiError::forbidden(
            "session_required",
            "Open the connect link in the browser where you are signed in to keyward; nothing was stored.",
        ));
    };
    let hash = handle_hash(&handle);
    let family = state.store.sessions().find(&hash).await?.filter(|f| f.active && f.current_handle == hash);
    match family {
        Some(family) if &family.user == user => Ok(()),
        _ => Err(ApiError::forbidden(
            "session_mismatch",
            "This connect link was started by another keyward session; nothing was stored.",
        )),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionView {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scopes: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connected_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_refreshed_at: Option<String>,
}

impl From<Option<&OAuthConnection>> for ConnectionView {
    fn from(connection: Option<&OAuthConnection>) -> Self {
        match connection {
            None => {
                Self { status: "disconnected", email: None, scopes: None, connected_at: None, last_refreshed_at: None }
            }
            Some(c) => Self {
                status: c.status.as_str(),
                email: Some(c.email.clone()),
                scopes: Some(c.scopes.clone()),
                connected_at: Some(rfc3339(c.connected_at)),
                last_refreshed_at: c.last_refreshed_at.map(rfc3339),
            },
        }
    }
}

/// `GET /me/oauth/google` → the connection's status (never its tokens).
async fn status(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let connection = state.store.oauth_connections().get(&claims.user).await?;
    Ok(json_response(StatusCode::OK, &ConnectionView::from(connection.as_ref())))
}

/// `DELETE /me/oauth/google` → 204: revoked at Google, then forgotten. Idempotent. While Google is
/// unreachable the connection is kept (503), so the revocation can be retried rather than lost.
async fn disconnect(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let claims = state.tokens.verify_request(req).await?;
    let user = claims.user;
    let Some(connection) = state.store.oauth_connections().get(&user).await? else {
        return Ok(no_content());
    };
    // Revoking either token revokes the grant; the refresh token outlives the access token.
    let token = match &connection.refresh_token {
        Some(sealed) => open(state, &user, "refresh-token", sealed).await?,
        None => open(state, &user, "access-token", &connection.access_token).await?,
    };
    match google(state)?.revoke(token.expose_secret()).await {
        Ok(()) => {}
        Err(GoogleError::Refused { error }) => {
            // Retrying cannot help; the user can still remove keyward in their Google account.
            tracing::warn!(user = %user, error = %error, "Google refused the revocation; forgetting the connection");
        }
        Err(e) => {
            audit(state, &user, Actor::User(user.clone()), "google.disconnect", "google_unavailable").await?;
            return Err(e.into());
        }
    }
    state.store.oauth_connections().delete(&user).await?;
    audit(state, &user, Actor::User(user.clone()), "google.disconnect", "ok").await?;
    tracing::info!(user = %user, "google disconnected");
    Ok(no_content())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    access_token: &'a str,
    expires_at: String,
    scopes: &'a [String],
}

/// `GET /internal/users/{uid}/oauth/google/token` (IAM, `google-oauth` grant) → a Google access
/// token valid for at least the refresh margin, refreshed first when needed — by one caller at a time.
async fn internal_token(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let caller = state.config.internal_principals.caller(req)?;
    caller.require(Grant::GoogleOAuth)?;
    let user = path_user(req)?;
    let google = google(state)?;
    let actor = Actor::Service(caller.arn.clone());
    let margin = google.settings().refresh_margin.as_secs() as i64;
    let give_up_at = Instant::now() + Duration::from_secs(LEASE_SECS as u64 + 2);
    // The version whose refresh this caller saw leased to another.
    let mut waited_on = None;
    loop {
        let now = now_epoch();
        let connection = state.store.oauth_connections().get(&user).await?.ok_or_else(|| {
            ApiError::not_found("google_not_connected", "This user has not connected a Google account.")
        })?;
        if connection.status == ConnectionStatus::ReconnectRequired {
            return Err(reconnect_required());
        }
        // A token another caller refreshed while this one waited is handed out as long as it is valid:
        // refreshing it again would only repeat what Google just answered.
        let refreshed_meanwhile = waited_on.is_some_and(|version| version != connection.version);
        let needed_secs = if refreshed_meanwhile { 0 } else { margin };
        if connection.access_expires_at - now > needed_secs {
            let token = open(state, &user, "access-token", &connection.access_token).await?;
            audit(state, &user, actor, "google_token.fetch", "ok").await?;
            return Ok(token_response(token.expose_secret(), connection.access_expires_at, &connection.scopes));
        }
        if connection.is_leased(now) {
            if Instant::now() >= give_up_at {
                return Err(refresh_busy());
            }
            waited_on = Some(connection.version);
            tokio::time::sleep(WAIT_STEP).await;
            continue;
        }
        if waited_on == Some(connection.version) {
            // The refresher gave its lease back without a new token: Google failed it just now.
            return Err(refresh_busy());
        }
        let leases = state.store.oauth_connections();
        if leases.take_refresh_lease(&user, connection.version, now, now + LEASE_SECS).await? {
            let refreshed = refresh(state, google, &connection, &actor).await;
            if refreshed.is_err() {
                leases.release_refresh_lease(&user, connection.version).await?;
            }
            return refreshed;
        }
        // Another caller took the lease between the read and the take: wait for its result.
    }
}

/// Refreshes the access token of `connection` (whose lease this caller holds) and hands it out.
async fn refresh(
    state: &AppState,
    google: &GoogleClient,
    connection: &OAuthConnection,
    actor: &Actor,
) -> Result<Response<Body>, ApiError> {
    let user = &connection.user;
    let Some(sealed_refresh) = &connection.refresh_token else {
        mark_reconnect_required(state, connection).await?;
        return Err(reconnect_required());
    };
    let refresh_token = RefreshToken::new(open(state, user, "refresh-token", sealed_refresh).await?.expose_secret());
    let tokens = match google.refresh(&refresh_token).await {
        Ok(tokens) => tokens,
        Err(GoogleError::Refused { error }) if error == "invalid_grant" => {
            mark_reconnect_required(state, connection).await?;
            audit(state, user, actor.clone(), "google.refresh", "invalid_grant").await?;
            return Err(reconnect_required());
        }
        Err(e) => {
            let outcome =
                if matches!(e, GoogleError::Refused { .. }) { "google_refused" } else { "google_unavailable" };
            audit(state, user, actor.clone(), "google.refresh", outcome).await?;
            return Err(e.into());
        }
    };
    let now = now_epoch();
    let access_token = tokens.access_token;
    let updated = OAuthConnection {
        access_token: seal(state, user, "access-token", access_token.expose()).await?,
        // Google does not rotate refresh tokens; a new one replaces the old only when sent.
        refresh_token: match &tokens.refresh_token {
            Some(fresh) => Some(seal(state, user, "refresh-token", fresh.expose()).await?),
            None => connection.refresh_token.clone(),
        },
        access_expires_at: now + tokens.expires_in as i64,
        scopes: tokens.scopes.unwrap_or_else(|| connection.scopes.clone()),
        last_refreshed_at: Some(now),
        ..connection.clone()
    };
    // `None`: the lease ran out and another caller saved first; this token is just as valid.
    let saved = state.store.oauth_connections().save(&updated, Some(connection.version)).await?;
    audit(state, user, actor.clone(), "google_token.fetch", "refreshed").await?;
    tracing::info!(user = %user, "google access token refreshed");
    let scopes = saved.map_or(updated.scopes, |s| s.scopes);
    Ok(token_response(access_token.expose(), updated.access_expires_at, &scopes))
}

/// Google refused the refresh token for good: only the user reconnecting helps, so stop trying.
async fn mark_reconnect_required(state: &AppState, connection: &OAuthConnection) -> Result<(), ApiError> {
    let marked = OAuthConnection { status: ConnectionStatus::ReconnectRequired, ..connection.clone() };
    state.store.oauth_connections().save(&marked, Some(connection.version)).await?;
    tracing::info!(user = %connection.user, "google refresh token refused; reconnect required");
    Ok(())
}

fn reconnect_required() -> ApiError {
    ApiError::Conflict {
        code: "google_reconnect_required",
        detail: "Google no longer accepts this user's grant; the user must reconnect Google in keyward.".into(),
    }
}

fn refresh_busy() -> ApiError {
    ApiError::Unavailable {
        code: "google_unavailable",
        detail:
            "Refreshing the Google access token failed just now; the stored connection is unchanged. Retry shortly."
                .into(),
        retry_after_secs: 5,
    }
}

fn token_response(access_token: &str, expires_at: i64, scopes: &[String]) -> Response<Body> {
    json_response(StatusCode::OK, &TokenView { access_token, expires_at: rfc3339(expires_at), scopes })
}
