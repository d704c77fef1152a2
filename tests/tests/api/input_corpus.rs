//! Input corpus: hostile request shapes on every route that reads a body, a path segment, a header
//! or a `returnTo`, through the local gateway. Each is refused with a 4xx problem+json (never a 5xx),
//! echoes nothing planted, calls no provider and stores nothing.

use std::time::SystemTime;

use keyward::model::UserId;
use keyward::use_cases::sessions::SESSION_COOKIE;
use keyward_sandbox::auth0::sandbox_subject;
use keyward_sandbox::providers::Provider as StandIn;
use keyward_tests::api::{BILLING_SERVICE, Backend, LocalApi, in_path};
use keyward_tests::stripe::header as stripe_header;
use reqwest::RequestBuilder;

const ADA: &str = "ada@example.com";
const PLANTED: &str = "sk-proj-PLANTED-input-0123456789abcdef";

/// `depth` nested arrays: far past serde_json's recursion limit of 128.
fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

struct Case {
    name: String,
    request: RequestBuilder,
    status: u16,
}

fn case(name: impl Into<String>, request: RequestBuilder, status: u16) -> Case {
    Case { name: name.into(), request, status }
}

#[tokio::test]
async fn hostile_inputs_get_a_4xx_problem_and_change_nothing() {
    let api = LocalApi::start(Backend::Embedded).await;
    let ada = UserId::parse(&sandbox_subject(ADA)).unwrap();
    let token = api.user_token(ADA).await;
    let put = |path: &str| api.client.put(api.url(path)).bearer_auth(&token);
    let put_key = || put("/me/llm-keys/openai").header("content-type", "application/json");
    let json_put = |body: Vec<u8>| put_key().body(body);

    let mut cases = vec![
        // Bodies.
        case("1 MiB body", json_put(vec![b' '; 1 << 20]), 413),
        case("64 KiB + 1 body", json_put(vec![b' '; 64 * 1024 + 1]), 413),
        case("deep JSON (10 000 levels)", json_put(deep_json(10_000).into_bytes()), 400),
        case("deep JSON as the key", json_put(format!(r#"{{"apiKey": {}}}"#, deep_json(200)).into_bytes()), 400),
        case("invalid UTF-8", json_put(b"{\"apiKey\": \"sk-proj-PLANTED-\xff\xfe\xfd-0123456789\"}".to_vec()), 400),
        case("lone surrogate escape", json_put(br#"{"apiKey": "sk-proj-PLANTED-\ud800-0123456789"}"#.to_vec()), 400),
        case("unknown field", json_put(format!(r#"{{"apiKey": "{PLANTED}", "userId": "auth0|bob"}}"#).into()), 400),
        case("duplicate field", json_put(format!(r#"{{"apiKey": "{PLANTED}", "apiKey": "x"}}"#).into()), 400),
        case("trailing garbage", json_put(format!(r#"{{"apiKey": "{PLANTED}"}} {{}}"#).into()), 400),
        case("a JSON array", json_put(format!(r#"["{PLANTED}"]"#).into()), 400),
        case("empty body", json_put(Vec::new()), 400),
        case("NUL in the key", json_put(br#"{"apiKey": "sk-proj-PLANTED\u0000-0123456789"}"#.to_vec()), 400),
        case("number as the key", json_put(br#"{"apiKey": 12345678901234567890}"#.to_vec()), 400),
        case("form body", put("/me/llm-keys/openai").form(&[("apiKey", PLANTED)]), 400),
        // Headers.
        case("100 KB bearer token", api.client.get(api.url("/me/llm-keys")).bearer_auth("A".repeat(100_000)), 401),
        case("token in a Basic header", api.client.get(api.url("/me/llm-keys")).basic_auth(PLANTED, Some("x")), 401),
        case(
            "100 KB session cookie",
            api.client
                .post(api.url("/auth/refresh"))
                .header("origin", keyward_tests::api::APP_ORIGIN)
                .header("cookie", format!("{SESSION_COOKIE}={}", "A".repeat(100_000))),
            401,
        ),
        case(
            "100 KB Stripe-Signature",
            api.client
                .post(api.url("/webhooks/stripe"))
                .header("content-type", "application/json")
                .header("stripe-signature", format!("t=1,v1={}", "a".repeat(100_000)))
                .body("{}"),
            400,
        ),
    ];

    // The unauthenticated JSON routes: a CLI's refresh and device poll.
    for path in ["/auth/refresh", "/auth/device/poll"] {
        let post = |body: Vec<u8>| api.client.post(api.url(path)).header("content-type", "application/json").body(body);
        cases.extend([
            case(format!("{path}: deep JSON"), post(deep_json(10_000).into_bytes()), 400),
            case(format!("{path}: an array"), post(format!(r#"["{PLANTED}"]"#).into()), 400),
            case(format!("{path}: invalid UTF-8"), post(b"{\"refreshToken\": \"PLANTED\xff\"}".to_vec()), 400),
            case(format!("{path}: unknown field"), post(format!(r#"{{"{PLANTED}": 1}}"#).into()), 400),
            case(format!("{path}: 1 MiB"), post(vec![b' '; 1 << 20]), 413),
        ]);
    }

    // Provider names with path tricks: never a provider, never another route.
    for provider in [
        "..",
        "%2e%2e",
        "openai%00",
        "openai%2F..%2Fanthropic",
        "OPENAI",
        "\u{43e}penai",
        "openai%20",
        "open%0Aai",
        "anthropic;openai",
    ] {
        let body = format!(r#"{{"apiKey": "{PLANTED}"}}"#);
        let url = format!("{}/me/llm-keys/{provider}", api.base_url);
        let request =
            api.client.put(url).bearer_auth(&token).header("content-type", "application/json").body(body.clone());
        cases.push(case(format!("provider `{provider}`"), request, 404));
    }

    // `returnTo` open-redirect tricks.
    for return_to in [
        "https://app.example.com.evil.example/",
        "https://app.example.com@evil.example/",
        "https://evil.example/?https://app.example.com/",
        "https://evil.example/https://app.example.com",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "\\\\evil.example/",
        "https:/\\evil.example/",
        "https:evil.example",
        "http://app.example.com/",
        "https://app.example.com:8443/",
        "javascript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example.com%2F@evil.example/",
        "https://app.example.com%00.evil.example/",
        " https://evil.example/",
        "",
    ] {
        let request = api.client.get(api.url("/auth/login")).query(&[("returnTo", return_to)]);
        cases.push(case(format!("returnTo `{return_to}`"), request, 400));
    }

    // Personal access tokens: malformed prefixes and checksums, oversized, another deployment's,
    // and bodies of `POST /me/tokens` that ask for what no token may be.
    let real = api.state.config.personal_tokens.format.generate().expose().to_owned();
    let bad_checksum = format!("{}000000", &real[..real.len() - 6]);
    for (name, bearer) in [
        ("bad checksum", bad_checksum),
        ("one character short", real[..real.len() - 1].to_owned()),
        ("one character long", format!("{real}A")),
        ("100 KB after the prefix", format!("kw_pat_{}", "A".repeat(100_000))),
        ("non-base62 body", format!("kw_pat_{}", "-".repeat(36))),
        ("upper-case prefix", real.replacen("kw_pat_", "KW_PAT_", 1)),
        ("another prefix", real.replacen("kw_pat_", "acme_", 1)),
        ("a bare prefix", "kw_pat_".to_owned()),
    ] {
        cases.push(case(format!("token: {name}"), api.client.get(api.url("/me/llm-keys")).bearer_auth(bearer), 401));
    }
    let create = |body: String| {
        api.client.post(api.url("/me/tokens")).bearer_auth(&token).header("content-type", "application/json").body(body)
    };
    for (name, body) in [
        ("unknown scope", r#"{"name": "x", "scopes": ["keys:admin"], "expiresInDays": 1}"#),
        ("no scopes", r#"{"name": "x", "scopes": [], "expiresInDays": 1}"#),
        ("no expiry", r#"{"name": "x", "scopes": ["keys:read"]}"#),
        ("zero days", r#"{"name": "x", "scopes": ["keys:read"], "expiresInDays": 0}"#),
        ("past the maximum", r#"{"name": "x", "scopes": ["keys:read"], "expiresInDays": 366}"#),
        ("fractional days", r#"{"name": "x", "scopes": ["keys:read"], "expiresInDays": 1.5}"#),
        ("a user id", r#"{"name": "x", "scopes": ["keys:read"], "expiresInDays": 1, "userId": "auth0|bob"}"#),
        (
            "control characters in the name",
            "{\"name\": \"a\\u0007b\", \"scopes\": [\"keys:read\"], \"expiresInDays\": 1}",
        ),
    ] {
        cases.push(case(format!("create token: {name}"), create(body.to_owned()), 400));
    }

    // The internal consume route's body (signed correctly; the body is the attack).
    let consume_path = format!("/internal/users/{}/credits/consume", in_path(&ada));
    let consume_bodies: Vec<(&str, Vec<u8>)> = vec![
        ("deep JSON", deep_json(10_000).into_bytes()),
        ("invalid UTF-8", b"{\"amount\": 1, \"idempotencyKey\": \"k\xff\", \"reason\": \"r\"}".to_vec()),
        ("unknown field", br#"{"amount": 1, "idempotencyKey": "k", "reason": "r", "userId": "auth0|bob"}"#.to_vec()),
        ("amount past i64", br#"{"amount": 99999999999999999999, "idempotencyKey": "k", "reason": "r"}"#.to_vec()),
        ("negative amount", br#"{"amount": -5, "idempotencyKey": "k", "reason": "r"}"#.to_vec()),
        ("fractional amount", br#"{"amount": 1.5, "idempotencyKey": "k", "reason": "r"}"#.to_vec()),
        ("key with a slash", br#"{"amount": 1, "idempotencyKey": "../k", "reason": "r"}"#.to_vec()),
        ("1 MiB body", vec![b' '; 1 << 20]),
    ];

    let mut checked = 0;
    for Case { name, request, status } in cases {
        let response = request.send().await.unwrap();
        assert_problem(&name, response, status).await;
        checked += 1;
    }
    for (name, body) in consume_bodies {
        let response = api.signed("POST", &consume_path, &body, BILLING_SERVICE, SystemTime::now()).await;
        let status = if body.len() > 64 * 1024 { 413 } else { 400 };
        assert_problem(&format!("consume: {name}"), response, status).await;
        checked += 1;
    }
    // Signed Stripe deliveries whose body is the attack: the signature holds, the JSON does not.
    for (name, body) in [
        ("deep JSON", deep_json(10_000).into_bytes()),
        ("invalid UTF-8", b"{\"id\": \"evt_\xff\", \"type\": \"checkout.session.completed\"}".to_vec()),
        ("not an event", b"[]".to_vec()),
    ] {
        let response = api
            .client
            .post(api.url("/webhooks/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", stripe_header(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_problem(&format!("webhook: {name}"), response, 400).await;
        checked += 1;
    }
    assert_eq!(checked, 82, "cases");

    let provider_calls: u64 = StandIn::ALL.iter().map(|p| api.sandbox.provider_calls().of(*p)).sum();
    assert_eq!(provider_calls, 0, "no provider was called");
    assert!(api.state.store.llm_keys().list(&ada).await.unwrap().is_empty(), "nothing was stored");
    assert_eq!(api.state.store.credits().account(&ada).await.unwrap().balance, 0);
    assert!(api.state.personal_tokens().list(&ada).await.unwrap().is_empty(), "no token was made");
}

async fn assert_problem(name: &str, response: reqwest::Response, status: u16) {
    let got = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap_or_default().to_owned());
    let body = response.text().await.unwrap_or_default();
    assert_eq!(got, status, "{name}: {body}");
    match content_type.as_deref() {
        Some("application/problem+json") => {}
        // API Gateway's own refusal when no route matches (`..` resolved away the provider):
        // no function ran.
        Some("application/json") if got == 404 => assert_eq!(body, r#"{"message":"Not Found"}"#, "{name}"),
        other => panic!("{name}: {other:?} {body}"),
    }
    assert!(!body.contains("PLANTED"), "{name} echoed its input: {body}");
}
