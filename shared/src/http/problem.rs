//! RFC 9457 problem+json: [`ApiError::into_response`] is the one place where an error becomes an
//! HTTP response. A 5xx never carries internal detail (that goes to the log).

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::model::ProblemCode;
use crate::providers::Failure;

const PROBLEM_JSON: &str = "application/problem+json";

/// An error on its way to the client: a [`ProblemCode`] (which fixes the status) and the human
/// sentence, or one of the problems that carry more.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    Problem { code: ProblemCode, detail: String, retry_after_secs: Option<u64> },
    /// 403 `insufficient_scope` (RFC 6750 §3.1): the scopes missing, or none when the route needs
    /// a real sign-in rather than any scope.
    #[error("{detail}")]
    InsufficientScope { missing: Vec<String>, detail: String },
    #[error("The request body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
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
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Self::Problem { code, detail: detail.into(), retry_after_secs: None }
    }

    /// A refusal that goes away by itself: a limit, or a dependency that is down.
    pub fn retry_later(code: ProblemCode, detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::Problem { code, detail: detail.into(), retry_after_secs: Some(retry_after_secs) }
    }

    pub fn code(&self) -> ProblemCode {
        match self {
            Self::Problem { code, .. } => *code,
            Self::InsufficientScope { .. } => ProblemCode::InsufficientScope,
            Self::PayloadTooLarge { .. } => ProblemCode::PayloadTooLarge,
            Self::Provider(failure) => failure.kind.code(),
            Self::Internal(_) => ProblemCode::InternalError,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The single mapping from errors to HTTP responses.
    pub fn into_response(self) -> Response<Body> {
        let status = self.status();
        let retry_after = match &self {
            Self::Problem { retry_after_secs, .. } => *retry_after_secs,
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
                    tracing::warn!(code = other.code().as_str(), detail = %other, "dependency unavailable");
                }
                other.to_string()
            }
        };
        let code = self.code().as_str();
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
            _ if status == StatusCode::UNAUTHORIZED => {
                Some(format!("error=\"invalid_token\", error_description=\"{code}\""))
            }
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
        use crate::providers::FailureKind;
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
        let response = ApiError::retry_later(ProblemCode::RateLimited, "slow", 42).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()["retry-after"], "42");
        let response = ApiError::from(crate::auth::AuthError::Expired).into_response();
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer realm=\"keyward\""), "{challenge}");
    }
}
