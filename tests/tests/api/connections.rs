//! Connected accounts through real HTTP on both backends, against the Google and Microsoft
//! stand-ins, as a browser and an app do it: the app asks for a link, the signed-in browser opens
//! it (a browser signed in as nobody goes through Auth0 first), consents, and lands back at the app
//! with `?connected=<provider>` or `?error=<code>`; then internal tokens, one refresh under 20
//! concurrent calls, `invalid_grant` → reconnect, disconnect, forged and replayed flows, a provider down.

use std::time::{Duration, SystemTime};

use keyward::crypto::{EncryptionContext, Purpose};
use keyward::model::{OAuthProvider, UserId};
use keyward::store::table::{Attr, Key};
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{APP_ORIGIN, Backend, CALENDAR_SERVICE, LocalApi, NOTES_SERVICE, STRANGER, in_path, json};
use keyward_tests::sign_in::{ADA, authorize_at_auth0, code_of, location, session_cookie, sign_in, state_cookie};
use keyward_tests::table_writer::TableWriter;
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

const BOB: &str = "bob@example.com";
const ADA_GOOGLE: &str = "ada.lovelace@gmail.com";
const ADA_MICROSOFT: &str = "ada.lovelace@outlook.com";
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

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `GET /me/oauth/{provider}/connect` → the link the app opens in the browser.
async fn link(api: &LocalApi, provider: &str, person: &Person, return_to: Option<&str>) -> Url {
    let mut request = api.client.get(api.url(&format!("/me/oauth/{provider}/connect"))).bearer_auth(&person.token);
    if let Some(target) = return_to {
        request = request.query(&[("returnTo", target)]);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let link = Url::parse(json(response).await["authorizationUrl"].as_str().unwrap()).unwrap();
    keyward_tests::leaks::plant(&param(&link, "link").unwrap_or_default());
    link
}

/// A browser holding `cookies` (`name=value` pairs) at `url`.
async fn browse(api: &LocalApi, url: Url, cookies: &[String]) -> reqwest::Response {
    let mut request = api.client.get(url);
    if !cookies.is_empty() {
        request = request.header("cookie", cookies.join("; "));
    }
    request.send().await.unwrap()
}

fn session(handle: &str) -> String {
    format!("__Host-keyward-session={handle}")
}

/// The browser of `person` opening a link → the provider's consent screen, and the state cookie
/// binding the consent to that browser.
async fn open(api: &LocalApi, link: Url, handle: &str) -> (Url, String) {
    let response = browse(api, link, &[session(handle)]).await;
    (location(&response), state_cookie(&response))
}

/// Consent on the provider's screen as `account` → where the provider sends the browser.
async fn consent(api: &LocalApi, mut url: Url, account: &str) -> Url {
    url.query_pairs_mut().append_pair("login_hint", account);
    location(&api.client.get(url).send().await.unwrap())
}

/// A whole connect of `person`'s `account` at `provider`; where the browser ends.
async fn connect(api: &LocalApi, provider: &str, person: &Person, account: &str) -> Url {
    let link = link(api, provider, person, Some(&format!("{APP_ORIGIN}/settings"))).await;
    let (url, state) = open(api, link, &person.handle).await;
    let callback = consent(api, url, account).await;
    location(&browse(api, callback, &[session(&person.handle), state]).await)
}

async fn internal_token(
    api: &LocalApi,
    provider: &str,
    user: &UserId,
    principal: keyward_tests::api::Principal,
) -> reqwest::Response {
    let path = format!("/internal/users/{}/oauth/{provider}/token", in_path(user));
    api.signed("GET", &path, b"", principal, SystemTime::now()).await
}

async fn status(api: &LocalApi, provider: &str, person: &Person) -> Value {
    let url = api.url(&format!("/me/oauth/{provider}"));
    json(api.client.get(url).bearer_auth(&person.token).send().await.unwrap()).await
}

/// The refresh token keyward holds for `user` at `provider` (the test reads the table).
async fn stored_refresh_token(api: &LocalApi, provider: OAuthProvider, user: &UserId) -> String {
    let connection = api.state.store.oauth_connections(provider).get(user).await.unwrap().unwrap();
    let context = EncryptionContext::new(user, Purpose::Connection(provider), "refresh-token");
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

fn connected_to(landed: &Url, provider: &str) {
    assert_eq!(param(landed, "connected").as_deref(), Some(provider), "{landed}");
    assert_eq!(landed.path(), "/settings", "back at the app: {landed}");
}

async fn connect_then_fetch_a_token(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    assert_eq!(status(&api, "google", &ada).await["status"], "disconnected");

    let link = link(&api, "google", &ada, Some(&format!("{APP_ORIGIN}/settings"))).await;
    assert_eq!((link.origin().ascii_serialization(), link.path()), (api.base_url.clone(), "/oauth/google/start"));
    let (url, state) = open(&api, link, &ada.handle).await;
    let google = api.sandbox.base_url().to_owned() + "/google/o/oauth2/v2/auth";
    assert!(url.as_str().starts_with(&google), "{url}");
    assert_eq!(param(&url, "access_type").as_deref(), Some("offline"));
    assert_eq!(param(&url, "prompt").as_deref(), Some("consent"));
    assert_eq!(param(&url, "include_granted_scopes").as_deref(), Some("true"));
    assert_eq!(param(&url, "scope").as_deref(), Some(format!("openid email {CALENDAR}").as_str()));
    assert_eq!(param(&url, "code_challenge_method").as_deref(), Some("S256"));
    assert!(param(&url, "state").unwrap().len() >= 22, "at least 128 bits");
    assert_eq!(param(&url, "redirect_uri"), Some(api.url("/oauth/google/callback")));

    api.sandbox.google_calls().take();
    let callback = consent(&api, url, ADA_GOOGLE).await;
    let landed = location(&browse(&api, callback, &[session(&ada.handle), state]).await);
    connected_to(&landed, "google");
    assert_eq!(
        api.sandbox.google_calls().take(),
        "GET /o/oauth2/v2/auth=1 GET /v1/userinfo=1 POST /token=1",
        "the consent screen, the code exchange, the account's email"
    );

    let connected = status(&api, "google", &ada).await;
    assert_eq!(connected["status"], "connected");
    assert_eq!(connected["email"], ADA_GOOGLE);
    assert_eq!(connected["scopes"], serde_json::json!(["openid", "email", CALENDAR]));
    assert_eq!(connected["consentPage"], "https://myaccount.google.com/permissions");
    assert!(connected["connectedAt"].is_string() && connected.get("lastRefreshedAt").is_none());
    assert!(!connected.to_string().contains("ya29.") && !connected.to_string().contains("1//"), "never tokens");

    let response = internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await;
    assert_eq!(response.headers()["cache-control"], "no-store");
    let token = json(response).await;
    assert!(token["accessToken"].as_str().unwrap().starts_with("ya29.sandbox-"), "{token}");
    assert!(token["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(token["scopes"], connected["scopes"]);
    assert_eq!(token["email"], ADA_GOOGLE, "the connected account's address, as the replaced service gave it");
    assert_eq!(token["emailVerified"], true, "Google's userinfo vouches for it");
    assert_eq!(api.sandbox.google_calls().take(), "", "a fresh token is handed out without asking Google");

    // Other principals: one not allowed Google, one on no list at all.
    let (not_allowed, stranger) = (
        internal_token(&api, "google", &ada.user, NOTES_SERVICE).await,
        internal_token(&api, "google", &ada.user, STRANGER).await,
    );
    assert_eq!(code_of(not_allowed).await, (403, "grant_missing".into()));
    assert_eq!(code_of(stranger).await, (403, "principal_not_allowed".into()));
    let bob = UserId::parse(&sandbox_subject(BOB)).unwrap();
    assert_eq!(
        code_of(internal_token(&api, "google", &bob, CALENDAR_SERVICE).await).await,
        (404, "google_not_connected".into())
    );
    assert_eq!(
        code_of(internal_token(&api, "yahoo", &ada.user, CALENDAR_SERVICE).await).await,
        (404, "unknown_oauth_provider".into())
    );

    let trail = api.audit_trail(&ada.user).await;
    let actions: Vec<(&str, &str)> = trail.iter().map(|(a, _, o)| (a.as_str(), o.as_str())).collect();
    assert_eq!(actions, [("google_token.fetch", "ok"), ("google.connect", "ok")]);
}

/// Microsoft beside Google: its consent screen, the address from its ID token, refresh tokens
/// that replace themselves on each use, a revoked grant asking to reconnect, and a disconnect that
/// can only forget (the identity platform revokes no single grant).
async fn microsoft_connects_rotates_and_forgets(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    // Issued with a minute left: every fetch refreshes it.
    api.sandbox.microsoft().set_access_lifetime(Duration::from_secs(60));
    let link = link(&api, "microsoft", &ada, Some(&format!("{APP_ORIGIN}/settings"))).await;
    let (url, state) = open(&api, link, &ada.handle).await;
    assert!(url.as_str().starts_with(&format!("{}/microsoft/common/oauth2/v2.0/authorize", api.sandbox.base_url())));
    assert_eq!(param(&url, "response_mode").as_deref(), Some("query"));
    let scope = param(&url, "scope").unwrap();
    assert!(
        scope.contains("offline_access") && scope.contains("https://graph.microsoft.com/Calendars.Read"),
        "{scope}"
    );
    assert_eq!(param(&url, "redirect_uri"), Some(api.url("/oauth/microsoft/callback")));
    let callback = consent(&api, url, ADA_MICROSOFT).await;
    connected_to(&location(&browse(&api, callback, &[session(&ada.handle), state]).await), "microsoft");
    let connected = status(&api, "microsoft", &ada).await;
    assert_eq!((connected["status"].as_str(), connected["email"].as_str()), (Some("connected"), Some(ADA_MICROSOFT)));
    assert_eq!(status(&api, "google", &ada).await["status"], "disconnected", "each provider on its own");

    // Within the refresh margin: refreshed, and the rotated refresh token kept.
    let before = stored_refresh_token(&api, OAuthProvider::Microsoft, &ada.user).await;
    api.sandbox.microsoft_calls().take();
    let token = json(internal_token(&api, "microsoft", &ada.user, CALENDAR_SERVICE).await).await;
    assert_eq!(token["email"], ADA_MICROSOFT);
    assert_eq!(token["emailVerified"], false, "a Microsoft address nobody vouched for (no xms_edov) is marked so");
    assert!(token["accessToken"].as_str().unwrap().starts_with("EwB"), "{token}");
    assert_eq!(api.sandbox.microsoft_calls().take(), "POST /common/oauth2/v2.0/token=1", "refreshed");
    assert_ne!(stored_refresh_token(&api, OAuthProvider::Microsoft, &ada.user).await, before, "rotated");

    // An administrator revokes Ada's sessions: the next refresh asks for a reconnect.
    api.sandbox.microsoft().revoke_sessions(ADA_MICROSOFT);
    assert_eq!(
        code_of(internal_token(&api, "microsoft", &ada.user, CALENDAR_SERVICE).await).await,
        (409, "microsoft_reconnect_required".into())
    );
    assert_eq!(status(&api, "microsoft", &ada).await["status"], "reconnect_required");

    let delete = api.client.delete(api.url("/me/oauth/microsoft")).bearer_auth(&ada.token).send().await.unwrap();
    assert_eq!(delete.status(), 204);
    assert_eq!(api.sandbox.microsoft_calls().take(), "POST /common/oauth2/v2.0/token=1", "no revocation call exists");
    let after = status(&api, "microsoft", &ada).await;
    assert_eq!(after["status"], "disconnected");
    assert_eq!(after["consentPage"], "https://account.live.com/consent/Manage", "where Ada withdraws the consent");
    assert!(api.audit_trail(&ada.user).await.contains(&(
        "microsoft.disconnect".into(),
        Some("microsoft".into()),
        "ok".into()
    )));
}

/// A browser that holds no keyward session (the user signed in with the device flow, or the app's
/// own Auth0 SDK) signs in to keyward through Auth0 first, and goes on to consent only as the user
/// who asked for the link.
async fn a_browser_signed_in_as_nobody_goes_through_auth0_first(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    for (browser_user, connects) in [(ADA, true), (BOB, false)] {
        let link = link(&api, "google", &ada, Some(&format!("{APP_ORIGIN}/settings"))).await;
        let to_auth0 = browse(&api, link, &[]).await;
        assert!(location(&to_auth0).as_str().starts_with(&api.sandbox.auth0_issuer()), "to Auth0");
        let callback = authorize_at_auth0(&api, &to_auth0, browser_user).await;
        let signed_in = callback.follow(&api).await;
        let resume = location(&signed_in);
        assert_eq!(resume.path(), "/oauth/google/start", "the sign-in comes back to the link");
        let handle = session_cookie(&signed_in).expect("the browser is signed in now");
        let next = browse(&api, resume, &[session(&handle)]).await;
        let landed = location(&next);
        if connects {
            assert!(landed.as_str().starts_with(&format!("{}/google/", api.sandbox.base_url())), "on to consent");
        } else {
            assert_eq!(param(&landed, "error").as_deref(), Some("account_mismatch"), "{landed}");
            assert!(landed.as_str().starts_with(APP_ORIGIN));
        }
    }
    let bob = UserId::parse(&sandbox_subject(BOB)).unwrap();
    for user in [&ada.user, &bob] {
        assert!(api.state.store.oauth_connections(OAuthProvider::Google).get(user).await.unwrap().is_none());
    }
}

/// An access token near expiry is refreshed once, however many internal calls want it at once.
async fn a_near_expiry_token_is_refreshed_exactly_once(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    // Issued with 2 minutes left: inside the 5-minute margin from the start.
    api.sandbox.google().set_access_lifetime(Duration::from_secs(120));
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    let connections = api.state.store.oauth_connections(OAuthProvider::Google);
    let before = connections.get(&ada.user).await.unwrap().unwrap();
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    // Slow enough that every caller arrives while the refresh is under way.
    api.sandbox.google().set_token_latency(Duration::from_millis(400));
    api.sandbox.google_calls().take();

    let calls = (0..20).map(|_| internal_token(&api, "google", &ada.user, CALENDAR_SERVICE));
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

    let after = connections.get(&ada.user).await.unwrap().unwrap();
    assert_eq!(after.version, before.version + 1);
    assert!(after.access_expires_at > before.access_expires_at + 3000);
    assert_eq!(after.refresh_token, before.refresh_token, "Google sent no new refresh token; the old one is kept");
    assert_eq!(after.refresh_lease_until, None);
    assert!(status(&api, "google", &ada).await["lastRefreshedAt"].is_string());
}

async fn google_refusing_the_grant_requires_a_reconnect(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    api.sandbox.google().set_access_lifetime(Duration::from_secs(60));
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    // Ada removes keyward from her Google account.
    let refresh_token = stored_refresh_token(&api, OAuthProvider::Google, &ada.user).await;
    let revoked = api
        .client
        .post(format!("{}/google/revoke", api.sandbox.base_url()))
        .form(&[("token", refresh_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    api.sandbox.google_calls().take();

    let reconnect = || async { code_of(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await).await };
    assert_eq!(reconnect().await, (409, "google_reconnect_required".into()));
    assert_eq!(api.sandbox.google_calls().take(), "POST /token=1");
    assert_eq!(status(&api, "google", &ada).await["status"], "reconnect_required");
    // keyward stops asking Google until Ada reconnects.
    assert_eq!(reconnect().await, (409, "google_reconnect_required".into()));
    assert_eq!(api.sandbox.google_calls().take(), "");
    assert!(api.audit_trail(&ada.user).await.contains(&(
        "google.refresh".into(),
        Some("google".into()),
        "invalid_grant".into()
    )));

    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    assert_eq!(status(&api, "google", &ada).await["status"], "connected");
    assert_eq!(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await.status(), 200);
}

async fn disconnect_revokes_at_google(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    let refresh_token = stored_refresh_token(&api, OAuthProvider::Google, &ada.user).await;
    api.sandbox.google_calls().take();

    let delete = || api.client.delete(api.url("/me/oauth/google")).bearer_auth(&ada.token).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(api.sandbox.google_calls().take(), "POST /revoke=1");
    assert_eq!(google_refresh(&api, &refresh_token).await["error"], "invalid_grant", "Google no longer honours it");
    api.sandbox.google_calls().take();
    assert_eq!(status(&api, "google", &ada).await["status"], "disconnected");
    assert_eq!(
        code_of(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await).await,
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
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    let token = stored_refresh_token(&api, OAuthProvider::Google, &ada.user).await;
    let form = [("token", token.as_str())];
    api.client.post(format!("{}/google/revoke", api.sandbox.base_url())).form(&form).send().await.unwrap();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(status(&api, "google", &ada).await["status"], "disconnected");
}

async fn forged_replayed_and_refused_connects_store_nothing(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    let bob = person(&api, BOB).await;
    let nothing_stored = || async {
        for user in [&ada.user, &bob.user] {
            assert!(api.state.store.oauth_connections(OAuthProvider::Google).get(user).await.unwrap().is_none());
        }
    };
    let error_of = |response: &reqwest::Response| param(&location(response), "error");

    // A link Ada made, opened in Bob's browser: back to the app, nothing attached to anyone.
    let adas_link = link(&api, "google", &ada, None).await;
    let in_bobs_browser = browse(&api, adas_link, &[session(&bob.handle)]).await;
    assert_eq!(error_of(&in_bobs_browser).as_deref(), Some("account_mismatch"));
    nothing_stored().await;
    // Ada's consent arriving in Bob's browser (his session, not her browser's state cookie).
    let (url, state) = open(&api, link(&api, "google", &ada, None).await, &ada.handle).await;
    let callback = consent(&api, url, "bob.b@gmail.com").await;
    assert_eq!(
        error_of(&browse(&api, callback.clone(), &[session(&bob.handle)]).await).as_deref(),
        Some("invalid_state")
    );
    nothing_stored().await;
    // Spent by that attempt: replayed, even in the right browser.
    let replayed = browse(&api, callback, &[session(&ada.handle), state]).await;
    assert_eq!(error_of(&replayed).as_deref(), Some("invalid_state"));
    // Ada's browser binding, but without her keyward session.
    let (url, state) = open(&api, link(&api, "google", &ada, None).await, &ada.handle).await;
    let callback = consent(&api, url, ADA_GOOGLE).await;
    assert_eq!(error_of(&browse(&api, callback, &[state]).await).as_deref(), Some("session_mismatch"));
    // A state made for an Auth0 sign-in is not a consent state.
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let auth0_state = param(&location(&login), "state").unwrap();
    let forged = Url::parse_with_params(&api.url("/oauth/google/callback"), [("code", "x"), ("state", &auth0_state)]);
    let forged = browse(&api, forged.unwrap(), &[session(&ada.handle), state_cookie(&login)]).await;
    assert_eq!(error_of(&forged).as_deref(), Some("invalid_state"));
    nothing_stored().await;

    // Ada cancels on Google's screen.
    let (mut url, state) = open(&api, link(&api, "google", &ada, None).await, &ada.handle).await;
    url.query_pairs_mut().append_pair("decision", "deny");
    let denied = location(&api.client.get(url).send().await.unwrap());
    assert_eq!(error_of(&browse(&api, denied, &[session(&ada.handle), state]).await).as_deref(), Some("access_denied"));
    // An account that gives no offline access.
    let landed = connect(&api, "google", &ada, "ada+no-refresh@gmail.com").await;
    assert_eq!(param(&landed, "error").as_deref(), Some("consent_required"));
    assert_eq!(param(&landed, "connection").as_deref(), Some("google"));
    nothing_stored().await;
    // returnTo outside the allow-list, and no token at all.
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
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    let connections = api.state.store.oauth_connections(OAuthProvider::Google);
    let before = connections.get(&ada.user).await.unwrap().unwrap();

    api.sandbox.google().set_down(true);
    let response = internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await;
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(code_of(response).await, (503, "google_unavailable".into()));
    let response = api.client.delete(api.url("/me/oauth/google")).bearer_auth(&ada.token).send().await.unwrap();
    assert_eq!(code_of(response).await, (503, "google_unavailable".into()), "kept, so the revocation can be retried");
    let during = connections.get(&ada.user).await.unwrap().unwrap();
    assert_eq!(
        (during.version, &during.access_token, &during.refresh_token, during.refresh_lease_until),
        (before.version, &before.access_token, &before.refresh_token, None),
        "tokens untouched and the lease given back"
    );

    api.sandbox.google().set_down(false);
    assert_eq!(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await.status(), 200, "healed");
    let trail = api.audit_trail(&ada.user).await;
    assert!(trail.contains(&("google.refresh".into(), Some("google".into()), "provider_unavailable".into())));
}

/// The table writer copies Ada's Google connection under Bob's key, `user_id` left as Ada's and the
/// access token expired: the internal token route for Bob refuses the row instead of refreshing
/// Ada's grant and answering with her fresh token, and Ada's own connection still works.
async fn a_connection_copied_to_another_user_is_refused(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let ada = person(&api, ADA).await;
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    let bob = UserId::parse(&sandbox_subject(BOB)).unwrap();
    let slot = |user: &UserId| Key::new(format!("USER#{user}"), "OAUTH#google");
    TableWriter(&api.state.store).copy(&slot(&ada.user), &slot(&bob), &[("access_expires_at", Some(Attr::N(0)))]).await;
    api.sandbox.google_calls().take();

    let response = internal_token(&api, "google", &bob, CALENDAR_SERVICE).await;
    assert_eq!(code_of(response).await, (404, "google_not_connected".into()), "the copied row is refused");
    assert_eq!(api.sandbox.google_calls().take(), "", "Ada's refresh token is never used for Bob");
    let adas = json(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await).await;
    assert!(adas["accessToken"].as_str().unwrap().starts_with("ya29.sandbox-"), "{adas}");
}

keyward_tests::on_both_backends!(
    a_connection_copied_to_another_user_is_refused,
    connect_then_fetch_a_token,
    microsoft_connects_rotates_and_forgets,
    a_browser_signed_in_as_nobody_goes_through_auth0_first,
    a_near_expiry_token_is_refreshed_exactly_once,
    google_refusing_the_grant_requires_a_reconnect,
    disconnect_revokes_at_google,
    forged_replayed_and_refused_connects_store_nothing,
    google_down_leaves_the_connection_untouched,
);

/// Calls per internal token fetch, cached and refreshing: to AWS (moto, counted by an SDK
/// interceptor) and to Google (counted by the stand-in).
#[tokio::test]
async fn calls_per_internal_token_fetch() {
    let api = LocalApi::start(Backend::Moto).await;
    let ada = person(&api, ADA).await;
    api.sandbox.google().set_access_lifetime(Duration::from_secs(60));
    connected_to(&connect(&api, "google", &ada, ADA_GOOGLE).await, "google");
    api.sandbox.google().set_access_lifetime(Duration::from_secs(3599));
    let aws = || api.aws_calls.take_as("OAuthRefreshFunction");
    // The sign-in and the connect before are other functions' calls.
    api.aws_calls.reset();
    api.sandbox.google_calls().take();

    assert_eq!(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await.status(), 200);
    assert_eq!(
        aws(),
        "DynamoDB.GetItem=1 DynamoDB.PutItem=1 DynamoDB.UpdateItem=2",
        "refreshing: read, take the lease, open the refresh token and seal the new tokens (branch key cached: \
         no KMS call), save, audit"
    );
    assert_eq!(api.sandbox.google_calls().take(), "POST /token=1", "refreshing: one refresh grant");

    assert_eq!(internal_token(&api, "google", &ada.user, CALENDAR_SERVICE).await.status(), 200);
    assert_eq!(aws(), "DynamoDB.GetItem=1 DynamoDB.PutItem=1", "cached: read, open (branch key cached), audit");
    assert_eq!(api.sandbox.google_calls().take(), "", "cached: Google is not asked");
}
