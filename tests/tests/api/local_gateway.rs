//! The local gateway through real HTTP, on both backends: it serves exactly the routes of
//! `template.yaml`, does API Gateway's IAM authorization for `/internal/*` routes (403 before the
//! function runs), and hands signed callers to the function with their principal.

use std::process::Command;
use std::time::{Duration, SystemTime};

use keyward::model::Provider;
use keyward::model::UserId;
use keyward::store::{Actor, AuditAction, now_epoch};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{Backend, LocalApi, NOTES_SERVICE, Principal, STRANGER, botocore_python, in_path, json};
use serde_json::Value;

const OPENAI_KEY: &str = "sk-proj-LOCALGATEWAY-0123456789abcdefghijklmnop";
const ANTHROPIC_KEY: &str = "sk-ant-api03-LOCALGATEWAY-0123456789abcdefghijkl";
const USER_EMAIL: &str = "ada@example.com";

fn user() -> UserId {
    UserId::parse(&sandbox_subject(USER_EMAIL)).unwrap()
}

/// API Gateway's own 404 (`{"message": "Not Found"}`), as opposed to a function's problem+json.
async fn assert_gateway_not_found(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 404, "{what}");
    assert_eq!(response.headers()["content-type"], "application/json", "{what}");
    assert_eq!(json(response).await, serde_json::json!({"message": "Not Found"}), "{what}");
}

async fn every_template_route_is_served_and_nothing_else(backend: Backend) {
    let api = LocalApi::start(backend).await;
    assert!(api.routes.routes().len() >= 8, "the template's routes were read");
    for route in api.routes.routes() {
        let path = route.path.replace("{uid}", &in_path(&user())).replace("{provider}", "google");
        let method = route.method.as_str();
        let response = if route.iam {
            api.signed(method, &path, b"", NOTES_SERVICE, SystemTime::now()).await
        } else {
            api.client.request(method.parse().unwrap(), api.url(&path)).send().await.unwrap()
        };
        let key = route.key();
        assert!(response.headers().contains_key("apigw-requestid"), "{key}");
        let status = response.status();
        if status.is_redirection() {
            // `/auth/login` answers with a redirect to Auth0: its function ran.
            assert!(response.headers().contains_key("location"), "{key}");
            continue;
        }
        let body = json(response).await;
        assert!(body.get("message").is_none(), "{key} was answered by the gateway, not its function: {body}");
        assert_ne!(body["code"], "route_not_found", "{key}: function {} has no handler for it", route.function);
        assert!(status.is_success() || status.is_client_error(), "{key}: {status} {body}");
    }

    for (method, path) in [
        ("GET", "/"),
        ("GET", "/health"),
        ("GET", "/health/another-function"),
        ("POST", "/health/llm-keys"),
        ("DELETE", "/me/llm-keys/extra/segment"),
        ("GET", "/internal/users"),
        ("GET", "/internal/users/x/llm-keys/more"),
        ("GET", "/me/llm-keys/"),
    ] {
        let response = api.client.request(method.parse().unwrap(), api.url(path)).send().await.unwrap();
        assert_gateway_not_found(response, &format!("{method} {path}")).await;
    }
}

async fn signed_requests_reach_the_function_with_their_principal(backend: Backend) {
    let api = LocalApi::start(backend).await;
    api.seed_llm_key(&user(), Provider::OpenAi, OPENAI_KEY).await;
    api.seed_llm_key(&user(), Provider::Anthropic, ANTHROPIC_KEY).await;
    let path = format!("/internal/users/{}/llm-keys?providers=openai%2Canthropic", in_path(&user()));

    let response = api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let keys = json(response).await;
    assert_eq!(keys["keys"]["openai"], OPENAI_KEY);
    assert_eq!(keys["keys"]["anthropic"], ANTHROPIC_KEY);

    let used = api.state.store.llm_keys().get(&user(), Provider::OpenAi).await.unwrap().unwrap().last_used_at;
    assert!(used.is_some_and(|at| (now_epoch() - at).abs() <= 5), "a fetch marks the key used");

    // The payload is part of the signature: a correctly signed body passes too.
    let response = api.signed("GET", &path, b"{\"a\":1}", NOTES_SERVICE, SystemTime::now()).await;
    assert_eq!(response.status(), 200);
    let again = api.state.store.llm_keys().get(&user(), Provider::OpenAi).await.unwrap().unwrap().last_used_at;
    assert_eq!(again, used, "within a minute the mark is not rewritten");

    // The function saw the principal the gateway verified: it is on the audit trail.
    let audit = api.state.store.audit().list(&user(), 10, None).await.unwrap().items;
    let fetches: Vec<_> = audit.iter().filter(|e| e.action == AuditAction::LlmKeyFetch).collect();
    assert_eq!(fetches.len(), 2);
    assert_eq!(fetches[0].actor, Actor::Service(NOTES_SERVICE.arn.to_owned()));

    // A correctly signed principal that is on no allow-list reaches the function, which refuses it.
    let response = api.signed("GET", &path, b"", STRANGER, SystemTime::now()).await;
    assert_eq!(response.status(), 403);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert_eq!(json(response).await["code"], "principal_not_allowed");
    let fetches = api.audit_trail(&user()).await.into_iter().filter(|(action, _, _)| action == "llm_key.fetch").count();
    assert_eq!(fetches, 2, "a refused fetch leaves no trace of a read");
}

async fn the_gateway_refuses_bad_signatures_before_the_function_runs(backend: Backend) {
    let api = LocalApi::start(backend).await;
    api.seed_llm_key(&user(), Provider::OpenAi, OPENAI_KEY).await;
    let path = format!("/internal/users/{}/llm-keys", in_path(&user()));
    let url = api.url(&path);
    let now = SystemTime::now();
    let wrong_secret = Principal { secret: "not-the-secret-0123456789abcdefghijklmno", ..NOTES_SERVICE };
    let unknown = Principal { access_key: "AKIAUNKNOWN000000000", ..NOTES_SERVICE };

    let send = |headers: Vec<(String, String)>, target: String, body: &'static [u8]| {
        let mut request = api.client.get(target).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let sign = |target: &str, body: &[u8], principal: Principal, time: SystemTime| {
        keyward_tests::api::sigv4_headers("GET", target, body, principal.access_key, principal.secret, time)
    };
    let cases: Vec<(&str, reqwest::Response, &str)> = vec![
        ("unsigned", api.client.get(&url).send().await.unwrap(), "ForbiddenException"),
        (
            "wrong secret",
            send(sign(&url, b"", wrong_secret, now), url.clone(), b"").await.unwrap(),
            "InvalidSignatureException",
        ),
        (
            "unknown access key",
            send(sign(&url, b"", unknown, now), url.clone(), b"").await.unwrap(),
            "UnrecognizedClientException",
        ),
        (
            "tampered body",
            send(sign(&url, b"{\"a\":1}", NOTES_SERVICE, now), url.clone(), b"{\"a\":2}").await.unwrap(),
            "InvalidSignatureException",
        ),
        (
            "tampered query",
            send(sign(&url, b"", NOTES_SERVICE, now), format!("{url}?providers=anthropic"), b"").await.unwrap(),
            "InvalidSignatureException",
        ),
        (
            "expired date",
            send(sign(&url, b"", NOTES_SERVICE, now - Duration::from_secs(600)), url.clone(), b"").await.unwrap(),
            "InvalidSignatureException",
        ),
        (
            "future date",
            send(sign(&url, b"", NOTES_SERVICE, now + Duration::from_secs(600)), url.clone(), b"").await.unwrap(),
            "InvalidSignatureException",
        ),
    ];
    for (name, response, error_type) in cases {
        assert_eq!(response.status(), 403, "{name}");
        assert_eq!(response.headers()["x-amzn-errortype"], error_type, "{name}");
        let body = json(response).await;
        assert!(body["message"].is_string() && body.get("code").is_none(), "{name}: the gateway answered: {body}");
    }

    // Wrong region and wrong service in the credential scope.
    let signed = sign(&url, b"", NOTES_SERVICE, now);
    for (from, to) in [("/us-east-1/", "/eu-west-1/"), ("/execute-api/", "/lambda/")] {
        let headers = signed.iter().map(|(n, v)| (n.clone(), v.replace(from, to))).collect();
        let response = send(headers, url.clone(), b"").await.unwrap();
        assert_eq!(response.status(), 403, "scope {to}");
        assert_eq!(response.headers()["x-amzn-errortype"], "IncompleteSignatureException");
    }

    let fetches = api.audit_trail(&user()).await.into_iter().filter(|(action, _, _)| action == "llm_key.fetch").count();
    assert_eq!(fetches, 0, "no refused request reached the function");
    let stored = api.state.store.llm_keys().get(&user(), Provider::OpenAi).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, None, "no refused request reached the function");
}

async fn user_routes_answer_with_the_functions_own_401(backend: Backend) {
    let api = LocalApi::start(backend).await;
    api.seed_llm_key(&user(), Provider::OpenAi, OPENAI_KEY).await;

    let response = api.client.get(api.url("/me/llm-keys")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(json(response).await["code"], "missing_token");

    let token = api.user_token(USER_EMAIL).await;
    let response = api.client.get(api.url("/me/llm-keys")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let listing = json(response).await;
    assert_eq!(listing["keys"][0]["provider"], "openai");
    assert_eq!(listing["keys"][0]["preview"], "sk-p…mnop");
    assert!(!listing.to_string().contains(OPENAI_KEY), "a listing never carries the key");

    // IAM credentials are not a user's identity.
    let response = api.signed("GET", "/me/llm-keys", b"", NOTES_SERVICE, SystemTime::now()).await;
    assert_eq!(response.status(), 401);
}

/// An internal service written in Python signs with botocore, as the AWS SDK for Python does.
async fn botocore_signed_requests_are_accepted(backend: Backend) {
    let api = LocalApi::start(backend).await;
    api.seed_llm_key(&user(), Provider::OpenAi, OPENAI_KEY).await;
    let script = r#"
import json, sys, urllib.request, urllib.error
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, access_key, secret = sys.argv[1:4]
request = AWSRequest(method="GET", url=url)
SigV4Auth(Credentials(access_key, secret), "execute-api", "us-east-1").add_auth(request)
try:
    response = urllib.request.urlopen(urllib.request.Request(url, headers=dict(request.headers.items())))
    print(json.dumps({"status": response.status, "body": json.loads(response.read())}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": json.loads(e.read())}))
"#;
    let url = api.url(&format!("/internal/users/{}/llm-keys?providers=openai%2Canthropic", in_path(&user())));
    let run = |principal: Principal| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(botocore_python())
                .args(["-c", script, &url, principal.access_key, principal.secret])
                .output()
                .expect("run python")
        })
    };
    let output = run(NOTES_SERVICE).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["body"]["keys"]["openai"], OPENAI_KEY);

    let wrong = Principal { secret: "not-the-secret-0123456789abcdefghijklmno", ..NOTES_SERVICE };
    let output = run(wrong).await.unwrap();
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["status"], 403, "{result}");
}

keyward_tests::on_both_backends!(
    every_template_route_is_served_and_nothing_else,
    signed_requests_reach_the_function_with_their_principal,
    the_gateway_refuses_bad_signatures_before_the_function_runs,
    user_routes_answer_with_the_functions_own_401,
    botocore_signed_requests_are_accepted,
);
