//! `oauth-refresh`: users' connected accounts at every OAuth provider (`{provider}` in the path:
//! `google`, `microsoft`), and fresh access tokens for internal services — adapted from HTTP to the
//! connections use case. The browser routes (`start`, `callback`) always end back at the app.

use keyward::app::routes::{Answer, connection_provider};
use keyward::app::{AppState, Routes};
use keyward::auth::{Need, ServiceCaller, UserCaller};
use keyward::http::request::{client_address, cookie, path_user, query_param};
use keyward::http::response::{json_response, no_content, redirect, with_cookies};
use keyward::model::{Scope, rfc3339};
use keyward::oauth::connection_spec;
use keyward::secret::SessionHandle;
use keyward::store::OAuthConnection;
use keyward::use_cases::connections::{ConsentCallback, Next};
use keyward::use_cases::redirects::browser_cookie_name;
use keyward::use_cases::sessions::SESSION_COOKIE;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::ExposeSecret;
use serde::Serialize;

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "oauth-refresh";

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .signed_in("GET /me/oauth/{provider}/connect", |state, req, caller| Box::pin(connect(state, req, caller)))
        .public("GET /oauth/{provider}/start", |state, req| Box::pin(start(state, req)))
        .public("GET /oauth/{provider}/callback", |state, req| Box::pin(callback(state, req)))
        .user("GET /me/oauth/{provider}", Scope::ConnectionsRead, |state, req, caller| {
            Box::pin(status(state, req, caller))
        })
        .signed_in("DELETE /me/oauth/{provider}", |state, req, caller| Box::pin(disconnect(state, req, caller)))
        .service("GET /internal/users/{uid}/oauth/{provider}/token", Need::ConnectionInPath, |state, req, caller| {
            Box::pin(internal_token(state, req, caller))
        })
}

fn browser_session(req: &Request) -> Option<SessionHandle> {
    cookie(req, SESSION_COOKIE).map(SessionHandle::new)
}

fn follow(next: Next) -> Response<Body> {
    match next {
        Next::Consent { url, cookie } | Next::SignIn { url, cookie } => with_cookies(redirect(url.as_str()), [&cookie]),
        Next::Back { url, cookies } => with_cookies(redirect(&url), &cookies),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Consent {
    authorization_url: String,
}

/// `GET /me/oauth/{provider}/connect?returnTo=…` → the link the app opens in the user's browser.
async fn connect(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let connections = state.connections(connection_provider(req)?)?;
    let link = connections.link(caller, query_param(req, "returnTo")).await?;
    Ok(json_response(StatusCode::OK, &Consent { authorization_url: link.into() }))
}

/// `GET /oauth/{provider}/start?link=…`: the browser opening a link.
async fn start(state: &AppState, req: &Request) -> Answer {
    let connections = state.connections(connection_provider(req)?)?;
    let browser = browser_session(req);
    let next = connections.open_link(&client_address(req), query_param(req, "link"), browser.as_ref()).await?;
    Ok(follow(next))
}

/// `GET /oauth/{provider}/callback?code&state` (or `?error&state`): the provider sends the browser here.
async fn callback(state: &AppState, req: &Request) -> Answer {
    let connections = state.connections(connection_provider(req)?)?;
    let consent_state = query_param(req, "state");
    let browser = browser_session(req);
    let callback = ConsentCallback {
        state: consent_state,
        browser_nonce: consent_state.and_then(|s| cookie(req, &browser_cookie_name(s))),
        browser: browser.as_ref(),
        code: query_param(req, "code"),
        error: query_param(req, "error"),
    };
    Ok(follow(connections.finish(&callback).await?))
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
    /// Where the user sees, and can withdraw, the access they granted.
    consent_page: &'static str,
}

/// `GET /me/oauth/{provider}` → the connection's status (never its tokens).
async fn status(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    let provider = connection_provider(req)?;
    let consent_page = connection_spec(provider).consent_page();
    let view = match state.connections(provider)?.status(&caller.user).await? {
        None => ConnectionView {
            status: "disconnected",
            email: None,
            scopes: None,
            connected_at: None,
            last_refreshed_at: None,
            consent_page,
        },
        Some(OAuthConnection { status, email, scopes, connected_at, last_refreshed_at, .. }) => ConnectionView {
            status: status.as_str(),
            email: Some(email),
            scopes: Some(scopes),
            connected_at: Some(rfc3339(connected_at)),
            last_refreshed_at: last_refreshed_at.map(rfc3339),
            consent_page,
        },
    };
    Ok(json_response(StatusCode::OK, &view))
}

/// `DELETE /me/oauth/{provider}` → 204: revoked at the provider where it can be, then forgotten.
async fn disconnect(state: &AppState, req: &Request, caller: &UserCaller) -> Answer {
    state.connections(connection_provider(req)?)?.disconnect(caller).await?;
    Ok(no_content())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView<'a> {
    access_token: &'a str,
    expires_at: String,
    scopes: &'a [String],
    /// The connected account's address.
    email: &'a str,
    /// Whether the provider vouched for the address: an unverified one (most Microsoft addresses)
    /// says nothing about who owns the mailbox.
    email_verified: bool,
}

/// `GET /internal/users/{uid}/oauth/{provider}/token` → an access token valid for at least the
/// refresh margin.
async fn internal_token(state: &AppState, req: &Request, caller: &ServiceCaller) -> Answer {
    let connections = state.connections(connection_provider(req)?)?;
    let token = connections.fresh_token(caller, &path_user(req)?).await?;
    Ok(json_response(
        StatusCode::OK,
        &TokenView {
            access_token: token.access_token.expose_secret(),
            expires_at: rfc3339(token.expires_at),
            scopes: &token.scopes,
            email: &token.email,
            email_verified: token.email_verified,
        },
    ))
}
