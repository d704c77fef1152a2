//! Google connections through real HTTP on both backends, against the Google stand-in: connect →
//! consent → callback → internal token; one refresh under 20 concurrent internal calls;
//! `invalid_grant` → reconnect; revoke on disconnect; replayed and cross-user states; Google down.

use std::time::{Duration, SystemTime};

use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::UserId;
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{APP_ORIGIN, Backend, CALENDAR_SERVICE, LocalApi, NOTES_SERVICE, STRANGER, in_path, json};
use keyward_tests::sign_in::{ADA, code_of, location, sign_in};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

const BOB: &str = "bob@example.com";
const ADA_GOOGLE: &str = "ada.lovelace@gmail.com";
const CALENDAR: &str = "https://www.googleapis.com/auth/calendar";

/// A signed-in keyward user: the browser's session handle and an access token.
struct Person {
    user: UserId,
    handle: String,
    token: String,
}

async fn person(api: &LocalApi, email: &str) -> Person {
    Person {
        user: UserId::parse(&sandbox_subject(email)).unwrap(),
        handle: sign_in(api, email).await,
        token: api.user_token(email).await,
    }
}

/// `GET /me/oauth/google/connect` → Google's consent URL.
async fn consent_url(api: &LocalApi, person: &Person, return_to: Option<&str>) -> Url {
    let mut request = api.client.get(api.url("/me/oauth/google/connect")).bearer_auth(&person.token);
    if let Some(target) = return_to {
        request = request.query(&[("returnTo", target)]);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    Url::parse(json(response).await["authorizationUrl"].as_str().unwrap()).unwrap()
}

/// The person consents on Google's screen as `google_email` → the callback URL Google redirects to.
async fn consent(api: &LocalApi, mut url: Url, google_email: &str) -> Url {
    url.query_pairs_mut().append_pair("login_hint", google_email);
    location(&api.client.get(url).send().await.unwrap())
}

/// The browser arriving at keyward's callback, with `handle` as its session cookie.
async fn arrive(api: &LocalApi, callback: Url, handle: Option<&str>) -> reqwest::Response {
    let mut request = api.client.get(callback);
    if let Some(handle) = handle {
        request = request.header("cookie", format!("__Host-keyward-session={handle}"));
    }
    request.send().await.unwrap()
}

/// A whole connect of `person`'s Google account `google_email`; returns the callback's response.
async fn connect(api: &LocalApi, person: &Person, google_email: &str) -> reqwest::Response {
    let url = consent_url(api, person, Some(&format!("{APP_ORIGIN}/settings"))).await;
    let callback = consent(api, url, google_email).await;
    arrive(api, callback, Some(&person.handle)).await
}

async fn internal_token(api: &LocalApi, user: &UserId, principal: keyward_tests::api::Principal) -> reqwest::Response {
    let path = format!("/internal/users/{}/oauth/google/token", in_path(user));
    api.signed("GET", &path, b"", principal, SystemTime::now()).await
}

async fn status(api: &LocalApi, person: &Person) -> Value {
    json(api.client.get(api.url("/me/oauth/google")).bearer_auth(&person.token).send().await.unwrap()).await
}

/// The Google refresh token keyward holds for `user` (the test reads the table).
async fn stored_refresh_token(api: &LocalApi, user: &UserId) -> String {
    let connection = api.state.store.oauth_connections().get(user).await.unwrap().unwrap();
    let context = EncryptionContext::new(user, Purpose::GoogleOAuth, "refresh-token");
    let sealed = connection.refresh_token.unwrap();
    api.state.envelope.open_text(&sealed, &context).await.unwrap().expose_secret().to_owned()
}

/// Google's token endpoint, asked directly with a refresh token.
async fn google_refresh(api: &LocalApi, refresh_token: &str) -> Value {
    let response = api
        .client
        .post(format!("{}/google/token", api.sandbox.base_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", keyward_sandbox::google::SANDBOX_CLIENT_ID),
            ("client_secret", keyward_sandbox::google::SANDBOX_CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    json(response).await
}

async fn connect_then_fetch_a_token(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    assert_eq!(status(&api, &ada).await["status"], "disconnected");

    let url = consent_url(&api, &ada, Some(&format!("{APP_ORIGIN}/settings"))).await;
    let google = api.sandbox.base_url().to_owned() + "/google/o/oauth2/v2/auth";
    assert!(url.as_str().starts_with(&google), "{url}");
    let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    assert_eq!(param("access_type").as_deref(), Some("offline"));
    assert_eq!(param("prompt").as_deref(), Some("consent"));
    assert_eq!(param("include_granted_scopes").as_deref(), Some("true"));
    assert_eq!(param("scope").as_deref(), Some(format!("openid email {CALENDAR}").as_str()));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("state").unwrap().len() >= 22, "at least 128 bits");
    assert_eq!(param("redirect_uri"), Some(api.url("/oauth/google/callback")));

    api.sandbox.google_calls().take();
    let callback = consent(&api, url, ADA_GOOGLE).await;
    let response = arrive(&api, callback, Some(&ada.handle)).await;
    assert_eq!(location(&response).as_str(), format!("{APP_ORIGIN}/settings"));
    assert_eq!(
        api.sandbox.google_calls().take(),
        "GET /o/oauth2/v2/auth=1 GET /v1/userinfo=1 POST /token=1",
        "the consent screen, the code exchange, the account's email"
    );

    let connected = status(&api, &ada).await;
    assert_eq!(connected["status"], "connected");
    assert_eq!(connected["email"], ADA_GOOGLE);
    assert_eq!(connected["scopes"], serde_json::json!(["openid", "email", CALENDAR]));
    assert!(connected["connectedAt"].is_string() && connected.get("lastRefreshedAt").is_none());
    assert!(!connected.to_string().contains("ya29.") && !connected.to_string().contains("1//"), "never tokens");

    let response = internal_token(&api, &ada.user, CALENDAR_SERVICE).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = json(response).await;
    assert!(token["accessToken"].as_str().unwrap().starts_with("ya29.sandbox-"), "{token}");
    assert!(token["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(token["scopes"], connected["scopes"]);
    assert_eq!(api.sandbox.google_calls().take(), "", "a fresh token is handed out without asking Google");

    // Other principals: one not allowed Google, one on no list at all.
    assert_eq!(code_of(internal_token(&api, &ada.user, NOTES_SERVICE).await).await, (403, "grant_missing".into()));
    assert_eq!(code_of(internal_token(&api, &ada.user, STRANGER).await).await, (403, "principal_not_allowed".into()));
    let bob = UserId::parse(&sandbox_subject(BOB)).unwrap();
    assert_eq!(code_of(internal_token(&api, &bob, CALENDAR_SERVICE).await).await, (404, "google_not_connected".into()));

    let trail = api.audit_trail(&ada.user).await;
    let actions: Vec<(&str, &str)> = trail.iter().map(|(a, _, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(actions, [("google_token.fetch", "ok"), ("google.connect", "ok")]);
}

/// An access token near expiry is refreshed once, however many internal calls want it at once.
async fn a_near_expiry_token_is_refreshed_exactly_once(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    // Issued with 2 minutes left: inside the 5-minute margin from the start.
    api.sandbox.google().set_access_lifetime(Duration::from_secs(120));
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    let before = api.state.store.oauth_connections().get(&ada.user).await.unwrap().unwrap();
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    // Slow enough that every caller arrives while the refresh is under way.
    api.sandbox.google().set_token_latency(Duration::from_millis(400));
    api.sandbox.google_calls().take();

    let calls = (0..20).map(|_| internal_token(&api, &ada.user, CALENDAR_SERVICE));
    let responses = futures::future::join_all(calls).await;
    let mut tokens = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        tokens.push(json(response).await["accessToken"].as_str().unwrap().to_owned());
    }
    assert_eq!(api.sandbox.google_calls().take(), "POST /token=1", "one refresh for 20 callers");
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every caller got the refreshed token");

    let after = api.state.store.oauth_connections().get(&ada.user).await.unwrap().unwrap();
    assert_eq!(after.version, before.version + 1);
    assert!(after.access_expires_at > before.access_expires_at + 3000);
    assert_eq!(after.refresh_token, before.refresh_token, "Google sent no new refresh token; the old one is kept");
    assert_eq!(after.refresh_lease_until, None);
    assert!(status(&api, &ada).await["lastRefreshedAt"].is_string());
}

async fn google_refusing_the_grant_requires_a_reconnect(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    api.sandbox.google().set_access_lifetime(Duration::from_secs(60));
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    // Ada removes keyward from her Google account.
    let refresh_token = stored_refresh_token(&api, &ada.user).await;
    let revoked = api
        .client
        .post(format!("{}/google/revoke", api.sandbox.base_url()))
        .form(&[("token", refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    api.sandbox.google_calls().take();

    assert_eq!(
        code_of(internal_token(&api, &ada.user, CALENDAR_SERVICE).await).await,
        (409, "google_reconnect_required".into())
    );
    assert_eq!(api.sandbox.google_calls().take(), "POST /token=1");
    assert_eq!(status(&api, &ada).await["status"], "reconnect_required");
    // Keyward stops asking Google until Ada reconnects.
    assert_eq!(
        code_of(internal_token(&api, &ada.user, CALENDAR_SERVICE).await).await,
        (409, "google_reconnect_required".into())
    );
    assert_eq!(api.sandbox.google_calls().take(), "");
    assert!(api.audit_trail(&ada.user).await.contains(&(
        "google.refresh".into(),
        Some("google".into()),
        "invalid_grant".into()
    )));

    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    assert_eq!(status(&api, &ada).await["status"], "connected");
    assert_eq!(internal_token(&api, &ada.user, CALENDAR_SERVICE).await.status(), 200);
}

async fn disconnect_revokes_at_google(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    let refresh_token = stored_refresh_token(&api, &ada.user).await;
    api.sandbox.google_calls().take();

    let delete = || api.client.delete(api.url("/me/oauth/google")).bearer_auth(&ada.token).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(api.sandbox.google_calls().take(), "POST /revoke=1");
    assert_eq!(google_refresh(&api, &refresh_token).await["error"], "invalid_grant", "Google no longer honours it");
    api.sandbox.google_calls().take();
    assert_eq!(status(&api, &ada).await["status"], "disconnected");
    assert_eq!(
        code_of(internal_token(&api, &ada.user, CALENDAR_SERVICE).await).await,
        (404, "google_not_connected".into())
    );
    // Idempotent, and nothing left to revoke.
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(api.sandbox.google_calls().take(), "");
    assert!(api.audit_trail(&ada.user).await.contains(&(
        "google.disconnect".into(),
        Some("google".into()),
        "ok".into()
    )));

    // A grant Google already forgot (`invalid_token`) still disconnects.
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    let token = stored_refresh_token(&api, &ada.user).await;
    let form = [("token", token.as_str())];
    api.client.post(format!("{}/google/revoke", api.sandbox.base_url())).form(&form).send().await.unwrap();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(status(&api, &ada).await["status"], "disconnected");
}

async fn forged_replayed_and_refused_connects_store_nothing(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    let bob = person(&api, BOB).await;
    let nothing_stored = || async {
        for user in [&ada.user, &bob.user] {
            assert!(api.state.store.oauth_connections().get(user).await.unwrap().is_none());
        }
    };

    // A link Ada started, completed in Bob's browser: refused, and the state is spent.
    let callback = consent(&api, consent_url(&api, &ada, None).await, "bob.b@gmail.com").await;
    assert_eq!(
        code_of(arrive(&api, callback.clone(), Some(&bob.handle)).await).await,
        (403, "session_mismatch".into())
    );
    nothing_stored().await;
    // Replayed, even in the right browser.
    assert_eq!(code_of(arrive(&api, callback, Some(&ada.handle)).await).await, (400, "invalid_state".into()));
    // No keyward session in the browser at all.
    let callback = consent(&api, consent_url(&api, &ada, None).await, ADA_GOOGLE).await;
    assert_eq!(code_of(arrive(&api, callback, None).await).await, (403, "session_required".into()));
    // A state made for Auth0 sign-in is not a Google state.
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let auth0_state = location(&login).query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let forged = Url::parse_with_params(&api.url("/oauth/google/callback"), [("code", "x"), ("state", &auth0_state)]);
    assert_eq!(code_of(arrive(&api, forged.unwrap(), Some(&ada.handle)).await).await, (400, "invalid_state".into()));
    nothing_stored().await;

    // Ada cancels on Google's screen.
    let mut url = consent_url(&api, &ada, None).await;
    url.query_pairs_mut().append_pair("decision", "deny");
    let denied = location(&api.client.get(url).send().await.unwrap());
    assert_eq!(code_of(arrive(&api, denied, Some(&ada.handle)).await).await, (400, "access_denied".into()));
    // An account that gives no offline access.
    let response = connect(&api, &ada, "ada+no-refresh@gmail.com").await;
    let (status_code, code) = code_of(response).await;
    assert_eq!((status_code, code.as_str()), (400, "consent_required"));
    nothing_stored().await;
    // returnTo outside the allow-list.
    let response = api
        .client
        .get(api.url("/me/oauth/google/connect"))
        .bearer_auth(&ada.token)
        .query(&[("returnTo", "https://evil.example.net/")])
        .send()
        .await
        .unwrap();
    assert_eq!(code_of(response).await, (400, "invalid_return_to".into()));
    assert_eq!(code_of(api.client.get(api.url("/me/oauth/google/connect")).send().await.unwrap()).await.0, 401);
}

async fn google_down_leaves_the_connection_untouched(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    api.sandbox.google().set_access_lifetime(Duration::from_secs(60));
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    let before = api.state.store.oauth_connections().get(&ada.user).await.unwrap().unwrap();

    api.sandbox.google().set_down(true);
    let response = internal_token(&api, &ada.user, CALENDAR_SERVICE).await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(code_of(response).await, (503, "google_unavailable".into()));
    let response = api.client.delete(api.url("/me/oauth/google")).bearer_auth(&ada.token).send().await.unwrap();
    assert_eq!(code_of(response).await, (503, "google_unavailable".into()), "kept, so the revocation can be retried");
    let during = api.state.store.oauth_connections().get(&ada.user).await.unwrap().unwrap();
    assert_eq!(
        (during.version, &during.access_token, &during.refresh_token, during.refresh_lease_until),
        (before.version, &before.access_token, &before.refresh_token, None),
        "tokens untouched and the lease given back"
    );

    api.sandbox.google().set_down(false);
    assert_eq!(internal_token(&api, &ada.user, CALENDAR_SERVICE).await.status(), 200, "healed");
    let trail = api.audit_trail(&ada.user).await;
    assert!(trail.contains(&("google.refresh".into(), Some("google".into()), "google_unavailable".into())));
}

keyward_tests::on_both_backends!(
    connect_then_fetch_a_token,
    a_near_expiry_token_is_refreshed_exactly_once,
    google_refusing_the_grant_requires_a_reconnect,
    disconnect_revokes_at_google,
    forged_replayed_and_refused_connects_store_nothing,
    google_down_leaves_the_connection_untouched,
);

/// Calls per internal token fetch, cached and refreshing: to AWS (moto, counted by an SDK
/// interceptor) and to Google (counted by the stand-in). Figures for issue 6's closing note.
#[tokio::test]
async fn calls_per_internal_token_fetch() {
    let api = LocalApi::start(Backend::Moto).await;
    let ada = person(&api, ADA).await;
    api.sandbox.google().set_access_lifetime(Duration::from_secs(60));
    assert_eq!(connect(&api, &ada, ADA_GOOGLE).await.status(), 302);
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    let aws = || api.aws_calls.take_as("OAuthRefreshFunction");
    aws();
    api.sandbox.google_calls().take();

    assert_eq!(internal_token(&api, &ada.user, CALENDAR_SERVICE).await.status(), 200);
    assert_eq!(
        aws(),
        "DynamoDB.GetItem=1 DynamoDB.PutItem=1 DynamoDB.UpdateItem=2 KMS.GenerateDataKey=1",
        "refreshing: read, take the lease, open the refresh token (data key cached), seal, save, audit"
    );
    assert_eq!(api.sandbox.google_calls().take(), "POST /token=1", "refreshing: one refresh grant");

    assert_eq!(internal_token(&api, &ada.user, CALENDAR_SERVICE).await.status(), 200);
    assert_eq!(aws(), "DynamoDB.GetItem=1 DynamoDB.PutItem=1", "cached: read, open (data key cached), audit");
    assert_eq!(api.sandbox.google_calls().take(), "", "cached: Google is not asked");
}
