//! `device-auth`: the device flow (RFC 8628) for CLIs and phones, adapted from HTTP to the devices
//! use case. Poll answers are RFC 8628's plain JSON (`{"error", "interval"?}`, HTTP 400), which CLIs
//! switch on; every other refusal is a problem.

use keyward::app::routes::Answer;
use keyward::app::{AppState, Routes};
use keyward::http::request::{client_address, json_body};
use keyward::http::response::json_response;
use keyward::secret::DeviceCode;
use keyward::use_cases::devices::Poll;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "device-auth";

pub fn routes() -> Routes {
    Routes::new(FUNCTION)
        .public("POST /auth/device/start", |state, req| Box::pin(start(state, req)))
        .public("POST /auth/device/poll", |state, req| Box::pin(poll(state, req)))
}

/// `POST /auth/device/start` → the codes to show the person, and how often to poll.
async fn start(state: &AppState, req: &Request) -> Answer {
    let device = state.devices().start(&client_address(req)).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "deviceCode": device.device_code.expose(),
            "userCode": device.user_code,
            "verificationUri": device.verification_uri,
            "verificationUriComplete": device.verification_uri_complete,
            "expiresIn": device.expires_in,
            "interval": device.interval,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PollBody {
    device_code: SecretString,
}

/// An RFC 8628 error answer.
fn rfc8628(error: &str, interval: Option<i64>) -> Response<Body> {
    let mut body = serde_json::json!({ "error": error });
    if let Some(interval) = interval {
        body["interval"] = interval.into();
    }
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// `POST /auth/device/poll {"deviceCode"}`.
async fn poll(state: &AppState, req: &Request) -> Answer {
    let body: PollBody = json_body(req)?;
    let code = DeviceCode::new(body.device_code.expose_secret());
    Ok(match state.devices().poll(&code).await? {
        Poll::AuthorizationPending { interval } => rfc8628("authorization_pending", Some(interval)),
        Poll::SlowDown { interval } => rfc8628("slow_down", Some(interval)),
        Poll::ExpiredToken => rfc8628("expired_token", None),
        Poll::AccessDenied => rfc8628("access_denied", None),
        Poll::InvalidGrant => rfc8628("invalid_grant", None),
        Poll::SignedIn { tokens, handle } => json_response(
            StatusCode::OK,
            &serde_json::json!({
                "accessToken": tokens.access_token.expose(),
                "idToken": tokens.id_token.as_ref().map(|t| t.expose()),
                "expiresIn": tokens.expires_in,
                "tokenType": tokens.token_type,
                "refreshToken": handle.expose(),
            }),
        ),
    })
}
