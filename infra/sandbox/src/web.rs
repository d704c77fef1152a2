//! What the web stand-ins share: random tokens, redirects back to a client, escaping, OAuth errors.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

/// A fresh random token (a code, a device code, a refresh or access token), recorded in [`issued`].
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    let token = URL_SAFE_NO_PAD.encode(buf);
    record_issued(&token);
    token
}

static ISSUED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

pub(crate) fn record_issued(secret: &str) {
    if let Ok(mut issued) = ISSUED.lock() {
        issued.push(secret.to_owned());
    }
}

/// Every secret the stand-ins of this process have handed out so far (codes, device codes,
/// refresh tokens, access tokens and the signatures of signed tokens), so the leak audit can look
/// for each in keyward's logs.
pub fn issued() -> Vec<String> {
    ISSUED.lock().map(|issued| issued.clone()).unwrap_or_default()
}

/// 302 Found to the client's `redirect_uri` with `params` and the `state` it sent, as Auth0 and
/// Google redirect.
pub(crate) fn redirect_back(redirect_uri: &str, state: Option<&str>, params: Vec<(&str, String)>) -> Response {
    let query: Vec<String> = params
        .into_iter()
        .chain(state.map(|s| ("state", s.to_owned())))
        .map(|(k, v)| format!("{k}={}", urlencode(&v)))
        .collect();
    let mut url = redirect_uri.to_owned();
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(&query.join("&"));
    (StatusCode::FOUND, [(header::LOCATION, url)]).into_response()
}

/// A token endpoint's form (RFC 6749 §4.1.3 and §6), as Google and Microsoft take it.
#[derive(serde::Deserialize)]
pub(crate) struct TokenRequest {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub refresh_token: Option<String>,
}

/// RFC 7636 S256: the verifier hashes to the challenge the authorization request carried.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge
}

fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn html_escape(value: &str) -> String {
    value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Hidden form fields repeating a request's parameters (those it had).
pub(crate) fn hidden_inputs(fields: &[(&str, &Option<String>)]) -> String {
    fields
        .iter()
        .filter_map(|(name, value)| {
            value.as_ref().map(|v| format!(r#"<input type="hidden" name="{name}" value="{}">"#, html_escape(v)))
        })
        .collect()
}

/// `{"error", "error_description"}`, the body Auth0 and Google send with a refusal.
pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}
