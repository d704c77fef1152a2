//! Authorization corpus: every `/internal/*` route called by a principal that is not allowed at all
//! and by one that lacks the route's grant, a fetch for providers outside the caller's grant, and
//! user routes carrying another user's id in the path, the query or the body (IDOR). Every case is
//! refused or answered with the caller's own data only; the other user's data is neither shown nor
//! changed.

use std::time::SystemTime;

use keyward::model::Provider;
use keyward::model::UserId;
use keyward_sandbox::auth0::sandbox_subject;
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use keyward_tests::api::{
    BILLING_SERVICE, Backend, CALENDAR_SERVICE, LocalApi, NOTES_SERVICE, Principal, STRANGER, in_path, json,
};
use serde_json::json;

const ADA: &str = "ada@example.com";
const BOB: &str = "bob@example.com";

fn user(email: &str) -> UserId {
    UserId::parse(&sandbox_subject(email)).unwrap()
}

#[tokio::test]
async fn internal_routes_refuse_principals_without_the_grant() {
    let api = LocalApi::start(Backend::Embedded).await;
    let ada = user(ADA);
    let openai = magic_key(StandIn::OpenAi, Scenario::Valid);
    let perplexity = magic_key(StandIn::Perplexity, Scenario::Valid);
    api.seed_llm_key(&ada, Provider::OpenAi, &openai).await;
    api.seed_llm_key(&ada, Provider::Perplexity, &perplexity).await;
    let uid = in_path(&ada);
    let consume = json!({ "amount": 1, "idempotencyKey": "k-1", "reason": "r" }).to_string();

    let routes: [(&str, String, &[u8], &[Principal]); 4] = [
        ("GET", format!("/internal/users/{uid}/llm-keys"), b"", &[CALENDAR_SERVICE, BILLING_SERVICE]),
        ("GET", format!("/internal/users/{uid}/oauth/google/token"), b"", &[NOTES_SERVICE, BILLING_SERVICE]),
        ("GET", format!("/internal/users/{uid}/credits"), b"", &[NOTES_SERVICE, CALENDAR_SERVICE]),
        (
            "POST",
            format!("/internal/users/{uid}/credits/consume"),
            consume.as_bytes(),
            &[NOTES_SERVICE, CALENDAR_SERVICE],
        ),
    ];
    let mut cases = 0;
    for (method, path, body, without_grant) in &routes {
        let refusals = std::iter::once((STRANGER, "principal_not_allowed"))
            .chain(without_grant.iter().map(|p| (*p, "grant_missing")));
        for (principal, code) in refusals {
            let response = api.signed(method, path, body, principal, SystemTime::now()).await;
            let status = response.status().as_u16();
            let answer = json(response).await;
            assert_eq!((status, answer["code"].as_str().unwrap()), (403, code), "{method} {path} as {}", principal.arn);
            cases += 1;
        }
    }

    // The notes service may fetch OpenAI, Anthropic and Zai keys, never Perplexity's or Google's.
    let api = &api;
    let fetch = |providers: &str| {
        let path = format!("/internal/users/{uid}/llm-keys?providers={providers}");
        async move { api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await }
    };
    for providers in ["perplexity", "google", "perplexity%2Cgoogle"] {
        let response = fetch(providers).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        assert_eq!(status, 403, "{providers}: {body}");
        assert!(!body.contains(&perplexity), "{providers}");
        cases += 1;
    }
    for providers in ["openai%2Cperplexity", ""] {
        let response = fetch(providers).await;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        // An empty list is refused as malformed; a mixed one yields only what the grant covers.
        if providers.is_empty() {
            assert_eq!(status, 400, "empty list: {body}");
        } else {
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(&openai) && !body.contains(&perplexity), "{providers}: {body}");
        }
        cases += 1;
    }
    assert_eq!(cases, 17);
}

#[tokio::test]
async fn user_routes_never_reach_another_users_data() {
    let api = LocalApi::start(Backend::Embedded).await;
    let (ada, bob) = (user(ADA), user(BOB));
    let bobs_key = api.seed_llm_key(&bob, Provider::OpenAi, &magic_key(StandIn::OpenAi, Scenario::Valid)).await;
    let token = api.user_token(ADA).await;
    let bob_ids = [bob.as_str().to_owned(), in_path(&bob)];
    // Bob's personal access token: Ada can neither see it, nor revoke it by its id.
    let bobs_token = api
        .client
        .post(api.url("/me/tokens"))
        .bearer_auth(api.user_token(BOB).await)
        .json(&json!({"name": "bob's ci", "scopes": ["keys:read"], "expiresInDays": 1}))
        .send()
        .await
        .unwrap();
    let bobs_token: serde_json::Value = bobs_token.json().await.unwrap();
    let (bobs_token_id, bobs_token) = (bobs_token["id"].as_str().unwrap(), bobs_token["token"].as_str().unwrap());
    keyward_tests::leaks::plant(bobs_token);

    let mut cases = 0;
    for bob_id in &bob_ids {
        // The query: every `/me` route ignores a user parameter; the token alone says who.
        for (method, path) in [
            ("GET", "/me/llm-keys"),
            ("GET", "/me/credits"),
            ("GET", "/me/oauth/google"),
            ("GET", "/me"),
            ("POST", "/me/llm-keys/openai/test"),
            ("DELETE", "/me/llm-keys/openai"),
            ("DELETE", "/me/llm-keys"),
            ("GET", "/me/tokens"),
        ] {
            for param in ["uid", "user", "userId", "sub"] {
                let url = format!("{}?{param}={bob_id}", api.url(path));
                let response =
                    api.client.request(method.parse().unwrap(), url).bearer_auth(&token).send().await.unwrap();
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                assert!(status < 500, "{method} {path}?{param}: {status} {body}");
                assert!(!body.contains(&bobs_key.preview), "{method} {path}?{param} showed Bob's key: {body}");
                assert!(!body.contains(bob.as_str()), "{method} {path}?{param} named Bob: {body}");
                assert!(!body.contains(bobs_token_id), "{method} {path}?{param} listed Bob's token: {body}");
                cases += 1;
            }
        }
        // The body: a user id is an unknown field.
        let response = api
            .client
            .put(api.url("/me/llm-keys/openai"))
            .bearer_auth(&token)
            .json(&json!({ "apiKey": magic_key(StandIn::OpenAi, Scenario::Valid), "userId": bob_id }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "a user id in the body");
        cases += 1;
        // The path: Bob's id under `/me` is no route at all; `..` that climbs to an internal route
        // gets there without a signature, so the IAM check refuses it.
        for (path, status) in [
            (format!("/me/{bob_id}/llm-keys"), 404),
            (format!("/users/{bob_id}/llm-keys"), 404),
            (format!("/me/%2e%2e/internal/users/{bob_id}/llm-keys"), 403),
        ] {
            let response = api.client.get(api.url(&path)).bearer_auth(&token).send().await.unwrap();
            assert_eq!(response.status(), status, "{path}");
            cases += 1;
        }
        // An internal route with a user's bearer token instead of a signature.
        let path = format!("/internal/users/{}/llm-keys", in_path(&bob));
        let response = api.client.get(api.url(&path)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 403, "bearer on an internal route");
        cases += 1;
    }
    assert_eq!(cases, 2 * (8 * 4 + 1 + 3 + 1));

    // Bob's token id in Ada's revoke: the answer for an unknown id, and Bob's token still works.
    let revoke = api.client.delete(api.url(&format!("/me/tokens/{bobs_token_id}"))).bearer_auth(&token).send();
    assert_eq!(revoke.await.unwrap().status(), 404);
    let bobs_use = api.client.get(api.url("/me/llm-keys")).bearer_auth(bobs_token).send().await.unwrap();
    assert_eq!(bobs_use.status(), 200, "Bob's token was not revoked");

    // Bob's key is where it was, unchanged; Ada has nothing.
    let still = api.state.store.llm_keys().get(&bob, Provider::OpenAi).await.unwrap().expect("Bob's key");
    assert_eq!(still.sealed, bobs_key.sealed);
    assert!(api.state.store.llm_keys().list(&ada).await.unwrap().is_empty());
}
