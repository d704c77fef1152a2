//! Fault injection: DynamoDB, KMS and Secrets Manager throttle, fail with 500s, never answer, reset
//! the connection, or apply a write and lose its answer (a loopback proxy in front of moto,
//! `keyward_sandbox::aws_proxy`) at each AWS call of each route that writes or hands out secrets.
//! For every case: the answer is a problem+json 503 with `Retry-After`, nothing is half-written (a
//! key is stored with its audit entry or not at all, no plaintext is handed out, ledger equals
//! balance, no event or idempotency key is used up without its effect, no session without its
//! sealed token), and the same request succeeds once the fault heals, exactly once. Where a
//! one-time credential was spent before the fault (Auth0's code, Auth0's rotated refresh token),
//! the flow ends cleanly instead and starting over works; SECURITY.md lists those as residual risks.
//!
//! Every case runs on its own API and proxy, all at once: each waits out the SDK's retries (and,
//! for `Timeout`, keyward's 5 s operation timeout), so one after another would take minutes.

use std::time::SystemTime;

use futures::StreamExt;
use keyward::model::Provider;
use keyward::model::UserId;
use keyward_sandbox::auth0::sandbox_subject;
use keyward_sandbox::aws_proxy::{AwsProxy, Fault};
use keyward_sandbox::providers::{Provider as StandIn, Scenario, magic_key};
use keyward_tests::api::{APP_ORIGIN, BILLING_SERVICE, LocalApi, NOTES_SERVICE, in_path, json};
use keyward_tests::sign_in::{authorize, code_of, refresh, sign_in};
use keyward_tests::stripe::{checkout, deliver, deliver_with, header};
use serde_json::{Value, json};

const ADA: &str = "ada@example.com";

fn user(email: &str) -> UserId {
    UserId::parse(&sandbox_subject(email)).unwrap()
}

/// An API on moto whose every AWS call goes through its own fault proxy.
async fn api_behind_proxy(overrides: &[(&'static str, &str)]) -> (LocalApi, AwsProxy) {
    let proxy = AwsProxy::start(&keyward_tests::moto_url()).await.expect("start the AWS proxy");
    (LocalApi::start_behind(&proxy, overrides).await, proxy)
}

/// Sets the fault, runs `request`, heals, and asserts the fault was reached (the operation was
/// called more than `pass` times while it was set).
async fn under_fault<Fut: std::future::Future<Output = reqwest::Response>>(
    proxy: &AwsProxy,
    case: &str,
    (operation, pass, fault): (&str, usize, Fault),
    request: Fut,
) -> reqwest::Response {
    proxy.take_counts();
    proxy.fail(operation, pass, fault);
    let response = request.await;
    proxy.heal();
    let calls = proxy.take_counts().get(operation).copied().unwrap_or(0);
    assert!(calls > pass, "{case}: the route never reached the fault ({calls} calls)");
    response
}

/// Asserts a fault's answer: 503 problem+json with `Retry-After`, naming no secret; returns its code.
async fn refused_for_now(case: &str, response: reqwest::Response, secret: Option<&str>) -> String {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await.unwrap();
    assert_eq!(status, 503, "{case}: {body}");
    assert!(retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)), "{case}: Retry-After");
    assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{case}");
    assert!(secret.is_none_or(|s| !body.contains(s)), "{case}: the answer carries the secret");
    serde_json::from_str::<Value>(&body).unwrap()["code"].as_str().unwrap_or_default().to_owned()
}

/// The AWS calls of one route, in the order it makes them, as `(operation, calls let through first)`.
type FaultPoints = &'static [(&'static str, usize)];

/// `PUT /me/llm-keys/openai` on a new deployment: the validation allowance; the first llm-key seal
/// making the purpose's first branch key (the look for one, the key from KMS, its transaction);
/// the transaction of the sealed key and its audit entry; the read-back of the stored key.
const STORE_KEY: FaultPoints = &[
    ("DynamoDB.UpdateItem", 0),
    ("DynamoDB.GetItem", 0),
    ("KMS.GenerateDataKey", 0),
    ("DynamoDB.TransactWriteItems", 0),
    ("DynamoDB.TransactWriteItems", 1),
    ("DynamoDB.GetItem", 1),
];

async fn store_key_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("store key: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let token = api.user_token(ADA).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);
    let put =
        || api.client.put(api.url("/me/llm-keys/openai")).bearer_auth(&token).json(&json!({ "apiKey": key })).send();

    let response = under_fault(&proxy, &case, (operation, pass, fault), async { put().await.unwrap() }).await;
    refused_for_now(&case, response, Some(&key)).await;
    let stored = api.state.store.llm_keys().get(&user(ADA), Provider::OpenAi).await.unwrap();
    let audited =
        api.audit_trail(&user(ADA)).await.iter().any(|(action, _, outcome)| action == "llm_key.put" && outcome == "ok");
    // A key and its audit entry are stored together or not at all. Only the read-back comes after
    // the transaction (or the transaction's answer was lost): then both are there, and the caller's
    // retry below stores the key once more.
    let committed = pass == 1
        && (operation == "DynamoDB.GetItem"
            || (operation == "DynamoDB.TransactWriteItems" && fault == Fault::LostAnswer));
    assert_eq!(stored.is_some(), committed, "{case}: stored");
    assert_eq!(audited, committed, "{case}: audited");

    let response = put().await.unwrap();
    assert_eq!(response.status(), 200, "{case}: after healing");
    let fetched = fetch(&api, "openai").await;
    assert_eq!(fetched.status(), 200, "{case}");
    assert_eq!(json(fetched).await["keys"]["openai"], key.as_str(), "{case}");
}

/// `GET /internal/users/{uid}/llm-keys?providers=openai`, no key cache: the read of the granted key
/// and the audit entry (side by side), the branch key's item and its unwrap, the `lastUsed` mark.
const FETCH_KEY: FaultPoints = &[
    ("DynamoDB.GetItem", 0),
    ("DynamoDB.PutItem", 0),
    ("DynamoDB.GetItem", 1),
    ("KMS.Decrypt", 0),
    ("DynamoDB.UpdateItem", 0),
];

async fn fetch(api: &LocalApi, providers: &str) -> reqwest::Response {
    let path = format!("/internal/users/{}/llm-keys?providers={providers}", in_path(&user(ADA)));
    api.signed("GET", &path, b"", NOTES_SERVICE, SystemTime::now()).await
}

async fn fetch_key_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("fetch key: {fault:?} at {operation} (after {pass})");
    // No key cache: every fetch unwraps its branch key with KMS, as the first one after a cold start does.
    let (api, proxy) = api_behind_proxy(&[("KEYWARD_DATA_KEY_CACHE_TTL_SECS", "0")]).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &key).await;

    let response = under_fault(&proxy, &case, (operation, pass, fault), fetch(&api, "openai")).await;
    refused_for_now(&case, response, Some(&key)).await;
    let response = fetch(&api, "openai").await;
    assert_eq!(response.status(), 200, "{case}: after healing");
    assert_eq!(json(response).await["keys"]["openai"], key.as_str(), "{case}");
    // Every key handed out has its audit entry; a failed audit write handed nothing out. The entry
    // is written beside the read and records the request, so a fetch that failed after it (or
    // beside it) is audited too although nothing was handed out; a lost answer may store it once
    // per SDK attempt.
    let fetches = api.audit_trail(&user(ADA)).await.iter().filter(|(action, ..)| action == "llm_key.fetch").count();
    match (operation, pass, fault) {
        ("DynamoDB.PutItem", _, Fault::LostAnswer) => assert!(fetches >= 2, "{case}: {fetches}"),
        ("DynamoDB.PutItem", ..) => assert_eq!(fetches, 1, "{case}: only the fetch that succeeded"),
        // The key's own read, beside which the entry may or may not have been written.
        ("DynamoDB.GetItem", 0, _) => assert!((1..=2).contains(&fetches), "{case}: {fetches}"),
        _ => assert_eq!(fetches, 2, "{case}: the failed fetch's request and the one that succeeded"),
    }
}

/// A Stripe purchase: the webhook secret, then linking the customer, reading the balance, and the
/// one transaction that credits it and records the payment.
const WEBHOOK: FaultPoints = &[
    ("SecretsManager.GetSecretValue", 0),
    ("DynamoDB.PutItem", 0),
    ("DynamoDB.GetItem", 0),
    ("DynamoDB.TransactWriteItems", 0),
];

async fn webhook_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("webhook: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let ada = user(ADA);
    let purchase = checkout("evt_fault", "cs_fault", &ada, 5, 50);
    let body = purchase.to_string();
    let signature = header(body.as_bytes());

    // Any non-2xx makes Stripe deliver again later; keyward says 503 so the retry is expected.
    let response =
        under_fault(&proxy, &case, (operation, pass, fault), deliver_with(&api, body.as_bytes(), Some(&signature)))
            .await;
    refused_for_now(&case, response, None).await;
    let account = api.state.store.credits().account(&ada).await.unwrap();
    // Only a transaction whose answer was lost has credited (the redelivery then finds it done).
    let credited = operation == "DynamoDB.TransactWriteItems" && fault == Fault::LostAnswer;
    assert_eq!(account.balance, if credited { 5 } else { 0 }, "{case}: credited while the delivery failed");
    let (status, _) = deliver(&api, &purchase).await;
    assert_eq!(status, 200, "{case}: Stripe's redelivery after healing");
    let (status, _) = deliver(&api, &purchase).await;
    assert_eq!(status, 200, "{case}: a duplicate");
    let account = api.state.store.credits().account(&ada).await.unwrap();
    assert_eq!(account.balance, 5, "{case}: credited exactly once");
    let ledger = api.state.store.credits().ledger(&ada, 100, None).await.unwrap();
    assert_eq!(ledger.items.iter().map(|e| e.amount).sum::<i64>(), 5, "{case}: ledger equals balance");
}

/// `POST /internal/users/{uid}/credits/consume`: reading the balance, then the one transaction.
const CONSUME: FaultPoints = &[("DynamoDB.GetItem", 0), ("DynamoDB.TransactWriteItems", 0)];

async fn consume_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("consume: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let ada = user(ADA);
    assert_eq!(deliver(&api, &checkout("evt_seed", "cs_seed", &ada, 10, 100)).await.0, 200);
    let body = json!({ "amount": 3, "idempotencyKey": "summary-1", "reason": "notes summary" }).to_string();
    let path = format!("/internal/users/{}/credits/consume", in_path(&ada));
    let consume = || api.signed("POST", &path, body.as_bytes(), BILLING_SERVICE, SystemTime::now());

    let response = under_fault(&proxy, &case, (operation, pass, fault), consume()).await;
    refused_for_now(&case, response, None).await;
    // Only a transaction whose answer was lost has consumed (the retry then finds its key used).
    let consumed = operation == "DynamoDB.TransactWriteItems" && fault == Fault::LostAnswer;
    let balance = api.state.store.credits().account(&ada).await.unwrap().balance;
    assert_eq!(balance, if consumed { 7 } else { 10 }, "{case}: consumed while the request failed");
    // The idempotency key was not used up without its effect: the retry consumes once, its repeat not.
    assert_eq!(consume().await.status(), 200, "{case}: after healing");
    assert_eq!(consume().await.status(), 200, "{case}: the repeat");
    assert_eq!(api.state.store.credits().account(&ada).await.unwrap().balance, 7, "{case}: consumed once");
    let ledger = api.state.store.credits().ledger(&ada, 100, None).await.unwrap();
    assert_eq!(ledger.items.iter().map(|e| e.amount).sum::<i64>(), 7, "{case}: ledger equals balance");
}

/// `GET /auth/callback` (a new deployment's first web sign-in): consuming the one-time state,
/// upserting the profile, the first auth0-refresh seal and the first session binding each making
/// their purpose's first branch key (the look for one, the key from KMS, its transaction), the
/// session's transaction.
const SIGN_IN: FaultPoints = &[
    ("DynamoDB.DeleteItem", 0),
    ("DynamoDB.UpdateItem", 0),
    ("DynamoDB.GetItem", 0),
    ("KMS.GenerateDataKey", 0),
    ("DynamoDB.TransactWriteItems", 0),
    ("DynamoDB.GetItem", 1),
    ("KMS.GenerateDataKey", 1),
    ("DynamoDB.TransactWriteItems", 1),
    ("DynamoDB.TransactWriteItems", 2),
];

/// Session families in the table (each is one `FAMILY` item).
async fn session_families(api: &LocalApi) -> usize {
    let table = api.table().expect("moto backend");
    let scan = table
        .client
        .scan()
        .table_name(&table.name)
        .filter_expression("sk = :family")
        .expression_attribute_values(":family", aws_sdk_dynamodb::types::AttributeValue::S("FAMILY".into()))
        .send()
        .await
        .unwrap();
    scan.items().len()
}

async fn sign_in_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("sign-in: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let callback = authorize(&api, &format!("{APP_ORIGIN}/after"), ADA).await;
    let response = under_fault(&proxy, &case, (operation, pass, fault), callback.follow(&api)).await;
    refused_for_now(&case, response, None).await;
    // No session is half-created: a family exists only when its transaction took effect.
    let created = operation == "DynamoDB.TransactWriteItems" && pass == 2 && fault == Fault::LostAnswer;
    assert_eq!(session_families(&api).await, usize::from(created), "{case}");
    // The same callback completes only if its state was never consumed (the fault stopped the
    // consumption itself); otherwise the state is gone, and so is Auth0's one-time code with it.
    let replay = callback.follow(&api).await;
    if operation == "DynamoDB.DeleteItem" && fault != Fault::LostAnswer {
        assert_eq!(replay.status(), 302, "{case}: the unconsumed state completes the sign-in");
    } else {
        assert_eq!(code_of(replay).await, (400, "invalid_state".to_owned()), "{case}: a consumed state");
    }
    // Starting over always works.
    let handle = sign_in(&api, ADA).await;
    assert_eq!(refresh(&api, &handle).await.status(), 200, "{case}: signing in again");
}

/// `POST /auth/refresh` (a CLI rotating its session, no key cache): the client's allowance, the
/// handle and its family, the branch key's item and its unwrap for the stored token, then (after
/// Auth0's refresh grant) the active branch key's item and its unwrap to seal the rotated token,
/// and the rotation's transaction.
const REFRESH: FaultPoints = &[
    ("DynamoDB.UpdateItem", 0),
    ("DynamoDB.GetItem", 0),
    ("DynamoDB.GetItem", 1),
    ("DynamoDB.GetItem", 2),
    ("KMS.Decrypt", 0),
    ("DynamoDB.GetItem", 3),
    ("KMS.Decrypt", 1),
    ("DynamoDB.TransactWriteItems", 0),
];

async fn refresh_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("refresh: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[("KEYWARD_DATA_KEY_CACHE_TTL_SECS", "0")]).await;
    let handle = sign_in(&api, ADA).await;
    let response = under_fault(&proxy, &case, (operation, pass, fault), refresh(&api, &handle)).await;
    refused_for_now(&case, response, Some(&handle)).await;
    let retry = refresh(&api, &handle).await;
    match (operation, pass) {
        // Before Auth0 was asked, nothing changed: the retry rotates the handle, once.
        ("DynamoDB.UpdateItem", _) | ("DynamoDB.GetItem", 0..=2) | ("KMS.Decrypt", 0) => {
            assert_eq!(retry.status(), 200, "{case}: the retry");
            let next = json(retry).await["refreshToken"].as_str().unwrap().to_owned();
            assert_eq!(refresh(&api, &next).await.status(), 200, "{case}: the rotated handle");
        }
        // The rotation took effect and only its answer was lost: the old handle now reads as
        // reused, which ends the session (SECURITY.md, residual risks).
        ("DynamoDB.TransactWriteItems", _) if fault == Fault::LostAnswer => {
            assert_eq!(code_of(retry).await, (401, "session_reused".to_owned()), "{case}");
        }
        // Auth0 rotated its refresh token but keyward could not store the new one: the old one is
        // spent at Auth0, so the session ends cleanly, nothing half-written (residual risks).
        _ => assert_eq!(code_of(retry).await, (401, "reauthentication_required".to_owned()), "{case}"),
    }
    // Signing in again always works.
    let again = sign_in(&api, ADA).await;
    assert_eq!(refresh(&api, &again).await.status(), 200, "{case}: signing in again");
}

/// `POST /me/tokens` on a new deployment: the count of the user's tokens (its list's version, its
/// lines), the look for the access-token branch key, the key from KMS, its transaction, then the
/// token's two items, its audit entry and the list's next version in one transaction.
const CREATE_TOKEN: FaultPoints = &[
    ("DynamoDB.GetItem", 0),
    ("DynamoDB.Query", 0),
    ("DynamoDB.GetItem", 1),
    ("KMS.GenerateDataKey", 0),
    ("DynamoDB.TransactWriteItems", 0),
    ("DynamoDB.TransactWriteItems", 1),
];

async fn create_token_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("create token: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let token = api.user_token(ADA).await;
    let body = json!({"name": "ci", "scopes": ["keys:read"], "expiresInDays": 1});
    let create = || api.client.post(api.url("/me/tokens")).bearer_auth(&token).json(&body).send();
    let response = under_fault(&proxy, &case, (operation, pass, fault), async { create().await.unwrap() }).await;
    refused_for_now(&case, response, None).await;
    // The token's items and its audit entry are written together or not at all; one whose answer
    // was lost exists, but nobody ever saw its value.
    let listed = api.state.personal_tokens().list(&user(ADA)).await.unwrap().len();
    let audited = api.audit_trail(&user(ADA)).await.iter().filter(|(a, _, _)| a == "personal_token.create").count();
    assert_eq!(listed, audited, "{case}: tokens and their audit entries");
    let committed = operation == "DynamoDB.TransactWriteItems" && pass == 1 && fault == Fault::LostAnswer;
    assert_eq!(listed, usize::from(committed), "{case}");

    let created = create().await.unwrap();
    assert_eq!(created.status(), 201, "{case}: after healing");
    let made = json(created).await["token"].as_str().unwrap().to_owned();
    keyward_tests::leaks::plant(&made);
    let used = api.client.get(api.url("/me/llm-keys")).bearer_auth(&made).send().await.unwrap();
    assert_eq!(used.status(), 200, "{case}: the new token works");
}

/// A request with a personal token, warm: the token's record, then its `lastUsedAt` mark.
const USE_TOKEN: FaultPoints = &[("DynamoDB.GetItem", 0), ("DynamoDB.UpdateItem", 0)];

async fn use_token_case(operation: &'static str, pass: usize, fault: Fault) {
    let case = format!("use token: {fault:?} at {operation} (after {pass})");
    let (api, proxy) = api_behind_proxy(&[]).await;
    let signed_in = api.user_token(ADA).await;
    let body = json!({"name": "ci", "scopes": ["keys:read"], "expiresInDays": 1});
    let created = api.client.post(api.url("/me/tokens")).bearer_auth(&signed_in).json(&body).send().await.unwrap();
    let token = json(created).await["token"].as_str().unwrap().to_owned();
    keyward_tests::leaks::plant(&token);
    let get = || api.client.get(api.url("/me/llm-keys")).bearer_auth(&token).send();
    let response = under_fault(&proxy, &case, (operation, pass, fault), async { get().await.unwrap() }).await;
    if operation == "DynamoDB.UpdateItem" {
        // The mark is bookkeeping: the request is served without it.
        assert_eq!(response.status(), 200, "{case}");
    } else {
        refused_for_now(&case, response, Some(&token)).await;
    }
    assert_eq!(get().await.unwrap().status(), 200, "{case}: after healing");
}

#[tokio::test(flavor = "multi_thread")]
async fn creating_and_using_a_token_survive_every_fault() {
    every_fault_at(CREATE_TOKEN, create_token_case).await;
    every_fault_at(USE_TOKEN, use_token_case).await;
}

/// Runs `case` for every fault at every point, all at once.
/// How many cases of a fault matrix run at once.
const CASES_AT_ONCE: usize = 6;

async fn every_fault_at<F, Fut>(points: FaultPoints, case: F)
where
    F: Fn(&'static str, usize, Fault) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let cases = points.iter().flat_map(|&(op, pass)| Fault::ALL.map(|fault| (op, pass, fault)));
    // A few cases at a time: each starts an API (its table, KMS key and secret) on the one
    // serialized moto, and all of a matrix at once, beside the other suites, queued requests past
    // keyward's timeouts on this 2-core host (a fault nobody injected).
    futures::stream::iter(cases.map(|(op, pass, fault)| case(op, pass, fault)))
        .buffer_unordered(CASES_AT_ONCE)
        .collect::<Vec<()>>()
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn storing_a_key_survives_every_fault() {
    every_fault_at(STORE_KEY, store_key_case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fetching_keys_survives_every_fault() {
    every_fault_at(FETCH_KEY, fetch_key_case).await;
}

/// DynamoDB reads a batch only as far as throughput allows and names the rest `UnprocessedKeys`:
/// those are asked again after a back-off, and while none can be read the fetch refuses for now. A
/// key left unprocessed never reads as "no key".
#[tokio::test(flavor = "multi_thread")]
async fn keys_left_unprocessed_are_read_again() {
    let (api, proxy) = api_behind_proxy(&[]).await;
    let key = magic_key(StandIn::OpenAi, Scenario::Valid);
    api.seed_llm_key(&user(ADA), Provider::OpenAi, &key).await;
    let other = magic_key(StandIn::Anthropic, Scenario::Valid);
    api.seed_llm_key(&user(ADA), Provider::Anthropic, &other).await;
    let fetches = || async {
        let trail = api.audit_trail(&user(ADA)).await;
        trail.iter().filter(|(action, ..)| action == "llm_key.fetch").count()
    };

    proxy.take_counts();
    proxy.fail_times("DynamoDB.BatchGetItem", 0, 2, Fault::Unprocessed);
    let response = fetch(&api, "openai,anthropic").await;
    assert_eq!(response.status(), 200);
    let keys = json(response).await["keys"].clone();
    assert_eq!((keys["openai"].as_str(), keys["anthropic"].as_str()), (Some(key.as_str()), Some(other.as_str())));
    assert_eq!(proxy.take_counts().get("DynamoDB.BatchGetItem"), Some(&3), "asked twice more");
    assert_eq!(fetches().await, 1);

    let case = "unprocessed at every attempt";
    let response =
        under_fault(&proxy, case, ("DynamoDB.BatchGetItem", 0, Fault::Unprocessed), fetch(&api, "openai,anthropic"))
            .await;
    assert_eq!(refused_for_now(case, response, Some(&key)).await, "store_unavailable");
    // The attempt's audit entry, written beside the reads, records the request; nothing was handed out.
    assert_eq!(fetches().await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn stripe_deliveries_survive_every_fault() {
    every_fault_at(WEBHOOK, webhook_case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consuming_credits_survives_every_fault() {
    every_fault_at(CONSUME, consume_case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_survives_every_fault() {
    every_fault_at(SIGN_IN, sign_in_case).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshing_a_session_survives_every_fault() {
    every_fault_at(REFRESH, refresh_case).await;
}
