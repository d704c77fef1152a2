//! The Auth0 stand-in: OpenID discovery, the tenant's JWKS, and `POST /oauth/token` with the
//! resource-owner password grant for sandbox users, answering in Auth0's documented shapes
//! (form-encoded or JSON requests; `{"error", "error_description"}` failures).
//!
//! Sandbox users: any email address signs in with the password `sandbox`; an address containing
//! `+unverified` gets `email_verified: false`. Tokens are RS256, signed by a key committed in
//! `keys/` — public by design, which is safe because only a loopback issuer ever trusts it.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

const SIGNING_KEY_PEM: &str = include_str!("../keys/sandbox-auth0-rsa.pem");
const JWKS: &str = include_str!("../keys/sandbox-auth0-jwks.json");
const KEY_ID: &str = "keyward-sandbox-1";
/// The one password every sandbox user has.
pub const SANDBOX_PASSWORD: &str = "sandbox";
const TOKEN_LIFETIME_SECS: u64 = 86_400;

struct Tenant {
    issuer: String,
    signing_key: EncodingKey,
}

/// The stand-in's routes; fails only if the committed signing key is unreadable.
pub fn router(issuer: &str) -> jsonwebtoken::errors::Result<Router> {
    let signing_key = EncodingKey::from_rsa_pem(SIGNING_KEY_PEM.as_bytes())?;
    let tenant = Arc::new(Tenant { issuer: issuer.to_owned(), signing_key });
    Ok(Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/oauth/token", post(token))
        .with_state(tenant))
}

async fn discovery(State(tenant): State<Arc<Tenant>>) -> Json<serde_json::Value> {
    let issuer = &tenant.issuer;
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}authorize"),
        "token_endpoint": format!("{issuer}oauth/token"),
        "device_authorization_endpoint": format!("{issuer}oauth/device/code"),
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

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
}

/// Auth0 accepts the token request form-encoded or as JSON.
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
    scope: &'a str,
    azp: &'a str,
    email: &'a str,
    email_verified: bool,
}

fn password_grant(tenant: &Tenant, request: TokenRequest) -> Response {
    let (Some(username), Some(password)) = (request.username.as_deref(), request.password.as_deref()) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: username");
    };
    let Some(audience) = request.audience.as_deref() else {
        return oauth_error(StatusCode::FORBIDDEN, "access_denied", "Missing required parameter: audience");
    };
    if password != SANDBOX_PASSWORD || !username.contains('@') {
        return oauth_error(StatusCode::FORBIDDEN, "invalid_grant", "Wrong email or password.");
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let scope = request.scope.as_deref().unwrap_or("openid profile email");
    let claims = AccessClaims {
        iss: &tenant.issuer,
        sub: sandbox_subject(username),
        aud: vec![audience.to_owned(), format!("{}userinfo", tenant.issuer)],
        iat: now,
        exp: now + TOKEN_LIFETIME_SECS,
        scope,
        azp: request.client_id.as_deref().unwrap_or("keyward-sandbox"),
        email: username,
        email_verified: !username.contains("+unverified"),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.to_owned());
    match jsonwebtoken::encode(&header, &claims, &tenant.signing_key) {
        Ok(access_token) => Json(json!({
            "access_token": access_token,
            "scope": scope,
            "expires_in": TOKEN_LIFETIME_SECS,
            "token_type": "Bearer",
        }))
        .into_response(),
        Err(e) => oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &e.to_string()),
    }
}

/// A stable Auth0-style subject for a sandbox user: `auth0|` and 24 hex digits of the email's hash.
pub fn sandbox_subject(email: &str) -> String {
    let digest = Sha256::digest(email.to_ascii_lowercase().as_bytes());
    format!("auth0|{}", &hex::encode(digest)[..24])
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}
