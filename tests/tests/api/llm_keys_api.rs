//! `llm-keys` and `internal-keys` through real HTTP on both backends: the local gateway, the
//! functions, and the provider stand-ins answering for the sandbox's magic keys.

use std::collections::BTreeMap;
use std::time::SystemTime;

use keyward::model::{Provider, UserId};
use keyward::store::table::{Attr, Key};
use keyward::store::{KeyStatus, NewLlmKey};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use keyward_tests::api::{Backend, LocalApi, NOTES_SERVICE, in_path, json};
use keyward_tests::table_writer::TableWriter;
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

fn user(email: &str) -> UserId {
    UserId::parse(&sandbox_subject(email)).unwrap()
}

/// A signed-in user of the local API.
struct Session<'a> {
    api: &'a LocalApi,
    token: String,
}

impl<'a> Session<'a> {
    async fn new(api: &'a LocalApi, email: &str) -> Self {
        Self { api, token: api.user_token(email).await }
    }

    async fn send(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.api.client.request(method.parse().unwrap(), self.api.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn put_key(&self, provider: &str, api_key: &str) -> reqwest::Response {
        self.send("PUT", &format!("/me/llm-keys/{provider}"), Some(json!({ "apiKey": api_key }))).await
    }

    async fn listing(&self) -> Vec<Value> {
        let response = self.send("GET", "/me/llm-keys", None).await;
        assert_eq!(response.status(), 200);
        json(response).await["keys"].as_array().unwrap().clone()
    }
}

/// The internal fetch of `user`'s keys by the notes service (allowed openai, anthropic, zai).
async fn fetch(api: &LocalApi, user: &UserId, providers: &str) -> reqwest::Response {
    let path = format!("/internal/users/{}/llm-keys?providers={}", in_path(user), providers.replace(',', "%2C"));
    api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await
}

/// A problem+json answer: its status, code and body.
async fn problem(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    assert_eq!(response.headers()["content-type"], "application/problem+json", "{status}");
    let body = json(response).await;
    (status, body["code"].as_str().unwrap_or_default().to_owned(), body)
}

fn total_provider_calls(api: &LocalApi) -> u64 {
    StandIn::ALL.iter().map(|p| api.sandbox.provider_calls().of(*p)).sum()
}

async fn a_valid_key_is_checked_sealed_stored_and_listed(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);

    let response = ada.put_key("openai", &key).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let entry = json(response).await;
    assert_eq!(entry["provider"], "openai");
    assert_eq!(entry["preview"], "sk-p…alid");
    assert_eq!(entry["status"], "valid");
    assert_eq!(entry["lastTest"]["ok"], true);
    assert_eq!(entry["lastTest"]["message"], "The OpenAI key works.");
    assert!(entry["lastValidatedAt"].as_str().is_some_and(|t| t.ends_with('Z')), "{entry}");
    assert_eq!(entry["lastUsedAt"], Value::Null);
    assert!(entry.get("region").is_none(), "only Zai keys have a region");
    assert!(!entry.to_string().contains(&key));
    assert_eq!(api.sandbox.provider_calls().of(StandIn::OpenAi), 1, "one validation call");

    let stored = api.state.store.llm_keys().get(&user(ADA), Provider::OpenAi).await.unwrap().unwrap();
    let sealed = stored.sealed.to_bytes();
    assert!(!sealed.windows(key.len()).any(|w| w == key.as_bytes()), "the key is stored sealed, never in the clear");

    let listing = ada.listing().await;
    assert_eq!(listing, vec![entry.clone()]);

    let fetched = fetch(&api, &user(ADA), "openai").await;
    assert_eq!(fetched.status(), 200);
    assert_eq!(json(fetched).await["keys"]["openai"], key.as_str());

    // Replacing keeps the creation time.
    let replaced = json(ada.put_key("openai", &key).await).await;
    assert_eq!(replaced["createdAt"], entry["createdAt"]);
    let trail = api.audit_trail(&user(ADA)).await;
    let puts: Vec<_> = trail.iter().filter(|(action, ..)| action == "llm_key.put").collect();
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|(_, target, outcome)| target.as_deref() == Some("openai") && outcome == "ok"));
}

async fn refused_keys_are_never_stored(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;

    let (status, code, body) =
        problem(ada.put_key("openai", &magic_key(StandIn::OpenAi, Scenario::Invalid)).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_key"));
    assert_eq!(body["provider"], "openai");
    assert_eq!(body["providerStatus"], 401);
    assert_eq!(body["providerCode"], "invalid_api_key");
    assert_eq!(body["providerRequestId"], "req_sandbox0openai");
    assert!(body["detail"].as_str().unwrap().starts_with("The OpenAI API key is invalid"), "{body}");
    assert!(!body.to_string().contains("Incorrect API key") && !body.to_string().contains("sandbox-invalid"));
    assert!(ada.listing().await.is_empty(), "a refused key is not stored");

    // A refused replacement leaves the stored key as it was.
    let valid = magic_key(StandIn::OpenAi, Scenario::Valid);
    assert_eq!(ada.put_key("openai", &valid).await.status(), 200);
    let (status, code, _) =
        problem(ada.put_key("openai", &magic_key(StandIn::OpenAi, Scenario::NoCredits)).await).await;
    assert_eq!((status, code.as_str()), (422, "no_credits"));
    let listing = ada.listing().await;
    assert_eq!(
        (listing.len(), &listing[0]["preview"], &listing[0]["status"]),
        (1, &json!("sk-p…alid"), &json!("valid"))
    );
    assert_eq!(json(fetch(&api, &user(ADA), "openai").await).await["keys"]["openai"], valid.as_str());

    let response = ada.put_key("openai", &magic_key(StandIn::OpenAi, Scenario::RateLimited)).await;
    assert_eq!(response.headers()["retry-after"], "4", "OpenAI said 3.333 s");
    let (status, code, body) = problem(response).await;
    assert_eq!((status, code.as_str()), (422, "rate_limited"));
    assert_eq!(
        body["detail"],
        "OpenAI rate limit reached: tokens per minute 85000/90000 used, need 10000 more. Try again in 4 s."
    );
    assert_eq!(body["providerCode"], "rate_limit_exceeded", "the code in its own field");

    let (status, code, body) =
        problem(ada.put_key("anthropic", &magic_key(StandIn::Anthropic, Scenario::NoCredits)).await).await;
    assert_eq!((status, code.as_str()), (422, "no_credits"));
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.starts_with("Insufficient Anthropic API credits") && detail.contains("console.anthropic.com"));

    let (status, code, _) = problem(ada.put_key("google", &magic_key(StandIn::Gemini, Scenario::Slow)).await).await;
    assert_eq!((status, code.as_str()), (504, "provider_timeout"));

    assert_eq!(ada.listing().await.len(), 1, "only the one valid key is stored");
    let outcomes: Vec<String> = api
        .audit_trail(&user(ADA))
        .await
        .into_iter()
        .rev()
        .filter(|(action, ..)| action == "llm_key.put")
        .map(|(_, target, outcome)| format!("{}:{outcome}", target.unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            "openai:invalid_key",
            "openai:ok",
            "openai:no_credits",
            "openai:rate_limited",
            "anthropic:no_credits",
            "google:provider_timeout"
        ]
    );
}

async fn an_unreachable_provider_is_a_502_and_stores_nothing(backend: Backend) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{port}");
    let api = LocalApi::start_with(backend, &[("KEYWARD_PERPLEXITY_BASE_URL", &closed)]).await;
    let ada = Session::new(&api, ADA).await;
    let (status, code, body) =
        problem(ada.put_key("perplexity", &magic_key(StandIn::Perplexity, Scenario::Valid)).await).await;
    assert_eq!((status, code.as_str()), (502, "provider_unreachable"));
    assert_eq!(body["provider"], "perplexity");
    assert!(body.get("providerStatus").is_none(), "no provider answered");
    assert!(ada.listing().await.is_empty());
}

async fn bad_requests_are_refused_before_any_provider_call(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    let planted = "sk-proj-PLANTED-0123456789abcdef";
    let raw = |content_type: &'static str, body: &'static str| {
        let request = api.client.put(api.url("/me/llm-keys/openai")).bearer_auth(&ada.token);
        request.header("content-type", content_type).body(body).send()
    };
    let cases: Vec<(&str, reqwest::Response, u16, &str)> = vec![
        (
            "no token",
            api.client.put(api.url("/me/llm-keys/openai")).json(&json!({"apiKey": planted})).send().await.unwrap(),
            401,
            "missing_token",
        ),
        ("unknown provider", ada.put_key("mistral", planted).await, 404, "unknown_provider"),
        ("provider in capitals", ada.put_key("OpenAI", planted).await, 404, "unknown_provider"),
        ("path trick", ada.put_key("openai%2F..%2Fzai", planted).await, 404, "unknown_provider"),
        ("not JSON", raw("application/json", "{\"apiKey\": \"sk-proj-PLANTED").await.unwrap(), 400, "invalid_body"),
        ("wrong content type", raw("text/plain", "{}").await.unwrap(), 400, "unsupported_content_type"),
        ("no apiKey", ada.send("PUT", "/me/llm-keys/openai", Some(json!({}))).await, 400, "invalid_body"),
        (
            "unknown field",
            ada.send("PUT", "/me/llm-keys/openai", Some(json!({"apiKey": planted, planted: 1}))).await,
            400,
            "invalid_body",
        ),
        ("another provider's key", ada.put_key("openai", "pplx-PLANTED-0123456789abcdef").await, 400, "wrong_key_kind"),
        ("too short", ada.put_key("openai", "sk-PLANTED").await, 400, "invalid_key_format"),
        ("inner space", ada.put_key("openai", "sk-proj-PLANTED 0123456789").await, 400, "invalid_key_format"),
        (
            "region for openai",
            ada.send("PUT", "/me/llm-keys/openai", Some(json!({"apiKey": planted, "region": "china"}))).await,
            400,
            "invalid_region",
        ),
        (
            "unknown Zai region",
            ada.send("PUT", "/me/llm-keys/zai", Some(json!({"apiKey": "id.PLANTED-secret-0123", "region": "mars"})))
                .await,
            400,
            "invalid_region",
        ),
        (
            "unverified email",
            Session::new(&api, "eve+unverified@example.com").await.put_key("openai", planted).await,
            403,
            "email_unverified",
        ),
        (
            "test of an unknown provider",
            ada.send("POST", "/me/llm-keys/mistral/test", None).await,
            404,
            "unknown_provider",
        ),
        ("delete of an unknown provider", ada.send("DELETE", "/me/llm-keys/x", None).await, 404, "unknown_provider"),
    ];
    for (name, response, status, code) in cases {
        let (got_status, got_code, body) = problem(response).await;
        assert_eq!((got_status, got_code.as_str()), (status, code), "{name}: {body}");
        assert!(!body.to_string().contains("PLANTED"), "{name} echoed the key: {body}");
    }
    assert_eq!(total_provider_calls(&api), 0, "no provider was called");
    assert!(ada.listing().await.is_empty());
}

/// Storing or testing a key needs an email address Auth0 verified: the access token's claim, the
/// configured namespaced one, or the profile recorded at sign-in. A token that says nothing about
/// it, of a user never signed in, is refused; and an application's token is no user's at all.
async fn sensitive_routes_need_a_verified_email_and_a_users_token(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);
    // Auth0's default: no email claims in the access token, and no profile yet.
    let bare = Session::new(&api, "dana+bare@example.com").await;
    assert_eq!(problem(bare.put_key("openai", &key).await).await.1, "email_unverified");
    assert_eq!(problem(bare.send("POST", "/me/llm-keys/openai/test", None).await).await.1, "email_unverified");
    let connect = bare.send("GET", "/me/oauth/google/connect", None).await;
    assert_eq!(problem(connect).await.1, "email_unverified");
    assert!(bare.listing().await.is_empty(), "reading one's own (empty) list needs no verified email");
    // Signed in once on the web: the profile says the address is verified.
    keyward_tests::sign_in::sign_in(&api, "dana+bare@example.com").await;
    assert_eq!(bare.put_key("openai", &key).await.status(), 200);
    // The token's own claim says false: the profile decides only when one of them says true.
    let unverified = Session::new(&api, "erin+unverified@example.com").await;
    let (status, code, _) = problem(unverified.put_key("openai", &key).await).await;
    assert_eq!((status, code.as_str()), (403, "email_unverified"));
    // An application's token (client credentials) acts as nobody.
    let response = api
        .client
        .post(format!("{}oauth/token", api.sandbox.auth0_issuer()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "reporting-job"),
            ("client_secret", keyward_sandbox::auth0::SANDBOX_CLIENT_SECRET),
            ("audience", keyward::config::LOCAL_AUDIENCE),
        ])
        .send()
        .await
        .unwrap();
    let machine = json(response).await["access_token"].as_str().unwrap().to_owned();
    keyward_tests::leaks::plant(&machine);
    let app = Session { api: &api, token: machine };
    for (method, path) in
        [("GET", "/me/llm-keys"), ("PUT", "/me/llm-keys/openai"), ("GET", "/me"), ("GET", "/me/credits")]
    {
        let body = (method == "PUT").then(|| json!({ "apiKey": key }));
        assert_eq!(problem(app.send(method, path, body).await).await.1, "not_a_user_token", "{method} {path}");
    }
}

/// A user's token that another application of the tenant asked for (the password grant with its
/// own `client_id`, so `azp` names it) acts as nobody, unless the operator lists that application.
async fn only_keywards_own_applications_act_for_users(backend: Backend) {
    let token_of = |api: &LocalApi, client_id: &'static str| {
        let request = api.client.post(format!("{}oauth/token", api.sandbox.auth0_issuer())).form(&[
            ("grant_type", "password"),
            ("username", ADA),
            ("password", keyward_sandbox::auth0::SANDBOX_PASSWORD),
            ("audience", keyward::config::LOCAL_AUDIENCE),
            ("client_id", client_id),
        ]);
        async move { json(request.send().await.unwrap()).await["access_token"].as_str().unwrap().to_owned() }
    };
    let api = LocalApi::start(backend).await;
    for (client, expected) in [("keyward-web", 200), ("keyward-cli", 200), ("notes-app", 401), ("Keyward-Web", 401)] {
        let session = Session { api: &api, token: token_of(&api, client).await };
        let response = session.send("GET", "/me", None).await;
        assert_eq!(response.status(), expected, "{client}");
        if expected == 401 {
            assert!(response.headers()["www-authenticate"].to_str().unwrap().contains("wrong_client"), "{client}");
            assert_eq!(problem(response).await.1, "wrong_client", "{client}");
        }
    }
    drop(api);
    let api = LocalApi::start_with(backend, &[("KEYWARD_AUTH0_ALLOWED_CLIENTS", "notes-app, keyward-cli")]).await;
    for (client, expected) in [("notes-app", 200), ("keyward-cli", 200), ("keyward-web", 401)] {
        let session = Session { api: &api, token: token_of(&api, client).await };
        assert_eq!(
            session.send("GET", "/me", None).await.status(),
            expected,
            "the list replaces the default: {client}"
        );
    }
}

async fn zai_keys_keep_their_region(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    let key = magic_key(StandIn::ZaiChina, Scenario::Valid);
    let response = ada.send("PUT", "/me/llm-keys/zai", Some(json!({"apiKey": key, "region": "china"}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(json(response).await["region"], "china");
    assert_eq!(api.sandbox.provider_calls().of(StandIn::ZaiChina), 1, "validated on open.bigmodel.cn's stand-in");
    assert_eq!(api.sandbox.provider_calls().of(StandIn::Zai), 0);

    let fetched = json(fetch(&api, &user(ADA), "zai").await).await;
    assert_eq!(fetched, json!({"keys": {"zai": key}, "regions": {"zai": "china"}}));

    // Re-testing goes to the same platform.
    let tested = json(ada.send("POST", "/me/llm-keys/zai/test", None).await).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(api.sandbox.provider_calls().of(StandIn::ZaiChina), 2);

    // Without a region a Zai key is international.
    let intl = json(ada.put_key("zai", &magic_key(StandIn::Zai, Scenario::Valid)).await).await;
    assert_eq!(intl["region"], "international");
    assert_eq!(api.sandbox.provider_calls().of(StandIn::Zai), 1);
}

async fn retesting_records_the_outcome(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    let (status, code, _) = problem(ada.send("POST", "/me/llm-keys/openai/test", None).await).await;
    assert_eq!((status, code.as_str()), (404, "no_key"));

    // Keys stored while their accounts were fine, which are not any more.
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::NoCredits)).await;
    api.seed_llm_key(&user(ADA), Provider::Anthropic, &magic_key(StandIn::Anthropic, Scenario::Overloaded)).await;
    api.seed_llm_key(&user(ADA), Provider::Gemini, &magic_key(StandIn::Gemini, Scenario::Valid)).await;

    let tested = json(ada.send("POST", "/me/llm-keys/openai/test", None).await).await;
    assert_eq!((&tested["ok"], &tested["code"]), (&json!(false), &json!("no_credits")), "{tested}");
    assert!(tested["message"].as_str().unwrap().starts_with("OpenAI API quota exceeded"));
    let tested = json(ada.send("POST", "/me/llm-keys/anthropic/test", None).await).await;
    assert_eq!((&tested["ok"], &tested["code"]), (&json!(false), &json!("provider_overloaded")));
    let tested = json(ada.send("POST", "/me/llm-keys/google/test", None).await).await;
    assert_eq!(tested["ok"], true);
    assert!(tested.get("code").is_none());

    let listing = ada.listing().await;
    let by_provider = |p: &str| listing.iter().find(|k| k["provider"] == p).unwrap().clone();
    assert_eq!(by_provider("openai")["status"], "invalid", "a key without credits is marked invalid");
    assert_eq!(by_provider("openai")["lastTest"]["ok"], false);
    assert_eq!(by_provider("anthropic")["status"], "valid", "an overloaded provider says nothing about the key");
    assert_eq!(by_provider("anthropic")["lastTest"]["ok"], false);
    assert_eq!(by_provider("google")["status"], "valid");
    assert!(by_provider("google")["lastValidatedAt"].is_string());

    let tests: Vec<_> = api.audit_trail(&user(ADA)).await.into_iter().filter(|(a, ..)| a == "llm_key.test").collect();
    assert_eq!(tests.len(), 3);
}

async fn deletes_are_idempotent(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::Valid)).await;
    api.seed_llm_key(&user(ADA), Provider::Anthropic, &magic_key(StandIn::Anthropic, Scenario::Valid)).await;

    for _ in 0..2 {
        let response = ada.send("DELETE", "/me/llm-keys/openai", None).await;
        assert_eq!(response.status(), 204);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    let listing = ada.listing().await;
    assert_eq!(listing.len(), 1);
    assert_eq!(listing[0]["provider"], "anthropic");
    for _ in 0..2 {
        assert_eq!(ada.send("DELETE", "/me/llm-keys", None).await.status(), 204);
    }
    assert!(ada.listing().await.is_empty());
    assert_eq!(fetch(&api, &user(ADA), "openai,anthropic").await.status(), 404);

    let changes: Vec<_> = api
        .audit_trail(&user(ADA))
        .await
        .into_iter()
        .filter(|(action, ..)| action.starts_with("llm_key.delete"))
        .map(|(action, target, _)| (action, target.unwrap()))
        .collect();
    assert_eq!(
        changes,
        [("llm_key.delete_all".to_owned(), "anthropic".to_owned()), ("llm_key.delete".to_owned(), "openai".to_owned())],
        "one entry per actual change, newest first"
    );
}

async fn validations_are_limited_per_user_and_provider(backend: Backend) {
    let api = LocalApi::start_with(backend, &[("KEYWARD_VALIDATIONS_PER_HOUR", "3")]).await;
    let ada = Session::new(&api, ADA).await;
    let invalid = magic_key(StandIn::OpenAi, Scenario::Invalid);
    for _ in 0..3 {
        assert_eq!(ada.put_key("openai", &invalid).await.status(), 422);
    }
    let response = ada.put_key("openai", &invalid).await;
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3_600).contains(&retry_after), "{retry_after}");
    let (status, code, body) = problem(response).await;
    assert_eq!((status, code.as_str()), (429, "validation_limit"));
    assert!(body["detail"].as_str().unwrap().contains("at most 3 times an hour"), "{body}");
    assert_eq!(api.sandbox.provider_calls().of(StandIn::OpenAi), 3, "the refused check cost the user nothing");

    // Re-tests draw on the same allowance.
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::Valid)).await;
    assert_eq!(ada.send("POST", "/me/llm-keys/openai/test", None).await.status(), 429);

    // Other providers and other users have their own.
    assert_eq!(ada.put_key("anthropic", &magic_key(StandIn::Anthropic, Scenario::Valid)).await.status(), 200);
    let bob = Session::new(&api, BOB).await;
    assert_eq!(bob.put_key("openai", &magic_key(StandIn::OpenAi, Scenario::Valid)).await.status(), 200);
}

async fn a_record_copied_into_another_users_item_is_refused(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);
    let ada_key = api.seed_llm_key(&user(ADA), Provider::OpenAi, &key).await;
    // Bob's item gets Ada's sealed record byte for byte, as someone with table access could do.
    let copy = NewLlmKey {
        provider: Provider::OpenAi,
        sealed: ada_key.sealed.clone(),
        preview: ada_key.preview.clone(),
        status: KeyStatus::Valid,
        test: None,
        zai_region: None,
    };
    keyward_tests::seed_key(&api.state.store, &user(BOB), &copy, 1).await;

    let (status, code, body) = problem(fetch(&api, &user(BOB), "openai").await).await;
    assert_eq!((status, code.as_str()), (500, "internal_error"));
    assert!(!body.to_string().contains(&key));
    let bob = Session::new(&api, BOB).await;
    let (status, _, body) = problem(bob.send("POST", "/me/llm-keys/openai/test", None).await).await;
    assert_eq!(status, 500);
    assert!(!body.to_string().contains(&key));
    assert_eq!(total_provider_calls(&api), 0, "the copied key was never sent anywhere");

    // Ada's own record still opens.
    assert_eq!(json(fetch(&api, &user(ADA), "openai").await).await["keys"]["openai"], key.as_str());
}

/// The table writer relabels Ada's Anthropic key as her OpenAI key (the item copied under
/// `LLMKEY#openai`, its `provider` attribute left, or edited too): a service asking for OpenAI gets
/// neither key, the row is refused, and deleting every key removes both items by their own keys.
async fn a_key_relabelled_in_the_table_opens_for_nobody(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = Session::new(&api, ADA).await;
    let anthropic_key = magic_key(StandIn::Anthropic, Scenario::Valid);
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::Valid)).await;
    api.seed_llm_key(&user(ADA), Provider::Anthropic, &anthropic_key).await;
    let writer = TableWriter(&api.state.store);
    let slot = |provider: &str| Key::new(format!("USER#{}", user(ADA)), format!("LLMKEY#{provider}"));

    writer.copy(&slot("anthropic"), &slot("openai"), &[]).await;
    let response = fetch(&api, &user(ADA), "openai").await;
    let (status, code, body) = problem(response).await;
    assert_eq!((status, code.as_str()), (404, "no_keys"), "the relabelled row is refused: {body}");
    assert!(!body.to_string().contains(&anthropic_key));
    let listing = ada.listing().await;
    assert_eq!(listing.len(), 1, "the listing leaves the tampered row out: {listing:?}");
    assert_eq!(listing[0]["provider"], "anthropic");

    writer.edit(&slot("openai"), &[("provider", Some(Attr::S("openai".into())))]).await;
    let response = fetch(&api, &user(ADA), "openai").await;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, 500, "sealed for the anthropic slot, it opens in no other: {text}");
    assert!(!text.contains(&anthropic_key));

    writer.edit(&slot("openai"), &[("provider", Some(Attr::S("anthropic".into())))]).await;
    assert_eq!(ada.send("DELETE", "/me/llm-keys", None).await.status(), 204);
    for provider in ["openai", "anthropic"] {
        assert!(api.state.store.table().get(&slot(provider)).await.unwrap().is_none(), "{provider} deleted");
    }
    let trail = api.audit_trail(&user(ADA)).await;
    assert_eq!(trail[0], ("llm_key.delete_all".to_owned(), Some("anthropic,openai".to_owned()), "ok".to_owned()));
}

keyward_tests::on_both_backends!(
    only_keywards_own_applications_act_for_users,
    a_key_relabelled_in_the_table_opens_for_nobody,
    a_valid_key_is_checked_sealed_stored_and_listed,
    refused_keys_are_never_stored,
    an_unreachable_provider_is_a_502_and_stores_nothing,
    bad_requests_are_refused_before_any_provider_call,
    sensitive_routes_need_a_verified_email_and_a_users_token,
    zai_keys_keep_their_region,
    retesting_records_the_outcome,
    deletes_are_idempotent,
    validations_are_limited_per_user_and_provider,
    a_record_copied_into_another_users_item_is_refused,
);

/// AWS calls per route on DynamoDB and KMS (moto), counted by an SDK interceptor on the functions'
/// own clients. The figures are the ones the closing note of issue 4 reports.
#[tokio::test]
async fn aws_calls_per_route() {
    let api = LocalApi::start(Backend::Moto).await;
    let ada = Session::new(&api, ADA).await;
    let calls = || api.aws_calls.take_as("LlmKeysFunction");
    calls();

    assert_eq!(ada.put_key("openai", &magic_key(StandIn::OpenAi, Scenario::Valid)).await.status(), 200);
    // The allowance; the deployment's first llm-key seal makes the purpose's first branch key (a
    // look for one, a key from KMS, its transaction); the sealed key and its audit entry in one
    // transaction; the stored key read back (a transaction returns no item).
    assert_eq!(calls(), "DynamoDB.GetItem=2 DynamoDB.TransactWriteItems=2 DynamoDB.UpdateItem=1 KMS.GenerateDataKey=1");
    assert_eq!(ada.put_key("anthropic", &magic_key(StandIn::Anthropic, Scenario::Valid)).await.status(), 200);
    // A warm write: the branch key is cached, so no KMS call at all.
    assert_eq!(calls(), "DynamoDB.GetItem=1 DynamoDB.TransactWriteItems=1 DynamoDB.UpdateItem=1");

    assert_eq!(ada.send("GET", "/me/llm-keys", None).await.status(), 200);
    assert_eq!(calls(), "DynamoDB.Query=1");

    assert_eq!(fetch(&api, &user(ADA), "openai").await.status(), 200);
    // The granted key's read and the audit entry side by side, then the first lastUsed mark; the
    // branch key is cached since the seal.
    assert_eq!(
        api.aws_calls.take_as("InternalKeysFunction"),
        "DynamoDB.GetItem=1 DynamoDB.PutItem=1 DynamoDB.UpdateItem=1"
    );
    assert_eq!(fetch(&api, &user(ADA), "openai").await.status(), 200);
    // Each request is the serving function's, checked against its role as it is made.
    assert_eq!(api.aws_calls.served(), BTreeMap::from([("internal-keys", 2)]));
    // Warm: one read and the audit entry; lastUsed is not due again within the minute; no KMS.
    assert_eq!(api.aws_calls.take_as("InternalKeysFunction"), "DynamoDB.GetItem=1 DynamoDB.PutItem=1");
    // Several providers' keys in one read; anthropic's first lastUsed mark.
    assert_eq!(fetch(&api, &user(ADA), "openai,anthropic").await.status(), 200);
    assert_eq!(
        api.aws_calls.take_as("InternalKeysFunction"),
        "DynamoDB.BatchGetItem=1 DynamoDB.PutItem=1 DynamoDB.UpdateItem=1"
    );

    assert_eq!(ada.send("POST", "/me/llm-keys/openai/test", None).await.status(), 200);
    assert_eq!(calls(), "DynamoDB.GetItem=1 DynamoDB.PutItem=1 DynamoDB.UpdateItem=2");

    assert_eq!(ada.send("DELETE", "/me/llm-keys/openai", None).await.status(), 204);
    assert_eq!(calls(), "DynamoDB.DeleteItem=1 DynamoDB.PutItem=1");

    calls();
    assert_eq!(ada.send("DELETE", "/me/llm-keys", None).await.status(), 204);
    assert_eq!(calls(), "DynamoDB.PutItem=1 DynamoDB.Query=1 DynamoDB.TransactWriteItems=1");
}

/// `GET /llm-providers` is public and lists every provider the API stores keys for, each with what
/// a UI needs to ask for a key; every one of them round-trips through `PUT` with its magic key.
#[tokio::test]
async fn the_provider_list_is_public_and_every_listed_provider_takes_keys() {
    let api = LocalApi::start(Backend::Embedded).await;
    let response = api.client.get(api.url("/llm-providers")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let listed = json(response).await["providers"].as_array().unwrap().clone();
    let slugs: Vec<&str> = listed.iter().map(|p| p["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, Provider::ALL.iter().map(|p| p.slug()).collect::<Vec<_>>());
    for provider in &listed {
        assert!(provider["consoleUrl"].as_str().unwrap().starts_with("https://"), "{provider}");
        assert!(
            !provider["displayName"].as_str().unwrap().is_empty() && !provider["keyHint"].as_str().unwrap().is_empty()
        );
    }
    let zai = listed.iter().find(|p| p["slug"] == "zai").unwrap();
    assert_eq!(zai["regions"], json!(["international", "china"]));
    let ada = Session::new(&api, ADA).await;
    let stand_ins = [
        ("google", StandIn::Gemini),
        ("openai", StandIn::OpenAi),
        ("anthropic", StandIn::Anthropic),
        ("perplexity", StandIn::Perplexity),
        ("zai", StandIn::Zai),
        ("openrouter", StandIn::OpenRouter),
    ];
    for slug in slugs {
        let (_, stand_in) = stand_ins.iter().find(|(s, _)| *s == slug).expect("a stand-in for every listed provider");
        let response = ada.put_key(slug, &magic_key(*stand_in, Scenario::Valid)).await;
        assert_eq!(response.status(), 200, "{slug}");
    }
    assert_eq!(ada.listing().await.len(), Provider::ALL.len());
}
