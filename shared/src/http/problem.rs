//! RFC 9457 problem+json: [`ApiError::into_response`] is the one place where an error becomes an
//! HTTP response. A 5xx never carries internal detail (that goes to the log).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::providers::{Failure, FailureKind};

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
    /// 403 `insufficient_scope` (RFC 6750 §3.1): the scopes missing, or none when the route needs
    /// a real sign-in rather than any scope.
    #[error("{detail}")]
    InsufficientScope { missing: Vec<String>, detail: String },
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
    #[serde(skip_serializing_if = "Option::is_none")]
    missing_scopes: Option<&'a [String]>,
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
            Self::Forbidden { .. } | Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
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
            Self::InsufficientScope { .. } => "insufficient_scope",
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
            missing_scopes: match &self {
                Self::InsufficientScope { missing, .. } => Some(missing),
                _ => None,
            },
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
        // `insufficient_scope`, naming the scope needed.
        let challenge = match &self {
            Self::Unauthorized { code, .. } => Some(format!("error=\"invalid_token\", error_description=\"{code}\"")),
            Self::InsufficientScope { missing, .. } if !missing.is_empty() => {
                Some(format!("error=\"insufficient_scope\", scope=\"{}\"", missing.join(" ")))
            }
            Self::InsufficientScope { .. } => Some("error=\"insufficient_scope\"".to_owned()),
            _ => None,
        };
        if let Some(value) =
            challenge.and_then(|params| HeaderValue::from_str(&format!("Bearer realm=\"keyward\", {params}")).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The status and body of the problem `err` becomes.
#[cfg(test)]
pub(super) fn problem(err: ApiError) -> (u16, serde_json::Value) {
    let response = err.into_response();
    assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    let Body::Text(text) = response.body() else { panic!("problem body is text") };
    (response.status().as_u16(), serde_json::from_str(text).unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let response = ApiError::from(crate::auth::AuthError::Expired).into_response();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"keyward\""), "{challenge}");
    }
}
