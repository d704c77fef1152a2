//! Secrets keyward sends are wiped once sent: the keys `internal-keys` hands the Runtime API, and
//! the PKCE verifier (with the client secret) in a token request to Auth0. Each sender runs on a
//! thread of its own, and this binary's allocator looks into every heap block that thread frees:
//! none may still hold the secret. `lambda_runtime`'s loop fails this (it serializes each answer
//! into a vector it frees unwiped), as does `reqwest`'s `form` (a string it frees unwiped).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keyward::app::AppState;
use keyward::config::Config;
use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::{Provider, UserId};
use keyward::store::{KeyStatus, NewLlmKey, now_epoch};

/// The key served; long enough that no unrelated block holds it by chance.
const KEY: &str = "sk-proj-WIPED-ANSWER-4f1c9a7e2b6d8035c1e9";
/// A PKCE verifier (RFC 7636: 43 to 128 characters).
const VERIFIER: &str = "wiped-verifier-0b7e3c9d5a1f4e8b2c6d0a9f3e7b1c5d";
const SECRETS: [&str; 2] = [KEY, VERIFIER];

thread_local! {
    static WATCHED: Cell<bool> = const { Cell::new(false) };
}
/// How many freed blocks held each of [`SECRETS`].
static UNWIPED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];

/// The system allocator, looking for [`SECRETS`] in each block a watched thread frees.
struct Watching;

// SAFETY: every call is passed to `System` unchanged; `dealloc` reads the block it is handed, which
// is live and `layout.size()` bytes long until `System.dealloc` returns.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if WATCHED.try_with(Cell::get).unwrap_or(false) {
            let bytes = unsafe { std::slice::from_raw_parts(block, layout.size()) };
            for (secret, unwiped) in SECRETS.iter().zip(&UNWIPED) {
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    unwiped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        unsafe { System.dealloc(block, layout) }
    }
    // `realloc` stays the trait's own: a new block, a copy, then `dealloc` of the old one here.
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Runs `work` to its end on a new, watched thread with a single-threaded runtime of its own (as a
/// function runs in Lambda).
fn on_watched_thread<F>(work: F) -> std::thread::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        WATCHED.set(true);
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(work)
    })
}

fn local_state(dir: &tempfile::TempDir, more: &[(&str, String)]) -> Arc<AppState> {
    let mut vars = vec![("KEYWARD_DATA_DIR", dir.path().to_str().unwrap().to_owned())];
    vars.extend(more.iter().cloned());
    let config = Config::from_lookup(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| v.clone())).unwrap();
    Arc::new(AppState::with_aws(config, None).unwrap())
}

const PRINCIPAL: &str = "arn:aws:iam::111122223333:role/notes-service";

fn fetch_event(user: &str) -> serde_json::Value {
    let path = format!("/internal/users/{user}/llm-keys");
    serde_json::json!({
        "version": "2.0", "routeKey": "GET /internal/users/{uid}/llm-keys", "rawPath": path,
        "rawQueryString": "", "headers": {}, "pathParameters": {"uid": user},
        "requestContext": {
            "accountId": keyward::config::LOCAL_ACCOUNT_ID, "apiId": keyward::config::LOCAL_API_ID,
            "domainName": "x", "domainPrefix": "x",
            "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.9", "userAgent": "boto3"},
            "requestId": "wiped", "routeKey": "GET /internal/users/{uid}/llm-keys", "stage": "$default",
            "time": "07/Dec/2026:21:00:00 +0000", "timeEpoch": 1,
            "authorizer": {"iam": {"userArn": PRINCIPAL, "accountId": "111122223333", "accessKey": "AKIAWIPED"}}
        },
        "isBase64Encoded": false
    })
}

#[tokio::test]
async fn a_served_key_is_wiped_from_every_buffer_the_function_frees() {
    let dir = tempfile::tempdir().unwrap();
    let state = local_state(&dir, &[("KEYWARD_INTERNAL_PRINCIPALS", format!(r#"{{"{PRINCIPAL}": ["openai"]}}"#))]);
    let user = UserId::parse("auth0|wiped").unwrap();
    let context = EncryptionContext::new(&user, Purpose::LlmKey, Provider::OpenAi.slug());
    let sealed = state.envelope.seal(KEY.as_bytes(), &context).await.unwrap();
    let new = NewLlmKey {
        provider: Provider::OpenAi,
        sealed,
        preview: "sk-p…e9".into(),
        status: KeyStatus::Valid,
        test: None,
        zai_region: None,
    };
    keyward_tests::seed_key(&state.store, &user, &new, now_epoch()).await;

    let mut emulator = keyward_sandbox::lambda_runtime::Emulator::start().await.unwrap();
    let endpoint: lambda_http::http::Uri = format!("http://{}", emulator.addr).parse().unwrap();
    let api = lambda_runtime_api_client::PooledClient::builder().with_endpoint(endpoint).build();
    on_watched_thread(async move {
        let lambda = Arc::new(lambda_http::lambda_runtime::Config::default());
        let stopped = keyward::app::runtime::serve(&api, lambda, state, Arc::new(internal_keys::routes())).await;
        eprintln!("the function's loop ended: {stopped:?}");
    });

    let (_, answer) = emulator.invoke(fetch_event("auth0|wiped").to_string().as_bytes()).await.unwrap();
    assert!(answer.ok);
    let sent: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(sent["statusCode"], 200, "{sent}");
    let body: serde_json::Value = serde_json::from_str(sent["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["keys"]["openai"], KEY, "the key was served");
    // A second invocation: by its answer, everything of the first one has been dropped.
    let (_, answer) = emulator.invoke(fetch_event("auth0|nobody").to_string().as_bytes()).await.unwrap();
    assert!(answer.ok);

    assert_eq!(UNWIPED[0].load(Ordering::Relaxed), 0, "freed heap blocks still held the served key");
}

#[tokio::test]
async fn a_pkce_verifier_is_wiped_once_sent_to_auth0() {
    let auth0 = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/oauth/token"))
        .and(wiremock::matchers::body_string_contains(format!("code_verifier={VERIFIER}")))
        .respond_with(wiremock::ResponseTemplate::new(403).set_body_json(serde_json::json!({"error": "invalid_grant"})))
        .expect(1)
        .mount(&auth0)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let state = local_state(&dir, &[("KEYWARD_AUTH0_ISSUER", format!("{}/", auth0.uri()))]);

    let refused = on_watched_thread(async move { state.auth0.exchange_code("code-1", VERIFIER).await.is_err() });
    assert!(refused.join().unwrap(), "Auth0's stand-in refused the grant, after reading the verifier");

    assert_eq!(UNWIPED[1].load(Ordering::Relaxed), 0, "freed heap blocks still held the PKCE verifier");
}
