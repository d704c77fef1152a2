//! HTTP edge: RFC 9457 problem+json errors, strict request body parsing, JSON responses.
//!
//! [`ApiError::into_response`] is the one place where an error becomes an HTTP response. Every layer's
//! error converts into [`ApiError`]; a 5xx never carries internal detail (that goes to the log).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::AuthError;
use crate::crypto::CryptoError;
use crate::providers::{Failure, FailureKind, KeyShapeError};
use crate::store::StoreError;

/// Largest request body keyward accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const PROBLEM_JSON: &str = "application/problem+json";

/// An error on its way to the client. Each variant is one HTTP status; `code` is the stable,
/// machine-readable reason clients switch on, `detail` the human sentence.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    #[error("{detail}")]
    Unauthorized { code: &'static str, detail: String },
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error("{detail}")]
    NotFound { code: &'static str, detail: String },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// Not enough credits for what was asked; nothing changed.
    #[error("{detail}")]
    PaymentRequired { code: &'static str, detail: String },
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("{detail}")]
    TooManyRequests { code: &'static str, detail: String, retry_after_secs: u64 },
    /// A dependency (AWS, an identity provider) is down or throttling; retrying later helps.
    #[error("{detail}")]
    Unavailable { code: &'static str, detail: String, retry_after_secs: u64 },
    /// A third party answered in a way retrying does not fix (a refused client, say).
    #[error("{detail}")]
    BadGateway { code: &'static str, detail: String },
    /// A provider refused a key, or could not be asked: 422 for the key's problems, 502 when the
    /// provider is unreachable, 504 when it did not answer in time.
    #[error("{}", .0.message())]
    Provider(Box<Failure>),
    /// A bug or an unexpected state. The reason is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The RFC 9457 body.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_uri: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    provider: Option<ProviderFacts<'a>>,
}

/// What keyward may tell about a provider's refusal: never its text, only its codes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProviderFacts<'a> {
    provider: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_request_id: Option<&'a str>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest { code, detail: detail.into() }
    }

    pub fn not_found(code: &'static str, detail: impl Into<String>) -> Self {
        Self::NotFound { code, detail: detail.into() }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Forbidden { code, detail: detail.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PaymentRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::Provider(failure) => match failure.kind {
                FailureKind::Unreachable => StatusCode::BAD_GATEWAY,
                FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Unauthorized { code, .. }
            | Self::Forbidden { code, .. }
            | Self::NotFound { code, .. }
            | Self::Conflict { code, .. }
            | Self::PaymentRequired { code, .. }
            | Self::Unprocessable { code, .. }
            | Self::TooManyRequests { code, .. }
            | Self::Unavailable { code, .. }
            | Self::BadGateway { code, .. } => code,
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::Provider(failure) => failure.kind.code(),
            Self::Internal(_) => "internal_error",
        }
    }

    /// The single mapping from errors to HTTP responses.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let retry_after = match &self {
            Self::TooManyRequests { retry_after_secs, .. } | Self::Unavailable { retry_after_secs, .. } => {
                Some(*retry_after_secs)
            }
            Self::Provider(failure) => failure.retry_after_secs,
            _ => None,
        };
        let detail = match &self {
            Self::Internal(reason) => {
                tracing::error!(reason = %reason, "internal error");
                "keyward hit an unexpected error; it has been logged.".to_owned()
            }
            other => {
                if status.is_server_error() {
                    tracing::warn!(code = other.code(), detail = %other, "dependency unavailable");
                }
                other.to_string()
            }
        };
        let code = self.code();
        let problem = Problem {
            type_uri: format!("https://keyward.dev/problems/{}", code.replace('_', "-")),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: &detail,
            code,
            retry_after,
            provider: match &self {
                Self::Provider(failure) => Some(ProviderFacts {
                    provider: failure.provider.slug(),
                    provider_status: failure.status,
                    provider_code: failure.provider_code.as_deref(),
                    provider_request_id: failure.request_id.as_deref(),
                }),
                _ => None,
            },
        };
        let body = serde_json::to_string(&problem).unwrap_or_else(|_| String::from("{}"));
        let mut response = Response::new(Body::Text(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        // RFC 6750 §3: a refused token is `invalid_token`; a token without the scope is
        // `insufficient_scope`.
        let challenge = match &self {
            Self::Unauthorized { code, .. } => Some(("invalid_token", *code)),
            Self::Forbidden { code: code @ "insufficient_scope", .. } => Some(("insufficient_scope", *code)),
            _ => None,
        };
        if let Some((error, code)) = challenge {
            let challenge = format!("Bearer realm=\"keyward\", error=\"{error}\", error_description=\"{code}\"");
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

impl From<crate::auth::auth0::Auth0Error> for ApiError {
    fn from(err: crate::auth::auth0::Auth0Error) -> Self {
        use crate::auth::auth0::Auth0Error;
        match err {
            Auth0Error::Refused { error } => {
                Self::BadRequest { code: "auth0_refused", detail: format!("Auth0 refused the request ({error}).") }
            }
            Auth0Error::Unavailable(_) | Auth0Error::Secret(_) => {
                tracing::warn!(error = %err, "Auth0 call failed");
                Self::Unavailable {
                    code: "identity_provider_unavailable",
                    detail: "The identity provider is unavailable; retry shortly.".into(),
                    retry_after_secs: 5,
                }
            }
        }
    }
}

impl From<crate::oauth::google::GoogleError> for ApiError {
    fn from(err: crate::oauth::google::GoogleError) -> Self {
        use crate::oauth::google::GoogleError;
        tracing::warn!(error = %err, "Google call failed");
        match err {
            GoogleError::Refused { .. } => Self::BadGateway {
                code: "google_refused",
                detail: "Google refused keyward's request; the stored connection is unchanged.".into(),
            },
            GoogleError::Unavailable(_) | GoogleError::Secret(_) => Self::Unavailable {
                code: "google_unavailable",
                detail: "Google is unavailable; the stored connection is unchanged. Retry shortly.".into(),
                retry_after_secs: 5,
            },
        }
    }
}

impl From<crate::account::AccountError> for ApiError {
    fn from(err: crate::account::AccountError) -> Self {
        use crate::account::AccountError;
        match err {
            AccountError::EmailUnverified => Self::Forbidden { code: "email_unverified", detail: err.to_string() },
            AccountError::Store(e) => e.into(),
        }
    }
}

impl From<crate::throttle::ThrottleError> for ApiError {
    fn from(err: crate::throttle::ThrottleError) -> Self {
        use crate::throttle::ThrottleError;
        match err {
            ThrottleError::Limited { retry_after_secs } => {
                Self::TooManyRequests { code: "rate_limited", detail: err.to_string(), retry_after_secs }
            }
            ThrottleError::Store(e) => e.into(),
        }
    }
}

impl From<crate::redirects::RedirectError> for ApiError {
    fn from(err: crate::redirects::RedirectError) -> Self {
        use crate::redirects::RedirectError;
        match err {
            RedirectError::InvalidState => Self::bad_request(
                "invalid_state",
                "This link was already used, has expired, is unknown or was started in another browser; start again.",
            ),
            RedirectError::Store(e) => e.into(),
            RedirectError::Crypto(e) => e.into(),
        }
    }
}

impl From<crate::secrets::SecretError> for ApiError {
    fn from(err: crate::secrets::SecretError) -> Self {
        tracing::warn!(error = %err, "a secret is unavailable");
        Self::Unavailable {
            code: "secret_unavailable",
            detail: "A secret keyward needs is unavailable; retry shortly.".into(),
            retry_after_secs: 5,
        }
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        Self::Provider(Box::new(failure))
    }
}

impl From<KeyShapeError> for ApiError {
    fn from(err: KeyShapeError) -> Self {
        Self::BadRequest { code: err.code(), detail: err.to_string() }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Throttled | StoreError::Unavailable(_) => Self::Unavailable {
                code: "store_unavailable",
                detail: "Storage is temporarily unavailable; retry shortly.".into(),
                retry_after_secs: 1,
            },
            StoreError::InvalidCursor => Self::bad_request(
                "invalid_cursor",
                "`cursor` is not one this listing gave out; start from the first page.",
            ),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CryptoError> for ApiError {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::KeyServiceUnavailable(_) => Self::Unavailable {
                code: "key_service_unavailable",
                detail: "The key service is temporarily unavailable; retry shortly.".into(),
                retry_after_secs: 1,
            },
            // A record that fails authentication is data corruption or tampering, never the caller's input.
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::KeysUnavailable => Self::Unavailable {
                code: "identity_provider_unavailable",
                detail: err.to_string(),
                retry_after_secs: 5,
            },
            AuthError::NoServiceIdentity
            | AuthError::PrincipalNotAllowed
            | AuthError::GrantMissing
            | AuthError::InsufficientScope => Self::Forbidden { code: err.code(), detail: err.to_string() },
            _ => Self::Unauthorized { code: err.code(), detail: err.to_string() },
        }
    }
}

/// The request body's bytes exactly as sent (signatures are computed over them), at most `limit`.
pub fn raw_body(req: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > limit { Err(ApiError::PayloadTooLarge { limit }) } else { Ok(bytes) }
}

/// Parses a JSON request body into `T`, strictly: `application/json`, at most [`MAX_BODY_BYTES`],
/// valid UTF-8, valid JSON of the right shape. Errors never quote the body (it may hold a secret).
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request("unsupported_content_type", "Send the request body as application/json."));
    }
    let bytes = raw_body(req, MAX_BODY_BYTES)?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("invalid_utf8", "The request body is not valid UTF-8."))?;
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("missing_body", "This request needs a JSON body."));
    }
    // serde reads a struct from an array too (`["sk-…"]` would fill the first field); every body
    // keyward takes is an object with named fields.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::bad_request("invalid_body", "The request body must be a JSON object."));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| body_shape_error(&e))?;
    de.end().map_err(|e| syntax_error(&e))?;
    Ok(value)
}

fn body_shape_error(err: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = err.inner();
    // The position and field path locate the problem; serde's own message could echo a value.
    let detail = match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            let unknown = message.starts_with("unknown field");
            let what = if message.starts_with("missing field") {
                "a required field is missing"
            } else if unknown {
                "an unknown field is present"
            } else {
                "a field has the wrong type or value"
            };
            // An unknown field's name is the client's text (it could be a pasted key): name only
            // the object that holds it.
            let segments: Vec<String> = err.path().iter().map(ToString::to_string).collect();
            let known = if unknown { &segments[..segments.len().saturating_sub(1)] } else { &segments[..] };
            let path = known.join(".");
            if path.is_empty() {
                format!("The request body does not match this endpoint: {what}.")
            } else {
                format!("The request body does not match this endpoint: {what} at `{path}`.")
            }
        }
        _ => return syntax_error(inner),
    };
    ApiError::bad_request("invalid_body", detail)
}

fn syntax_error(err: &serde_json::Error) -> ApiError {
    ApiError::bad_request(
        "invalid_body",
        format!("The request body is not valid JSON (line {}, column {}).", err.line(), err.column()),
    )
}

/// A JSON response with `Cache-Control: no-store` (every keyward answer is per-user or secret).
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(body) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => ApiError::Internal(format!("response serialization failed: {e}")).into_response(),
    }
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// API Gateway's route key of a request (`GET /internal/users/{uid}/llm-keys`): functions route
/// on it, so the template is the one list of routes and paths are never parsed twice.
pub fn route_key(req: &Request) -> &str {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// A path parameter API Gateway extracted (already percent-decoded).
pub fn path_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters_ref().and_then(|p| p.first(name))
}

/// The keyward user named by an internal route's `{uid}`, or 400.
pub fn path_user(req: &Request) -> Result<crate::model::UserId, ApiError> {
    path_param(req, "uid")
        .and_then(|raw| crate::model::UserId::parse(raw).ok())
        .ok_or_else(|| ApiError::bad_request("invalid_user_id", "The user id in the path is not a keyward user id."))
}

/// A query parameter (the first, when repeated).
pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

/// 302 Found to `location`, never cached.
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A `returnTo` on one of `origins` (exactly: scheme, host and port), or 400. No open redirect.
pub fn allowed_return_to(origins: &[String], raw: &str) -> Result<String, ApiError> {
    let refuse = || {
        ApiError::bad_request(
            "invalid_return_to",
            "`returnTo` must be an absolute URL on one of keyward's allowed origins.",
        )
    };
    let url = url::Url::parse(raw).map_err(|_| refuse())?;
    let origin = url.origin().ascii_serialization();
    let allowed = origins.contains(&origin) && url.username().is_empty() && url.password().is_none();
    if allowed { Ok(url.to_string()) } else { Err(refuse()) }
}

/// The answer for a path or method this function does not serve.
pub fn route_not_found() -> ApiError {
    ApiError::not_found("route_not_found", "No such route.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::Request as HttpRequest;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct PutKey {
        api_key: String,
    }

    fn request(content_type: Option<&str>, body: Body) -> Request {
        let mut builder = HttpRequest::builder().method("PUT").uri("/me/llm-keys/openai");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(body).unwrap()
    }

    fn problem(err: ApiError) -> (u16, serde_json::Value) {
        let response = err.into_response();
        assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
        let Body::Text(text) = response.body() else { panic!("problem body is text") };
        (response.status().as_u16(), serde_json::from_str(text).unwrap())
    }

    #[test]
    fn accepts_json_with_charset() {
        let req = request(Some("application/json; charset=utf-8"), Body::from(r#"{"apiKey":"sk-1"}"#));
        let parsed: PutKey = json_body(&req).unwrap();
        assert_eq!(parsed.api_key, "sk-1");
    }

    #[test]
    fn bad_bodies_are_400_or_413_and_never_echo_values() {
        let secret = "sk-PLANTED-never-echo";
        let cases: Vec<(Option<&str>, Body, u16, &str)> = vec![
            (Some("text/plain"), Body::from(format!(r#"{{"apiKey":"{secret}"}}"#)), 400, "unsupported_content_type"),
            (None, Body::from("{}"), 400, "unsupported_content_type"),
            (Some("application/json"), Body::Empty, 400, "missing_body"),
            (Some("application/json"), Body::from(vec![b'{', 0xff, b'}']), 400, "invalid_utf8"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"{secret}""#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":["{secret}"]}}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"x","{secret}":1}}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"x"}} {secret}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from("{}"), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"["{secret}"]"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(" ".repeat(MAX_BODY_BYTES + 1)), 413, "payload_too_large"),
        ];
        for (ct, body, status, code) in cases {
            let err = json_body::<PutKey>(&request(ct, body)).unwrap_err();
            let (got_status, json) = problem(err);
            assert_eq!((got_status, json["code"].as_str().unwrap()), (status, code), "{json}");
            assert!(!json.to_string().contains("PLANTED"), "{json}");
            assert_eq!(json["status"], status);
        }
    }

    #[test]
    fn deep_json_is_a_400_not_a_crash() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let body = format!(r#"{{"apiKey":{deep}}}"#);
        let err = json_body::<PutKey>(&request(Some("application/json"), Body::from(body))).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    proptest::proptest! {
        /// Arbitrary body bytes get a 400 or 413 (or parse); the parser never panics or answers 5xx.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            match json_body::<PutKey>(&request(Some("application/json"), Body::from(bytes))) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert!(e.status().is_client_error(), "{:?}", e.status()),
            }
        }
    }

    #[test]
    fn provider_refusals_are_422_502_or_504_with_codes_never_text() {
        use crate::model::Provider;
        let status = |kind| ApiError::Provider(Box::new(Failure::new(Provider::OpenAi, kind))).status().as_u16();
        assert_eq!(status(FailureKind::InvalidKey), 422);
        assert_eq!(status(FailureKind::NoCredits), 422);
        assert_eq!(status(FailureKind::RateLimited), 422);
        assert_eq!(status(FailureKind::Unreachable), 502);
        assert_eq!(status(FailureKind::Timeout), 504);

        let mut failure = Failure::new(Provider::Anthropic, FailureKind::RateLimited);
        failure.status = Some(429);
        failure.provider_code = Some("rate_limit_error".into());
        failure.request_id = Some("req_011".into());
        failure.retry_after_secs = Some(11);
        let response = ApiError::Provider(Box::new(failure)).into_response();
        assert_eq!(response.headers()["retry-after"], "11");
        let Body::Text(text) = response.body() else { panic!("problem body is text") };
        let json: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(json["provider"], "anthropic");
        assert_eq!(json["providerStatus"], 429);
        assert_eq!(json["providerCode"], "rate_limit_error");
        assert_eq!(json["providerRequestId"], "req_011");
        assert_eq!(json["retryAfter"], 11);
        assert!(json["detail"].as_str().unwrap().starts_with("Anthropic rate limit reached"), "{json}");
    }

    #[test]
    fn internal_errors_hide_their_reason() {
        let (status, json) = problem(ApiError::Internal("table keyward-prod missing attribute sk".into()));
        assert_eq!(status, 500);
        assert!(!json["detail"].as_str().unwrap().contains("keyward-prod"));
        assert_eq!(json["code"], "internal_error");
        assert_eq!(json["type"], "https://keyward.dev/problems/internal-error");
    }

    #[test]
    fn throttling_sets_retry_after_and_unauthorized_sets_a_challenge() {
        let response = ApiError::TooManyRequests { code: "rate_limited", detail: "slow".into(), retry_after_secs: 42 }
            .into_response();
        assert_eq!(response.headers()["retry-after"], "42");
        let response = ApiError::from(AuthError::Expired).into_response();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"keyward\""), "{challenge}");
    }
}
