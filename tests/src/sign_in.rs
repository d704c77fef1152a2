//! Sign-in steps as a browser or a CLI takes them through the local API and the Auth0 stand-in.

use keyward::store::refresh_token_context;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use url::Url;

use crate::api::{APP_ORIGIN, LocalApi, json};

/// The sandbox user most tests sign in as.
pub const ADA: &str = "ada@example.com";

/// The target of a 302.
pub fn location(response: &reqwest::Response) -> Url {
    assert_eq!(response.status(), 302, "expected a redirect");
    Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
}

/// Where Auth0 sends a browser back to, and the cookie `/auth/login` left in that browser.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: Url,
    /// `__Host-keyward-state-…=nonce`, as the browser sends it back.
    pub cookie: String,
}

impl Callback {
    /// The browser following Auth0's redirect, with its cookie.
    pub async fn follow(&self, api: &LocalApi) -> reqwest::Response {
        api.client.get(self.url.clone()).header("cookie", &self.cookie).send().await.unwrap()
    }
}

/// The `name=value` of the state cookie a `/auth/login` response sets.
pub fn state_cookie(response: &reqwest::Response) -> String {
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-keyward-state-"))
        .expect("a state cookie");
    let pair = cookie.split(';').next().unwrap_or_default().to_owned();
    crate::leaks::plant(pair.split_once('=').map_or("", |(_, v)| v));
    pair
}

/// The browser at Auth0's `/authorize` (from `login`'s redirect) as the sandbox user `email`.
pub async fn authorize_at_auth0(api: &LocalApi, login: &reqwest::Response, email: &str) -> Callback {
    let mut authorize = location(login);
    authorize.query_pairs_mut().append_pair("login_hint", email);
    Callback { url: location(&api.client.get(authorize).send().await.unwrap()), cookie: state_cookie(login) }
}

/// `GET /auth/login`, then Auth0's `/authorize` as the sandbox user `email` → the callback.
pub async fn authorize(api: &LocalApi, return_to: &str, email: &str) -> Callback {
    let login = api.client.get(api.url("/auth/login")).query(&[("returnTo", return_to)]).send().await.unwrap();
    authorize_at_auth0(api, &login, email).await
}

/// A whole web sign-in; returns the session handle from the cookie.
pub async fn sign_in(api: &LocalApi, email: &str) -> String {
    let callback = authorize(api, &format!("{APP_ORIGIN}/after"), email).await;
    let response = callback.follow(api).await;
    assert_eq!(location(&response).as_str(), format!("{APP_ORIGIN}/after"));
    session_cookie(&response).expect("a session cookie")
}

/// The keyward session handle a response sets in its `__Host-` cookie.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("__Host-keyward-session="))?;
    let value = cookie.strip_prefix("__Host-keyward-session=")?.split(';').next()?;
    crate::leaks::plant(value);
    (!value.is_empty()).then(|| value.to_owned())
}

/// `POST /auth/refresh` with a handle in the body, as a CLI sends it.
pub async fn refresh(api: &LocalApi, handle: &str) -> reqwest::Response {
    api.client.post(api.url("/auth/refresh")).json(&json!({ "refreshToken": handle })).send().await.unwrap()
}

/// `POST /auth/device/start`.
pub async fn start_device(api: &LocalApi) -> Value {
    let response = api.client.post(api.url("/auth/device/start")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    json(response).await
}

/// `POST /auth/device/poll` → status and body.
pub async fn poll(api: &LocalApi, device_code: &str) -> (u16, Value) {
    crate::leaks::plant(device_code);
    let response =
        api.client.post(api.url("/auth/device/poll")).json(&json!({ "deviceCode": device_code })).send().await.unwrap();
    let (status, body) = (response.status().as_u16(), json(response).await);
    // A CLI's session: the handle and the access token it is given.
    for field in ["refreshToken", "accessToken"] {
        if let Some(secret) = body[field].as_str() {
            crate::leaks::plant(secret);
        }
    }
    (status, body)
}

/// A person approving (`approve`) or denying (`deny`) a user code on the sandbox's activation page, as Ada.
pub async fn activate(api: &LocalApi, user_code: &str, decision: &str) {
    let response = api
        .client
        .post(format!("{}activate", api.sandbox.auth0_issuer()))
        .form(&[("user_code", user_code), ("email", ADA), ("decision", decision)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A response's status and problem `code`.
pub async fn code_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, json(response).await["code"].as_str().unwrap_or_default().to_owned())
}

/// The Auth0 refresh token keyward holds for the session `handle` (the test reads the table).
pub async fn sealed_auth0_token(api: &LocalApi, handle: &str) -> String {
    let hash = keyward::secret::digest(handle);
    let family = api.state.store.sessions().find(&hash).await.unwrap().unwrap();
    let context = refresh_token_context(&family.user, &family.id, &family.current_handle);
    api.state.envelope.open_text(&family.sealed_refresh, &context).await.unwrap().expose_secret().to_owned()
}
