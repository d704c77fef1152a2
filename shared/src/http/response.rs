//! Answers: JSON, redirects and cookies. Every answer is per-user or secret, so none is cached.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;

use super::ApiError;
use crate::model::Cookie;

/// A JSON response with `Cache-Control: no-store`. Serialized without growing (it may hold keys);
/// the runtime loop wipes the body once it is sent.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let text = crate::secret::wiped_json(value).map_err(|e| e.to_string()).and_then(|mut json| {
        // serde_json writes UTF-8; the bytes of a refusal are wiped, never printed.
        String::from_utf8(std::mem::take(&mut *json)).map_err(|refused| {
            drop(zeroize::Zeroizing::new(refused.into_bytes()));
            "not UTF-8".to_owned()
        })
    });
    match text {
        Ok(body) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => ApiError::Internal(format!("response serialization failed: {e}")).into_response(),
    }
}

pub fn no_content() -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// 302 Found to `location`, never cached.
pub fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `response` setting `cookies`: each `HttpOnly`, `Secure`, `SameSite=Lax`, `Path=/` (what the
/// `__Host-` names require), out of script's reach.
pub fn with_cookies<'a>(mut response: Response<Body>, cookies: impl IntoIterator<Item = &'a Cookie>) -> Response<Body> {
    for cookie in cookies {
        let line = format!(
            "{}={}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={}",
            cookie.name, cookie.value, cookie.max_age_secs
        );
        if let Ok(value) = HeaderValue::from_str(&line) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}
