//! Stand-ins for the LLM providers' validation endpoints, one module each, answering like the real ones
//! (statuses, headers, bodies from `provider-errors.md`) for documented magic keys — like Stripe's
//! test cards. A magic key is the provider's key prefix, `sandbox-` and a scenario, e.g.
//! `sk-proj-sandbox-no-credits`.
//!
//! The README ("Sandbox keys") lists each scenario's answer per provider.
//!
//! Any other key, and a scenario a provider has no answer for, gets the provider's invalid-key answer, as a made-up key would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod anthropic;
mod gemini;
mod openai;
mod openrouter;
mod perplexity;
mod zai;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How long the `slow` scenario waits before answering: longer than keyward's 10 s limit.
const SLOW_SECS: u64 = 30;

/// The providers' stand-ins, each nested under its own path prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    Anthropic,
    Gemini,
    Perplexity,
    /// Z.ai, the international platform.
    Zai,
    /// Zhipu BigModel, the China platform (same keys' shape, separate accounts).
    ZaiChina,
    OpenRouter,
}

impl Provider {
    pub const ALL: [Provider; 7] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Perplexity,
        Provider::Zai,
        Provider::ZaiChina,
        Provider::OpenRouter,
    ];

    /// The start of this provider's magic keys.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Provider::OpenAi => "sk-proj-",
            Provider::Anthropic => "sk-ant-api03-",
            Provider::Gemini => "AIzaSy-",
            Provider::Perplexity => "pplx-",
            Provider::Zai | Provider::ZaiChina => "keyward.",
            Provider::OpenRouter => "sk-or-v1-",
        }
    }
}

/// What a magic key makes the stand-in answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Valid,
    Invalid,
    Blocked,
    NoPermission,
    NoCredits,
    RateLimited,
    Quota,
    Overloaded,
    Region,
    Slow,
}

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::Valid,
        Scenario::Invalid,
        Scenario::Blocked,
        Scenario::NoPermission,
        Scenario::NoCredits,
        Scenario::RateLimited,
        Scenario::Quota,
        Scenario::Overloaded,
        Scenario::Region,
        Scenario::Slow,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            Scenario::Valid => "valid",
            Scenario::Invalid => "invalid",
            Scenario::Blocked => "blocked",
            Scenario::NoPermission => "no-permission",
            Scenario::NoCredits => "no-credits",
            Scenario::RateLimited => "rate-limited",
            Scenario::Quota => "quota",
            Scenario::Overloaded => "overloaded",
            Scenario::Region => "region",
            Scenario::Slow => "slow",
        }
    }

    fn of_key(key: &str) -> Scenario {
        Scenario::ALL
            .into_iter()
            .find(|s| key.strip_suffix(s.slug()).is_some_and(|rest| rest.ends_with("sandbox-")))
            .unwrap_or(Scenario::Invalid)
    }
}

/// The magic key of a provider and scenario, e.g. `sk-proj-sandbox-no-credits`.
pub fn magic_key(provider: Provider, scenario: Scenario) -> String {
    format!("{}sandbox-{}", provider.key_prefix(), scenario.slug())
}

/// How many validation calls each stand-in received, for tests that assert a call was (not) made.
#[derive(Default)]
pub struct CallCounts(HashMap<Provider, AtomicU64>);

impl CallCounts {
    fn new() -> Self {
        Self(Provider::ALL.into_iter().map(|p| (p, AtomicU64::new(0))).collect())
    }

    pub fn of(&self, provider: Provider) -> u64 {
        self.0.get(&provider).map_or(0, |n| n.load(Ordering::SeqCst))
    }

    pub(crate) fn count(&self, provider: Provider) {
        if let Some(n) = self.0.get(&provider) {
            n.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The stand-ins' routes, each to be nested under its prefix (see `lib.rs`).
pub fn routers() -> (Arc<CallCounts>, Vec<(&'static str, Router)>) {
    let counts = Arc::new(CallCounts::new());
    let routes = vec![
        ("/openai/v1", openai::router()),
        ("/anthropic/v1", anthropic::router()),
        ("/gemini/v1beta", gemini::router()),
        ("/perplexity", perplexity::router()),
        ("/zai/api/paas/v4", zai::router(Provider::Zai)),
        ("/zai-china/api/paas/v4", zai::router(Provider::ZaiChina)),
        ("/openrouter/api/v1", openrouter::router()),
    ];
    let routes = routes.into_iter().map(|(prefix, router)| (prefix, router.with_state(Arc::clone(&counts)))).collect();
    (counts, routes)
}

/// One answer: status, extra headers and a body (JSON unless the provider sends HTML).
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(&'static str, String)>,
    pub(crate) body: String,
    pub(crate) html: bool,
}

impl Answer {
    pub(crate) fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string(), html: false }
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let content_type = if self.html { "text/html" } else { "application/json" };
        let mut response =
            (StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
        for (name, value) in self.headers {
            if let Ok(value) = header::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}

pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

pub(crate) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request body as a JSON object with the named fields present, or `None`.
pub(crate) fn body_with(body: &[u8], fields: &[&str]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) if fields.iter().all(|f| map.contains_key(*f)) => Some(map),
        _ => None,
    }
}

/// The model a well-formed probe asked for and the scenario of its key; waits out `slow`.
pub(crate) async fn accept(key: &str, request: &serde_json::Map<String, Value>) -> (String, Scenario) {
    let scenario = scenario_of(key).await;
    (request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(), scenario)
}

/// The scenario of a key; waits out `slow`.
pub(crate) async fn scenario_of(key: &str) -> Scenario {
    let scenario = Scenario::of_key(key);
    if scenario == Scenario::Slow {
        tokio::time::sleep(Duration::from_secs(SLOW_SECS)).await;
    }
    scenario
}
