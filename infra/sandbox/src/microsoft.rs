//! The Microsoft identity platform v2.0 stand-in (web apps), answering in Microsoft's documented
//! shapes (`platform-notes.md` §3), under `/microsoft/{tenant}/oauth2/v2.0/`:
//!
//! - `GET …/authorize`: the sign-in and consent page. With `login_hint` (what the page submits) it
//!   redirects with `code` and `state` (`response_mode=query`); `decision=deny` redirects with
//!   `error=access_denied`. PKCE S256 is required, as keyward always sends it.
//! - `POST …/token` (form-encoded): `authorization_code` (client secret, exact `redirect_uri`, PKCE
//!   verifier, code used once) and `refresh_token`. Every answer carries a new refresh token (they
//!   replace themselves on every use; the old one is not revoked) with `offline_access`, and an ID
//!   token with `openid`. Failures are Microsoft's `{"error", "error_description": "AADSTS…",
//!   "error_codes", "timestamp", "trace_id", "correlation_id", "error_uri"}`.
//!
//! There is no revocation endpoint: [`MicrosoftControls::revoke_sessions`] plays an administrator
//! (or the user) revoking every refresh token of an account, after which a refresh answers
//! `invalid_grant` (AADSTS50173), as it does on the real service.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::web::{TokenRequest, hidden_inputs, html_escape, pkce_matches, random_token, record_issued, redirect_back};

/// The sandbox's app registration, matching keyward's local-mode defaults.
pub const SANDBOX_CLIENT_ID: &str = "00000000-0000-4000-8000-00000000beef";
pub const SANDBOX_CLIENT_SECRET: &str = "sandbox-microsoft-client-secret";
/// Microsoft's access tokens live 60 to 90 minutes; the stand-in's an hour.
const ACCESS_LIFETIME_SECS: u64 = 3599;
/// The tenant id of every personal (Microsoft account) user.
const CONSUMERS_TENANT: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Knobs tests turn on the running stand-in.
pub struct MicrosoftControls {
    down: AtomicBool,
    access_lifetime_secs: AtomicU64,
    revoked: Mutex<HashSet<String>>,
}

impl Default for MicrosoftControls {
    fn default() -> Self {
        Self {
            down: AtomicBool::new(false),
            access_lifetime_secs: AtomicU64::new(ACCESS_LIFETIME_SECS),
            revoked: Mutex::new(HashSet::new()),
        }
    }
}

impl MicrosoftControls {
    /// While down, the token endpoint answers 503 `temporarily_unavailable`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// The `expires_in` of access tokens issued from now on.
    pub fn set_access_lifetime(&self, lifetime: std::time::Duration) {
        self.access_lifetime_secs.store(lifetime.as_secs(), Ordering::SeqCst);
    }

    /// Revokes every refresh token issued to `email` so far (`revokeSignInSessions`, a password reset).
    pub fn revoke_sessions(&self, email: &str) {
        if let Ok(mut revoked) = self.revoked.lock() {
            revoked.insert(email.to_ascii_lowercase());
        }
    }

    fn is_revoked(&self, email: &str) -> bool {
        self.revoked.lock().is_ok_and(|r| r.contains(&email.to_ascii_lowercase()))
    }
}

struct Microsoft {
    controls: Arc<MicrosoftControls>,
    grants: Mutex<Grants>,
}

#[derive(Default)]
struct Grants {
    codes: HashMap<String, AuthorizationCode>,
    /// Refresh token → the account and scopes it was granted for.
    refresh_tokens: HashMap<String, (String, String)>,
}

struct AuthorizationCode {
    redirect_uri: String,
    code_challenge: String,
    email: String,
    scope: String,
}

/// The stand-in's routes, and the controls tests hold.
pub fn router() -> (Arc<MicrosoftControls>, Router) {
    let controls = Arc::new(MicrosoftControls::default());
    let microsoft = Arc::new(Microsoft { controls: Arc::clone(&controls), grants: Mutex::new(Grants::default()) });
    let router = Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .with_state(microsoft);
    (controls, router)
}

/// Microsoft's object id for a sandbox account: a stable GUID.
pub fn sandbox_object_id(email: &str) -> String {
    let h = hex::encode(Sha256::digest(email.to_ascii_lowercase().as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// An AADSTS refusal with Microsoft's whole envelope.
fn aadsts(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = "0c5f1f6b-5b5e-4c8e-9a43-1d3c0e7a0b00";
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: {trace}\r\nCorrelation ID: {trace}\r\nTimestamp: 2026-12-04 00:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-12-04 00:00:00Z",
        "trace_id": trace,
        "correlation_id": trace,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: Option<String>,
    response_type: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    response_mode: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The page submits the account here (Microsoft takes it as a hint too).
    login_hint: Option<String>,
    /// `deny`: the consent page's "Cancel".
    decision: Option<String>,
}

/// `GET /{tenant}/oauth2/v2.0/authorize`. A bad client or redirect URI is shown on Microsoft's error
/// page, never redirected.
async fn authorize(
    State(microsoft): State<Arc<Microsoft>>,
    Path(_tenant): Path<String>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if q.client_id.as_deref() != Some(SANDBOX_CLIENT_ID) {
        return (StatusCode::BAD_REQUEST, Html("<h1>AADSTS700016</h1><p>Application not found in the directory.</p>"))
            .into_response();
    }
    let Some(redirect_uri) = q.redirect_uri.clone() else {
        return (
            StatusCode::BAD_REQUEST,
            Html("<h1>AADSTS900144</h1><p>The request body must contain redirect_uri.</p>"),
        )
            .into_response();
    };
    let back = |params: Vec<(&str, String)>| redirect_back(&redirect_uri, q.state.as_deref(), params);
    if q.response_type.as_deref() != Some("code") || q.response_mode.as_deref().is_some_and(|m| m != "query") {
        return back(vec![("error", "unsupported_response_type".into())]);
    }
    let (Some(scope), Some(challenge)) = (q.scope.clone(), q.code_challenge.clone()) else {
        return back(vec![("error", "invalid_request".into())]);
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return back(vec![("error", "invalid_request".into())]);
    }
    if q.decision.as_deref() == Some("deny") {
        return back(vec![
            ("error", "access_denied".into()),
            ("error_description", "AADSTS65004: User declined to consent to access the app.".into()),
        ]);
    }
    let Some(email) = q.login_hint.clone().filter(|e| e.contains('@')) else {
        return Html(consent_page(&q)).into_response();
    };
    let code = format!("M.C5{}", random_token(32));
    if let Ok(mut grants) = microsoft.grants.lock() {
        grants.codes.insert(
            code.clone(),
            AuthorizationCode { redirect_uri: redirect_uri.clone(), code_challenge: challenge, email, scope },
        );
    }
    back(vec![("code", code)])
}

/// A form repeating the authorization request with the account typed in.
fn consent_page(q: &AuthorizeQuery) -> String {
    let hidden = hidden_inputs(&[
        ("client_id", &q.client_id),
        ("response_type", &q.response_type),
        ("redirect_uri", &q.redirect_uri),
        ("scope", &q.scope),
        ("state", &q.state),
        ("response_mode", &q.response_mode),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
    ]);
    let scopes = html_escape(q.scope.as_deref().unwrap_or_default());
    format!(
        r#"<!doctype html><title>keyward sandbox Microsoft sign-in</title><h1>Connect a Microsoft account (sandbox)</h1>
<p>keyward asks for: <code>{scopes}</code></p>
<form method="get" action="authorize">{hidden}
<input name="login_hint" type="email" placeholder="you@outlook.com" required>
<button type="submit" name="decision" value="allow">Accept</button> <button type="submit" name="decision" value="deny" formnovalidate>Cancel</button></form>"#
    )
}

async fn token(
    State(microsoft): State<Arc<Microsoft>>,
    Path(_tenant): Path<String>,
    Form(request): Form<TokenRequest>,
) -> Response {
    if microsoft.controls.down.load(Ordering::SeqCst) {
        return aadsts(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error occurred.",
        );
    }
    if request.client_id.as_deref() != Some(SANDBOX_CLIENT_ID) {
        return aadsts(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            "Application not found in the directory.",
        );
    }
    if request.client_secret.as_deref() != Some(SANDBOX_CLIENT_SECRET) {
        return aadsts(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, "Invalid client secret provided.");
    }
    let Ok(mut grants) = microsoft.grants.lock() else {
        return aadsts(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            90033,
            "A transient error occurred.",
        );
    };
    let (email, scope) = match request.grant_type.as_deref() {
        Some("authorization_code") => {
            let Some(code) = request.code.as_deref().and_then(|c| grants.codes.remove(c)) else {
                return aadsts(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed.",
                );
            };
            if request.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
                return aadsts(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    50148,
                    "The redirect_uri doesn't match the one of the authorization request.",
                );
            }
            match request.code_verifier.as_deref() {
                Some(verifier) if pkce_matches(verifier, &code.code_challenge) => {}
                _ => {
                    return aadsts(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    );
                }
            }
            (code.email, code.scope)
        }
        Some("refresh_token") => {
            let known = request.refresh_token.as_deref().and_then(|rt| grants.refresh_tokens.get(rt)).cloned();
            match known {
                Some((email, _)) if microsoft.controls.is_revoked(&email) => {
                    return aadsts(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        50173,
                        "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                    );
                }
                Some(grant) => grant,
                None => {
                    return aadsts(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        9002313,
                        "Invalid request. Request is malformed or invalid.",
                    );
                }
            }
        }
        _ => {
            return aadsts(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "The app requested an unsupported grant type.",
            );
        }
    };
    let lifetime = microsoft.controls.access_lifetime_secs.load(Ordering::SeqCst);
    let access_token = format!("EwB4A8l6BAAU{}", random_token(48));
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope.split_whitespace().filter(|s| !matches!(*s, "openid" | "offline_access" | "profile" | "email")).collect::<Vec<_>>().join(" "),
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    if scopes.contains(&"offline_access") {
        let refresh_token = format!("M.C5{}", random_token(48));
        grants.refresh_tokens.insert(refresh_token.clone(), (email.clone(), scope.clone()));
        body["refresh_token"] = json!(refresh_token);
    }
    if scopes.contains(&"openid") {
        body["id_token"] = json!(id_token(&email, scopes.contains(&"email")));
    }
    Json(body).into_response()
}

/// An ID token for `email` (a personal account), signed with a key nobody checks: keyward reads the
/// claims of an ID token it got straight from the token endpoint.
fn id_token(email: &str, with_email: bool) -> String {
    let encode = |value: serde_json::Value| URL_SAFE_NO_PAD.encode(value.to_string());
    let oid = sandbox_object_id(email);
    let mut claims = json!({
        "ver": "2.0", "iss": format!("https://login.microsoftonline.com/{CONSUMERS_TENANT}/v2.0"),
        "sub": oid, "aud": SANDBOX_CLIENT_ID, "exp": 4_102_444_800_u64, "iat": 1_764_806_400_u64,
        "nbf": 1_764_806_400_u64, "name": email.split('@').next().unwrap_or_default(),
        "preferred_username": email, "oid": oid, "tid": CONSUMERS_TENANT,
    });
    if with_email {
        claims["email"] = json!(email);
    }
    let signature = random_token(32);
    record_issued(&signature);
    format!("{}.{}.{signature}", encode(json!({"typ": "JWT", "alg": "RS256", "kid": "sandbox"})), encode(claims))
}
