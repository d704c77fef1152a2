//! Auth0 sign-in through real HTTP on both backends, against the Auth0 stand-in: the web login
//! (state, PKCE, callback, `returnTo` allow-list), keyward sessions (rotation, reuse detection,
//! Auth0 `invalid_grant`, logout revoking at Auth0), `GET /me`, and the device flow as a CLI runs it.

use std::time::Duration;

use keyward::model::OAuthProvider;
use keyward::model::UserId;
use keyward::secret::digest;
use keyward::store::table::{Attr, Key};
use keyward::store::{StatePurpose, now_epoch};
use keyward::use_cases::redirects::Redirects;
use keyward_sandbox::auth0::sandbox_subject;
use keyward_tests::api::{APP_ORIGIN, Backend, LocalApi, json};
use keyward_tests::sign_in::{
    ADA, Callback, activate, authorize, authorize_at_auth0, code_of, location, poll, refresh, sealed_auth0_token,
    session_cookie, sign_in, start_device, state_cookie,
};
use keyward_tests::table_writer::TableWriter;
use serde_json::json;
use url::Url;

fn user(email: &str) -> UserId {
    UserId::parse(&sandbox_subject(email)).unwrap()
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn web_sign_in_stores_the_user_and_sets_a_host_cookie(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let config = json(api.client.get(api.url("/auth/config")).send().await.unwrap()).await;
    assert_eq!(config["issuer"], api.sandbox.auth0_issuer());
    assert!(config["deviceVerificationUrl"].as_str().unwrap().ends_with("/auth0/activate"));

    let login = api
        .client
        .get(api.url("/auth/login"))
        .query(&[("returnTo", "https://app.example.com/x")])
        .send()
        .await
        .unwrap();
    let authorize = location(&login);
    assert!(authorize.as_str().starts_with(&format!("{}authorize?", api.sandbox.auth0_issuer())));
    assert_eq!(param(&authorize, "response_type").as_deref(), Some("code"));
    assert_eq!(param(&authorize, "scope").as_deref(), Some("openid profile email offline_access"));
    assert_eq!(param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert_eq!(param(&authorize, "redirect_uri"), Some(api.url("/auth/callback")));
    assert!(param(&authorize, "state").is_some_and(|s| s.len() >= 43), "at least 256 bits");

    // The state is bound to this browser by a cookie of its own.
    let binding = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["__Host-keyward-state-", "HttpOnly", "Secure", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(binding.contains(attribute), "{binding}");
    }
    assert!(!binding.contains("Domain"), "a __Host- cookie names no domain: {binding}");
    let callback = Callback { url: authorize_as(&api, authorize, ADA).await, cookie: state_cookie(&login) };
    let response = callback.follow(&api).await;
    assert_eq!(location(&response).as_str(), "https://app.example.com/x");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["__Host-keyward-session=", "HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let cleared = response.headers().get_all("set-cookie").iter().any(|c| {
        c.to_str().is_ok_and(|c| c.starts_with(callback.cookie.split('=').next().unwrap()) && c.contains("Max-Age=0"))
    });
    assert!(cleared, "the callback clears the state cookie");
    let profile = api.state.store.users().get(&user(ADA)).await.unwrap().unwrap();
    assert_eq!(profile.email.as_deref(), Some(ADA));
    assert!(profile.email_verified);
    assert_eq!(profile.name.as_deref(), Some("ada"));

    // The same callback again: the state was used up.
    let (status, code) = code_of(callback.follow(&api).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_state"));
}

/// A sign-in in flight is stored as the state's hash, its PKCE verifier sealed, and the hash of its
/// browser's nonce: nothing in the item would let a reader of the table finish it.
#[tokio::test]
async fn a_state_item_holds_its_verifier_sealed_and_its_nonce_hashed() {
    let api = LocalApi::start(Backend::Moto).await;
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let state = location(&login).query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let nonce = state_cookie(&login).split_once('=').unwrap().1.to_owned();
    let table = api.table().unwrap();
    let scan = table.client.scan().table_name(&table.name).send().await.unwrap();
    let item = scan.items().iter().find(|i| i["pk"].as_s().is_ok_and(|pk| pk.starts_with("STATE#"))).unwrap();
    let names: std::collections::BTreeSet<&str> = item.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["browser", "entity", "expires_at", "pk", "purpose", "return_to", "sealed_verifier", "sk"].into(),
        "no plaintext verifier"
    );
    assert!(item["sealed_verifier"].as_b().is_ok(), "the verifier is a sealed record");
    for value in item.values().filter_map(|v| v.as_s().ok()) {
        assert!(!value.contains(&state) && !value.contains(&nonce), "the state and the nonce only as hashes");
    }
}

/// Login CSRF: Mallory signs in at Auth0 as herself and sends Ada the callback link (or lands it in
/// her browser). Without the cookie of the browser that started the sign-in, nobody is signed in.
async fn a_callback_finishes_only_in_the_browser_that_started_it(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let mallory = "mallory@example.com";
    let mallorys = authorize(&api, &format!("{APP_ORIGIN}/after"), mallory).await;
    // Ada's browser: no cookie for Mallory's state, or the cookie of a sign-in of its own.
    let no_cookie = api.client.get(mallorys.url.clone()).send().await.unwrap();
    assert_eq!(code_of(no_cookie).await, (400, "invalid_state".to_owned()));
    assert!(api.state.store.users().get(&user(mallory)).await.unwrap().is_none(), "nobody signed in");
    let adas = authorize(&api, &format!("{APP_ORIGIN}/after"), ADA).await;
    let forged = Callback { url: adas.url.clone(), cookie: mallorys.cookie.clone() };
    assert_eq!(code_of(forged.follow(&api).await).await, (400, "invalid_state".to_owned()), "another state's cookie");
    let (name, _) = adas.cookie.split_once('=').unwrap();
    let wrong_value = Callback { url: adas.url.clone(), cookie: format!("{name}=not-the-nonce") };
    assert_eq!(code_of(wrong_value.follow(&api).await).await, (400, "invalid_state".to_owned()), "a forged nonce");
    assert!(api.state.store.users().get(&user(ADA)).await.unwrap().is_none(), "nobody signed in");
    // The state was used up by the attempt: the link is dead even in the right browser.
    assert_eq!(code_of(mallorys.follow(&api).await).await, (400, "invalid_state".to_owned()));
    // Two sign-ins started in one browser (two tabs) each finish there.
    let first = authorize(&api, &format!("{APP_ORIGIN}/one"), ADA).await;
    let second = authorize(&api, &format!("{APP_ORIGIN}/two"), ADA).await;
    let both = |c: &Callback| Callback { url: c.url.clone(), cookie: format!("{}; {}", first.cookie, second.cookie) };
    assert_eq!(location(&both(&second).follow(&api).await).as_str(), format!("{APP_ORIGIN}/two"));
    assert_eq!(location(&both(&first).follow(&api).await).as_str(), format!("{APP_ORIGIN}/one"));
}

async fn authorize_as(api: &LocalApi, mut authorize: Url, email: &str) -> Url {
    authorize.query_pairs_mut().append_pair("login_hint", email);
    location(&api.client.get(authorize).send().await.unwrap())
}

async fn forged_and_refused_sign_ins_store_nothing(backend: Backend) {
    let api = LocalApi::start(backend).await;
    for return_to in [
        "https://evil.example.com/",
        "https://app.example.com.evil.example/",
        "//evil.example.com/",
        "/relative",
        "https://ada@app.example.com/",
        "http://app.example.com/",
        "javascript:alert(1)",
    ] {
        let response = api.client.get(api.url("/auth/login")).query(&[("returnTo", return_to)]).send().await.unwrap();
        assert_eq!(code_of(response).await, (400, "invalid_return_to".to_owned()), "{return_to}");
    }

    // PKCE: a challenge swapped on the way to Auth0 makes keyward's verifier fail there.
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let mut authorize = location(&login);
    let pairs: Vec<(String, String)> = authorize
        .query_pairs()
        .map(|(k, v)| {
            let value = if k == "code_challenge" { "A".repeat(43) } else { v.into_owned() };
            (k.into_owned(), value)
        })
        .collect();
    authorize.query_pairs_mut().clear().extend_pairs(pairs);
    let callback = Callback { url: authorize_as(&api, authorize, ADA).await, cookie: state_cookie(&login) };
    assert_eq!(code_of(callback.follow(&api).await).await, (400, "code_rejected".to_owned()));

    // The user says no at Auth0.
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let mut authorize = location(&login);
    authorize.query_pairs_mut().append_pair("deny", "1");
    let callback =
        Callback { url: location(&api.client.get(authorize).send().await.unwrap()), cookie: state_cookie(&login) };
    assert_eq!(param(&callback.url, "error").as_deref(), Some("access_denied"));
    assert_eq!(code_of(callback.follow(&api).await).await, (400, "access_denied".to_owned()));
    assert_eq!(code_of(callback.follow(&api).await).await, (400, "invalid_state".to_owned()));

    // A state made for another provider (Google connect) is not a login state.
    let redirects =
        Redirects { store: &api.state.store, envelope: &api.state.envelope, clock: api.state.clock.as_ref() };
    let connect =
        redirects.start(StatePurpose::Connect(OAuthProvider::Google), Some(user(ADA)), None, false).await.unwrap();
    let forged = api.url(&format!("/auth/callback?code=x&state={}", connect.state));
    assert_eq!(code_of(api.client.get(forged).send().await.unwrap()).await, (400, "invalid_state".to_owned()));
    let unknown = api.url("/auth/callback?code=x&state=never-issued");
    assert_eq!(code_of(api.client.get(unknown).send().await.unwrap()).await, (400, "invalid_state".to_owned()));

    assert!(api.state.store.users().get(&user(ADA)).await.unwrap().is_none(), "no sign-in completed");
}

async fn sessions_rotate_and_reuse_ends_the_family(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let first = sign_in(&api, ADA).await;

    // Browsers refresh with the cookie, and get the next handle in a new cookie only: a page's
    // script never sees it in the body.
    let response = api
        .client
        .post(api.url("/auth/refresh"))
        .header("cookie", format!("__Host-keyward-session={first}"))
        .header("origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let second = session_cookie(&response).expect("rotated cookie");
    let body = json(response).await;
    assert!(body.get("refreshToken").is_none(), "a cookie client never gets its handle in a body: {body}");
    assert!(!body.to_string().contains(&second));
    assert_eq!(body["tokenType"], "Bearer");
    let me = api.client.get(api.url("/me")).bearer_auth(body["accessToken"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(json(me).await["email"], ADA);

    // CLIs refresh with the body.
    let third = json(refresh(&api, &second).await).await["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(third, second);

    // The first handle again: reuse. The whole family ends, the newest handle with it.
    assert_eq!(code_of(refresh(&api, &first).await).await, (401, "session_reused".to_owned()));
    assert_eq!(code_of(refresh(&api, &third).await).await, (401, "session_revoked".to_owned()));
    assert_eq!(code_of(refresh(&api, "never-issued").await).await, (401, "invalid_session".to_owned()));
}

async fn auth0_refusing_the_refresh_ends_the_session(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let handle = sign_in(&api, ADA).await;
    // The user's Auth0 grant is revoked elsewhere (say, in Auth0's dashboard).
    let auth0_token = sealed_auth0_token(&api, &handle).await;
    let revoked = api
        .client
        .post(format!("{}oauth/revoke", api.sandbox.auth0_issuer()))
        .form(&[("client_id", "keyward-web"), ("token", auth0_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    assert_eq!(code_of(refresh(&api, &handle).await).await, (401, "reauthentication_required".to_owned()));
    assert_eq!(code_of(refresh(&api, &handle).await).await, (401, "session_revoked".to_owned()));
}

async fn logout_revokes_at_auth0(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let handle = sign_in(&api, ADA).await;
    let auth0_token = sealed_auth0_token(&api, &handle).await;
    let response =
        api.client.post(api.url("/auth/logout")).json(&json!({ "refreshToken": handle })).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"), "the cookie is cleared");
    assert_eq!(code_of(refresh(&api, &handle).await).await, (401, "session_revoked".to_owned()));
    // Auth0 no longer honours the refresh token keyward held.
    let direct = api
        .client
        .post(format!("{}oauth/token", api.sandbox.auth0_issuer()))
        .form(&[("grant_type", "refresh_token"), ("client_id", "keyward-web"), ("refresh_token", auth0_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(json(direct).await["error"], "invalid_grant");
    // Logging out twice is harmless.
    let again = api.client.post(api.url("/auth/logout")).json(&json!({ "refreshToken": handle })).send().await.unwrap();
    assert_eq!(again.status(), 204);
}

async fn me_creates_a_profile_on_first_sight(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let token = api.user_token("grace@example.com").await;
    let me = json(api.client.get(api.url("/me")).bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(me["id"], sandbox_subject("grace@example.com"));
    assert_eq!(me["email"], "grace@example.com");
    assert!(me.get("accessToken").is_none() && !me.to_string().contains("refresh"));
    assert!(api.state.store.users().get(&user("grace@example.com")).await.unwrap().is_some());
    let (status, code) = code_of(api.client.get(api.url("/me")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (401, "missing_token"));
}

/// The device flow as a CLI drives it: start, poll at the interval, approval in a browser, tokens.
async fn a_cli_signs_in_with_the_device_flow(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let started = start_device(&api).await;
    let device_code = started["deviceCode"].as_str().unwrap().to_owned();
    let user_code = started["userCode"].as_str().unwrap();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX");
    assert_eq!(
        started["verificationUriComplete"],
        format!("{}activate?user_code={user_code}", api.sandbox.auth0_issuer())
    );
    let interval = Duration::from_secs(started["interval"].as_u64().unwrap());

    let (status, pending) = poll(&api, &device_code).await;
    assert_eq!((status, &pending["error"], &pending["interval"]), (400, &json!("authorization_pending"), &json!(1)));
    activate(&api, user_code, "approve").await;
    tokio::time::sleep(interval).await;
    let (status, tokens) = poll(&api, &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["tokenType"], "Bearer");
    assert!(tokens["idToken"].is_string());
    let me = api.client.get(api.url("/me")).bearer_auth(tokens["accessToken"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(json(me).await["email"], ADA);

    // Tokens are handed out once.
    tokio::time::sleep(interval).await;
    assert_eq!(poll(&api, &device_code).await.1["error"], "expired_token");
    // The CLI's refresh token is a keyward session handle, refreshed like any other.
    let refreshed = refresh(&api, tokens["refreshToken"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);
}

async fn device_polls_follow_rfc_8628(backend: Backend) {
    let api = LocalApi::start(backend).await;
    // Polling faster than the interval: slow_down without asking Auth0, and the interval grows by 5 s for good.
    let device_code = start_device(&api).await["deviceCode"].as_str().unwrap().to_owned();
    assert_eq!(poll(&api, &device_code).await.1["error"], "authorization_pending");
    let (status, slow) = poll(&api, &device_code).await;
    assert_eq!((status, &slow["error"], &slow["interval"]), (400, &json!("slow_down"), &json!(6)));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(poll(&api, &device_code).await.1["error"], "slow_down", "the longer interval holds");

    // Denied at the activation page: terminal.
    let started = start_device(&api).await;
    let denied = started["deviceCode"].as_str().unwrap();
    activate(&api, started["userCode"].as_str().unwrap(), "deny").await;
    assert_eq!(poll(&api, denied).await.1["error"], "access_denied");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(poll(&api, denied).await.1["error"], "expired_token");

    // Unknown code, and malformed polls.
    let (status, unknown) = poll(&api, "not-a-device-code").await;
    assert_eq!((status, &unknown["error"]), (400, &json!("invalid_grant")));
    let response = api.client.post(api.url("/auth/device/poll")).json(&json!({})).send().await.unwrap();
    assert_eq!(code_of(response).await, (400, "invalid_body".to_owned()));

    // Expiry: the sandbox's codes live five seconds.
    let expiring = start_device(&api).await["deviceCode"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(5_200)).await;
    assert_eq!(poll(&api, &expiring).await.1["error"], "expired_token");
}

/// The routes anyone may call are limited per client address and minute: past the limit a script
/// gets 429 with `Retry-After` and Auth0 is not asked, while another address keeps its own allowance.
async fn anonymous_routes_are_limited_per_client(backend: Backend) {
    let limits = [
        ("KEYWARD_DEVICE_STARTS_PER_MINUTE", "3"),
        ("KEYWARD_LOGINS_PER_MINUTE", "2"),
        ("KEYWARD_REFRESHES_PER_MINUTE", "2"),
    ];
    let api = LocalApi::start_with(backend, &limits).await;
    // The windows are whole minutes: start well inside one, so the run does not straddle two.
    let into_minute = now_epoch() % 60;
    if into_minute > 50 {
        tokio::time::sleep(Duration::from_secs(61 - into_minute as u64)).await;
    }
    let handle = sign_in(&api, ADA).await;
    api.sandbox.auth0_calls().take();
    let starts: Vec<u16> = {
        let mut statuses = Vec::new();
        for _ in 0..4 {
            statuses.push(api.client.post(api.url("/auth/device/start")).send().await.unwrap().status().as_u16());
        }
        statuses
    };
    assert_eq!(starts, [200, 200, 200, 429]);
    assert_eq!(api.sandbox.auth0_calls().take(), "POST /oauth/device/code=3", "the fourth never reached Auth0");
    // The sign-in above used one of the two logins.
    assert_eq!(api.client.get(api.url("/auth/login")).send().await.unwrap().status(), 302);
    let limited = api.client.get(api.url("/auth/login")).send().await.unwrap();
    let retry_after: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(code_of(limited).await, (429, "rate_limited".to_owned()));
    let next = json(refresh(&api, &handle).await).await["refreshToken"].as_str().unwrap().to_owned();
    let next = json(refresh(&api, &next).await).await["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(code_of(refresh(&api, &next).await).await, (429, "rate_limited".to_owned()));
    // Another address (127.0.0.2 is loopback too) has an allowance of its own.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(elsewhere.post(api.url("/auth/device/start")).send().await.unwrap().status(), 200);
    assert_eq!(elsewhere.get(api.url("/auth/login")).send().await.unwrap().status(), 302);
    // The refused refresh rotated nothing: the handle still works from another address.
    let from_elsewhere = elsewhere.post(api.url("/auth/refresh")).json(&json!({ "refreshToken": next }));
    assert_eq!(from_elsewhere.send().await.unwrap().status(), 200);
}

/// The table writer plants a handle of their own choosing into Ada's session family (a handle item
/// naming her family, and her family's `current` edited to its hash): refreshing with it yields
/// nothing, since her Auth0 refresh token was sealed for the handle keyward issued.
async fn a_handle_planted_in_the_table_opens_no_session(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let handle = sign_in(&api, ADA).await;
    let family = api.state.store.sessions().find(&digest(&handle)).await.unwrap().unwrap();
    let planted = "mallory-chose-this-handle-0123456789";
    let writer = TableWriter(&api.state.store);
    let handle_key = |hash: &str| Key::new(format!("HANDLE#{hash}"), "HANDLE");
    writer.copy(&handle_key(&digest(&handle)), &handle_key(&digest(planted)), &[]).await;
    let family_key = Key::new(format!("SESSION#{}", family.id), "FAMILY");
    writer.edit(&family_key, &[("current", Some(Attr::S(digest(planted))))]).await;

    let response = refresh(&api, planted).await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("accessToken"), "no Auth0 access token for a planted handle: {body}");
    let cookie = format!("__Host-keyward-session={planted}");
    let me = api.client.post(api.url("/auth/refresh")).header("cookie", &cookie).header("origin", APP_ORIGIN);
    assert_eq!(me.send().await.unwrap().status(), 401, "nor for one in a cookie");
    // Nor is it a sign-in on a user route: the family's MAC binds it to the handle keyward issued.
    for path in ["/me", "/me/llm-keys", "/me/tokens"] {
        let response = api.client.get(api.url(path)).header("cookie", &cookie).send().await.unwrap();
        assert_eq!(code_of(response).await, (401, "invalid_session".to_owned()), "{path}");
    }
}

/// The session cookie signs a browser in on every user route, and a write from a page elsewhere
/// (or with no `Origin`) is refused before anything is read or changed; a session that ended or
/// rotated signs nobody in on its very next request.
async fn a_session_cookie_is_a_sign_in_on_user_routes_from_allowed_origins(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let handle = sign_in(&api, ADA).await;
    let by_cookie = |method: reqwest::Method, path: &str, handle: &str, origin: Option<&str>| {
        let request =
            api.client.request(method, api.url(path)).header("cookie", format!("__Host-keyward-session={handle}"));
        match origin {
            Some(origin) => request.header("origin", origin),
            None => request,
        }
    };
    let me = json(by_cookie(reqwest::Method::GET, "/me", &handle, None).send().await.unwrap()).await;
    assert_eq!(me["email"], ADA, "{me}");
    let made = |origin| {
        let body = json!({"name": "from a page", "scopes": ["keys:read"], "expiresInDays": 1});
        by_cookie(reqwest::Method::POST, "/me/tokens", &handle, origin).json(&body).send()
    };
    for origin in [None, Some("null"), Some("https://evil.example.com")] {
        assert_eq!(code_of(made(origin).await.unwrap()).await, (403, "origin_not_allowed".to_owned()), "{origin:?}");
    }
    let listed = json(by_cookie(reqwest::Method::GET, "/me/tokens", &handle, None).send().await.unwrap()).await;
    assert_eq!(listed["tokens"], json!([]), "a refused write made nothing");
    let created = made(Some(APP_ORIGIN)).await.unwrap();
    assert_eq!(created.status(), 201);
    keyward_tests::leaks::plant(json(created).await["token"].as_str().unwrap());

    // A refresh rotates the handle: the old cookie is spent, the new one signs in.
    let refreshed = by_cookie(reqwest::Method::POST, "/auth/refresh", &handle, Some(APP_ORIGIN)).send().await.unwrap();
    assert_eq!(refreshed.status(), 200);
    let next = session_cookie(&refreshed).unwrap();
    let spent = by_cookie(reqwest::Method::GET, "/me/llm-keys", &handle, None).send().await.unwrap();
    assert_eq!(code_of(spent).await, (401, "invalid_session".to_owned()));
    assert_eq!(by_cookie(reqwest::Method::GET, "/me/llm-keys", &next, None).send().await.unwrap().status(), 200);
    // A bearer, when sent, is the credential: the cookie does not stand in for a bad one.
    let with_bearer = by_cookie(reqwest::Method::GET, "/me/llm-keys", &next, None).bearer_auth("not-a-token");
    assert_eq!(with_bearer.send().await.unwrap().status(), 401);

    let logout = by_cookie(reqwest::Method::POST, "/auth/logout", &next, Some(APP_ORIGIN)).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    let ended = by_cookie(reqwest::Method::GET, "/me/credits", &next, None).send().await.unwrap();
    assert_eq!(code_of(ended).await, (401, "invalid_session".to_owned()));
}

/// Cross-site request forgery against the cookie: a page elsewhere (or a request with no `Origin`,
/// or `null`) neither refreshes nor ends a browser's session; a CLI's handle in the body needs none.
async fn a_session_cookie_needs_an_allowed_origin(backend: Backend) {
    let api = LocalApi::start(backend).await;
    let handle = sign_in(&api, ADA).await;
    let with_cookie = |path: &str, origin: Option<&str>| {
        let request = api.client.post(api.url(path)).header("cookie", format!("__Host-keyward-session={handle}"));
        match origin {
            Some(origin) => request.header("origin", origin),
            None => request,
        }
    };
    for origin in [None, Some("null"), Some("https://evil.example.com"), Some("https://app.example.com.evil.example")] {
        for path in ["/auth/logout", "/auth/refresh"] {
            let response = with_cookie(path, origin).send().await.unwrap();
            assert!(response.headers().get("set-cookie").is_none(), "{path} from {origin:?} changes no cookie");
            assert_eq!(code_of(response).await, (403, "origin_not_allowed".to_owned()), "{path} from {origin:?}");
        }
    }
    let refreshed = with_cookie("/auth/refresh", Some(APP_ORIGIN)).send().await.unwrap();
    assert_eq!(refreshed.status(), 200, "the session was untouched");
    let next = session_cookie(&refreshed).unwrap();
    assert_eq!(refresh(&api, &next).await.status(), 200, "a handle in the body needs no Origin");
}

keyward_tests::on_both_backends!(
    a_session_cookie_needs_an_allowed_origin,
    a_session_cookie_is_a_sign_in_on_user_routes_from_allowed_origins,
    a_handle_planted_in_the_table_opens_no_session,
    anonymous_routes_are_limited_per_client,
    web_sign_in_stores_the_user_and_sets_a_host_cookie,
    a_callback_finishes_only_in_the_browser_that_started_it,
    forged_and_refused_sign_ins_store_nothing,
    sessions_rotate_and_reuse_ends_the_family,
    auth0_refusing_the_refresh_ends_the_session,
    logout_revokes_at_auth0,
    me_creates_a_profile_on_first_sight,
    a_cli_signs_in_with_the_device_flow,
    device_polls_follow_rfc_8628,
);

/// Two refreshes within one second mint two different access tokens, each with a `jti` of its
/// own, as Auth0's carry: a token can always be told from its successor.
#[tokio::test]
async fn refreshes_in_one_second_mint_distinct_access_tokens() {
    use base64::Engine;
    let api = LocalApi::start(Backend::Embedded).await;
    let first = sign_in(&api, ADA).await;
    let refreshed = json(refresh(&api, &first).await).await;
    let next = refreshed["refreshToken"].as_str().unwrap().to_owned();
    keyward_tests::leaks::plant(&next);
    let again = json(refresh(&api, &next).await).await;
    let claims = |answer: &serde_json::Value| -> serde_json::Value {
        let token = answer["accessToken"].as_str().unwrap();
        let payload = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
    };
    let (one, two) = (claims(&refreshed), claims(&again));
    assert_ne!(refreshed["accessToken"], again["accessToken"]);
    assert!(one["jti"].as_str().is_some_and(|j| j.len() == 32), "{one}");
    assert_ne!(one["jti"], two["jti"]);
    assert_eq!(one["sub"], two["sub"], "the same user");
}

/// Calls per sign-in route: to AWS (DynamoDB, KMS and Secrets Manager on moto, counted by an SDK
/// interceptor on the functions' own clients) and to Auth0 (counted by the stand-in). Figures for
/// issue 5's closing note.
#[tokio::test]
async fn calls_per_sign_in_route() {
    let api = LocalApi::start(Backend::Moto).await;
    let aws = |function| api.aws_calls.take_as(function);
    let auth0 = || api.sandbox.auth0_calls().take();
    let forget_so_far = || {
        api.aws_calls.reset();
        auth0();
    };
    forget_so_far();
    let login = api.client.get(api.url("/auth/login")).send().await.unwrap();
    assert_eq!(
        aws("LoginCallbackFunction"),
        "DynamoDB.GetItem=1 DynamoDB.PutItem=1 DynamoDB.TransactWriteItems=1 DynamoDB.UpdateItem=1 KMS.GenerateDataKey=1",
        "login: the client's allowance, the sealed PKCE verifier (the deployment's first oauth-state seal makes \
         the purpose's first branch key: a look for one, a key from KMS, its transaction), the one-time state"
    );
    assert_eq!(auth0(), "", "login: a redirect, no call to Auth0");
    let callback = authorize_at_auth0(&api, &login, ADA).await;
    assert_eq!(auth0(), "GET /authorize=1", "the browser at Auth0, not keyward");
    let response = callback.follow(&api).await;
    let handle = session_cookie(&response).unwrap();
    assert_eq!(
        aws("LoginCallbackFunction"),
        "DynamoDB.DeleteItem=1 DynamoDB.GetItem=2 DynamoDB.TransactWriteItems=3 DynamoDB.UpdateItem=1 \
         KMS.GenerateDataKey=2",
        "callback: consume the state, open the verifier (its branch key is cached from the login), upsert the \
         profile, seal the refresh token and bind the session (the first auth0-refresh seal and the first \
         session binding each make their purpose's first branch key), create the session"
    );
    assert_eq!(
        auth0(),
        "GET /.well-known/jwks.json=1 POST /oauth/token=1",
        "callback: the code exchange, and the tenant's keys on first use"
    );
    let next = json(refresh(&api, &handle).await).await["refreshToken"].as_str().unwrap().to_owned();
    assert_eq!(
        aws("LoginCallbackFunction"),
        "DynamoDB.GetItem=2 DynamoDB.TransactWriteItems=1 DynamoDB.UpdateItem=1",
        "refresh: the client's allowance, handle and family reads, open and reseal (the branch key is cached: \
         no KMS call), rotate"
    );
    assert_eq!(auth0(), "POST /oauth/token=1", "refresh: Auth0's refresh grant");
    let response =
        api.client.post(api.url("/auth/logout")).json(&json!({ "refreshToken": next })).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(aws("LoginCallbackFunction"), "DynamoDB.GetItem=2 DynamoDB.UpdateItem=1", "logout: find, revoke");
    assert_eq!(auth0(), "POST /oauth/revoke=1", "logout: revoke Auth0's refresh token");
    let rotated_away = sign_in(&api, ADA).await;
    assert_eq!(refresh(&api, &rotated_away).await.status(), 200);
    forget_so_far();
    assert_eq!(code_of(refresh(&api, &rotated_away).await).await, (401, "session_reused".to_owned()));
    assert_eq!(
        aws("LoginCallbackFunction"),
        "DynamoDB.GetItem=2 DynamoDB.UpdateItem=2",
        "reuse: the client's allowance, find, revoke the family"
    );
    assert_eq!(auth0(), "POST /oauth/revoke=1", "reuse: revoke the family's Auth0 refresh token");
    let started = start_device(&api).await;
    assert_eq!(
        aws("DeviceAuthFunction"),
        "DynamoDB.PutItem=1 DynamoDB.UpdateItem=1",
        "device start: the client's allowance, the device record"
    );
    assert_eq!(auth0(), "POST /oauth/device/code=1", "device start");
    let device_code = started["deviceCode"].as_str().unwrap().to_owned();
    poll(&api, &device_code).await;
    assert_eq!(
        aws("DeviceAuthFunction"),
        "DynamoDB.GetItem=1 DynamoDB.UpdateItem=1",
        "pending poll: read, take the poll"
    );
    assert_eq!(auth0(), "POST /oauth/token=1", "pending poll: one device-code grant");
    poll(&api, &device_code).await;
    assert_eq!(
        aws("DeviceAuthFunction"),
        "DynamoDB.GetItem=1 DynamoDB.UpdateItem=2",
        "too-fast poll: read, refused take, slow_down"
    );
    assert_eq!(auth0(), "", "too-fast poll: answered without asking Auth0");
    let approved = start_device(&api).await;
    activate(&api, approved["userCode"].as_str().unwrap(), "approve").await;
    tokio::time::sleep(Duration::from_secs(approved["interval"].as_u64().unwrap())).await;
    forget_so_far();
    let (status, _) = poll(&api, approved["deviceCode"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        aws("DeviceAuthFunction"),
        "DynamoDB.GetItem=1 DynamoDB.TransactWriteItems=1 DynamoDB.UpdateItem=3",
        "successful poll: read, take the poll, spend the code, upsert the profile, seal (branch key cached), \
         create the session"
    );
    assert_eq!(auth0(), "POST /oauth/token=1", "successful poll: the device-code grant (the tenant's keys are cached)");
}
