//! Perplexity (`provider-errors.md` §4). The probe is the Agent API's smallest response, without
//! tools or a preset (web search costs extra); values below 16 output tokens are floored to 16.

use http::HeaderMap;
use serde_json::{Value, json};

use super::answer::Answer;
use super::outcome::{Failure, FailureKind};
use super::{LlmProvider, Probe, bearer};
use crate::endpoints::EndpointSetting;
use crate::model::Provider;
use crate::secret::ApiKey;

const MODEL: &str = "perplexity/sonar";

pub struct Perplexity;

impl LlmProvider for Perplexity {
    fn provider(&self) -> Provider {
        Provider::Perplexity
    }

    fn display_name(&self) -> &'static str {
        "Perplexity"
    }

    fn key_hint(&self) -> &'static str {
        "pplx-…"
    }

    fn console_url(&self) -> &'static str {
        "https://www.perplexity.ai/account/api/keys"
    }

    fn endpoints(&self) -> &'static [EndpointSetting] {
        &[EndpointSetting {
            name: "perplexity",
            var: "KEYWARD_PERPLEXITY_BASE_URL",
            official: "https://api.perplexity.ai",
            sandbox_path: "/perplexity",
        }]
    }

    fn check_shape(&self, key: &str) -> Result<(), &'static str> {
        if key.starts_with("pplx-") { Ok(()) } else { Err("Perplexity API keys start with `pplx-`.") }
    }

    fn probe(&self) -> Probe {
        Probe {
            method: http::Method::POST,
            path: "/v1/agent".into(),
            body: Some(json!({ "model": MODEL, "input": "ping", "max_output_tokens": 16 })),
        }
    }

    fn auth_headers(&self, key: &ApiKey, headers: &mut HeaderMap) {
        bearer(key, headers);
    }

    /// The Agent API answers HTTP 200 for failed and cancelled responses too.
    fn refusal_in_success(&self, answer: &Answer<'_>) -> Option<Failure> {
        let status = answer.json.and_then(|j| j.get("status")).and_then(Value::as_str);
        matches!(status, Some("failed" | "cancelled"))
            .then(|| Failure::new(Provider::Perplexity, FailureKind::Unrecognised))
    }

    /// Perplexity's refusals say little: its nginx answers a bad key and an empty account alike
    /// with an HTML 401, so the status decides.
    fn judge(&self, answer: &Answer<'_>) -> Failure {
        let mut kind = answer.by_status();
        if kind == FailureKind::NoPermission && answer.status == 404 {
            kind = FailureKind::Unrecognised;
        }
        let mut failure = Failure::new(Provider::Perplexity, kind);
        failure.provider_code = answer.error.kind.map(str::to_owned).or_else(|| answer.error.code.clone());
        if kind == FailureKind::RateLimited {
            failure.rate_limit = answer.x_ratelimit();
        }
        failure
    }

    fn sentence(&self, failure: &Failure) -> Option<String> {
        match failure.kind {
            FailureKind::InvalidKey => Some(
                "Perplexity refused the key: it is invalid or revoked, or the account is out of API credits — check \
                 both in Perplexity's API settings."
                    .into(),
            ),
            FailureKind::NoCredits => Some(
                "Perplexity account is out of API credits — add credits at perplexity.ai/account/api/billing.".into(),
            ),
            _ => None,
        }
    }
}
