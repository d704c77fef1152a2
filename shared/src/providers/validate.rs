//! The validation call: the cheapest request to each provider that proves a key works and also
//! reveals billing trouble (`provider-errors.md` §0), sent to an endpoint from configuration only —
//! a user never chooses where their key goes.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde_json::json;
use url::Url;

use super::Provider;
use super::classify::{ProviderResponse, classify};
use super::key::ZaiRegion;
use super::outcome::{Failure, FailureKind, Outcome};
use crate::config::EndpointSetting;
use crate::outbound::{Outbound, read_capped};
use crate::secret::ApiKey;

/// Provider answers longer than this are cut (an error body is a few hundred bytes; a cut JSON body
/// is classified by its status).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The probe models. Dated or cheapest models, as the reference advises: OpenAI's dated snapshot
/// reveals `insufficient_quota` where the alias may not; Zai's model must be a paid one, since free
/// "flash" models never report an empty balance.
const OPENAI_MODEL: &str = "gpt-4o-mini-2024-07-18";
const ANTHROPIC_MODEL: &str = "claude-haiku-4-5";
const GEMINI_MODEL: &str = "gemini-2.5-flash-lite";
const PERPLEXITY_MODEL: &str = "perplexity/sonar";
const ZAI_MODEL: &str = "glm-4.5";

/// Where each provider's API lives (base URLs without a trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    pub openai: Url,
    pub anthropic: Url,
    pub google: Url,
    pub perplexity: Url,
    pub zai: Url,
    pub zai_china: Url,
}

impl ProviderEndpoints {
    /// In the order of [`ProviderEndpoints::from_urls`].
    pub const SETTINGS: [EndpointSetting; 6] = [
        EndpointSetting {
            var: "KEYWARD_OPENAI_BASE_URL",
            official: "https://api.openai.com/v1",
            sandbox_path: "/openai/v1",
        },
        EndpointSetting {
            var: "KEYWARD_ANTHROPIC_BASE_URL",
            official: "https://api.anthropic.com/v1",
            sandbox_path: "/anthropic/v1",
        },
        EndpointSetting {
            var: "KEYWARD_GEMINI_BASE_URL",
            official: "https://generativelanguage.googleapis.com/v1beta",
            sandbox_path: "/gemini/v1beta",
        },
        EndpointSetting {
            var: "KEYWARD_PERPLEXITY_BASE_URL",
            official: "https://api.perplexity.ai",
            sandbox_path: "/perplexity",
        },
        EndpointSetting {
            var: "KEYWARD_ZAI_BASE_URL",
            official: "https://api.z.ai/api/paas/v4",
            sandbox_path: "/zai/api/paas/v4",
        },
        EndpointSetting {
            var: "KEYWARD_ZAI_CHINA_BASE_URL",
            official: "https://open.bigmodel.cn/api/paas/v4",
            sandbox_path: "/zai-china/api/paas/v4",
        },
    ];

    pub fn from_urls([openai, anthropic, google, perplexity, zai, zai_china]: [Url; 6]) -> Self {
        Self { openai, anthropic, google, perplexity, zai, zai_china }
    }

    fn base(&self, provider: Provider, region: ZaiRegion) -> &Url {
        match (provider, region) {
            (Provider::OpenAi, _) => &self.openai,
            (Provider::Anthropic, _) => &self.anthropic,
            (Provider::Google, _) => &self.google,
            (Provider::Perplexity, _) => &self.perplexity,
            (Provider::Zai, ZaiRegion::International) => &self.zai,
            (Provider::Zai, ZaiRegion::China) => &self.zai_china,
        }
    }

    /// Every endpoint, for reporting which ones are local stand-ins.
    pub fn all(&self) -> [(&'static str, &Url); 6] {
        [
            ("openai", &self.openai),
            ("anthropic", &self.anthropic),
            ("gemini", &self.google),
            ("perplexity", &self.perplexity),
            ("zai", &self.zai),
            ("zai-china", &self.zai_china),
        ]
    }
}

/// Checks keys with their providers over the one shared outbound client.
#[derive(Clone)]
pub struct KeyValidator {
    http: Outbound,
    endpoints: ProviderEndpoints,
    timeout: Duration,
}

impl KeyValidator {
    /// `timeout` bounds the whole call (the client's connect timeout still applies).
    pub fn new(http: Outbound, endpoints: ProviderEndpoints, timeout: Duration) -> Self {
        Self { http, endpoints, timeout }
    }

    /// Sends the provider's probe with `key` and classifies the answer. Transport failures are
    /// outcomes too (`Unreachable`, `Timeout`), never errors: the caller decides what each means.
    pub async fn validate(&self, provider: Provider, region: ZaiRegion, key: &ApiKey) -> Outcome {
        let base = self.endpoints.base(provider, region).as_str().trim_end_matches('/');
        let (path, body) = probe(provider);
        let http = match self.http.client() {
            Ok(http) => http,
            Err(e) => {
                tracing::warn!(provider = %provider, error = %e, "provider call failed");
                return Outcome::Invalid(Failure::new(provider, FailureKind::Unreachable));
            }
        };
        let request =
            http.post(format!("{base}{path}")).headers(auth_headers(provider, key)).json(&body).timeout(self.timeout);
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            // A longer error body is classified by its head; a valid key's answer is never read.
            let (body, _) = read_capped(response, MAX_ANSWER_BYTES).await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        };
        match answer.await {
            Ok((status, headers, body)) => {
                let outcome = classify(provider, &ProviderResponse { status, headers: &headers, body: &body });
                if let Outcome::Invalid(failure) = &outcome {
                    tracing::info!(
                        provider = %provider,
                        status,
                        kind = failure.kind.code(),
                        provider_code = failure.provider_code.as_deref(),
                        request_id = failure.request_id.as_deref(),
                        "provider refused the key"
                    );
                }
                outcome
            }
            Err(e) => {
                let kind = if e.is_timeout() { FailureKind::Timeout } else { FailureKind::Unreachable };
                // reqwest's message names the URL (never the key, which travels in a header).
                tracing::warn!(provider = %provider, kind = kind.code(), error = %e, "provider call failed");
                Outcome::Invalid(Failure::new(provider, kind))
            }
        }
    }
}

/// The path under the base URL and the JSON body of each provider's probe.
fn probe(provider: Provider) -> (String, serde_json::Value) {
    let ping = json!([{ "role": "user", "content": "ping" }]);
    match provider {
        Provider::OpenAi => {
            ("/chat/completions".into(), json!({ "model": OPENAI_MODEL, "messages": ping, "max_completion_tokens": 1 }))
        }
        Provider::Anthropic => {
            ("/messages".into(), json!({ "model": ANTHROPIC_MODEL, "max_tokens": 1, "messages": ping }))
        }
        Provider::Google => (
            format!("/models/{GEMINI_MODEL}:generateContent"),
            json!({
                "contents": [{ "role": "user", "parts": [{ "text": "ping" }] }],
                "generationConfig": { "maxOutputTokens": 1 }
            }),
        ),
        // No tools and no preset: web search costs extra. Values below 16 are floored to 16.
        Provider::Perplexity => {
            ("/v1/agent".into(), json!({ "model": PERPLEXITY_MODEL, "input": "ping", "max_output_tokens": 16 }))
        }
        Provider::Zai => ("/chat/completions".into(), json!({ "model": ZAI_MODEL, "messages": ping, "max_tokens": 1 })),
    }
}

/// Each provider's auth header, marked sensitive so no Debug print of the request shows it.
fn auth_headers(provider: Provider, key: &ApiKey) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut secret = |name: &'static str, value: String| {
        if let Ok(mut value) = HeaderValue::from_str(&value) {
            value.set_sensitive(true);
            headers.insert(name, value);
        }
    };
    match provider {
        Provider::OpenAi | Provider::Perplexity | Provider::Zai => {
            secret("authorization", format!("Bearer {}", key.expose()));
        }
        Provider::Anthropic => secret("x-api-key", key.expose().to_owned()),
        // The header form: `?key=` would put the key into URLs, and so into logs.
        Provider::Google => secret("x-goog-api-key", key.expose().to_owned()),
    }
    match provider {
        Provider::Anthropic => {
            headers.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
        Provider::Zai => {
            headers.insert("accept-language", HeaderValue::from_static("en-US,en"));
        }
        _ => {}
    }
    headers
}
