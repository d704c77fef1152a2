//! Golden cases: real-shaped provider answers (from `provider-errors.md`, every row of its
//! classification table for every provider, plus HTML 401s, empty bodies and truncated JSON) →
//! the kind keyward classifies them as and the sentence it tells the user.

use keyward::model::Provider;
use keyward::providers::{FailureKind, Outcome, ProviderResponse, classify};
use lambda_http::http::{HeaderMap, HeaderName, HeaderValue};

use FailureKind::*;
use Provider::*;

struct Case {
    name: &'static str,
    provider: Provider,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    kind: FailureKind,
    /// Fragments the message must contain.
    says: &'static [&'static str],
}

const fn case(
    name: &'static str,
    provider: Provider,
    status: u16,
    body: &'static str,
    kind: FailureKind,
    says: &'static [&'static str],
) -> Case {
    Case { name, provider, status, headers: &[], body, kind, says }
}

const HTML_401: &str = "<html><head><title>401 Authorization Required</title></head><body><center><h1>401 Authorization Required</h1></center><hr><center>openresty/1.27.4</center></body></html>";

const CASES: &[Case] = &[
    // OpenAI
    case(
        "openai invalid key",
        OpenAi,
        401,
        r#"{"error":{"message":"Incorrect API key provided: sk-test. You can find your API key at https://platform.openai.com/.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
        InvalidKey,
        &["OpenAI API key is invalid"],
    ),
    case(
        "openai 401 without code",
        OpenAi,
        401,
        r#"{"error":{"message":"You must be a member of an organization to use the API.","type":"invalid_request_error","code":"no_organization"}}"#,
        InvalidKey,
        &["OpenAI"],
    ),
    case(
        "openai insufficient_quota",
        OpenAi,
        429,
        r#"{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        NoCredits,
        &["OpenAI API quota exceeded", "billing"],
    ),
    case(
        "openai credit balance exhausted",
        OpenAi,
        429,
        r#"{"error":{"message":"Your credit balance is exhausted.","type":"insufficient_quota","code":"credit_balance_exhausted"}}"#,
        NoCredits,
        &["OpenAI API quota exceeded"],
    ),
    case(
        "openai project spend limit",
        OpenAi,
        429,
        r#"{"error":{"message":"Project spend limit reached.","type":"insufficient_quota","code":"project_spend_limit_exceeded"}}"#,
        NoCredits,
        &["quota exceeded"],
    ),
    case(
        "openai org spend limit",
        OpenAi,
        429,
        r#"{"error":{"message":"Organization spend limit reached.","type":"insufficient_quota","code":"organization_spend_limit_exceeded"}}"#,
        NoCredits,
        &["billing"],
    ),
    case(
        "openai usage limit",
        OpenAi,
        429,
        r#"{"error":{"message":"Organization usage limit reached.","type":"requests","code":"organization_usage_limit_exceeded"}}"#,
        QuotaExhausted,
        &["quota is used up"],
    ),
    case(
        "openai usage limit in the insufficient_quota family",
        OpenAi,
        429,
        r#"{"error":{"message":"Your organization has reached its usage limit.","type":"insufficient_quota","code":"organization_usage_limit_exceeded"}}"#,
        QuotaExhausted,
        &["OpenAI organisation usage quota is used up"],
    ),
    case(
        "openai rate limit tokens",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for default in organization org-123 on tokens: Limit 90000, Used 85000, Requested 10000.","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
        RateLimited,
        &["tokens: 85000/90000 used, need 10000 more"],
    ),
    case(
        "openai rate limit TPM with wait",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 50000, Used 47949, Requested 3006. Please try again in 1.146s. Visit https://platform.openai.com/account/rate-limits to learn more.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        RateLimited,
        &["OpenAI rate limit reached: tokens per minute 47949/50000 used, need 3006 more. Try again in 2 s."],
    ),
    case(
        "openai slow_down",
        OpenAi,
        429,
        r#"{"error":{"message":"Please slow down.","type":"requests","code":"slow_down"}}"#,
        RateLimited,
        &["rate limit"],
    ),
    case(
        "openai request too large",
        OpenAi,
        429,
        r#"{"error":{"message":"Request too large for gpt-4o in organization org-xxx on tokens per min (TPM): Limit 30000, Requested 34307. The input or output tokens must be reduced in order to run successfully.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        ContextTooLong,
        &["too long for OpenAI"],
    ),
    case(
        "openai region",
        OpenAi,
        403,
        r#"{"error":{"code":"unsupported_country_region_territory","message":"Country, region, or territory not supported","param":null,"type":"request_forbidden"}}"#,
        RegionUnsupported,
        &["region"],
    ),
    case(
        "openai model not found",
        OpenAi,
        404,
        r#"{"error":{"message":"The model `gpt-5` does not exist or you do not have access to it.","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#,
        NoPermission,
        &["no access"],
    ),
    case(
        "openai context length",
        OpenAi,
        400,
        r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        ContextTooLong,
        &["9000 tokens, at most 8192"],
    ),
    case(
        "openai overloaded",
        OpenAi,
        503,
        r#"{"error":{"message":"The engine is currently overloaded, please try again later","type":"server_error","code":"server_is_overloaded"}}"#,
        Overloaded,
        &["overloaded"],
    ),
    case(
        "openai 500",
        OpenAi,
        500,
        r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","code":null}}"#,
        Overloaded,
        &["try again shortly"],
    ),
    case("openai empty body 401", OpenAi, 401, "", InvalidKey, &["invalid"]),
    case(
        "openai truncated JSON 429",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for default in org"#,
        RateLimited,
        &["rate limit"],
    ),
    // Anthropic
    case(
        "anthropic invalid key",
        Anthropic,
        401,
        r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#,
        InvalidKey,
        &["Anthropic API key is invalid"],
    ),
    case(
        "anthropic CORS is not a key problem",
        Anthropic,
        401,
        r#"{"type":"error","error":{"type":"authentication_error","message":"CORS requests are not allowed for this Organization because of the CORS request origin."}}"#,
        Unrecognised,
        &["HTTP 401", "console.anthropic.com"],
    ),
    case(
        "anthropic low credit",
        Anthropic,
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits."},"request_id":"req_011CX"}"#,
        NoCredits,
        &["Insufficient Anthropic API credits", "console.anthropic.com"],
    ),
    case(
        "anthropic billing error",
        Anthropic,
        402,
        r#"{"type":"error","error":{"type":"billing_error","message":"Payment required."}}"#,
        NoCredits,
        &["Insufficient Anthropic API credits"],
    ),
    case(
        "anthropic spend cap 429",
        Anthropic,
        429,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"You have reached your API usage limits: your organization's monthly spend limit. You will regain access on 2026-12-01 at 00:00 UTC.","details":{"error_code":"enforced_spend_limit_reached"}},"request_id":"req_abc"}"#,
        QuotaExhausted,
        &["monthly spend limit", "until the limit resets"],
    ),
    case(
        "anthropic own usage limit",
        Anthropic,
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC."}}"#,
        QuotaExhausted,
        &["spend limit"],
    ),
    case(
        "anthropic rate limit",
        Anthropic,
        429,
        r#"{"type":"error","error":{"type":"rate_limit_error","message":"This request would exceed the rate limit for your organization (0f5c) of 50,000 input tokens per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits."}}"#,
        RateLimited,
        &["Anthropic rate limit reached: at most 50000 input tokens per minute. Try again in 11 s."],
    ),
    case(
        "anthropic overloaded",
        Anthropic,
        529,
        r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        Overloaded,
        &["overloaded"],
    ),
    case(
        "anthropic api_error",
        Anthropic,
        500,
        r#"{"type":"error","error":{"type":"api_error","message":"Internal server error"}}"#,
        Overloaded,
        &["Anthropic"],
    ),
    case(
        "anthropic prompt too long",
        Anthropic,
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 213021 tokens > 200000 maximum"}}"#,
        ContextTooLong,
        &["213021 tokens, at most 200000"],
    ),
    case(
        "anthropic permission",
        Anthropic,
        403,
        r#"{"type":"error","error":{"type":"permission_error","message":"Your API key does not have permission to use the specified resource."}}"#,
        NoPermission,
        &["no access"],
    ),
    case(
        "anthropic model not found",
        Anthropic,
        404,
        r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-9"}}"#,
        NoPermission,
        &["Anthropic"],
    ),
    case("anthropic HTML 502", Anthropic, 502, "<html><body>Bad Gateway</body></html>", Overloaded, &["overloaded"]),
    // Gemini
    case(
        "gemini invalid key",
        Gemini,
        400,
        r#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com"}},{"@type":"type.googleapis.com/google.rpc.LocalizedMessage","locale":"en-US","message":"API key not valid. Please pass a valid API key."}]}}"#,
        InvalidKey,
        &["Google Gemini API key is invalid"],
    ),
    case(
        "gemini expired key",
        Gemini,
        400,
        r#"{"error":{"code":400,"message":"API key expired. Please renew the API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
        InvalidKey,
        &["expired"],
    ),
    case(
        "gemini leaked key",
        Gemini,
        403,
        r#"{"error":{"code":403,"message":"Your API key was reported as leaked. Please use another API key.","status":"PERMISSION_DENIED"}}"#,
        KeyBlocked,
        &["blocked"],
    ),
    case(
        "gemini service blocked",
        Gemini,
        403,
        r#"{"error":{"code":403,"message":"Requests to this API generativelanguage.googleapis.com method google.ai.generativelanguage.v1beta.ModelService.ListModels are blocked.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_SERVICE_BLOCKED","domain":"googleapis.com"}]}}"#,
        KeyBlocked,
        &["blocked"],
    ),
    case(
        "gemini project denied",
        Gemini,
        403,
        r#"{"error":{"code":403,"message":"Your project has been denied access. Please contact support.","status":"PERMISSION_DENIED"}}"#,
        NoPermission,
        &["no access"],
    ),
    case(
        "gemini per-minute quota",
        Gemini,
        429,
        r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_input_token_count, limit: 250000, model: gemini-2.0-flash. Please retry in 23.47s.","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_input_token_count","quotaId":"GenerateContentInputTokensPerModelPerMinute-FreeTier","quotaDimensions":{"location":"global","model":"gemini-2.0-flash"},"quotaValue":"250000"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"23s"}]}}"#,
        RateLimited,
        &["rate limit", "in 23 s"],
    ),
    case(
        "gemini daily quota",
        Gemini,
        429,
        r#"{"error":{"code":429,"message":"You exceeded your current quota, please check your plan and billing details. Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 20, model: gemini-2.5-flash","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaMetric":"generativelanguage.googleapis.com/generate_content_free_tier_requests","quotaId":"GenerateRequestsPerDayPerProjectPerModel-FreeTier","quotaValue":"20"}]},{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"41s"}]}}"#,
        QuotaExhausted,
        &["daily request quota"],
    ),
    case(
        "gemini zero limit",
        Gemini,
        429,
        r#"{"error":{"code":429,"message":"Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, model: gemini-2.5-pro","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.QuotaFailure","violations":[{"quotaId":"GenerateRequestsPerMinutePerProjectPerModel-FreeTier","quotaValue":"0"}]}]}}"#,
        NoCredits,
        &["enable billing"],
    ),
    case(
        "gemini free tier not in country",
        Gemini,
        400,
        r#"{"error":{"code":400,"message":"Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.","status":"FAILED_PRECONDITION"}}"#,
        NoCredits,
        &["billing"],
    ),
    case(
        "gemini location",
        Gemini,
        400,
        r#"{"error":{"code":400,"message":"User location is not supported for the API use.","status":"FAILED_PRECONDITION"}}"#,
        RegionUnsupported,
        &["region"],
    ),
    case(
        "gemini overloaded",
        Gemini,
        503,
        r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        Overloaded,
        &["overloaded"],
    ),
    case(
        "gemini context",
        Gemini,
        400,
        r#"{"error":{"code":400,"message":"The input token count (1300000) exceeds the maximum number of tokens allowed (1048575).","status":"INVALID_ARGUMENT"}}"#,
        ContextTooLong,
        &["1300000 tokens, at most 1048575"],
    ),
    case(
        "gemini deadline",
        Gemini,
        504,
        r#"{"error":{"code":504,"message":"Deadline expired before operation could complete.","status":"DEADLINE_EXCEEDED"}}"#,
        Overloaded,
        &["try again"],
    ),
    // Perplexity
    case("perplexity HTML 401", Perplexity, 401, HTML_401, InvalidKey, &["out of API credits", "check both"]),
    case(
        "perplexity JSON 401",
        Perplexity,
        401,
        r#"{"error":{"message":"Invalid API key","type":"invalid_api_key","code":401}}"#,
        InvalidKey,
        &["Perplexity refused the key"],
    ),
    case("perplexity empty 401", Perplexity, 401, "", InvalidKey, &["Perplexity"]),
    case(
        "perplexity rate limit",
        Perplexity,
        429,
        r#"{"error":{"message":"Rate limit exceeded","type":"request_rate_limit_exceeded","code":429}}"#,
        RateLimited,
        &["rate limit"],
    ),
    case(
        "perplexity permission",
        Perplexity,
        403,
        r#"{"error":{"message":"Forbidden","type":"forbidden","code":403}}"#,
        NoPermission,
        &["no access"],
    ),
    case("perplexity 500", Perplexity, 500, "", Overloaded, &["overloaded"]),
    case(
        "perplexity 200 failed",
        Perplexity,
        200,
        r#"{"id":"resp_1","status":"failed","error":{"message":"internal"}}"#,
        Unrecognised,
        &["HTTP 200", "perplexity.ai"],
    ),
    case(
        "perplexity payload too large",
        Perplexity,
        413,
        r#"{"error":{"message":"payload too large","type":"payload_too_large","code":413}}"#,
        ContextTooLong,
        &["too long"],
    ),
    // Zai
    case(
        "zai invalid token",
        Zai,
        401,
        r#"{"error":{"code":"1002","message":"Authorization Token is invalid, please ensure that the Authorization Token is correctly provided."}}"#,
        InvalidKey,
        &["Zai API key is invalid"],
    ),
    case(
        "zai token expired",
        Zai,
        401,
        r#"{"error":{"code":"1003","message":"Authorization Token expired."}}"#,
        InvalidKey,
        &["Zai"],
    ),
    case(
        "zai no balance 429",
        Zai,
        429,
        r#"{"error":{"code":"1113","message":"Insufficient balance or no resource package. Please recharge."}}"#,
        NoCredits,
        &["Zai balance is empty"],
    ),
    case(
        "zai no balance in anthropic shape",
        Zai,
        429,
        r#"{"type":"error","error":{"type":"rate_limit_error","code":"1113","message":"Insufficient balance or no resource package. Please recharge."}}"#,
        NoCredits,
        &["recharge"],
    ),
    case(
        "zai plan expired",
        Zai,
        429,
        r#"{"error":{"code":"1309","message":"Your GLM Coding Plan has expired."}}"#,
        NoCredits,
        &["Zai"],
    ),
    case(
        "zai locked account",
        Zai,
        401,
        r#"{"error":{"code":"1112","message":"Your account has been locked."}}"#,
        KeyBlocked,
        &["blocked"],
    ),
    case(
        "zai unknown model",
        Zai,
        400,
        r#"{"error":{"code":"1211","message":"Unknown Model, please check the model code."}}"#,
        NoPermission,
        &["no access"],
    ),
    case(
        "zai no API permission",
        Zai,
        403,
        r#"{"error":{"code":"1220","message":"You do not have permission to access glm-4.6"}}"#,
        NoPermission,
        &["permissions"],
    ),
    case(
        "zai rate limit",
        Zai,
        429,
        r#"{"error":{"code":"1302","message":"Rate limit reached for requests"}}"#,
        RateLimited,
        &["rate limit"],
    ),
    case(
        "zai daily limit",
        Zai,
        429,
        r#"{"error":{"code":"1304","message":"Daily call limit reached"}}"#,
        QuotaExhausted,
        &["daily call quota"],
    ),
    case(
        "zai weekly limit",
        Zai,
        429,
        r#"{"error":{"code":"1310","message":"Weekly/Monthly limit reached. Your limit will reset at 2026-12-01 00:00:00"}}"#,
        QuotaExhausted,
        &["weekly or monthly quota"],
    ),
    case(
        "zai overloaded",
        Zai,
        429,
        r#"{"error":{"code":"1305","message":"The service may be temporarily overloaded, please try again later"}}"#,
        Overloaded,
        &["overloaded"],
    ),
    case(
        "zai prompt too long",
        Zai,
        400,
        r#"{"error":{"code":"1261","message":"Prompt 超长"}}"#,
        ContextTooLong,
        &["too long"],
    ),
    case("zai truncated", Zai, 401, r#"{"error":{"code":"10"#, InvalidKey, &["Zai"]),
    // Account-level blocks, billing limits and every retry form, from the providers' docs and from
    // answers users pasted in public issue threads.
    case(
        "openai deactivated account",
        OpenAi,
        401,
        r#"{"error":{"message":"The OpenAI account associated with this API key has been deactivated. If you are the developer for this OpenAI app, please check your email for more information.","type":"invalid_request_error","param":null,"code":"account_deactivated"}}"#,
        KeyBlocked,
        &["OpenAI deactivated the account"],
    ),
    case(
        "openai billing hard limit",
        OpenAi,
        400,
        r#"{"error":{"code":"billing_hard_limit_reached","message":"Billing hard limit has been reached","param":null,"type":"invalid_request_error"}}"#,
        NoCredits,
        &["billing hard limit"],
    ),
    case(
        "openai legacy requests per min",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for default-gpt-3.5-turbo in organization org-123 on requests per min. Limit: 3 / min. Please try again in 20s. Contact us through our help center at help.openai.com if you continue to have issues.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
        RateLimited,
        &["OpenAI rate limit reached: at most 3 requests per minute. Try again in 20 s."],
    ),
    case(
        "openai oldest per-minute wording",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for default-text-davinci-002 in organization org-123 on tokens per min. Limit: 10000.000000 / min. Current: 10020.000000 / min. Contact us through our help center at help.openai.com if you continue to have issues.","type":"tokens","param":null,"code":null}}"#,
        RateLimited,
        &["OpenAI rate limit reached: tokens per minute 10020/10000 used."],
    ),
    case(
        "openai wait in minutes",
        OpenAi,
        429,
        r#"{"error":{"message":"Rate limit reached for gpt-4o in organization org-abc on requests per day (RPD): Limit 10000, Used 10000, Requested 1. Please try again in 1m26.4s.","type":"requests","code":"rate_limit_exceeded"}}"#,
        RateLimited,
        &["requests per day 10000/10000 used, need 1 more. Try again in 87 s."],
    ),
    Case {
        headers: &[
            ("x-ratelimit-limit-requests", "500"),
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
        ],
        ..case(
            "openai numbers from headers",
            OpenAi,
            429,
            r#"{"error":{"message":"Please slow down.","type":"requests","code":"slow_down"}}"#,
            RateLimited,
            &["requests: 500/500 used. Try again in 360 s."],
        )
    },
    case(
        "openai unknown code falls back on the status",
        OpenAi,
        400,
        r#"{"error":{"message":"Something new.","type":"invalid_request_error","code":"brand_new_code"}}"#,
        Unrecognised,
        &["HTTP 400", "platform.openai.com"],
    ),
    case(
        "anthropic disabled organisation",
        Anthropic,
        400,
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"This organization has been disabled."},"request_id":"req_011CXF1SZ3S3oXChsdxhoUwV"}"#,
        KeyBlocked,
        &["disabled the organisation"],
    ),
    Case {
        headers: &[
            ("anthropic-ratelimit-input-tokens-limit", "40000"),
            ("anthropic-ratelimit-input-tokens-remaining", "0"),
            ("anthropic-ratelimit-requests-limit", "50"),
            ("anthropic-ratelimit-requests-remaining", "31"),
        ],
        ..case(
            "anthropic numbers from headers",
            Anthropic,
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit."}}"#,
            RateLimited,
            &["input tokens per minute 40000/40000 used"],
        )
    },
    case(
        "gemini suspended consumer",
        Gemini,
        403,
        r#"{"error":{"code":403,"message":"Permission denied: Consumer 'api_key:AIzaSyXXXX' has been suspended.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED","domain":"googleapis.com","metadata":{"service":"generativelanguage.googleapis.com","consumer":"projects/578829824020"}}]}}"#,
        KeyBlocked,
        &["suspended"],
    ),
    case(
        "gemini prepayment depleted as a 429",
        Gemini,
        429,
        r#"{"error":{"code":429,"message":"Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing.","status":"RESOURCE_EXHAUSTED"}}"#,
        NoCredits,
        &["prepaid credits are used up — add credits at aistudio.google.com/projects"],
    ),
    case(
        "gemini prepayment depleted",
        Gemini,
        402,
        r#"{"error":{"code":402,"message":"Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects to manage your project and billing."}}"#,
        NoCredits,
        &["prepaid credits are used up"],
    ),
    Case {
        headers: &[("x-ratelimit-limit-requests", "50"), ("x-ratelimit-remaining-requests", "0"), ("retry-after", "7")],
        ..case(
            "perplexity numbers from headers",
            Perplexity,
            429,
            r#"{"error":{"message":"Rate limit exceeded","type":"request_rate_limit_exceeded","code":429}}"#,
            RateLimited,
            &["Perplexity rate limit reached: requests: 50/50 used. Try again in 7 s."],
        )
    },
    // OpenRouter: the key-info call, and its envelope
    case(
        "openrouter valid key info says nothing of credits",
        OpenRouter,
        401,
        r#"{"error":{"message":"User not found.","code":401}}"#,
        InvalidKey,
        &["OpenRouter API key is invalid"],
    ),
    case(
        "openrouter no credentials",
        OpenRouter,
        401,
        r#"{"error":{"message":"No auth credentials found","code":401}}"#,
        InvalidKey,
        &["OpenRouter"],
    ),
    case(
        "openrouter cannot afford",
        OpenRouter,
        402,
        r#"{"error":{"message":"This request requires more credits, or fewer max_tokens. You requested up to 65536 tokens, but can only afford 3395. To increase, visit https://openrouter.ai/settings/credits and upgrade to a paid account","code":402,"metadata":{"provider_name":null}}}"#,
        NoCredits,
        &["out of credits", "openrouter.ai/settings/credits"],
    ),
    case(
        "openrouter insufficient credits",
        OpenRouter,
        402,
        r#"{"error":{"message":"Insufficient credits. Add more using https://openrouter.ai/credits","code":402,"metadata":{"limit_source":"openrouter_credits"}}}"#,
        NoCredits,
        &["out of credits"],
    ),
    case(
        "openrouter free models per day",
        OpenRouter,
        429,
        r#"{"error":{"message":"Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day","code":429,"metadata":{"headers":{"X-RateLimit-Limit":"50","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1763856000000"}}}}"#,
        QuotaExhausted,
        &["free-model requests for today"],
    ),
    case(
        "openrouter per-minute limit",
        OpenRouter,
        429,
        r#"{"error":{"message":"Rate limit exceeded: free-models-per-min. ","code":429,"metadata":{"headers":{"X-RateLimit-Limit":"20","X-RateLimit-Remaining":"0","X-RateLimit-Reset":"1763800060000"}}}}"#,
        RateLimited,
        &["OpenRouter rate limit reached: requests: 20/20 used. Try again shortly."],
    ),
    case(
        "openrouter key's own limit spent",
        OpenRouter,
        200,
        r#"{"data":{"label":"sk-or-v1-au7...890","limit":10,"limit_remaining":0,"limit_reset":null,"usage":10,"is_free_tier":false}}"#,
        NoCredits,
        &["credit limit set on it"],
    ),
    case(
        "openrouter key's monthly limit spent",
        OpenRouter,
        200,
        r#"{"data":{"label":"sk-or-v1-au7...890","limit":25,"limit_remaining":-0.0004,"limit_reset":"monthly","usage":25}}"#,
        QuotaExhausted,
        &["key's monthly credit quota is used up"],
    ),
    case(
        "openrouter no instances",
        OpenRouter,
        503,
        r#"{"error":{"message":"No instances available","code":503}}"#,
        Overloaded,
        &["OpenRouter is overloaded"],
    ),
    case(
        "openrouter timeout",
        OpenRouter,
        408,
        r#"{"error":{"message":"Request timed out","code":408}}"#,
        Overloaded,
        &["try again shortly"],
    ),
    case(
        "openrouter moderation",
        OpenRouter,
        403,
        r#"{"error":{"message":"Your input was flagged","code":403,"metadata":{"reasons":["harassment"]}}}"#,
        NoPermission,
        &["no access"],
    ),
];

fn headers_of(case: &Case) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in case.headers {
        headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    headers
}

#[test]
fn every_golden_answer_is_classified_and_explained() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    for &provider in Provider::ALL {
        assert!(CASES.iter().filter(|c| c.provider == provider).count() >= 8, "{provider}: at least 8 cases");
    }
    let mut failures = Vec::new();
    for case in CASES {
        let mut headers = headers_of(case);
        // Anthropic's documented rate-limit answer carries retry-after.
        if case.name == "anthropic rate limit" {
            headers.insert("retry-after", HeaderValue::from_static("11"));
        }
        let response = ProviderResponse { status: case.status, headers: &headers, body: case.body.as_bytes() };
        match classify(case.provider, &response) {
            Outcome::Invalid(failure) if failure.kind == case.kind => {
                let message = failure.message();
                for fragment in case.says {
                    if !message.contains(fragment) {
                        failures.push(format!("{}: message {message:?} lacks {fragment:?}", case.name));
                    }
                }
                if case.kind == NoCredits && !names_a_place(&message) {
                    failures.push(format!("{}: a billing refusal names no place to add funds: {message:?}", case.name));
                }
                if message.contains("sk-test") || message.contains("Incorrect API key") {
                    failures.push(format!("{}: message repeats provider text: {message:?}", case.name));
                }
                // One sentence form: no parentheses inside parentheses, nothing after the last full
                // stop, and the provider's code in its own problem field, never in the sentence.
                if let Some(problem) = sentence_form_problem(&message, failure.provider_code.as_deref()) {
                    failures.push(format!("{}: {problem}: {message:?}", case.name));
                }
            }
            other => failures.push(format!("{}: expected {:?}, got {other:?}", case.name, case.kind)),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), CASES.len(), failures.join("\n"));
}

/// Whether a sentence names a web address (`console.anthropic.com`, `ai.studio/projects`, …).
fn names_a_place(message: &str) -> bool {
    message.split_whitespace().any(|word| {
        let word = word.trim_end_matches(['.', ',', ')']).trim_start_matches('(').trim_start_matches("https://");
        let host = word.split('/').next().unwrap_or_default();
        let labels: Vec<&str> = host.split('.').collect();
        labels.len() >= 2
            && labels.iter().all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
            && labels.last().is_some_and(|tld| tld.len() >= 2)
    })
}

/// What is wrong with a message's form, if anything.
fn sentence_form_problem(message: &str, code: Option<&str>) -> Option<&'static str> {
    let mut depth = 0;
    for c in message.chars() {
        match c {
            '(' if depth == 1 => return Some("nested parentheses"),
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
    }
    if !message.ends_with('.') {
        return Some("something after the last full stop");
    }
    code.filter(|c| message.contains(c)).map(|_| "the provider's code in the sentence")
}

/// The product's rate-limit sentence, for OpenAI's current and legacy wordings.
#[test]
fn rate_limits_read_as_one_sentence_with_their_numbers() {
    let answer = |body: &'static str| {
        let headers = HeaderMap::new();
        match classify(OpenAi, &ProviderResponse { status: 429, headers: &headers, body: body.as_bytes() }) {
            Outcome::Invalid(failure) => (failure.message(), failure.provider_code),
            Outcome::Valid => panic!("a 429 is a refusal"),
        }
    };
    let (current, code) = answer(
        r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on tokens per min (TPM): Limit 90000, Used 85000, Requested 10000. Please try again in 3.333s.","type":"tokens","code":"rate_limit_exceeded"}}"#,
    );
    assert_eq!(
        current,
        "OpenAI rate limit reached: tokens per minute 85000/90000 used, need 10000 more. Try again in 4 s."
    );
    assert_eq!(code.as_deref(), Some("rate_limit_exceeded"), "the code travels beside the sentence");
    let (legacy, _) = answer(
        r#"{"error":{"message":"Rate limit reached for default in organization org-123 on tokens: Limit 90000, Used 85000, Requested 10000.","type":"tokens","code":"rate_limit_exceeded"}}"#,
    );
    assert!(legacy.contains("tokens: 85000/90000 used, need 10000 more"), "{legacy}");
    assert_eq!(sentence_form_problem(&legacy, Some("rate_limit_exceeded")), None, "{legacy}");
}

#[test]
fn success_is_valid_and_billing_429s_are_never_rate_limits() {
    let headers = HeaderMap::new();
    for &provider in Provider::ALL {
        let ok = ProviderResponse { status: 200, headers: &headers, body: br#"{"data":[]}"# };
        assert_eq!(classify(provider, &ok), Outcome::Valid, "{provider}");
    }
    for case in CASES.iter().filter(|c| c.status == 429 && c.kind == NoCredits) {
        let response = ProviderResponse { status: 429, headers: &headers, body: case.body.as_bytes() };
        let Outcome::Invalid(failure) = classify(case.provider, &response) else { panic!("{}", case.name) };
        assert!(!failure.kind.is_transient(), "{}: a billing 429 must not say retry", case.name);
        assert!(!failure.message().contains("rate limit"), "{}", case.name);
    }
}

#[test]
fn only_codes_and_request_ids_are_kept() {
    let mut headers = HeaderMap::new();
    headers.insert("x-request-id", HeaderValue::from_static("req_abc123"));
    let body = br#"{"error":{"message":"Incorrect API key provided: sk-proj-SECRETSECRET. You can find your API key at https://platform.openai.com/.","type":"invalid_request_error","code":"invalid_api_key sk-proj-SECRETSECRET"}}"#;
    let response = ProviderResponse { status: 401, headers: &headers, body };
    let Outcome::Invalid(failure) = classify(OpenAi, &response) else { panic!() };
    assert_eq!(failure.request_id.as_deref(), Some("req_abc123"));
    assert_eq!(failure.provider_code, None, "a code that is not a short token is dropped");
    assert!(!format!("{failure:?} {}", failure.message()).contains("SECRET"));
}
