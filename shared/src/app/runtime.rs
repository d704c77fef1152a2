//! keyward's loop on the Lambda Runtime API (`/2018-06-01/runtime/invocation/...`), in place of
//! `lambda_http::run`: `lambda_runtime` serializes each answer into a vector it frees unwiped, and an
//! answer of `internal-keys` holds plaintext keys. Here an answer is serialized once into a buffer
//! of exactly its length, handed to hyper as `Bytes` it queues for a vectored write without
//! copying, and wiped when hyper lets go of it; the body the handler built is wiped too.
//!
//! One invocation at a time, as Lambda delivers them. The X-Ray trace id reaches a handler as the
//! `x-amzn-trace-id` header and in the Lambda context, as `lambda_http` puts it; it is not copied
//! into `_X_AMZN_TRACE_ID`, since changing the environment of a running process is a data race
//! with any thread reading it (the resolver's).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::http::{HeaderMap, HeaderValue, Method, header};
use lambda_http::lambda_runtime::{Config as LambdaConfig, Context};
use lambda_http::{Body, RequestExt, Response, Service};
use lambda_runtime_api_client::PooledClient;
use lambda_runtime_api_client::body::Body as ApiBody;
use serde::Serialize;
use zeroize::Zeroizing;

use super::AppState;
use super::routes::{Routes, service};

const INVOCATION: &str = "/2018-06-01/runtime/invocation";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the Runtime API: {0}")]
    Api(#[from] lambda_runtime_api_client::BoxError),
    #[error("the Runtime API answered {0}")]
    Status(u16),
    #[error("an invocation without lambda-runtime-aws-request-id")]
    NoRequestId,
    #[error("a request id that makes no Runtime API path: {0}")]
    BadRequestId(#[from] lambda_http::http::Error),
}

/// A function's `main`: telemetry, the application state once per cold start, then its routes on
/// Lambda. One thread: Lambda hands an execution environment one request at a time, so worker
/// threads would only add to every cold start (BENCHMARKS.md).
pub fn run(routes: Routes) -> Result<(), lambda_http::Error> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
        crate::telemetry::init();
        let state = AppState::from_env_or_exit();
        let api = PooledClient::builder().build();
        serve(&api, Arc::new(LambdaConfig::from_env()), state, Arc::new(routes)).await?;
        Ok(())
    })
}

/// Serves invocations from `api` until it fails.
pub async fn serve(
    api: &PooledClient,
    config: Arc<LambdaConfig>,
    state: Arc<AppState>,
    routes: Arc<Routes>,
) -> Result<(), RuntimeError> {
    let mut service = service(state, routes);
    loop {
        let next = api.call(request(Method::GET, "next".into(), ApiBody::empty())?).await?;
        check(next.status().as_u16())?;
        let (parts, body) = next.into_parts();
        let id = parts.headers.get("lambda-runtime-aws-request-id").and_then(|v| v.to_str().ok());
        let id = id.ok_or(RuntimeError::NoRequestId)?.to_owned();
        let event = body.collect().await.map_err(|e| RuntimeError::Api(e.into()))?.to_bytes();
        let answer = match invocation(&id, &config, &parts.headers, &event) {
            Ok(request) => {
                let served = std::panic::AssertUnwindSafe(service.call(request));
                match futures::FutureExt::catch_unwind(served).await {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err(never)) => match never {},
                    // The panic's own message stays in the log the hook wrote; it may quote input.
                    Err(_) => Err(Failure::new("Panic", "The handler panicked; see the function's log.")),
                }
            }
            Err(failure) => Err(failure),
        };
        let (outcome, body) = match answer {
            Ok(response) => ("response", sent_once(response)),
            Err(failure) => ("error", wiped_body(&failure).unwrap_or_default()),
        };
        let mut posted = request(Method::POST, format!("{id}/{outcome}"), ApiBody::from(body))?;
        if outcome == "error" {
            posted.headers_mut().insert("lambda-runtime-function-error-type", HeaderValue::from_static("unhandled"));
        }
        let posted = api.call(posted).await?;
        if !posted.status().is_success() {
            tracing::warn!(status = posted.status().as_u16(), outcome, "the Runtime API refused an answer");
        }
    }
}

/// A request to the Runtime API; an id from its headers that makes no URI path is an error.
fn request(method: Method, path: String, body: ApiBody) -> Result<lambda_http::http::Request<ApiBody>, RuntimeError> {
    let builder = lambda_runtime_api_client::build_request().method(method);
    Ok(builder.uri(format!("{INVOCATION}/{path}")).body(body)?)
}

fn check(status: u16) -> Result<(), RuntimeError> {
    if (200..300).contains(&status) { Ok(()) } else { Err(RuntimeError::Status(status)) }
}

/// The API Gateway HTTP API (v2) request in `event`, with its Lambda context.
fn invocation(
    id: &str,
    config: &Arc<LambdaConfig>,
    headers: &HeaderMap,
    event: &[u8],
) -> Result<lambda_http::Request, Failure> {
    if !headers.contains_key("lambda-runtime-deadline-ms") {
        return Err(Failure::new("InvalidContext", "The invocation has no lambda-runtime-deadline-ms."));
    }
    let context = Context::new(id, Arc::clone(config), headers)
        .map_err(|_| Failure::new("InvalidContext", "The invocation's Lambda headers do not parse."))?;
    let mut request =
        std::str::from_utf8(event).ok().and_then(|text| lambda_http::request::from_str(text).ok()).ok_or(
            // Never the parser's message: it quotes the event, which may carry a key or a token.
            Failure::new("InvalidEvent", "The event is not an API Gateway HTTP API (v2) request."),
        )?;
    if let Some(trace) = context.xray_trace_id.as_deref().and_then(|t| HeaderValue::from_str(t).ok()) {
        request.headers_mut().insert("x-amzn-trace-id", trace);
    }
    Ok(request.with_lambda_context(context))
}

/// What the Runtime API's `/error` takes.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Failure {
    error_type: &'static str,
    error_message: &'static str,
}

impl Failure {
    fn new(error_type: &'static str, error_message: &'static str) -> Self {
        Self { error_type, error_message }
    }
}

/// `response` as the payload API Gateway's HTTP API (v2) takes from Lambda: `Set-Cookie` lines in
/// `cookies`, a binary body in base64. The handler's body is wiped once serialized.
fn sent_once(response: Response<Body>) -> Bytes {
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    let cookies = headers.get_all(header::SET_COOKIE).iter().filter_map(|v| v.to_str().ok()).map(str::to_owned);
    let cookies = cookies.collect();
    headers.remove(header::SET_COOKIE);
    let mut payload = ApiGatewayV2httpResponse::default();
    payload.status_code = i64::from(parts.status.as_u16());
    payload.headers = headers;
    payload.cookies = cookies;
    payload.is_base64_encoded = matches!(body, Body::Binary(_));
    payload.body = (!matches!(body, Body::Empty)).then_some(body);
    let sent = wiped_body(&payload).unwrap_or_else(|_| {
        tracing::error!("an answer had a header that is not UTF-8; sent a bare 500 instead");
        let mut failed = ApiGatewayV2httpResponse::default();
        failed.status_code = 500;
        wiped_body(&failed).unwrap_or_default()
    });
    match payload.body.take() {
        Some(Body::Text(text)) => drop(Zeroizing::new(text)),
        Some(Body::Binary(bytes)) => drop(Zeroizing::new(bytes)),
        _ => {}
    }
    sent
}

/// `value` as JSON in `Bytes` whose buffer is wiped when the last holder drops it.
fn wiped_body<T: Serialize>(value: &T) -> serde_json::Result<Bytes> {
    crate::secret::wiped_json(value).map(crate::secret::wiped_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_goes_out_in_api_gateways_v2_shape() {
        let mut response = Response::new(Body::Text(r#"{"ok":true}"#.into()));
        *response.status_mut() = lambda_http::http::StatusCode::FOUND;
        let headers = response.headers_mut();
        headers.insert(header::LOCATION, HeaderValue::from_static("/done"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("a=1; Path=/"));
        headers.append(header::SET_COOKIE, HeaderValue::from_static("b=2; Path=/"));
        let sent: serde_json::Value = serde_json::from_slice(&sent_once(response)).unwrap();
        assert_eq!(sent["statusCode"], 302);
        assert_eq!(sent["headers"]["location"], "/done");
        assert!(sent["headers"].get("set-cookie").is_none(), "{sent}");
        assert_eq!(sent["cookies"], serde_json::json!(["a=1; Path=/", "b=2; Path=/"]));
        assert_eq!((sent["body"].as_str(), sent["isBase64Encoded"].as_bool()), (Some(r#"{"ok":true}"#), Some(false)));

        let binary: serde_json::Value =
            serde_json::from_slice(&sent_once(Response::new(Body::Binary(vec![0, 255])))).unwrap();
        assert_eq!((binary["body"].as_str(), binary["isBase64Encoded"].as_bool()), (Some("AP8="), Some(true)));
        let empty: serde_json::Value = serde_json::from_slice(&sent_once(Response::new(Body::Empty))).unwrap();
        assert!(empty.get("body").is_none(), "{empty}");
    }

    #[test]
    fn a_refused_event_is_described_without_quoting_it() {
        let mut headers = HeaderMap::new();
        headers.insert("lambda-runtime-deadline-ms", HeaderValue::from_static("1796000000000"));
        let config = Arc::new(LambdaConfig::default());
        let refused =
            invocation("id-1", &config, &headers, br#"{"body": "sk-proj-PLANTED", "version": 2"#).unwrap_err();
        let sent = String::from_utf8(wiped_body(&refused).unwrap().to_vec()).unwrap();
        assert_eq!(
            sent,
            r#"{"errorType":"InvalidEvent","errorMessage":"The event is not an API Gateway HTTP API (v2) request."}"#
        );
        let refused = invocation("id-2", &config, &HeaderMap::new(), b"{}").unwrap_err();
        assert_eq!(refused.error_type, "InvalidContext");
    }

    fn panicking<'a>(_: &'a AppState, _: &'a lambda_http::Request) -> super::super::routes::Pending<'a> {
        Box::pin(async { panic!("a handler's bug") })
    }

    fn event(route: &str) -> Vec<u8> {
        let (method, path) = route.split_once(' ').unwrap();
        serde_json::to_vec(&serde_json::json!({
            "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "", "headers": {},
            "requestContext": {
                "accountId": crate::config::LOCAL_ACCOUNT_ID, "apiId": crate::config::LOCAL_API_ID,
                "domainName": "x", "domainPrefix": "x", "requestId": "r", "routeKey": route, "stage": "$default",
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "10.0.0.9", "userAgent": "t"},
                "time": "07/Dec/2026:21:00:00 +0000", "timeEpoch": 1
            },
            "isBase64Encoded": false
        }))
        .unwrap()
    }

    /// Under a Runtime API emulator: a panicking handler fails its one invocation through `/error`
    /// (without the panic's text), an event that is not API Gateway's fails too, and the same
    /// process goes on serving.
    #[tokio::test(flavor = "current_thread")]
    async fn a_panic_or_a_foreign_event_fails_one_invocation_and_the_loop_goes_on() {
        let mut emulator = keyward_sandbox::lambda_runtime::Emulator::start().await.unwrap();
        let endpoint = format!("http://{}", emulator.addr).parse().unwrap();
        let routes = Routes::new("runtime-test").public("GET /panic", panicking);
        let state = super::super::routes::tests::idle_state("{}");
        tokio::spawn(async move {
            let api = PooledClient::builder().with_endpoint(endpoint).build();
            serve(&api, Arc::new(LambdaConfig::default()), state, Arc::new(routes)).await
        });

        let (_, panicked) = emulator.invoke(&event("GET /panic")).await.unwrap();
        assert!(!panicked.ok, "reported through /error");
        let reported: serde_json::Value = serde_json::from_slice(&panicked.body).unwrap();
        assert_eq!(reported["errorType"], "Panic");
        assert!(!panicked.body.windows(5).any(|w| w == b"a han"), "the panic's text stays in the log");

        let (_, foreign) = emulator.invoke(br#"{"Records": []}"#).await.unwrap();
        assert!(!foreign.ok);
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&foreign.body).unwrap()["errorType"], "InvalidEvent");

        let (_, served) = emulator.invoke(&event("GET /health/runtime-test")).await.unwrap();
        assert!(served.ok);
        let served: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
        assert_eq!(served["statusCode"], 200, "{served}");
    }
}
