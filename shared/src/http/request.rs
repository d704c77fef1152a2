//! Requests as the functions read them: API Gateway's route key and parameters, cookies, the
//! caller's address, and bodies parsed strictly. Errors never quote what was sent (it may hold a
//! secret).

use lambda_http::http::header;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::model::{ProblemCode, UserId};
use crate::use_cases::throttle::ClientAddress;

/// Largest request body keyward accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// API Gateway's route key of a request (`GET /internal/users/{uid}/llm-keys`): functions route
/// on it, so the template is the one list of routes and paths are never parsed twice.
pub fn route_key(req: &Request) -> &str {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.route_key.as_deref().unwrap_or(""),
        _ => "",
    }
}

/// A path parameter API Gateway extracted (already percent-decoded).
pub fn path_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.path_parameters_ref().and_then(|p| p.first(name))
}

/// `{name}` of the path parsed as a `T`, or the error `or` makes.
pub fn path_as<T: std::str::FromStr>(req: &Request, name: &str, or: impl FnOnce() -> ApiError) -> Result<T, ApiError> {
    path_param(req, name).and_then(|raw| raw.parse().ok()).ok_or_else(or)
}

/// The keyward user named by an internal route's `{uid}`, or 400.
pub fn path_user(req: &Request) -> Result<UserId, ApiError> {
    path_param(req, "uid")
        .and_then(|raw| UserId::parse(raw).ok())
        .ok_or_else(|| ApiError::new(ProblemCode::InvalidUserId, "The user id in the path is not a keyward user id."))
}

/// A query parameter (the first, when repeated).
pub fn query_param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.query_string_parameters_ref().and_then(|q| q.first(name))
}

/// The value of the cookie `name` a request carries, if not empty.
pub fn cookie<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .filter(|v| !v.is_empty())
}

/// The client a request came from, by API Gateway's `sourceIp`.
pub fn client_address(req: &Request) -> ClientAddress {
    let source = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.http.source_ip.as_deref(),
        _ => None,
    };
    ClientAddress::from_source_ip(source)
}

/// The request body's bytes exactly as sent (signatures are computed over them), at most `limit`.
pub fn raw_body(req: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match req.body() {
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => b"",
    };
    if bytes.len() > limit { Err(ApiError::PayloadTooLarge { limit }) } else { Ok(bytes) }
}

/// Parses a JSON request body into `T`, strictly: `application/json`, at most [`MAX_BODY_BYTES`],
/// valid UTF-8, valid JSON of the right shape.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(ProblemCode::UnsupportedContentType, "Send the request body as application/json."));
    }
    let bytes = raw_body(req, MAX_BODY_BYTES)?;
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::new(ProblemCode::InvalidUtf8, "The request body is not valid UTF-8."))?;
    if text.trim().is_empty() {
        return Err(ApiError::new(ProblemCode::MissingBody, "This request needs a JSON body."));
    }
    // serde reads a struct from an array too (`["sk-…"]` would fill the first field); every body
    // keyward takes is an object with named fields.
    if !text.trim_start().starts_with('{') {
        return Err(ApiError::new(ProblemCode::InvalidBody, "The request body must be a JSON object."));
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| body_shape_error(&e))?;
    de.end().map_err(|e| syntax_error(&e))?;
    Ok(value)
}

fn body_shape_error(err: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let inner = err.inner();
    // The position and field path locate the problem; serde's own message could echo a value.
    let detail = match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            let unknown = message.starts_with("unknown field");
            let what = if message.starts_with("missing field") {
                "a required field is missing"
            } else if unknown {
                "an unknown field is present"
            } else {
                "a field has the wrong type or value"
            };
            // An unknown field's name is the client's text (it could be a pasted key): name only
            // the object that holds it.
            let segments: Vec<String> = err.path().iter().map(ToString::to_string).collect();
            let known = if unknown { &segments[..segments.len().saturating_sub(1)] } else { &segments[..] };
            let path = known.join(".");
            if path.is_empty() {
                format!("The request body does not match this endpoint: {what}.")
            } else {
                format!("The request body does not match this endpoint: {what} at `{path}`.")
            }
        }
        _ => return syntax_error(inner),
    };
    ApiError::new(ProblemCode::InvalidBody, detail)
}

fn syntax_error(err: &serde_json::Error) -> ApiError {
    ApiError::new(
        ProblemCode::InvalidBody,
        format!("The request body is not valid JSON (line {}, column {}).", err.line(), err.column()),
    )
}

#[cfg(test)]
mod tests {
    use lambda_http::http::{Request as HttpRequest, StatusCode};
    use serde::Deserialize;

    use super::*;
    use crate::http::problem::problem;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    struct PutKey {
        api_key: String,
    }

    fn request(content_type: Option<&str>, body: Body) -> Request {
        let mut builder = HttpRequest::builder().method("PUT").uri("/me/llm-keys/openai");
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        builder.body(body).unwrap()
    }

    #[test]
    fn accepts_json_with_charset() {
        let req = request(Some("application/json; charset=utf-8"), Body::from(r#"{"apiKey":"sk-1"}"#));
        let parsed: PutKey = json_body(&req).unwrap();
        assert_eq!(parsed.api_key, "sk-1");
    }

    #[test]
    fn bad_bodies_are_400_or_413_and_never_echo_values() {
        let secret = "sk-PLANTED-never-echo";
        let cases: Vec<(Option<&str>, Body, u16, &str)> = vec![
            (Some("text/plain"), Body::from(format!(r#"{{"apiKey":"{secret}"}}"#)), 400, "unsupported_content_type"),
            (None, Body::from("{}"), 400, "unsupported_content_type"),
            (Some("application/json"), Body::Empty, 400, "missing_body"),
            (Some("application/json"), Body::from(vec![b'{', 0xff, b'}']), 400, "invalid_utf8"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"{secret}""#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":["{secret}"]}}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"x","{secret}":1}}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"{{"apiKey":"x"}} {secret}"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from("{}"), 400, "invalid_body"),
            (Some("application/json"), Body::from(format!(r#"["{secret}"]"#)), 400, "invalid_body"),
            (Some("application/json"), Body::from(" ".repeat(MAX_BODY_BYTES + 1)), 413, "payload_too_large"),
        ];
        for (ct, body, status, code) in cases {
            let err = json_body::<PutKey>(&request(ct, body)).unwrap_err();
            let (got_status, json) = problem(err);
            assert_eq!((got_status, json["code"].as_str().unwrap()), (status, code), "{json}");
            assert!(!json.to_string().contains("PLANTED"), "{json}");
            assert_eq!(json["status"], status);
        }
    }

    #[test]
    fn deep_json_is_a_400_not_a_crash() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let body = format!(r#"{{"apiKey":{deep}}}"#);
        let err = json_body::<PutKey>(&request(Some("application/json"), Body::from(body))).unwrap_err();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }

    proptest::proptest! {
        /// Arbitrary body bytes get a 400 or 413 (or parse); the parser never panics or answers 5xx.
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
            match json_body::<PutKey>(&request(Some("application/json"), Body::from(bytes))) {
                Ok(_) => {}
                Err(e) => proptest::prop_assert!(e.status().is_client_error(), "{:?}", e.status()),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_cookie_headers_never_panic(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..4),
            planted in "[A-Za-z0-9_-]{1,60}",
        ) {
            let mut builder = HttpRequest::builder();
            for value in &values {
                if let Ok(value) = header::HeaderValue::from_bytes(value) {
                    builder = builder.header(header::COOKIE, value);
                }
            }
            let name = "__Host-keyward-session";
            let request = builder.header(header::COOKIE, format!("a=b; {name}={planted}; c=d")).body(Body::Empty).unwrap();
            // Whatever came first, a value is found, and it is one a header carried.
            let found = cookie(&request, name);
            proptest::prop_assert!(found.is_some());
            let found = found.unwrap();
            let carried = request.headers().get_all(header::COOKIE).iter().any(|v| {
                v.to_str().is_ok_and(|v| v.contains(&format!("{name}={found}")))
            });
            proptest::prop_assert!(carried);
        }
    }
}
