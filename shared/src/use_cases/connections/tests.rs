//! Connecting accounts as a browser does it, against the sandbox's Auth0, Google and Microsoft.

use url::Url;

use super::*;
use crate::auth::UserCaller;
use crate::model::{Clock, OAuthProvider};
use crate::use_cases::sessions::LoginCallback;
use crate::use_cases::testing::{Fixture, at_auth0, consent_at, service_caller};

const ADA: &str = "ada@example.com";
const MALLORY: &str = "mallory@example.com";

fn client() -> ClientAddress {
    ClientAddress::from_source_ip(Some("203.0.113.5"))
}

fn param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// The claims of the user a browser session belongs to (as a token of theirs would carry them).
async fn claims_of(fixture: &Fixture, handle: &SessionHandle) -> UserCaller {
    let user = fixture.sessions().holder(handle).await.unwrap().unwrap();
    UserCaller::signed_in(user, None, Some(true))
}

/// A browser holding `browser` opening `link` and going on to consent as `account`: where it lands.
async fn connect(
    fixture: &Fixture,
    provider: OAuthProvider,
    link: &Url,
    browser: &SessionHandle,
    account: &str,
) -> String {
    let connections = fixture.connections(provider);
    let link = param(link.as_str(), "link");
    let Next::Consent { url, cookie } = connections.open_link(&client(), link.as_deref(), Some(browser)).await.unwrap()
    else {
        panic!("a browser signed in as the link's user goes on to consent");
    };
    let (state, code) = consent_at(&url, account).await;
    let callback = ConsentCallback {
        state: Some(&state),
        browser_nonce: Some(&cookie.value),
        browser: Some(browser),
        code: Some(&code),
        error: None,
    };
    let Next::Back { url, .. } = connections.finish(&callback).await.unwrap() else { panic!("back to the app") };
    url
}

#[tokio::test]
async fn a_signed_in_browser_connects_and_the_service_gets_fresh_tokens_with_the_address() {
    let fixture = Fixture::with_sandbox().await;
    let ada = fixture.signed_in(ADA).await;
    let claims = claims_of(&fixture, &ada).await;
    let google = fixture.connections(OAuthProvider::Google);
    let link = google.link(&claims, Some("http://127.0.0.1:8700/settings")).await.unwrap();
    assert_eq!(link.path(), "/oauth/google/start");
    let back = connect(&fixture, OAuthProvider::Google, &link, &ada, "ada@gmail.com").await;
    assert!(back.starts_with("http://127.0.0.1:8700/settings?"), "{back}");
    assert_eq!(param(&back, "connected").as_deref(), Some("google"));
    let connection = google.status(&claims.user).await.unwrap().unwrap();
    assert_eq!((connection.email.as_str(), connection.status), ("ada@gmail.com", ConnectionStatus::Connected));
    let calendar = service_caller("calendar", &["google-oauth"]);
    let token = google.fresh_token(&calendar, &claims.user).await.unwrap();
    assert_eq!(token.email, "ada@gmail.com");
    assert!(token.access_token.expose_secret().starts_with("ya29."));
    assert_eq!(google.disconnect(&claims).await.unwrap(), Disconnected::Revoked);
    assert!(google.status(&claims.user).await.unwrap().is_none());
    assert_eq!(google.disconnect(&claims).await.unwrap(), Disconnected::Nothing, "idempotent");
}

#[tokio::test]
async fn a_browser_without_a_session_signs_in_first_and_goes_on_only_as_the_links_user() {
    let fixture = Fixture::with_sandbox().await;
    let ada = fixture.signed_in(ADA).await;
    let claims = claims_of(&fixture, &ada).await;
    let google = fixture.connections(OAuthProvider::Google);
    for (signs_in_as, connected) in [(ADA, true), (MALLORY, false)] {
        let link = google.link(&claims, None).await.unwrap();
        let link = param(link.as_str(), "link");
        let Next::SignIn { url, cookie } = google.open_link(&client(), link.as_deref(), None).await.unwrap() else {
            panic!("a browser without a session goes to Auth0 first");
        };
        let (state, code) = at_auth0(&url, signs_in_as).await;
        let sessions = fixture.sessions();
        let callback =
            LoginCallback { state: Some(&state), browser_nonce: Some(&cookie.value), code: Some(&code), error: None };
        let signed_in = sessions.finish_web_login(&callback).await.unwrap();
        let resume = Url::parse(signed_in.return_to.as_deref().unwrap()).unwrap();
        assert_eq!(resume.path(), "/oauth/google/start", "the sign-in comes back to the link");
        let next = google
            .open_link(&client(), param(resume.as_str(), "link").as_deref(), Some(&signed_in.handle))
            .await
            .unwrap();
        match next {
            Next::Consent { .. } => assert!(connected, "{signs_in_as} went on to consent"),
            Next::Back { url, .. } => {
                assert!(!connected, "{signs_in_as} was sent back");
                assert_eq!(param(&url, "error").as_deref(), Some("account_mismatch"));
            }
            Next::SignIn { .. } => panic!("signed in already"),
        }
    }
    let mallory = fixture.sessions().holder(&fixture.signed_in(MALLORY).await).await.unwrap().unwrap();
    assert!(google.status(&mallory).await.unwrap().is_none(), "nothing attached to the other user");
}

/// The account-linking CSRF: a link one user made, opened in another user's signed-in browser,
/// attaches nobody's account to anybody.
#[tokio::test]
async fn a_link_opened_in_someone_elses_browser_attaches_nothing() {
    let fixture = Fixture::with_sandbox().await;
    let mallory = fixture.signed_in(MALLORY).await;
    let ada = fixture.signed_in(ADA).await;
    let mallorys = claims_of(&fixture, &mallory).await;
    let google = fixture.connections(OAuthProvider::Google);
    let link = google.link(&mallorys, None).await.unwrap();
    let next = google.open_link(&client(), param(link.as_str(), "link").as_deref(), Some(&ada)).await.unwrap();
    let Next::Back { url, .. } = next else { panic!("no consent in Ada's browser") };
    assert_eq!(param(&url, "error").as_deref(), Some("account_mismatch"));
    let adas = claims_of(&fixture, &ada).await;
    for user in [&mallorys.user, &adas.user] {
        assert!(google.status(user).await.unwrap().is_none());
    }
    let trail = fixture.store.audit().list(&mallorys.user, 1, None).await.unwrap().items;
    assert_eq!(
        (trail[0].action, trail[0].outcome.as_str()),
        (AuditAction::Connect(OAuthProvider::Google), "account_mismatch")
    );
    // Nor does a consent callback reach anything without the browser that started it.
    let link = google.link(&mallorys, None).await.unwrap();
    let Next::Consent { url, .. } =
        google.open_link(&client(), param(link.as_str(), "link").as_deref(), Some(&mallory)).await.unwrap()
    else {
        panic!("consent in Mallory's own browser");
    };
    let (state, code) = consent_at(&url, "mallory@gmail.com").await;
    let in_adas_browser = ConsentCallback {
        state: Some(&state),
        browser_nonce: None,
        browser: Some(&ada),
        code: Some(&code),
        error: None,
    };
    let Next::Back { url, .. } = google.finish(&in_adas_browser).await.unwrap() else { panic!("back") };
    assert_eq!(param(&url, "error").as_deref(), Some("invalid_state"));
    assert!(google.status(&adas.user).await.unwrap().is_none());
}

#[tokio::test]
async fn microsoft_rotates_refresh_tokens_refreshes_once_under_load_and_a_revoked_grant_asks_to_reconnect() {
    let fixture = Fixture::with_sandbox().await;
    let ada = fixture.signed_in(ADA).await;
    let claims = claims_of(&fixture, &ada).await;
    let microsoft = fixture.connections(OAuthProvider::Microsoft);
    let link = microsoft.link(&claims, None).await.unwrap();
    let back = connect(&fixture, OAuthProvider::Microsoft, &link, &ada, "ada@outlook.com").await;
    assert_eq!(param(&back, "connected").as_deref(), Some("microsoft"));
    let first = microsoft.status(&claims.user).await.unwrap().unwrap();
    assert_eq!(first.email, "ada@outlook.com", "from the ID token");
    assert!(first.scopes.iter().any(|s| s.ends_with("Calendars.Read")));

    // Expired: concurrent callers cause one refresh, and the rotated refresh token is kept.
    fixture.clock.advance(3_600);
    fixture.sandbox().microsoft_calls().take();
    let calendar = service_caller("calendar", &["microsoft-oauth"]);
    let fetches = futures_join(&microsoft, &calendar, &claims.user).await;
    assert!(fetches.iter().all(Result::is_ok), "every caller gets a token");
    assert_eq!(fixture.sandbox().microsoft_calls().take(), "POST /common/oauth2/v2.0/token=1");
    let refreshed = microsoft.status(&claims.user).await.unwrap().unwrap();
    assert_ne!(
        refreshed.refresh_token.as_ref().map(Sealed::to_bytes),
        first.refresh_token.as_ref().map(Sealed::to_bytes)
    );

    fixture.sandbox().microsoft().revoke_sessions("ada@outlook.com");
    fixture.clock.advance(3_600);
    let refused = microsoft.fresh_token(&calendar, &claims.user).await;
    assert!(matches!(refused, Err(ConnectError::ReconnectRequired(OAuthProvider::Microsoft))));
    assert_eq!(microsoft.status(&claims.user).await.unwrap().unwrap().status, ConnectionStatus::ReconnectRequired);
    assert_eq!(microsoft.disconnect(&claims).await.unwrap(), Disconnected::Forgotten, "no revocation endpoint");
    assert!(microsoft.status(&claims.user).await.unwrap().is_none(), "the tokens are gone");
}

async fn futures_join(
    connections: &Connections<'_>,
    caller: &ServiceCaller,
    user: &UserId,
) -> [Result<FreshToken, ConnectError>; 3] {
    let (a, b, c) = tokio::join!(
        connections.fresh_token(caller, user),
        connections.fresh_token(caller, user),
        connections.fresh_token(caller, user)
    );
    [a, b, c]
}

#[tokio::test]
async fn a_refused_or_cancelled_consent_ends_back_at_the_app_with_its_code() {
    let fixture = Fixture::with_sandbox().await;
    let ada = fixture.signed_in(ADA).await;
    let claims = claims_of(&fixture, &ada).await;
    let google = fixture.connections(OAuthProvider::Google);
    let link = google.link(&claims, None).await.unwrap();
    let Next::Consent { url, cookie } =
        google.open_link(&client(), param(link.as_str(), "link").as_deref(), Some(&ada)).await.unwrap()
    else {
        panic!("consent");
    };
    let state = param(url.as_str(), "state").unwrap();
    let cancelled = ConsentCallback {
        state: Some(&state),
        browser_nonce: Some(&cookie.value),
        browser: Some(&ada),
        code: None,
        error: Some("access_denied"),
    };
    let Next::Back { url, cookies } = google.finish(&cancelled).await.unwrap() else { panic!("back") };
    assert_eq!(param(&url, "error").as_deref(), Some("access_denied"));
    assert_eq!(cookies[0].max_age_secs, 0, "the browser binding is cleared");
    assert!(google.status(&claims.user).await.unwrap().is_none());
    let unknown = google.open_link(&client(), Some("never-issued"), Some(&ada)).await.unwrap();
    assert!(matches!(unknown, Next::Back { url, .. } if param(&url, "error").as_deref() == Some("invalid_state")));
    let outside = google.link(&claims, Some("https://evil.example/")).await;
    assert!(matches!(outside, Err(ConnectError::Redirect(RedirectError::InvalidReturnTo))));
    assert!(fixture.clock.now() > 0);
}
