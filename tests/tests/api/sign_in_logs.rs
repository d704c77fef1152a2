//! Sign-in secrets never reach a log line or an error body: a web sign-in, a refresh, a logout and
//! a whole device flow run with keyward (and the AWS SDK, hyper and reqwest) logging at TRACE, then
//! every code, token and handle the flows used is looked for in the captured logs.

use std::time::Duration;

use keyward_tests::LogCapture;
use keyward_tests::api::{APP_ORIGIN, Backend, LocalApi, json};
use keyward_tests::sign_in::{
    ADA, activate, authorize, location, poll, refresh, sealed_auth0_token, session_cookie, start_device,
};
use serde_json::json;

#[tokio::test]
async fn sign_in_codes_tokens_and_handles_stay_out_of_logs() {
    let capture = LogCapture::default();
    let _logs = keyward_tests::leaks::capture_logs(&capture, "trace");
    let api = LocalApi::start(Backend::Moto).await;
    let mut secrets: Vec<(&str, String)> = Vec::new();
    let mut error_bodies = Vec::new();

    // Web: the callback's code and state, the session handles, the Auth0 refresh token, the access token.
    let callback = authorize(&api, &format!("{APP_ORIGIN}/after"), ADA).await;
    for (name, value) in callback.url.query_pairs() {
        secrets.push(if name == "code" {
            ("authorization code", value.into_owned())
        } else {
            ("state", value.into_owned())
        });
    }
    let response = callback.follow(&api).await;
    assert_eq!(location(&response).as_str(), format!("{APP_ORIGIN}/after"));
    let first = session_cookie(&response).unwrap();
    secrets.push(("auth0 refresh token", sealed_auth0_token(&api, &first).await));
    let replayed = callback.follow(&api).await;
    assert_eq!(replayed.status(), 400);
    error_bodies.push(replayed.text().await.unwrap());
    let refreshed = json(refresh(&api, &first).await).await;
    let second = refreshed["refreshToken"].as_str().unwrap().to_owned();
    secrets.push(("access token", refreshed["accessToken"].as_str().unwrap().to_owned()));
    let logout =
        api.client.post(api.url("/auth/logout")).json(&json!({ "refreshToken": second })).send().await.unwrap();
    assert_eq!(logout.status(), 204);
    error_bodies.push(refresh(&api, &first).await.text().await.unwrap());
    secrets.push(("session handle", first));
    secrets.push(("rotated session handle", second));

    // Device: the device and user codes, every token of the success answer.
    let started = start_device(&api).await;
    let device_code = started["deviceCode"].as_str().unwrap().to_owned();
    let user_code = started["userCode"].as_str().unwrap().to_owned();
    let interval = Duration::from_secs(started["interval"].as_u64().unwrap());
    error_bodies.push(poll(&api, &device_code).await.1.to_string());
    activate(&api, &user_code, "approve").await;
    tokio::time::sleep(interval).await;
    let (status, tokens) = poll(&api, &device_code).await;
    assert_eq!(status, 200, "{tokens}");
    tokio::time::sleep(interval).await;
    error_bodies.push(poll(&api, &device_code).await.1.to_string());
    error_bodies.push(poll(&api, "an-unknown-device-code-0123456789").await.1.to_string());
    for field in ["accessToken", "idToken", "refreshToken"] {
        secrets.push(("device flow token", tokens[field].as_str().unwrap().to_owned()));
    }
    secrets.push(("device code", device_code));
    secrets.push(("user code", user_code));

    let logs = capture.text();
    // The capture saw these flows, so finding nothing below means something.
    for line in ["\"signed in\"", "POST /auth/device/poll", "POST /auth/refresh", "\"signed out\""] {
        assert!(logs.contains(line), "the logs have no {line}");
    }
    for (what, secret) in &secrets {
        assert!(secret.len() >= 8, "{what} is too short to search for");
        assert!(!logs.contains(secret.as_str()), "the {what} reached the logs");
        for body in &error_bodies {
            assert!(!body.contains(secret.as_str()), "the {what} reached an error body: {body}");
        }
    }
}
