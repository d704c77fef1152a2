//! `device-auth`: the device flow (RFC 8628) for CLIs and phones, through Auth0's native client.
//! keyward enforces the polling interval itself, answers in RFC 8628's terms (keyed on Auth0's
//! `error`, never its status), and hands out tokens exactly once per device code.
//!
//! Handlers are plain async functions over the shared [`AppState`]; `main.rs` serves them on
//! Lambda and the local gateway mounts the same [`handle`].

use std::sync::Arc;

use keyward::app::{AppState, health};
use keyward::auth::auth0::Auth0Error;
use keyward::http::{ApiError, json_body, json_response, route_key, route_not_found};
use keyward::model::ClientKind;
use keyward::secret::DeviceCode;
use keyward::session;
use keyward::store::{now_epoch, now_epoch_millis};
use keyward::throttle::{self, AnonymousAction};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// This function's name, as in `template.yaml`.
pub const FUNCTION: &str = "device-auth";

/// Serves one request of this function's routes.
pub async fn handle(state: Arc<AppState>, req: Request) -> Response<Body> {
    route(&state, &req).await.unwrap_or_else(ApiError::into_response)
}

async fn route(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    match route_key(req) {
        "GET /health/device-auth" => Ok(health(state, FUNCTION)),
        "POST /auth/device/start" => start(state, req).await,
        "POST /auth/device/poll" => poll(state, req).await,
        _ => Err(route_not_found()),
    }
}

fn device_hash(code: &DeviceCode) -> String {
    hex::encode(Sha256::digest(code.expose().as_bytes()))
}

/// `POST /auth/device/start` → the codes to show the person, and how often to poll.
async fn start(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let limits = &state.config.anonymous_limits;
    throttle::admit(&state.store, limits, req, AnonymousAction::DeviceStart, now_epoch()).await?;
    let device = state.auth0.device_code().await?;
    let interval = i64::try_from(device.interval).unwrap_or(5).max(1);
    let expires_in = i64::try_from(device.expires_in).unwrap_or(900);
    state.store.devices().create(&device_hash(&device.device_code), interval, now_epoch() + expires_in).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "deviceCode": device.device_code.expose(),
            "userCode": device.user_code,
            "verificationUri": device.verification_uri,
            "verificationUriComplete": device.verification_uri_complete,
            "expiresIn": device.expires_in,
            "interval": interval,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Poll {
    device_code: SecretString,
}

/// An RFC 8628 answer (`{"error", "interval"?}`, HTTP 400), which CLIs switch on.
fn oauth(error: &str, interval: Option<i64>) -> Response<Body> {
    let mut body = serde_json::json!({ "error": error });
    if let Some(interval) = interval {
        body["interval"] = interval.into();
    }
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// `POST /auth/device/poll {"deviceCode"}`.
async fn poll(state: &AppState, req: &Request) -> Result<Response<Body>, ApiError> {
    let body: Poll = json_body(req)?;
    let code = DeviceCode::new(body.device_code.expose_secret());
    let hash = device_hash(&code);
    let devices = state.store.devices();
    let Some(grant) = devices.get(&hash).await? else { return Ok(oauth("invalid_grant", None)) };
    let now_ms = now_epoch_millis();
    if grant.spent {
        return Ok(oauth("expired_token", None));
    }
    if now_ms / 1_000 >= grant.valid_until {
        devices.spend(&hash).await?;
        return Ok(oauth("expired_token", None));
    }
    if !devices.take_poll(&hash, now_ms, grant.interval).await? {
        // Too soon: RFC 8628 `slow_down`, answered without asking Auth0, and the interval grows for good.
        let interval = devices.slow_down(&hash, now_ms).await?;
        return Ok(oauth("slow_down", Some(interval)));
    }
    let tokens = match state.auth0.poll_device(&code).await {
        Ok(tokens) => tokens,
        Err(Auth0Error::Refused { error }) => {
            return Ok(match error.as_str() {
                "authorization_pending" => oauth("authorization_pending", Some(grant.interval)),
                "slow_down" => oauth("slow_down", Some(devices.slow_down(&hash, now_ms).await?)),
                "expired_token" | "invalid_grant" => {
                    devices.spend(&hash).await?;
                    oauth("expired_token", None)
                }
                "access_denied" => {
                    devices.spend(&hash).await?;
                    oauth("access_denied", None)
                }
                // RFC 8628: any other error ends polling.
                _ => {
                    devices.spend(&hash).await?;
                    tracing::warn!(error = %error, "Auth0 ended the device flow");
                    oauth("access_denied", None)
                }
            });
        }
        Err(e) => return Err(e.into()),
    };
    if !devices.spend(&hash).await? {
        return Ok(oauth("expired_token", None));
    }
    let (_, handle) = session::complete(state, &tokens, ClientKind::Device).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({
            "accessToken": tokens.access_token.expose(),
            "idToken": tokens.id_token.as_ref().map(|t| t.expose()),
            "expiresIn": tokens.expires_in,
            "tokenType": tokens.token_type,
            "refreshToken": handle.expose(),
        }),
    ))
}
