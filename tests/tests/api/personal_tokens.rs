//! Personal access tokens end to end, through the local gateway on both backends: every user route
//! of the route tables answers by the scope its credential carries (generated from the tables, so a
//! new route is covered the day it is declared), and a token stops working on its very next request
//! once revoked or expired.

use keyward::auth::Access;
use keyward::model::{ManualClock, Scope, UserId};
use keyward::use_cases::access_tokens::{NewToken, PersonalTokens};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use keyward_tests::api::{APP_ORIGIN, Backend, LocalApi, json};
use keyward_tests::sign_in::sign_in;
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

/// `POST /me/tokens` as `bearer`: the created token's JSON.
async fn create(api: &LocalApi, bearer: &str, scopes: &[&str], days: i64) -> Value {
    let body = json!({"name": "ci", "scopes": scopes, "expiresInDays": days});
    let response = api.client.post(api.url("/me/tokens")).bearer_auth(bearer).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created = json(response).await;
    // The leak audit looks for every token made in every log line of the run.
    keyward_tests::leaks::plant(created["token"].as_str().unwrap());
    created
}

/// A request of `route` (`METHOD /path/{param}`) as `bearer`, with the path's parameters and body
/// filled in so the route's own checks pass.
async fn call(api: &LocalApi, route: &str, bearer: &str) -> reqwest::Response {
    call_with(api, route, |request| request.bearer_auth(bearer)).await
}

/// The same request from a page of the app, signed in by the session cookie `handle`.
async fn call_by_cookie(api: &LocalApi, route: &str, handle: &str) -> reqwest::Response {
    let cookie = format!("__Host-keyward-session={handle}");
    call_with(api, route, |request| request.header("cookie", cookie).header("origin", APP_ORIGIN)).await
}

async fn call_with(
    api: &LocalApi,
    route: &str,
    credential: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> reqwest::Response {
    let (method, template) = route.split_once(' ').unwrap();
    let provider = if template.starts_with("/me/oauth/") { "google" } else { "openai" };
    let path = template.replace("{provider}", provider).replace("{id}", "tok_0000000000000000");
    let mut request = credential(api.client.request(method.parse().unwrap(), api.url(&path)));
    request = match route {
        "PUT /me/llm-keys/{provider}" => request.json(&json!({"apiKey": magic_key(StandIn::OpenAi, Scenario::Valid)})),
        "POST /me/tokens" => request.json(&json!({"name": "x", "scopes": ["keys:read"], "expiresInDays": 1})),
        _ => request,
    };
    request.send().await.unwrap()
}

/// A route the credential was let through to: whatever the handler answered, it was not a refusal
/// of the credential.
async fn let_through(route: &str, response: reqwest::Response, who: &str) {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(
        status != 401
            && !["insufficient_scope", "invalid_token", "origin_not_allowed"].iter().any(|code| text.contains(code)),
        "{route} as {who}: {status} {text}"
    );
}

/// 403 `insufficient_scope`, naming `missing` in the challenge and in `missingScopes`.
async fn refused_for_scope(route: &str, response: reqwest::Response, missing: Option<Scope>) {
    assert_eq!(response.status(), 403, "{route}");
    let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.starts_with("Bearer ") && challenge.contains("error=\"insufficient_scope\""), "{challenge}");
    let problem = json(response).await;
    assert_eq!(problem["code"], "insufficient_scope", "{route}: {problem}");
    match missing {
        Some(scope) => {
            assert!(challenge.contains(&format!("scope=\"{scope}\"")), "{route}: {challenge}");
            assert_eq!(problem["missingScopes"], json!([scope.as_str()]), "{route}");
        }
        None => {
            assert_eq!(problem["missingScopes"], json!([]), "{route}");
            assert!(problem["detail"].as_str().unwrap().contains("sign-in"), "{route}: {problem}");
        }
    }
}

/// Every user route × {an Auth0 token, the session cookie, a token with the route's scope, a token
/// without it}; a sign-in-only route takes an Auth0 token and the cookie, and refuses even a token
/// with every scope.
async fn every_user_route_answers_by_the_scope_its_credential_carries(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let signed_in = api.user_token(ADA).await;
    let cookie = sign_in(&api, ADA).await;
    let mut with = std::collections::BTreeMap::new();
    for scope in Scope::ALL {
        with.insert(scope, create(&api, &signed_in, &[scope.as_str()], 1).await["token"].as_str().unwrap().to_owned());
    }
    let every: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    let all_scopes = create(&api, &signed_in, &every, 1).await["token"].as_str().unwrap().to_owned();
    let mut covered = 0;
    for routes in keyward_local::all_routes() {
        for (route, access) in routes.table() {
            match access {
                Access::User(scope) => {
                    let_through(route, call(&api, route, &signed_in).await, "an Auth0 token").await;
                    let_through(route, call_by_cookie(&api, route, &cookie).await, "the session cookie").await;
                    let_through(route, call(&api, route, &with[&scope]).await, "a token with its scope").await;
                    let other = Scope::ALL.into_iter().find(|s| *s != scope).unwrap();
                    refused_for_scope(route, call(&api, route, &with[&other]).await, Some(scope)).await;
                }
                Access::SignedIn => {
                    let_through(route, call(&api, route, &signed_in).await, "an Auth0 token").await;
                    let_through(route, call_by_cookie(&api, route, &cookie).await, "the session cookie").await;
                    refused_for_scope(route, call(&api, route, &all_scopes).await, None).await;
                }
                Access::Public | Access::Service(_) => continue,
            }
            covered += 1;
        }
    }
    assert!(covered >= 13, "{covered} user routes");
}

/// Revoked, expired, unknown, mistyped: one 401 `invalid_token` for all, each on the very next
/// request; another user's id is 404 and changes nothing.
async fn a_token_is_refused_on_its_next_request_once_revoked_or_expired(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = api.user_token(ADA).await;
    let created = create(&api, &ada, &["keys:read"], 30).await;
    let token = created["token"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap();
    let me = |bearer: String| {
        let request = api.client.get(api.url("/me/llm-keys")).bearer_auth(bearer);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(me(token.clone()).await.status(), 200);

    let listed = json(api.client.get(api.url("/me/tokens")).bearer_auth(&ada).send().await.unwrap()).await;
    assert_eq!(listed["tokens"][0]["id"], id);
    assert!(listed["tokens"][0]["lastUsedAt"].is_string(), "{listed}");
    assert!(!listed.to_string().contains(&token[7..]), "the list never shows a token");

    let bob = api.user_token(BOB).await;
    let foreign = api.client.delete(api.url(&format!("/me/tokens/{id}"))).bearer_auth(&bob).send().await.unwrap();
    assert_eq!(foreign.status(), 404);
    assert_eq!(me(token.clone()).await.status(), 200, "another user's revoke changes nothing");

    let revoked = api.client.delete(api.url(&format!("/me/tokens/{id}"))).bearer_auth(&ada).send().await.unwrap();
    assert_eq!(revoked.status(), 204);
    let again = api.client.delete(api.url(&format!("/me/tokens/{id}"))).bearer_auth(&ada).send().await.unwrap();
    assert_eq!(again.status(), 404, "already revoked: the same answer as unknown");

    // A token made two days ago for one day, by the use case on the API's own store and keyring.
    let settings = api.state.config.personal_tokens.clone();
    let earlier = ManualClock::at(keyward::store::now_epoch() - 2 * 86_400);
    let tokens =
        PersonalTokens { store: &api.state.store, envelope: &api.state.envelope, clock: &earlier, settings: &settings };
    let user = keyward::auth::UserCaller::signed_in(UserId::parse(&sandbox_subject(ADA)).unwrap(), None, Some(true));
    let asked = NewToken { name: "old".into(), scopes: vec!["keys:read".into()], expires_in_days: Some(1) };
    let expired = tokens.create(&user, asked).await.unwrap().token.expose().to_owned();
    keyward_tests::leaks::plant(&expired);

    let mut typo = token.clone().into_bytes();
    typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();
    let unknown = settings.format.generate().expose().to_owned();
    for (what, bearer) in [("revoked", token), ("expired", expired), ("mistyped", typo), ("unknown", unknown)] {
        let response = me(bearer).await;
        assert_eq!(response.status(), 401, "{what}");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
        let problem = json(response).await;
        assert_eq!(problem["code"], "invalid_token", "{what}");
        assert_eq!(problem["detail"], "The token is malformed, unknown, revoked or expired.", "{what}: one answer");
    }
}

/// GitHub's alert for a live token, signed as GitHub signs (by the sandbox's stand-in): the token is
/// revoked at once and audited as leaked with its URL, whatever type GitHub gave it; the feedback
/// labels each report by hash. Forged, re-signed, unknown-key, unsigned and malformed alerts are
/// 400 and revoke nothing.
async fn a_signed_leak_alert_revokes_a_live_token_and_forged_ones_revoke_nothing(backend: Backend) {
    use keyward_sandbox::github::{Signer, deliver};
    let api = LocalApi::start(backend).await;
    let ada = api.user_token(ADA).await;
    let leaked = create(&api, &ada, &["keys:read"], 30).await;
    let kept = create(&api, &ada, &["keys:read"], 30).await["token"].as_str().unwrap().to_owned();
    let leaked_token = leaked["token"].as_str().unwrap();
    let works = |bearer: String| {
        let request = api.client.get(api.url("/me/llm-keys")).bearer_auth(bearer);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let endpoint = api.url("/tokens/leaks");
    let alert = |token: &str, kind: &str| {
        json!([{"token": token, "type": kind, "url": "https://github.com/octocat/hello/blob/1/.env", "source": "content"}])
            .to_string()
    };

    // Forgeries first: none may revoke anything.
    let github = api.sandbox.github_signer();
    let mut impostor = Signer::generate();
    impostor.id = github.id.clone();
    let body = alert(&kept, "keyward_personal_access_token");
    let (status, answer) = deliver(&impostor, &endpoint, body.as_bytes()).await.unwrap();
    assert_eq!((status, code(&answer)), (400, "alert_signature_mismatch".to_owned()), "another key under GitHub's id");
    let (status, answer) = deliver(&Signer::generate(), &endpoint, body.as_bytes()).await.unwrap();
    assert_eq!((status, code(&answer)), (400, "alert_key_unknown".to_owned()));
    let unsigned = api.client.post(&endpoint).header("content-type", "application/json").body(body.clone()).send();
    let unsigned = json(unsigned.await.unwrap()).await;
    assert_eq!(unsigned["code"], "alert_unsigned");
    let signature = github.sign(body.as_bytes());
    let altered = body.replace("octocat", "0ctocat");
    let response = api
        .client
        .post(&endpoint)
        .header("Github-Public-Key-Identifier", &github.id)
        .header("Github-Public-Key-Signature", signature)
        .body(altered)
        .send()
        .await
        .unwrap();
    assert_eq!(json(response).await["code"], "alert_signature_mismatch", "a body changed after signing");
    let (status, answer) = deliver(github, &endpoint, b"{\"token\": 1}").await.unwrap();
    assert_eq!((status, code(&answer)), (400, "alert_malformed".to_owned()));
    assert_eq!(works(kept.clone()).await, 200, "no forgery revoked anything");

    // The real thing: one live token (under another type name) and one that is not keyward's.
    let stranger = api.state.config.personal_tokens.format.generate().expose().to_owned();
    let body = format!(
        "[{},{}]",
        alert(leaked_token, "some_other_type").trim_matches(|c| c == '[' || c == ']'),
        alert(&stranger, "keyward_personal_access_token").trim_matches(|c| c == '[' || c == ']')
    );
    let (status, answer) = deliver(github, &endpoint, body.as_bytes()).await.unwrap();
    assert_eq!(status, 200, "{answer}");
    let feedback: Value = serde_json::from_str(&answer).unwrap();
    let hash = |token: &str| keyward::secret::digest(token);
    assert_eq!(
        feedback,
        json!([
            {"token_hash": hash(leaked_token), "token_type": "some_other_type", "label": "true_positive"},
            {"token_hash": hash(&stranger), "token_type": "keyward_personal_access_token", "label": "false_positive"}
        ])
    );
    assert!(!answer.contains(leaked_token), "the feedback never echoes a token");
    assert_eq!(works(leaked_token.to_owned()).await, 401, "revoked at once");
    assert_eq!(works(kept).await, 200, "only the leaked token");
    let trail = api.audit_trail(&UserId::parse(&sandbox_subject(ADA)).unwrap()).await;
    let id = leaked["id"].as_str().unwrap().to_owned();
    assert_eq!(
        trail[0],
        (
            "personal_token.leaked".to_owned(),
            Some(id),
            "leaked:https://github.com/octocat/hello/blob/1/.env".to_owned()
        )
    );
}

fn code(answer: &str) -> String {
    serde_json::from_str::<Value>(answer).unwrap()["code"].as_str().unwrap_or_default().to_owned()
}

/// Creates racing for the last places under the per-user limit: exactly as many succeed as there
/// were places, the others are 409 `too_many_tokens`, and the list holds the limit, never more.
async fn racing_creates_never_pass_the_per_user_limit(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = api.user_token(ADA).await;
    let limit = api.state.config.personal_tokens.per_user as usize;
    for _ in 0..limit - 3 {
        create(&api, &ada, &["keys:read"], 1).await;
    }
    let body = json!({"name": "racing", "scopes": ["keys:read"], "expiresInDays": 1});
    let post = || api.client.post(api.url("/me/tokens")).bearer_auth(&ada).json(&body).send();
    let mut created = 0;
    for answer in futures::future::join_all((0..8).map(|_| post())).await {
        let answer = answer.unwrap();
        if answer.status() == 201 {
            keyward_tests::leaks::plant(json(answer).await["token"].as_str().unwrap());
            created += 1;
        } else {
            assert_eq!(answer.status(), 409);
            assert_eq!(json(answer).await["code"], "too_many_tokens");
        }
    }
    assert_eq!(created, 3, "the places there were");
    let listed = json(api.client.get(api.url("/me/tokens")).bearer_auth(&ada).send().await.unwrap()).await;
    assert_eq!(listed["tokens"].as_array().unwrap().len(), limit);
}

keyward_tests::on_both_backends!(
    racing_creates_never_pass_the_per_user_limit,
    every_user_route_answers_by_the_scope_its_credential_carries,
    a_token_is_refused_on_its_next_request_once_revoked_or_expired,
    a_signed_leak_alert_revokes_a_live_token_and_forged_ones_revoke_nothing,
);

/// A bearer with the prefix but a wrong checksum is refused before any AWS call; a well-formed one
/// costs one `GetItem` (the branch key is cached once warm), and `lastUsedAt` is written at most
/// once a minute.
#[tokio::test]
async fn a_checksum_failure_reads_nothing_and_a_token_costs_one_get_item_and_a_cookie_two() {
    let api = LocalApi::start(Backend::Moto).await;
    let ada = api.user_token(ADA).await;
    let token = create(&api, &ada, &["keys:read"], 1).await["token"].as_str().unwrap().to_owned();
    let get = |bearer: &str| api.client.get(api.url("/me/llm-keys")).bearer_auth(bearer).send();

    let mut forged = token[..token.len() - 6].to_owned();
    forged.push_str("000000");
    api.aws_calls.reset();
    assert_eq!(get(&forged).await.unwrap().status(), 401);
    assert_eq!(api.aws_calls.counts(), Default::default(), "no AWS call at all for a bad checksum");

    assert_eq!(get(&token).await.unwrap().status(), 200, "warms the branch key, marks the first use");
    api.aws_calls.reset();
    assert_eq!(get(&token).await.unwrap().status(), 200);
    let calls = api.aws_calls.counts();
    assert_eq!(calls.get("DynamoDB.GetItem"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("DynamoDB.UpdateItem"), None, "lastUsedAt moved less than a minute ago: {calls:?}");
    assert!(!calls.keys().any(|op| op.starts_with("KMS.")), "{calls:?}");

    // The session cookie: its handle and its family (two GetItems) and a MAC, no KMS call warm.
    let cookie = format!("__Host-keyward-session={}", sign_in(&api, ADA).await);
    let by_cookie = || api.client.get(api.url("/me/llm-keys")).header("cookie", &cookie).send();
    assert_eq!(by_cookie().await.unwrap().status(), 200, "warms the session branch key");
    api.aws_calls.reset();
    assert_eq!(by_cookie().await.unwrap().status(), 200);
    let calls = api.aws_calls.counts();
    assert_eq!(calls.get("DynamoDB.GetItem"), Some(&2), "{calls:?}");
    assert_eq!(calls.get("DynamoDB.Query"), Some(&1), "the keys themselves: {calls:?}");
    assert!(!calls.keys().any(|op| op.starts_with("KMS.")), "{calls:?}");
}
