//! keyward as an OAuth client of other services: the plumbing every token endpoint shares
//! (form-encoded requests, answers read by their OAuth `error` code, never by status or
//! description), PKCE, and the connection providers ([`connection`]), one module each, with
//! [`connection_spec`] their registry.

pub mod connection;
mod google;
mod microsoft;

use crate::model::OAuthProvider;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;
use zeroize::Zeroizing;

use crate::model::random_secret;
use crate::outbound::{Outbound, read_capped};

/// The registry of connection providers.
pub fn connection_spec(provider: OAuthProvider) -> &'static dyn connection::ConnectionSpec {
    match provider {
        OAuthProvider::Google => &google::Google,
        OAuthProvider::Microsoft => &microsoft::Microsoft,
    }
}

/// The largest answer an identity provider's endpoint may give (token, userinfo, JWKS): a few KiB
/// in practice; anything longer is refused unread.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A token endpoint's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthFailure {
    /// The service answered with an OAuth error code (`invalid_grant`, `invalid_token`, …).
    #[error("refused: {error}")]
    Refused { error: String },
    /// Unreachable, timed out, a 5xx, or an answer that is not the documented shape.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// A PKCE pair (RFC 7636, S256): the verifier stays with keyward (sealed at once, and zeroized
/// when the pair is dropped), the challenge goes in the URL.
pub struct Pkce {
    pub verifier: Zeroizing<String>,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = Zeroizing::new(random_secret());
        Self { challenge: challenge_of(&verifier), verifier }
    }
}

pub(crate) fn challenge_of(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// A token endpoint's success, as RFC 6749 §5.1 and OpenID Connect shape it. The tokens are
/// secrets from the moment they are read (zeroized when dropped).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    pub access_token: SecretString,
    #[serde(default)]
    pub id_token: Option<SecretString>,
    #[serde(default)]
    pub refresh_token: Option<SecretString>,
    #[serde(default)]
    pub expires_in: u64,
    #[serde(default = "bearer")]
    pub token_type: String,
    /// The scopes granted, space-separated (the user may have declined some).
    #[serde(default)]
    pub scope: Option<String>,
}

fn bearer() -> String {
    "Bearer".into()
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// An endpoint's status and body; the body is wiped when dropped (it may hold tokens).
pub(crate) type Answer = (u16, Zeroizing<Vec<u8>>);

/// POSTs a form (its body wiped once sent); the status and body of whatever answered. Transport errors drop the URL, which
/// may carry a token in a query (Google's revoke endpoint accepts one there).
pub(crate) async fn post_form(http: &Outbound, url: Url, form: &[(&str, &str)]) -> Result<Answer, OAuthFailure> {
    let http = http.client().map_err(|e| OAuthFailure::Unavailable(e.to_string()))?;
    let request = http.post(url).header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let response = request
        .body(crate::secret::wiped_form(form))
        .send()
        .await
        .map_err(|e| OAuthFailure::Unavailable(e.without_url().to_string()))?;
    read(response).await
}

/// An answer's status and body, refused when the body is longer than [`MAX_ANSWER_BYTES`].
pub(crate) async fn read(response: reqwest::Response) -> Result<Answer, OAuthFailure> {
    let status = response.status().as_u16();
    let (body, more) = read_capped(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| OAuthFailure::Unavailable(e.without_url().to_string()))?;
    let body = Zeroizing::new(body);
    if more {
        return Err(OAuthFailure::Unavailable(format!("an answer longer than {MAX_ANSWER_BYTES} bytes")));
    }
    Ok((status, body))
}

/// A token endpoint's answer: the tokens on 200, else its refusal.
pub(crate) fn tokens((status, body): Answer) -> Result<TokenAnswer, OAuthFailure> {
    if status != 200 {
        return Err(refusal((status, body)));
    }
    serde_json::from_slice(&body).map_err(|_| OAuthFailure::Unavailable("malformed token answer".into()))
}

/// An answer other than 200: an OAuth error keyed by its `error` field (services use 400, 401, 403
/// and 429 for the same codes), or the service being unavailable (5xx, or no OAuth error).
pub(crate) fn refusal((status, body): (u16, impl AsRef<[u8]>)) -> OAuthFailure {
    let body = body.as_ref();
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) if status < 500 && is_code(&e.error) => OAuthFailure::Refused { error: e.error },
        _ => OAuthFailure::Unavailable(format!("HTTP {status}")),
    }
}

/// OAuth error codes are short snake_case words; anything else is not kept.
fn is_code(value: &str) -> bool {
    !value.is_empty() && value.len() <= 64 && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_read_by_their_error_code() {
        let body = |s: &str| s.as_bytes().to_vec();
        assert_eq!(
            refusal((
                400,
                body(r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#)
            )),
            OAuthFailure::Refused { error: "invalid_grant".into() }
        );
        assert_eq!(
            refusal((429, body(r#"{"error":"slow_down"}"#))),
            OAuthFailure::Refused { error: "slow_down".into() }
        );
        assert_eq!(refusal((503, body(r#"{"error":"invalid_grant"}"#))), OAuthFailure::Unavailable("HTTP 503".into()));
        assert_eq!(refusal((400, body("<html>Bad Request</html>"))), OAuthFailure::Unavailable("HTTP 400".into()));
        assert_eq!(
            refusal((400, body(r#"{"error":"Robert'); DROP TABLE"}"#))),
            OAuthFailure::Unavailable("HTTP 400".into())
        );
    }

    /// An identity provider's answer is read up to 64 KiB; a longer one is refused unread, never
    /// buffered whole (a hostile or broken endpoint could stream forever).
    #[tokio::test]
    async fn answers_past_the_cap_are_refused() {
        use wiremock::matchers::any;
        use wiremock::{Mock, MockServer, ResponseTemplate};
        let server = MockServer::start().await;
        let token = r#"{"access_token":"at","token_type":"Bearer","expires_in":3600}"#;
        let padded = format!(r#"{{"access_token":"at","padding":"{}"}}"#, "x".repeat(MAX_ANSWER_BYTES));
        Mock::given(wiremock::matchers::path("/small"))
            .respond_with(ResponseTemplate::new(200).set_body_string(token))
            .mount(&server)
            .await;
        Mock::given(any()).respond_with(ResponseTemplate::new(200).set_body_string(padded)).mount(&server).await;
        let http = Outbound::new();
        let small = post_form(&http, format!("{}/small", server.uri()).parse().unwrap(), &[]).await.unwrap();
        assert!(tokens(small).is_ok());
        let large = post_form(&http, format!("{}/large", server.uri()).parse().unwrap(), &[]).await;
        assert!(matches!(large, Err(OAuthFailure::Unavailable(why)) if why.contains("longer than")));
    }

    #[test]
    fn pkce_challenge_is_the_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(challenge_of(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let pkce = Pkce::new();
        assert_eq!(pkce.challenge, challenge_of(&pkce.verifier));
        assert!(pkce.verifier.len() >= 43, "RFC 7636: 43 to 128 characters");
    }
}
