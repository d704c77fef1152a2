//! The validation call, sent to an endpoint from configuration only — a user never chooses where
//! their key goes.

use std::time::Duration;

use http::HeaderMap;
use url::Url;

use super::classify::{ProviderResponse, classify};
use super::outcome::{Failure, FailureKind, Outcome};
use super::{endpoint_settings, spec};
use crate::endpoints::EndpointSetting;
use crate::model::{Provider, ZaiRegion};
use crate::outbound::{Outbound, read_capped};
use crate::secret::ApiKey;

/// Provider answers longer than this are cut (an error body is a few hundred bytes; a cut JSON body
/// is classified by its status).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where each provider's API lives: one base URL (without a trailing slash) per endpoint setting,
/// in registry order.
#[derive(Debug, Clone)]
pub struct ProviderEndpoints(Vec<(&'static EndpointSetting, Url)>);

impl ProviderEndpoints {
    /// Every provider's endpoints, each URL as `url_of` decides it.
    pub fn build<E>(mut url_of: impl FnMut(&'static EndpointSetting) -> Result<Url, E>) -> Result<Self, E> {
        endpoint_settings().map(|s| Ok((s, url_of(s)?))).collect::<Result<_, E>>().map(Self)
    }

    /// The base URL configured for `setting`.
    pub fn url(&self, setting: &EndpointSetting) -> Option<&Url> {
        self.0.iter().find(|(s, _)| s.var == setting.var).map(|(_, url)| url)
    }

    /// Every endpoint by its name (`openai`, `zai-china`), for reporting which ones are stand-ins.
    pub fn all(&self) -> impl Iterator<Item = (&'static str, &Url)> {
        self.0.iter().map(|(s, url)| (s.name, url))
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
        let spec = spec(provider);
        let unreachable = |why: &dyn std::fmt::Display| {
            tracing::warn!(provider = %provider, error = %why, "provider call failed");
            Outcome::Invalid(Failure::new(provider, FailureKind::Unreachable))
        };
        let Some(base) = self.endpoints.url(spec.endpoint(region)) else {
            return unreachable(&"no endpoint configured");
        };
        let http = match self.http.client() {
            Ok(http) => http,
            Err(e) => return unreachable(&e),
        };
        let probe = spec.probe();
        let mut headers = HeaderMap::new();
        spec.auth_headers(key, &mut headers);
        let url = format!("{}{}", base.as_str().trim_end_matches('/'), probe.path);
        let mut request = http.request(probe.method, url).headers(headers).timeout(self.timeout);
        if let Some(body) = &probe.body {
            request = request.json(body);
        }
        let answer = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            // A longer body is classified by its head.
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
                        kind = failure.kind.code().as_str(),
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
                tracing::warn!(provider = %provider, kind = kind.code().as_str(), error = %e, "provider call failed");
                Outcome::Invalid(Failure::new(provider, kind))
            }
        }
    }
}
