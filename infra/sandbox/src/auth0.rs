//! The Auth0 stand-in, answering in Auth0's documented shapes (form-encoded or JSON requests;
//! `{"error", "error_description"}` failures keyed by `error`, with Auth0's statuses):
//!
//! - OpenID discovery and the tenant's JWKS;
//! - `GET /authorize` (authorization code + PKCE S256 only) with a sign-in page for sandbox users;
//! - `POST /oauth/device/code`, and the activation page (`/activate`) where a person approves or
//!   denies a user code;
//! - `POST /oauth/token` grants: `authorization_code` (client secret, exact `redirect_uri`, PKCE
//!   verifier checked, code used once), device code (403 `authorization_pending`, 429 `slow_down`,
//!   `expired_token` exactly once then `invalid_grant`), `refresh_token` (rotation with reuse
//!   detection: an already-used token revokes its whole family), and `password` for tests;
//! - `POST /oauth/revoke`.
//!
//! Sandbox users: any email address signs in (password `sandbox` for the password grant); an address
//! containing `+unverified` gets `email_verified: false`. Access tokens carry `email` and
//! `email_verified` as an Auth0 Action would add them; an address containing `+bare` gets them as
//! Auth0 issues access tokens without one (not at all), and `+namespaced` under
//! `https://keyward.dev/` (as an Action must name custom claims). Tokens are RS256, signed by a key committed
//! in `keys/` — public by design, which is safe because only a loopback issuer ever trusts it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::web::{hidden_inputs, html_escape, oauth_error, pkce_matches, random_token, redirect_back};

const SIGNING_KEY_PEM: &str = include_str!("../keys/sandbox-auth0-rsa.pem");
const JWKS: &str = include_str!("../keys/sandbox-auth0-jwks.json");
const KEY_ID: &str = "keyward-sandbox-1";
/// The one password every sandbox user has.
pub const SANDBOX_PASSWORD: &str = "sandbox";
/// The client secret of every confidential (Regular Web App) client of the sandbox tenant.
pub const SANDBOX_CLIENT_SECRET: &str = "sandbox-client-secret";
const TOKEN_LIFETIME_SECS: u64 = 86_400;
/// RFC 8628 §6.1's base-20 alphabet, which Auth0 uses for user codes by default.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Device-flow timings: Auth0's are a 5 s interval and 15 minutes; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub struct DeviceTimings {
    pub interval: Duration,
    pub lifetime: Duration,
}

impl Default for DeviceTimings {
    fn default() -> Self {
        Self { interval: Duration::from_secs(5), lifetime: Duration::from_secs(900) }
    }
}

struct Tenant {
    issuer: String,
    signing_key: EncodingKey,
    device: DeviceTimings,
    flows: Mutex<Flows>,
}

/// What the tenant remembers between requests.
#[derive(Default)]
struct Flows {
    codes: HashMap<String, AuthorizationCode>,
    devices: HashMap<String, DeviceCode>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    revoked_families: Vec<String>,
}

struct AuthorizationCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    grant: Grant,
}

/// Who signed in, and for what.
#[derive(Clone)]
struct Grant {
    email: String,
    audience: String,
    scope: String,
    client_id: String,
}

enum DeviceStatus {
    Pending,
    Approved(String),
    Denied,
    /// Tokens were issued, or `expired_token` was already answered: every later poll gets `invalid_grant`.
    Spent,
}

struct DeviceCode {
    user_code: String,
    client_id: String,
    audience: String,
    scope: String,
    expires_at: Instant,
    last_poll: Option<Instant>,
    status: DeviceStatus,
}

struct RefreshGrant {
    grant: Grant,
    family: String,
    used: bool,
}

/// The stand-in's routes; fails only if the committed signing key is unreadable.
pub fn router(issuer: &str, device: DeviceTimings) -> jsonwebtoken::errors::Result<Router> {
    let signing_key = EncodingKey::from_rsa_pem(SIGNING_KEY_PEM.as_bytes())?;
    let tenant =
        Arc::new(Tenant { issuer: issuer.to_owned(), signing_key, device, flows: Mutex::new(Flows::default()) });
    Ok(Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/authorize", get(authorize))
        .route("/oauth/device/code", post(device_code))
        .route("/activate", get(activation_page).post(activate))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .with_state(tenant))
}

async fn discovery(State(tenant): State<Arc<Tenant>>) -> Json<serde_json::Value> {
    let issuer = &tenant.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}authorize"),
        "token_endpoint": format!("{issuer}oauth/token"),
        "device_authorization_endpoint": format!("{issuer}oauth/device/code"),
        "revocation_endpoint": format!("{issuer}oauth/revoke"),
        "userinfo_endpoint": format!("{issuer}userinfo"),
        "jwks_uri": format!("{issuer}.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256", "plain"],
        "grant_types_supported": [
            "authorization_code", "refresh_token", "password",
            "urn:ietf:params:oauth:grant-type:device_code"
        ],
    }))
}

async fn jwks() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], JWKS).into_response()
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    /// The sandbox's sign-in page submits the email here (Auth0 also takes it as a hint).
    login_hint: Option<String>,
    /// The sign-in page's "Deny" button.
    deny: Option<String>,
}

/// `GET /authorize`: with `login_hint` (the sign-in page's answer) signs the user in and redirects
/// with a code; without, shows the sign-in page. Malformed requests get Auth0's error page (400),
/// never a redirect, as `redirect_uri` is not yet trusted.
async fn authorize(State(tenant): State<Arc<Tenant>>, Query(q): Query<AuthorizeQuery>) -> Response {
    let (Some(client_id), Some(redirect_uri)) = (q.client_id.clone(), q.redirect_uri.clone()) else {
        return (StatusCode::BAD_REQUEST, Html("<h1>invalid_request: missing client_id or redirect_uri</h1>"))
            .into_response();
    };
    let back = |params: Vec<(&str, String)>| redirect_back(&redirect_uri, q.state.as_deref(), params);
    let error = |code: &str, description: &str| {
        back(vec![("error", code.to_owned()), ("error_description", description.to_owned())])
    };
    if q.response_type.as_deref() != Some("code") {
        return error("unsupported_response_type", "Unsupported response type");
    }
    let Some(challenge) = q.code_challenge.clone() else {
        return error("invalid_request", "Missing required parameter: code_challenge");
    };
    if q.code_challenge_method.as_deref() != Some("S256") {
        return error("invalid_request", "Auth0 supports only S256 code_challenge_method");
    }
    if q.deny.is_some() {
        return error("access_denied", "User did not authorize the request");
    }
    let Some(email) = q.login_hint.clone().filter(|e| e.contains('@')) else {
        return Html(sign_in_page(&q)).into_response();
    };
    let grant = Grant {
        email,
        audience: q.audience.clone().unwrap_or_default(),
        scope: q.scope.clone().unwrap_or_else(|| "openid".into()),
        client_id: client_id.clone(),
    };
    let code = random_token(24);
    if let Ok(mut flows) = tenant.flows.lock() {
        flows.codes.insert(
            code.clone(),
            AuthorizationCode { client_id, redirect_uri: redirect_uri.clone(), code_challenge: challenge, grant },
        );
    }
    back(vec![("code", code)])
}

/// A form that repeats the authorize request with the email typed in.
fn sign_in_page(q: &AuthorizeQuery) -> String {
    let hidden = hidden_inputs(&[
        ("response_type", &q.response_type),
        ("client_id", &q.client_id),
        ("redirect_uri", &q.redirect_uri),
        ("scope", &q.scope),
        ("audience", &q.audience),
        ("state", &q.state),
        ("code_challenge", &q.code_challenge),
        ("code_challenge_method", &q.code_challenge_method),
    ]);
    format!(
        r#"<!doctype html><title>keyward sandbox sign-in</title><h1>Sign in (sandbox Auth0)</h1>
<p>Any email address signs in; one containing <code>+unverified</code> has an unverified email.</p>
<form method="get" action="authorize">{hidden}
<input name="login_hint" type="email" placeholder="you@example.com" required>
<button type="submit">Sign in</button> <button type="submit" name="deny" value="1" formnovalidate>Deny</button></form>"#
    )
}

#[derive(Deserialize)]
struct DeviceCodeRequest {
    client_id: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
}

async fn device_code(State(tenant): State<Arc<Tenant>>, Form(request): Form<DeviceCodeRequest>) -> Response {
    let Some(client_id) = request.client_id else {
        return oauth_error(StatusCode::UNAUTHORIZED, "unauthorized_client", "Missing required parameter: client_id");
    };
    let device_code = random_token(32);
    let user_code: String = (0..8)
        .map(|i| {
            let letter = USER_CODE_ALPHABET[rand::random_range(0..USER_CODE_ALPHABET.len())] as char;
            if i == 4 { format!("-{letter}") } else { letter.to_string() }
        })
        .collect();
    let verification_uri = format!("{}activate", tenant.issuer);
    let record = DeviceCode {
        user_code: user_code.clone(),
        client_id,
        audience: request.audience.unwrap_or_default(),
        scope: request.scope.unwrap_or_else(|| "openid".into()),
        expires_at: Instant::now() + tenant.device.lifetime,
        last_poll: None,
        status: DeviceStatus::Pending,
    };
    if let Ok(mut flows) = tenant.flows.lock() {
        flows.devices.insert(device_code.clone(), record);
    }
    Json(json!({
        "device_code": device_code,
        "user_code": user_code,
        "verification_uri": verification_uri,
        "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
        "expires_in": tenant.device.lifetime.as_secs(),
        "interval": tenant.device.interval.as_secs(),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ActivationQuery {
    user_code: Option<String>,
}

async fn activation_page(Query(q): Query<ActivationQuery>) -> Html<String> {
    let code = html_escape(q.user_code.as_deref().unwrap_or(""));
    Html(format!(
        r#"<!doctype html><title>keyward sandbox device activation</title><h1>Activate your device (sandbox Auth0)</h1>
<form method="post" action="activate">
<label>Code <input name="user_code" value="{code}" required></label>
<label>Email <input name="email" type="email" placeholder="you@example.com" required></label>
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button></form>"#
    ))
}

#[derive(Deserialize)]
struct Activation {
    user_code: String,
    email: String,
    decision: String,
}

/// The activation page's answer: approves or denies the pending device code with that user code.
async fn activate(State(tenant): State<Arc<Tenant>>, Form(form): Form<Activation>) -> Response {
    let wanted = form.user_code.trim().to_ascii_uppercase();
    let Ok(mut flows) = tenant.flows.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Some(device) = flows
        .devices
        .values_mut()
        .find(|d| d.user_code == wanted && matches!(d.status, DeviceStatus::Pending) && d.expires_at > Instant::now())
    else {
        return (StatusCode::BAD_REQUEST, Html("<h1>That code is invalid or expired.</h1>".to_owned())).into_response();
    };
    device.status = match form.decision.as_str() {
        "approve" if form.email.contains('@') => DeviceStatus::Approved(form.email),
        _ => DeviceStatus::Denied,
    };
    Html("<h1>Done. You can return to your device.</h1>".to_owned()).into_response()
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    device_code: Option<String>,
    refresh_token: Option<String>,
    token: Option<String>,
}

/// Auth0 accepts these requests form-encoded or as JSON.
async fn token_request(req: Request) -> Result<TokenRequest, Response> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let parsed = if is_json {
        Json::<TokenRequest>::from_request(req, &()).await.map(|Json(r)| r).ok()
    } else {
        Form::<TokenRequest>::from_request(req, &()).await.map(|Form(r)| r).ok()
    };
    parsed.ok_or_else(|| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Invalid request body."))
}

async fn token(State(tenant): State<Arc<Tenant>>, req: Request) -> Response {
    let request = match token_request(req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    match request.grant_type.as_deref() {
        Some("password") => password_grant(&tenant, request),
        Some("authorization_code") => code_grant(&tenant, request),
        Some("urn:ietf:params:oauth:grant-type:device_code") => device_grant(&tenant, request),
        Some("refresh_token") => refresh_grant(&tenant, request),
        Some("client_credentials") => client_credentials_grant(&tenant, request),
        Some(other) => oauth_error(
            StatusCode::FORBIDDEN,
            "unsupported_grant_type",
            &format!("Grant type '{other}' not allowed for the client."),
        ),
        None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: grant_type"),
    }
}

#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: Vec<String>,
    iat: u64,
    exp: u64,
    /// Unique per token, so two issued within one second (two quick refreshes) differ.
    jti: String,
    scope: &'a str,
    azp: &'a str,
    /// What an Action adds: `email` and `email_verified`, plain or namespaced (or nothing).
    #[serde(flatten)]
    profile: HashMap<String, serde_json::Value>,
}

#[derive(Serialize)]
struct MachineClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    scope: &'a str,
    azp: &'a str,
    gty: &'a str,
}

#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: String,
    aud: &'a str,
    iat: u64,
    exp: u64,
    email: &'a str,
    email_verified: bool,
    name: &'a str,
    picture: String,
}

/// A fresh `jti`: 128 random bits, hex.
fn token_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn sign<T: Serialize>(tenant: &Tenant, claims: &T) -> jsonwebtoken::errors::Result<String> {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_owned());
    let token = jsonwebtoken::encode(&header, claims, &tenant.signing_key)?;
    // The signature is what makes a token a bearer credential; header and claims are not secret.
    if let Some(signature) = token.rsplit('.').next() {
        crate::web::record_issued(signature);
    }
    Ok(token)
}

/// Auth0's token response for a grant: an access token for the audience, an ID token when `openid`
/// was asked for, and a refresh token (of `family`, or a new one) with `offline_access`.
fn issue(tenant: &Tenant, flows: &mut Flows, grant: &Grant, family: Option<String>) -> Response {
    let now = now_secs();
    let subject = sandbox_subject(&grant.email);
    let verified = !grant.email.contains("+unverified");
    let namespace = if grant.email.contains("+namespaced") { "https://keyward.dev/" } else { "" };
    let profile = if grant.email.contains("+bare") {
        HashMap::new()
    } else {
        HashMap::from([
            (format!("{namespace}email"), json!(grant.email)),
            (format!("{namespace}email_verified"), json!(verified)),
        ])
    };
    let access = AccessClaims {
        iss: &tenant.issuer,
        sub: subject.clone(),
        aud: vec![grant.audience.clone(), format!("{}userinfo", tenant.issuer)],
        iat: now,
        exp: now + TOKEN_LIFETIME_SECS,
        jti: token_id(),
        scope: &grant.scope,
        azp: &grant.client_id,
        profile,
    };
    let name = grant.email.split('@').next().unwrap_or_default();
    let id = IdClaims {
        iss: &tenant.issuer,
        sub: subject,
        aud: &grant.client_id,
        iat: now,
        exp: now + 36_000,
        email: &grant.email,
        email_verified: verified,
        name,
        picture: format!(
            "https://s.gravatar.com/avatar/{}",
            &hex::encode(Sha256::digest(grant.email.as_bytes()))[..32]
        ),
    };
    let (Ok(access_token), Ok(id_token)) = (sign(tenant, &access), sign(tenant, &id)) else {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed");
    };
    let mut body = json!({
        "access_token": access_token,
        "scope": grant.scope,
        "expires_in": TOKEN_LIFETIME_SECS,
        "token_type": "Bearer",
    });
    let scopes: Vec<&str> = grant.scope.split(' ').collect();
    if scopes.contains(&"openid") {
        body["id_token"] = json!(id_token);
    }
    if scopes.contains(&"offline_access") {
        let refresh_token = format!("v1.{}", random_token(40));
        let family = family.unwrap_or_else(|| random_token(12));
        flows.refresh_tokens.insert(refresh_token.clone(), RefreshGrant { grant: grant.clone(), family, used: false });
        body["refresh_token"] = json!(refresh_token);
    }
    Json(body).into_response()
}

fn password_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    let (Some(username), Some(password)) = (request.username, request.password.as_deref()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: username");
    };
    let Some(audience) = request.audience else {
        return oauth_error(StatusCode::FORBIDDEN, "access_denied", "Missing required parameter: audience");
    };
    if password != SANDBOX_PASSWORD || !username.contains('@') {
        return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Wrong email or password.");
    }
    let grant = Grant {
        email: username,
        audience,
        scope: request.scope.unwrap_or_else(|| "openid profile email".into()),
        client_id: request.client_id.unwrap_or_else(|| "keyward-sandbox".into()),
    };
    let Ok(mut flows) = tenant.flows.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    issue(tenant, &mut flows, &grant, None)
}

/// A machine-to-machine token, as Auth0 issues one: `sub` is `{client_id}@clients`, `gty` is
/// `client-credentials`, and nobody's email is in it. A client authenticates with the sandbox secret.
fn client_credentials_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    let (Some(client_id), Some(audience)) = (request.client_id, request.audience) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: client_id");
    };
    if request.client_secret.as_deref() != Some(SANDBOX_CLIENT_SECRET) {
        return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let now = now_secs();
    let claims = MachineClaims {
        iss: &tenant.issuer,
        sub: format!("{client_id}@clients"),
        aud: &audience,
        iat: now,
        exp: now + TOKEN_LIFETIME_SECS,
        jti: token_id(),
        scope: request.scope.as_deref().unwrap_or(""),
        azp: &client_id,
        gty: "client-credentials",
    };
    match sign(tenant, &claims) {
        Ok(access_token) => Json(serde_json::json!({
            "access_token": access_token,
            "scope": claims.scope,
            "expires_in": TOKEN_LIFETIME_SECS,
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A Regular Web App's code exchange: client secret, the same `redirect_uri`, and the verifier
/// whose S256 hash is the challenge sent to `/authorize`. A code works once.
fn code_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    if request.client_secret.as_deref() != Some(SANDBOX_CLIENT_SECRET) {
        return oauth_error(StatusCode::UNAUTHORIZED, "access_denied", "Unauthorized");
    }
    let Ok(mut flows) = tenant.flows.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let Some(code) = request.code.and_then(|c| flows.codes.remove(&c)) else {
        return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Invalid authorization code");
    };
    if request.client_id.as_deref() != Some(code.client_id.as_str()) {
        return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Invalid authorization code");
    }
    if request.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::FORBIDDEN,
            "invalid_grant",
            "The redirect_uri MUST match the registered callback URL for this application.",
        );
    }
    let verified = request.code_verifier.as_deref().is_some_and(|v| pkce_matches(v, &code.code_challenge));
    if !verified {
        return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Failed to verify code verifier");
    }
    issue(tenant, &mut flows, &code.grant, None)
}

fn device_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    let Ok(mut flows) = tenant.flows.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let interval = tenant.device.interval;
    let now = Instant::now();
    let invalid = || oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Invalid or expired device code.");
    let Some(device) = request.device_code.as_ref().and_then(|c| flows.devices.get_mut(c)) else {
        return invalid();
    };
    if request.client_id.as_deref() != Some(device.client_id.as_str()) {
        return invalid();
    }
    let too_soon = device.last_poll.is_some_and(|at| now.duration_since(at) < interval);
    device.last_poll = Some(now);
    if matches!(device.status, DeviceStatus::Spent) {
        return invalid();
    }
    if device.expires_at <= now {
        device.status = DeviceStatus::Spent;
        return oauth_error(StatusCode::FORBIDDEN, "expired_token", "The device_code has expired.");
    }
    if too_soon {
        let message = format!("You are polling faster than the specified interval of {} seconds.", interval.as_secs());
        return oauth_error(StatusCode::TOO_MANY_REQUESTS, "slow_down", &message);
    }
    let grant = match std::mem::replace(&mut device.status, DeviceStatus::Spent) {
        DeviceStatus::Pending => {
            device.status = DeviceStatus::Pending;
            return oauth_error(
                StatusCode::FORBIDDEN,
                "authorization_pending",
                "User has yet to authorize device code.",
            );
        }
        DeviceStatus::Denied => {
            return oauth_error(
                StatusCode::FORBIDDEN,
                "access_denied",
                "User cancelled the confirmation prompt or consent page.",
            );
        }
        DeviceStatus::Spent => return invalid(),
        DeviceStatus::Approved(email) => Grant {
            email,
            audience: device.audience.clone(),
            scope: device.scope.clone(),
            client_id: device.client_id.clone(),
        },
    };
    issue(tenant, &mut flows, &grant, None)
}

/// Rotation with reuse detection: each use returns a new token of the same family; presenting an
/// already-used token revokes the whole family.
fn refresh_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    let Ok(mut flows) = tenant.flows.lock() else { return StatusCode::INTERNAL_SERVER_ERROR.into_response() };
    let invalid = || oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Unknown or invalid refresh token.");
    let Some(token) = request.refresh_token else { return invalid() };
    let Some(entry) = flows.refresh_tokens.get_mut(&token) else { return invalid() };
    if request.client_id.as_deref() != Some(entry.grant.client_id.as_str()) {
        return invalid();
    }
    let (family, was_used, grant) = (entry.family.clone(), entry.used, entry.grant.clone());
    entry.used = true;
    if flows.revoked_families.contains(&family) {
        return invalid();
    }
    if was_used {
        flows.revoked_families.push(family);
        return invalid();
    }
    issue(tenant, &mut flows, &grant, Some(family))
}

/// `POST /oauth/revoke`: revokes the refresh token's whole family; 200 whether or not it was known.
async fn revoke(State(tenant): State<Arc<Tenant>>, req: Request) -> Response {
    let request = match token_request(req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let Some(token) = request.token else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: token");
    };
    if let Ok(mut flows) = tenant.flows.lock()
        && let Some(family) = flows.refresh_tokens.get(&token).map(|e| e.family.clone())
    {
        flows.revoked_families.push(family);
    }
    StatusCode::OK.into_response()
}

/// A stable Auth0-style subject for a sandbox user: `auth0|` and 24 hex digits of the email's hash.
pub fn sandbox_subject(email: &str) -> String {
    let digest = Sha256::digest(email.to_ascii_lowercase().as_bytes());
    format!("auth0|{}", &hex::encode(digest)[..24])
}
