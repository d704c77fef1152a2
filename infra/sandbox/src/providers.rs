//! Stand-ins for the five LLM providers' validation endpoints, answering like the real ones
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

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// How long the `slow` scenario waits before answering: longer than keyward's 10 s limit.
const SLOW_SECS: u64 = 30;

/// The five providers' stand-ins, by the path prefix each is nested under.
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
}

impl Provider {
    pub const ALL: [Provider; 6] = [
        Provider::OpenAi,
        Provider::Anthropic,
        Provider::Gemini,
        Provider::Perplexity,
        Provider::Zai,
        Provider::ZaiChina,
    ];

    /// The start of this provider's magic keys.
    pub fn key_prefix(self) -> &'static str {
        match self {
            Provider::OpenAi => "sk-proj-",
            Provider::Anthropic => "sk-ant-api03-",
            Provider::Gemini => "AIzaSy-",
            Provider::Perplexity => "pplx-",
            Provider::Zai | Provider::ZaiChina => "keyward.",
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

    fn count(&self, provider: Provider) {
        if let Some(n) = self.0.get(&provider) {
            n.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The stand-ins' routes, each to be nested under its prefix (see `lib.rs`).
pub fn routers() -> (Arc<CallCounts>, Vec<(&'static str, Router)>) {
    let counts = Arc::new(CallCounts::new());
    let routes = vec![
        ("/openai/v1", Router::new().route("/chat/completions", post(openai))),
        ("/anthropic/v1", Router::new().route("/messages", post(anthropic))),
        ("/gemini/v1beta", Router::new().route("/models/{call}", post(gemini))),
        ("/perplexity", Router::new().route("/v1/agent", post(perplexity))),
        ("/zai/api/paas/v4", Router::new().route("/chat/completions", post(zai_international))),
        ("/zai-china/api/paas/v4", Router::new().route("/chat/completions", post(zai_china))),
    ];
    let routes = routes.into_iter().map(|(prefix, router)| (prefix, router.with_state(Arc::clone(&counts)))).collect();
    (counts, routes)
}

/// One answer: status, extra headers and a body (JSON unless the provider sends HTML).
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    html: bool,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string(), html: false }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
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

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ")
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request body as a JSON object with the named fields present, or `None`.
fn body_with(body: &[u8], fields: &[&str]) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(body).ok()? {
        Value::Object(map) if fields.iter().all(|f| map.contains_key(*f)) => Some(map),
        _ => None,
    }
}

/// The model a well-formed probe asked for and the scenario of its key; waits out `slow`.
async fn accept(key: &str, request: &serde_json::Map<String, Value>) -> (String, Scenario) {
    let scenario = Scenario::of_key(key);
    if scenario == Scenario::Slow {
        tokio::time::sleep(Duration::from_secs(SLOW_SECS)).await;
    }
    (request.get("model").and_then(Value::as_str).unwrap_or_default().to_owned(), scenario)
}

/// OpenAI shows the first 8 and last 4 characters of a refused key, masked in between.
fn openai_masked(key: &str) -> String {
    let keep = key.len().min(8);
    let tail = key.len().saturating_sub(4).max(keep);
    format!("{}{}{}", &key[..keep], "*".repeat(tail - keep), &key[tail..])
}

async fn openai(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::OpenAi);
    let Some(key) = bearer(&headers) else {
        return Answer::json(
            401,
            json!({"error": {"message": "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let Some(request) = body_with(&body, &["model", "messages"]) else {
        return Answer::json(
            400,
            json!({"error": {"message": "We could not parse the JSON body of your request.", "type": "invalid_request_error", "param": null, "code": null}}),
        );
    };
    let (model, scenario) = accept(key, &request).await;
    let error = |status, message: String, kind: &str, code: &str| {
        Answer::json(status, json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
            .header("x-request-id", "req_sandbox0openai")
    };
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(200, json!({
            "id": "chatcmpl-sandbox", "object": "chat.completion", "created": 1_763_800_000, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "refusal": null}, "logprobs": null, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9},
            "system_fingerprint": "fp_sandbox"
        })).header("x-ratelimit-limit-tokens", "90000").header("x-ratelimit-remaining-tokens", "89991"),
        Scenario::NoPermission => error(404, format!("The model `{model}` does not exist or you do not have access to it."), "invalid_request_error", "model_not_found"),
        Scenario::NoCredits => error(429, "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".into(), "insufficient_quota", "insufficient_quota"),
        Scenario::RateLimited => error(429, "Rate limit reached for gpt-4o-mini in organization org-sandbox on tokens per min (TPM): Limit 90000, Used 85000, Requested 10000. Please try again in 3.333s. Visit https://platform.openai.com/account/rate-limits to learn more.".into(), "tokens", "rate_limit_exceeded")
            .header("x-ratelimit-limit-tokens", "90000")
            .header("x-ratelimit-remaining-tokens", "5000")
            .header("x-ratelimit-reset-tokens", "3.333s"),
        Scenario::Quota => error(429, "Your organization has reached its usage limit.".into(), "insufficient_quota", "organization_usage_limit_exceeded"),
        Scenario::Overloaded => error(503, "The server is overloaded, please try again later.".into(), "server_error", "server_is_overloaded"),
        Scenario::Region => error(403, "Country, region, or territory not supported".into(), "request_forbidden", "unsupported_country_region_territory"),
        Scenario::Invalid | Scenario::Blocked => error(401, format!("Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.", openai_masked(key)), "invalid_request_error", "invalid_api_key"),
    }
}

async fn anthropic(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::Anthropic);
    let error = |status, kind: &str, message: String| {
        Answer::json(status, json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011SandboxAnthropic"}))
            .header("request-id", "req_011SandboxAnthropic")
    };
    let Some(key) = header_str(&headers, "x-api-key") else {
        return error(401, "authentication_error", "x-api-key header is required".into());
    };
    if header_str(&headers, "anthropic-version").is_none() {
        return error(400, "invalid_request_error", "anthropic-version: header is required".into());
    }
    let Some(request) = body_with(&body, &["model", "max_tokens", "messages"]) else {
        return error(400, "invalid_request_error", "max_tokens: Field required".into());
    };
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(200, json!({
            "id": "msg_sandbox", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hi"}], "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 8, "output_tokens": 1}
        })).header("anthropic-ratelimit-requests-limit", "50"),
        Scenario::NoPermission => error(404, "not_found_error", format!("model: {model}")),
        Scenario::NoCredits => error(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.".into()),
        Scenario::RateLimited => error(429, "rate_limit_error", "This request would exceed the rate limit for your organization (00000000-0000-0000-0000-000000000000) of 50,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits.".into())
            .header("retry-after", "11"),
        Scenario::Quota => error(400, "invalid_request_error", "You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC.".into()),
        Scenario::Overloaded => error(529, "overloaded_error", "Overloaded".into()),
        Scenario::Invalid | Scenario::Blocked | Scenario::Region => error(401, "authentication_error", "invalid x-api-key".into()),
    }
}

async fn gemini(
    State(counts): State<Arc<CallCounts>>,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    counts.count(Provider::Gemini);
    let error = |status: u16, message: &str, grpc: &str, details: Value| {
        Answer::json(status, json!({"error": {"code": status, "message": message, "status": grpc, "details": details}}))
    };
    let Some((model, "generateContent")) = call.split_once(':') else {
        return error(404, "Method not found.", "NOT_FOUND", json!([]));
    };
    let Some(key) = header_str(&headers, "x-goog-api-key") else {
        return error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
            "PERMISSION_DENIED",
            json!([]),
        );
    };
    let Some(request) = body_with(&body, &["contents"]) else {
        return error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT", json!([]));
    };
    let info = |reason: &str| json!([{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}]);
    let quota = |quota_id: &str, value: &str, retry: &str| {
        json!([
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests", "quotaId": quota_id, "quotaDimensions": {"location": "global", "model": model}, "quotaValue": value}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry}
        ])
    };
    // Gemini packs a free-tier quota refusal into one message and QuotaFailure details.
    let exhausted = |limit: &str, period: &str, retry: &str, hint: &str| {
        let message = format!(
            "You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: \
             generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: {limit}, model: {model}{hint}"
        );
        let quota_id = format!("GenerateRequestsPer{period}PerProjectPerModel-FreeTier");
        error(429, &message, "RESOURCE_EXHAUSTED", quota(&quota_id, limit, retry))
    };
    // Gemini names the model in the path, not the body.
    let (_, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}],
                "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1, "totalTokenCount": 2},
                "modelVersion": model, "responseId": "sandbox"
            }),
        ),
        Scenario::Blocked => error(
            403,
            "Your API key was reported as leaked. Please use another API key.",
            "PERMISSION_DENIED",
            json!([]),
        ),
        Scenario::NoPermission => error(
            404,
            &format!("models/{model} is not found for API version v1beta, or is not supported for generateContent."),
            "NOT_FOUND",
            json!([]),
        ),
        Scenario::NoCredits => exhausted("0", "Minute", "23s", ""),
        Scenario::RateLimited => exhausted("15", "Minute", "23s", " Please retry in 22.5s."),
        Scenario::Quota => exhausted("20", "Day", "41s", ""),
        Scenario::Overloaded => {
            error(503, "The model is overloaded. Please try again later.", "UNAVAILABLE", json!([]))
        }
        Scenario::Region => {
            error(400, "User location is not supported for the API use.", "FAILED_PRECONDITION", json!([]))
        }
        Scenario::Invalid => {
            error(400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT", info("API_KEY_INVALID"))
        }
    }
}

/// The fields Perplexity's Agent API accepts: it refuses any other with a 400.
const PERPLEXITY_FIELDS: &[&str] = &[
    "model",
    "input",
    "instructions",
    "max_output_tokens",
    "tools",
    "preset",
    "stream",
    "temperature",
    "top_p",
    "response_format",
    "reasoning",
    "models",
];

/// Perplexity's nginx answers a refused key with an HTML page, not JSON — also for empty accounts.
const PERPLEXITY_401: &str = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>openresty/1.27.4</center>\r\n</body>\r\n</html>\r\n";

async fn perplexity(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::Perplexity);
    let html_401 = || Answer { status: 401, headers: Vec::new(), body: PERPLEXITY_401.into(), html: true };
    let Some(key) = bearer(&headers) else { return html_401() };
    let bad_request = |message: String, param: &str| {
        Answer::json(
            400,
            json!({"error": {"message": message, "type": "invalid_request", "code": 400, "param": param}}),
        )
    };
    let Some(request) = body_with(&body, &["model", "input"]) else {
        return bad_request("invalid request body: model and input are required".into(), "input");
    };
    if let Some(unknown) = request.keys().find(|k| !PERPLEXITY_FIELDS.contains(&k.as_str())) {
        return bad_request(format!("invalid request body: json: unknown field \"{unknown}\""), unknown);
    }
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        // A 16-token probe ends `incomplete` for `max_output_tokens`: that is success.
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "id": "resp_sandbox", "object": "response", "created_at": 1_763_800_000, "model": model,
                "status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
                "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi"}]}],
                "usage": {"input_tokens": 1, "output_tokens": 16, "total_tokens": 17}
            }),
        ),
        Scenario::RateLimited => Answer::json(
            429,
            json!({"error": {"message": "Rate limit exceeded", "type": "request_rate_limit_exceeded", "code": 429}}),
        )
        .header("x-ratelimit-limit-requests", "50")
        .header("x-ratelimit-remaining-requests", "0")
        .header("retry-after", "7"),
        Scenario::Overloaded => Answer::json(
            503,
            json!({"error": {"message": "Service temporarily unavailable", "type": "service_unavailable", "code": 503}}),
        ),
        _ => html_401(),
    }
}

async fn zai_international(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::Zai);
    zai(&headers, &body).await
}

async fn zai_china(State(counts): State<Arc<CallCounts>>, headers: HeaderMap, body: Bytes) -> Answer {
    counts.count(Provider::ZaiChina);
    zai(&headers, &body).await
}

/// Both Zai platforms answer alike, with a business code in the body.
async fn zai(headers: &HeaderMap, body: &[u8]) -> Answer {
    let error =
        |status, code: &str, message: &str| Answer::json(status, json!({"error": {"code": code, "message": message}}));
    let Some(key) = bearer(headers) else {
        return error(401, "1001", "Authentication parameter not received in Header, unable to authenticate.");
    };
    let Some(request) = body_with(body, &["model", "messages"]) else {
        return error(400, "1214", "Input cannot be empty");
    };
    let (model, scenario) = accept(key, &request).await;
    match scenario {
        Scenario::Valid | Scenario::Slow => Answer::json(
            200,
            json!({
                "id": "sandbox", "request_id": "sandbox", "created": 1_763_800_000, "model": model,
                "choices": [{"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": "Hi"}}],
                "usage": {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}
            }),
        ),
        Scenario::Blocked => {
            error(429, "1112", "Your account has been locked, please contact customer service to unlock.")
        }
        Scenario::NoPermission => error(403, "1220", "You do not have permission to access this API."),
        Scenario::NoCredits => error(429, "1113", "Insufficient balance or no resource package. Please recharge."),
        Scenario::RateLimited => error(429, "1302", "Rate limit reached for requests"),
        Scenario::Quota => error(429, "1304", "The daily call limit for this API has been reached."),
        Scenario::Overloaded => error(429, "1305", "The service may be temporarily overloaded, please try again later"),
        Scenario::Invalid | Scenario::Region => error(
            401,
            "1002",
            "Authorization Token is invalid, please ensure that the Authorization Token is correctly provided.",
        ),
    }
}
