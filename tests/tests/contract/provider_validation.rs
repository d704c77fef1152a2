//! The validation call of each provider, sent by keyward's real client to the sandbox stand-ins:
//! each magic key's answer (the provider's own wire format) is classified as the README promises,
//! and the stand-ins accept only requests shaped like the provider's (auth header, body), so a
//! `Valid` here proves keyward speaks each provider's protocol.

use std::time::Duration;

use keyward::model::{Provider, ZaiRegion};
use keyward::providers::{FailureKind, KeyValidator, Outcome, ProviderEndpoints, parse_api_key};
use keyward_sandbox::Sandbox;
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use url::Url;

use FailureKind::*;
use Scenario as S;

fn endpoints(base: &str) -> ProviderEndpoints {
    ProviderEndpoints::build(|s| Url::parse(&format!("{base}{}", s.sandbox_path))).unwrap()
}

fn validator(base: &str, timeout: Duration) -> KeyValidator {
    let http = reqwest::Client::builder().connect_timeout(Duration::from_secs(3)).build().unwrap();
    KeyValidator::new(http.into(), endpoints(base), timeout)
}

fn stand_in(provider: Provider) -> StandIn {
    match provider {
        Provider::OpenAi => StandIn::OpenAi,
        Provider::Anthropic => StandIn::Anthropic,
        Provider::Gemini => StandIn::Gemini,
        Provider::Perplexity => StandIn::Perplexity,
        Provider::Zai => StandIn::Zai,
        Provider::OpenRouter => StandIn::OpenRouter,
    }
}

/// `None` = valid. Scenarios a provider has no answer for get its invalid-key answer.
fn expected(provider: Provider, scenario: Scenario) -> Option<FailureKind> {
    let kind = match (provider, scenario) {
        (_, S::Valid) => return None,
        (_, S::Slow) => Timeout,
        (Provider::Perplexity, S::RateLimited) => RateLimited,
        (Provider::Perplexity, S::Overloaded) => Overloaded,
        // Perplexity answers every other refusal, empty accounts included, with one HTML 401.
        (Provider::Perplexity, _) => InvalidKey,
        (Provider::OpenAi | Provider::Anthropic, S::Blocked) => InvalidKey,
        (Provider::Anthropic | Provider::Zai, S::Region) => InvalidKey,
        // OpenRouter's key-info call answers every refusal of a key with one 401.
        (Provider::OpenRouter, S::Blocked | S::NoPermission | S::Region) => InvalidKey,
        (_, S::Invalid) => InvalidKey,
        (_, S::Blocked) => KeyBlocked,
        (_, S::NoPermission) => NoPermission,
        (_, S::NoCredits) => NoCredits,
        (_, S::RateLimited) => RateLimited,
        (_, S::Quota) => QuotaExhausted,
        (_, S::Overloaded) => Overloaded,
        (_, S::Region) => RegionUnsupported,
    };
    Some(kind)
}

#[tokio::test]
async fn every_magic_key_gets_its_documented_outcome() {
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let validator = validator(sandbox.base_url(), Duration::from_secs(1));
    let mut checked = 0;
    for &provider in Provider::ALL {
        for scenario in Scenario::ALL {
            let raw = magic_key(stand_in(provider), scenario);
            let key = parse_api_key(provider, &raw).unwrap_or_else(|e| panic!("{raw} fails the shape check: {e}"));
            let outcome = validator.validate(provider, ZaiRegion::International, &key).await;
            let got = match &outcome {
                Outcome::Valid => None,
                Outcome::Invalid(failure) => {
                    let message = failure.message();
                    for leak in [raw.as_str(), "Incorrect API key", "<html>", "org-sandbox"] {
                        assert!(!message.contains(leak), "{raw}: the message repeats provider text: {message}");
                    }
                    Some(failure.kind)
                }
            };
            assert_eq!(got, expected(provider, scenario), "{raw}");
            checked += 1;
        }
    }
    assert_eq!(checked, 60);
    for stand_in in
        [StandIn::OpenAi, StandIn::Anthropic, StandIn::Gemini, StandIn::Perplexity, StandIn::Zai, StandIn::OpenRouter]
    {
        assert_eq!(sandbox.provider_calls().of(stand_in), 10, "{stand_in:?}: one call per scenario");
    }
}

#[tokio::test]
async fn refusals_carry_the_numbers_and_waits_the_provider_stated() {
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let validator = validator(sandbox.base_url(), Duration::from_secs(5));
    let refusal = |provider, scenario| {
        let key = parse_api_key(provider, &magic_key(stand_in(provider), scenario)).unwrap();
        let validator = validator.clone();
        async move {
            match validator.validate(provider, ZaiRegion::International, &key).await {
                Outcome::Invalid(failure) => failure,
                Outcome::Valid => panic!("{provider} {scenario:?} was accepted"),
            }
        }
    };

    let openai = refusal(Provider::OpenAi, S::RateLimited).await;
    assert!(
        openai.message()
            == "OpenAI rate limit reached: tokens per minute 85000/90000 used, need 10000 more. Try again in 4 s.",
        "{}",
        openai.message()
    );
    assert_eq!((openai.status, openai.retry_after_secs), (Some(429), Some(4)));
    assert_eq!(openai.request_id.as_deref(), Some("req_sandbox0openai"));

    let anthropic = refusal(Provider::Anthropic, S::RateLimited).await;
    assert_eq!(anthropic.retry_after_secs, Some(11), "from the retry-after header");
    let credits = refusal(Provider::Anthropic, S::NoCredits).await;
    assert!(credits.message().starts_with("Insufficient Anthropic API credits"), "{}", credits.message());
    assert!(credits.message().contains("console.anthropic.com"), "where to add funds");
    assert_eq!(credits.request_id.as_deref(), Some("req_011SandboxAnthropic"));

    let gemini = refusal(Provider::Gemini, S::RateLimited).await;
    assert_eq!(gemini.retry_after_secs, Some(23), "from RetryInfo");
    let daily = refusal(Provider::Gemini, S::Quota).await;
    assert!(daily.message().contains("daily request quota"), "{}", daily.message());

    let openrouter = refusal(Provider::OpenRouter, S::RateLimited).await;
    assert_eq!(
        openrouter.message(),
        "OpenRouter rate limit reached: requests: 20/20 used. Try again in 9 s.",
        "the numbers from the envelope's metadata, the wait from retry-after"
    );
    let spent = refusal(Provider::OpenRouter, S::NoCredits).await;
    assert_eq!((spent.kind, spent.status), (NoCredits, Some(200)), "a key past its own limit reads fine on key info");
    assert!(spent.message().contains("credit limit set on it"), "{}", spent.message());
    let monthly = refusal(Provider::OpenRouter, S::Quota).await;
    assert!(monthly.message().contains("key's monthly credit quota"), "{}", monthly.message());

    let zai = refusal(Provider::Zai, S::NoCredits).await;
    assert_eq!((zai.kind, zai.provider_code.as_deref()), (NoCredits, Some("1113")), "a billing 429 is no rate limit");
    assert!(!zai.kind.is_transient());
}

#[tokio::test]
async fn zai_keys_are_checked_on_their_own_platform() {
    let sandbox = Sandbox::start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let validator = validator(sandbox.base_url(), Duration::from_secs(5));
    let key = parse_api_key(Provider::Zai, &magic_key(StandIn::ZaiChina, S::Valid)).unwrap();
    assert_eq!(validator.validate(Provider::Zai, ZaiRegion::China, &key).await, Outcome::Valid);
    assert_eq!(sandbox.provider_calls().of(StandIn::ZaiChina), 1);
    assert_eq!(sandbox.provider_calls().of(StandIn::Zai), 0);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    // Bind, then drop, to find a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let validator = validator(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5));
    let key = parse_api_key(Provider::OpenAi, "sk-proj-sandbox-valid").unwrap();
    match validator.validate(Provider::OpenAi, ZaiRegion::International, &key).await {
        Outcome::Invalid(failure) => {
            assert_eq!(failure.kind, Unreachable);
            assert_eq!(failure.status, None);
            assert!(failure.kind.is_transient());
        }
        Outcome::Valid => panic!("nothing listens there"),
    }
}

/// keyward's own outbound client follows no redirect: a provider (or anything posing as one) that
/// answers 307 to another host never receives the key there.
#[tokio::test]
async fn a_redirect_never_carries_the_key_to_another_host() {
    use wiremock::matchers::any;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let elsewhere = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(&elsewhere).await;
    let provider = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(307).insert_header("location", format!("{}/steal", elsewhere.uri())))
        .mount(&provider)
        .await;
    let validator =
        KeyValidator::new(keyward::outbound::Outbound::new(), endpoints(&provider.uri()), Duration::from_secs(5));
    let key = parse_api_key(Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::Valid)).unwrap();
    let outcome = validator.validate(Provider::OpenAi, ZaiRegion::International, &key).await;
    assert!(matches!(outcome, Outcome::Invalid(_)), "a redirect is no validation");
    assert_eq!(provider.received_requests().await.unwrap().len(), 1);
    assert!(elsewhere.received_requests().await.unwrap().is_empty(), "the key went to the redirect target");
}
