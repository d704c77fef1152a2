//! The Google OAuth stand-in (web-server apps), answering in Google's documented shapes:
//!
//! - `GET /o/oauth2/v2/auth`: the consent screen. With `login_hint` (what the page submits) it
//!   grants the asked scopes and redirects with `code`, `scope` and `state`; `decision=deny`
//!   redirects with `error=access_denied`. PKCE S256 is required, as keyward always sends it.
//! - `POST /token` (form-encoded): `authorization_code` (client secret, exact `redirect_uri`, PKCE
//!   verifier, code used once) and `refresh_token`. A refresh token comes with the first consent of
//!   an account and with every `prompt=consent`, never on refresh. Failures are
//!   `{"error","error_description"}`: `invalid_grant` "Token has been expired or revoked." (400),
//!   `invalid_client` (401), `redirect_uri_mismatch` (400).
//! - `POST /revoke` (`token` in the form or the query): revokes the whole grant; an unknown token
//!   gets 400 `invalid_token`.
//! - `GET /v1/userinfo` (bearer): OpenID Connect's `{sub, email, email_verified}`.
//!
//! Sandbox accounts: any email consents; one containing `+no-refresh` never gets a refresh token
//! (as an account that consented before without `prompt=consent`). [`GoogleControls`] lets tests
//! take Google down, shorten access tokens and slow the token endpoint.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::web::{TokenRequest, hidden_inputs, html_escape, oauth_error, pkce_matches, random_token, redirect_back};

/// The sandbox's OAuth client, matching keyward's local-mode defaults.
pub const SANDBOX_CLIENT_ID: &str = "keyward-sandbox.apps.googleusercontent.com";
pub const SANDBOX_CLIENT_SECRET: &str = "sandbox-google-client-secret";
/// Google's access tokens live about an hour.
const ACCESS_LIFETIME_SECS: u64 = 3599;

/// Knobs tests turn on the running stand-in.
pub struct GoogleControls {
    down: AtomicBool,
    access_lifetime_secs: AtomicU64,
    token_latency_ms: AtomicU64,
}

impl Default for GoogleControls {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            access_lifetime_secs: AtomicU64::new(ACCESS_LIFETIME_SECS),
            token_latency_ms: AtomicU64::new(0),
        }
    }
}

impl GoogleControls {
    /// While down, every endpoint answers 503 as Google's front ends do.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The `expires_in` of access tokens issued from now on.
    pub fn set_access_lifetime(&self, lifetime: Duration) {
        self.access_lifetime_secs.store(lifetime.as_secs(), Ordering::SeqCst);
    }

    /// How long the token endpoint takes before answering.
    pub fn set_token_latency(&self, latency: Duration) {
        self.token_latency_ms.store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }
}

struct Google {
    controls: Arc<GoogleControls>,
    accounts: Mutex<Accounts>,
}

#[derive(Default)]
struct Accounts {
    codes: HashMap<String, AuthorizationCode>,
    /// Refresh token → its grant.
    grants: HashMap<String, GrantRecord>,
    access_tokens: HashMap<String, AccessRecord>,
    /// Accounts that consented to the sandbox client before.
    consented: HashSet<String>,
}

struct AuthorizationCode {
    redirect_uri: String,
    code_challenge: String,
    email: String,
    scope: String,
    with_refresh_token: bool,
}

struct GrantRecord {
    email: String,
    scope: String,
    revoked: bool,
}

struct AccessRecord {
    email: String,
    expires_at: Instant,
    /// The refresh token of the grant, when there is one: revoking either revokes both.
    grant: Option<String>,
    revoked: bool,
}

/// The stand-in's routes, and the controls tests hold.
pub fn router() -> (Arc<GoogleControls>, Router) {
    let controls = Arc::new(GoogleControls::default());
    let google = Arc::new(Google { controls: Arc::clone(&controls), accounts: Mutex::new(Accounts::default()) });
    let router = Router::new()
        .route("/o/oauth2/v2/auth", get(consent))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/v1/userinfo", get(userinfo))
        .with_state(google);
    (controls, router)
}

/// Google's subject for a sandbox account: a stable string of 21 digits.
pub fn sandbox_subject(email: &str) -> String {
    let digest = Sha256::digest(email.to_ascii_lowercase().as_bytes());
    let digits: String = digest.iter().map(|b| char::from(b'0' + b % 10)).take(20).collect();
    format!("1{digits}")
}

fn unavailable() -> Response {
    let body = json!({ "error": { "code": 503, "message": "The service is currently unavailable.", "status": "UNAVAILABLE" } });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

#[derive(Deserialize)]
struct ConsentQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    access_type: Option<String>,
    prompt: Option<String>,
    include_granted_scopes: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The consent page submits the account here (Google takes it as a hint too).
    login_hint: Option<String>,
    /// `deny`: the consent page's "Cancel".
    decision: Option<String>,
}

/// `GET /o/oauth2/v2/auth`. Errors in the client or redirect URI are shown on Google's error page
/// (400), never redirected, since the redirect URI is not trusted yet.
async fn consent(State(google): State<Arc<Google>>, Query(q): Query<ConsentQuery>) -> Response {
    if q.client_id.as_deref() != Some(SANDBOX_CLIENT_ID) {
        return (
            StatusCode::UNAUTHORIZED,
            Html("<h1>Error 401: invalid_client</h1><p>The OAuth client was not found.</p>"),
        )
            .into_response();
    }
    let Some(redirect_uri) = q.redirect_uri.clone() else {
        return (StatusCode::BAD_REQUEST, Html("<h1>Error 400: invalid_request</h1><p>Missing redirect_uri.</p>"))
            .into_response();
    };
    let back = |params: Vec<(&str, String)>| redirect_back(&redirect_uri, q.state.as_deref(), params);
    if q.response_type.as_deref() != Some("code") {
        return back(vec![("error", "unsupported_response_type".into())]);
    }
    let (Some(scope), Some(challenge)) = (q.scope.clone(), q.code_challenge.clone()) else {
        return back(vec![("error", "invalid_request".into())]);
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return back(vec![("error", "invalid_request".into())]);
    }
    if q.decision.as_deref() == Some("deny") {
        return back(vec![("error", "access_denied".into())]);
    }
    let Some(email) = q.login_hint.clone().filter(|e| e.contains('@')) else {
        return Html(consent_page(&q)).into_response();
    };
    let code = format!("4/0sandbox-{}", random_token(24));
    if let Ok(mut accounts) = google.accounts.lock() {
        // Offline access yields a refresh token on the first consent, and on every forced one.
        let first = accounts.consented.insert(email.clone());
        let offline = q.access_type.as_deref() == Some("offline");
        let with_refresh_token =
            offline && (first || q.prompt.as_deref() == Some("consent")) && !email.contains("+no-refresh");
        accounts.codes.insert(
            code.clone(),
            AuthorizationCode {
                redirect_uri: redirect_uri.clone(),
                code_challenge: challenge,
                email,
                scope: scope.clone(),
                with_refresh_token,
            },
        );
    }
    back(vec![("code", code), ("scope", scope)])
}

/// A form repeating the authorization request with the account typed in.
fn consent_page(q: &ConsentQuery) -> String {
    let hidden = hidden_inputs(&[
        ("response_type", &q.response_type),
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("scope", &q.scope),
        ("state", &q.state),
        ("access_type", &q.access_type),
        ("prompt", &q.prompt),
        ("include_granted_scopes", &q.include_granted_scopes),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
    ]);
    let scopes = html_escape(q.scope.as_deref().unwrap_or_default());
    format!(
        r#"<!doctype html><title>keyward sandbox Google consent</title><h1>Connect a Google account (sandbox)</h1>
<p>keyward asks for: <code>{scopes}</code></p>
<form method="get" action="auth">{hidden}
<input name="login_hint" type="email" placeholder="you@gmail.com" required>
<button type="submit" name="decision" value="allow">Allow</button> <button type="submit" name="decision" value="deny" formnovalidate>Cancel</button></form>"#
    )
}

async fn token(State(google): State<Arc<Google>>, Form(request): Form<TokenRequest>) -> Response {
    let latency = google.controls.token_latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    if google.controls.is_down() {
        return unavailable();
    }
    if request.client_id.as_deref() != Some(SANDBOX_CLIENT_ID)
        || request.client_secret.as_deref() != Some(SANDBOX_CLIENT_SECRET)
    {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    let Ok(mut accounts) = google.accounts.lock() else {
        return unavailable();
    };
    let lifetime = google.controls.access_lifetime_secs.load(Ordering::SeqCst);
    match request.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = request.code.as_deref().and_then(|c| accounts.codes.remove(c)) else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
            };
            if request.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
                return oauth_error(StatusCode::BAD_REQUEST, "redirect_uri_mismatch", "Bad Request");
            }
            let Some(verifier) = request.code_verifier.as_deref() else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing code verifier.");
            };
            if !pkce_matches(verifier, &code.code_challenge) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid code verifier.");
            }
            let refresh_token = code.with_refresh_token.then(|| format!("1//sandbox-{}", random_token(32)));
            if let Some(rt) = &refresh_token {
                accounts.grants.insert(
                    rt.clone(),
                    GrantRecord { email: code.email.clone(), scope: code.scope.clone(), revoked: false },
                );
            }
            let access_token = issue_access(&mut accounts, &code.email, refresh_token.clone(), lifetime);
            let mut body = json!({
                "access_token": access_token,
                "expires_in": lifetime,
                "scope": code.scope,
                "token_type": "Bearer",
            });
            if let Some(rt) = refresh_token {
                body["refresh_token"] = json!(rt);
            }
            Json(body).into_response()
        }
        Some("refresh_token") => {
            let Some(rt) = request.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "Missing required parameter: refresh_token",
                );
            };
            let (email, scope) = match accounts.grants.get(&rt) {
                Some(grant) if !grant.revoked => (grant.email.clone(), grant.scope.clone()),
                _ => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Token has been expired or revoked.");
                }
            };
            let access_token = issue_access(&mut accounts, &email, Some(rt), lifetime);
            Json(
                json!({ "access_token": access_token, "expires_in": lifetime, "scope": scope, "token_type": "Bearer" }),
            )
            .into_response()
        }
        Some(other) => {
            oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &format!("Invalid grant_type: {other}"))
        }
        None => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type: "),
    }
}

fn issue_access(accounts: &mut Accounts, email: &str, grant: Option<String>, lifetime: u64) -> String {
    let token = format!("ya29.sandbox-{}", random_token(32));
    let record = AccessRecord {
        email: email.to_owned(),
        expires_at: Instant::now() + Duration::from_secs(lifetime),
        grant,
        revoked: false,
    };
    accounts.access_tokens.insert(token.clone(), record);
    token
}

#[derive(Deserialize)]
struct RevokeRequest {
    token: Option<String>,
}

async fn revoke(
    State(google): State<Arc<Google>>,
    Query(query): Query<RevokeRequest>,
    Form(form): Form<RevokeRequest>,
) -> Response {
    if google.controls.is_down() {
        return unavailable();
    }
    let invalid = || oauth_error(StatusCode::BAD_REQUEST, "invalid_token", "Token expired or revoked");
    let Some(token) = form.token.or(query.token) else {
        return invalid();
    };
    let Ok(mut accounts) = google.accounts.lock() else {
        return unavailable();
    };
    // Either token of a grant revokes the whole grant.
    let now = Instant::now();
    let grant = if accounts.grants.get(&token).is_some_and(|g| !g.revoked) {
        Some(token.clone())
    } else {
        match accounts.access_tokens.get(&token) {
            Some(access) if !access.revoked && access.expires_at > now => access.grant.clone(),
            _ => return invalid(),
        }
    };
    if let Some(record) = grant.as_ref().and_then(|g| accounts.grants.get_mut(g)) {
        record.revoked = true;
    }
    for (issued, access) in accounts.access_tokens.iter_mut() {
        if *issued == token || (grant.is_some() && access.grant == grant) {
            access.revoked = true;
        }
    }
    StatusCode::OK.into_response()
}

async fn userinfo(State(google): State<Arc<Google>>, headers: HeaderMap) -> Response {
    if google.controls.is_down() {
        return unavailable();
    }
    let invalid = || {
        let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_request", "Invalid Credentials");
        if let Ok(value) =
            header::HeaderValue::from_str(r#"Bearer realm="https://accounts.google.com/", error="invalid_token""#)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    };
    let token =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return invalid();
    };
    let Ok(accounts) = google.accounts.lock() else {
        return unavailable();
    };
    match accounts.access_tokens.get(token) {
        Some(access) if !access.revoked && access.expires_at > Instant::now() => Json(json!({
            "sub": sandbox_subject(&access.email),
            "email": access.email,
            "email_verified": true,
        }))
        .into_response(),
        _ => invalid(),
    }
}
