//! The HTTP side of the local gateway: selects the template's route, does API Gateway's IAM
//! authorization where the template asks for it, builds the HTTP API (v2) event the function would
//! receive in AWS, and serves the function's answer — with API Gateway's own errors for what never
//! reaches a function.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::{Body as AxumBody, Bytes};
use axum::extract::{ConnectInfo, Request as AxumRequest, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as AxumResponse};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use keyward::config::{DEFAULT_STAGE, LOCAL_ACCOUNT_ID as ACCOUNT_ID, LOCAL_API_ID as API_ID};
use lambda_http::lambda_runtime::Context;
use lambda_http::{Body, RequestExt};
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::sigv4::{Caller, Credentials, Rejection};
use crate::template::{Route, RouteTable};
use crate::{FunctionHandler, GatewayError};

/// API Gateway's payload limit for HTTP APIs.
const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

struct Inner {
    routes: RouteTable,
    functions: HashMap<String, FunctionHandler>,
    credentials: Credentials,
    region: String,
}

/// A running gateway; it stops when dropped.
pub struct Gateway {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Serves `routes` on a listener the caller bound (and kept), so no one else can take its port
    /// between choosing it and serving on it. Every route's function must have a handler in
    /// `functions`, so a template change cannot leave a route silently unserved.
    pub fn start_on(
        listener: std::net::TcpListener,
        routes: RouteTable,
        functions: HashMap<String, FunctionHandler>,
        credentials: Credentials,
        region: String,
    ) -> Result<Self, GatewayError> {
        if let Some(route) = routes.routes().iter().find(|r| !functions.contains_key(&r.function)) {
            return Err(GatewayError::UnknownFunction { route: route.key(), function: route.function.clone() });
        }
        let bound = |source| GatewayError::Bind { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source };
        let addr = listener.local_addr().map_err(bound)?;
        listener.set_nonblocking(true).map_err(|source| GatewayError::Bind { addr, source })?;
        let listener = TcpListener::from_std(listener).map_err(|source| GatewayError::Bind { addr, source })?;
        let inner = Arc::new(Inner { routes, functions, credentials, region });
        let app = Router::new().fallback(serve).with_state(inner);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "local gateway failed");
            }
        });
        Ok(Self { addr, stop: Some(stop), task })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until the process is interrupted.
    pub async fn wait(mut self) {
        if let Err(e) = (&mut self.task).await {
            tracing::error!(error = %e, "local gateway stopped");
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

async fn serve(
    State(gateway): State<Arc<Inner>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: AxumRequest,
) -> AxumResponse {
    let request_id = new_request_id();
    let mut response = gateway.handle(peer, request, &request_id).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", value);
    }
    response
}

impl Inner {
    async fn handle(&self, peer: SocketAddr, request: AxumRequest, request_id: &str) -> AxumResponse {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, MAX_PAYLOAD).await else {
            return gateway_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large", None);
        };
        let path = parts.uri.path();
        let Some((route, params)) = self.routes.select(parts.method.as_str(), path) else {
            return gateway_error(StatusCode::NOT_FOUND, "Not Found", None);
        };
        let caller = if route.iam {
            let path_and_query = parts.uri.path_and_query().map_or(path, |pq| pq.as_str());
            let verified = self.credentials.verify(
                &self.region,
                parts.method.as_str(),
                path_and_query,
                &parts.headers,
                &body,
                SystemTime::now(),
            );
            match verified {
                Ok(caller) => Some(caller),
                Err(rejection) => {
                    tracing::info!(route = %route.key(), reason = rejection.error_type(), "IAM authorization refused");
                    return gateway_error(StatusCode::FORBIDDEN, &rejection.to_string(), Some(&rejection));
                }
            }
        } else {
            None
        };
        let incoming = Incoming {
            route,
            params,
            method: parts.method.as_str(),
            path,
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            peer,
            caller: caller.as_ref(),
            request_id,
        };
        let event = incoming.event();
        let Ok(request) = lambda_http::request::from_str(&event.to_string()) else {
            tracing::error!(route = %route.key(), "the gateway built an event lambda_http cannot read");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None);
        };
        let mut context = Context::default();
        context.request_id = new_request_id();
        context.invoked_function_arn =
            format!("arn:aws:lambda:{}:{ACCOUNT_ID}:function:{}", self.region, route.function);
        let request = request.with_lambda_context(context);

        let Some(function) = self.functions.get(&route.function).cloned() else {
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None);
        };
        // A panicking handler fails its invocation; API Gateway then answers 500, as here.
        match tokio::spawn(function(request)).await {
            Ok(response) => into_http(response),
            Err(_) => gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", None),
        }
    }
}

/// What the gateway knows about one request when it builds the function's event.
struct Incoming<'a> {
    route: &'a Route,
    params: HashMap<String, String>,
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    peer: SocketAddr,
    caller: Option<&'a Caller>,
    request_id: &'a str,
}

impl Incoming<'_> {
    /// The HTTP API payload format 2.0 event, as API Gateway sends it to Lambda.
    fn event(&self) -> Value {
        let mut headers = Map::new();
        let mut cookies = Vec::new();
        for (name, value) in self.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            if name == header::COOKIE {
                cookies.extend(value.split(';').map(str::trim).filter(|c| !c.is_empty()).map(str::to_owned));
                continue;
            }
            joined_insert(&mut headers, name.as_str(), value);
        }
        joined_insert(&mut headers, "x-forwarded-for", self.peer.ip().to_string());
        joined_insert(&mut headers, "x-forwarded-port", self.peer.port().to_string());
        joined_insert(&mut headers, "x-forwarded-proto", "http".to_owned());

        let mut query = Map::new();
        for (name, value) in url::form_urlencoded::parse(self.query.as_bytes()) {
            joined_insert(&mut query, &name, value.into_owned());
        }

        let now = OffsetDateTime::now_utc();
        let host = self.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let user_agent = self.headers.get(header::USER_AGENT).and_then(|h| h.to_str().ok()).unwrap_or("");
        let mut context = json!({
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split('.').next().unwrap_or(host),
            "http": {
                "method": self.method,
                "path": self.path,
                "protocol": "HTTP/1.1",
                "sourceIp": self.peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "requestId": self.request_id,
            "routeKey": self.route.key(),
            "stage": DEFAULT_STAGE,
            "time": now.format(format_description!(
                "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
            )).unwrap_or_default(),
            "timeEpoch": now.unix_timestamp() * 1000 + i64::from(now.millisecond()),
        });
        if let Some(caller) = self.caller {
            context["authorizer"] = json!({"iam": {
                "accessKey": caller.access_key,
                "accountId": caller.account_id,
                "userArn": caller.principal_arn,
            }});
        }

        let mut event = json!({
            "version": "2.0",
            "routeKey": self.route.key(),
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": context,
            "isBase64Encoded": false,
        });
        if !cookies.is_empty() {
            event["cookies"] = json!(cookies);
        }
        if !query.is_empty() {
            event["queryStringParameters"] = Value::Object(query);
        }
        if !self.params.is_empty() {
            event["pathParameters"] = json!(self.params);
        }
        if !self.body.is_empty() {
            match std::str::from_utf8(self.body).ok().filter(|_| is_textual(self.headers)) {
                Some(text) => event["body"] = json!(text),
                None => {
                    event["body"] = json!(BASE64.encode(self.body));
                    event["isBase64Encoded"] = json!(true);
                }
            }
        }
        event
    }
}

/// API Gateway joins repeated headers and query parameters with commas.
fn joined_insert(map: &mut Map<String, Value>, name: &str, value: String) {
    match map.get_mut(name) {
        Some(Value::String(existing)) => {
            existing.push(',');
            existing.push_str(&value);
        }
        _ => {
            map.insert(name.to_owned(), Value::String(value));
        }
    }
}

/// Bodies API Gateway passes as text; anything else arrives base64-encoded.
fn is_textual(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json" | "application/xml" | "application/x-www-form-urlencoded" | "application/javascript"
        )
}

fn into_http(response: lambda_http::Response<Body>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    if parts.status.is_client_error() || parts.status.is_server_error() {
        // Problem bodies never carry a secret, so they can be logged; the leak audit reads them here.
        tracing::debug!(status = parts.status.as_u16(), body = %String::from_utf8_lossy(&bytes), "error answered");
    }
    AxumResponse::from_parts(parts, AxumBody::from(bytes))
}

/// An answer API Gateway gives itself: `{"message": …}`, with its error type for IAM refusals.
fn gateway_error(status: StatusCode, message: &str, rejection: Option<&Rejection>) -> AxumResponse {
    let mut response = (status, axum::Json(json!({ "message": message }))).into_response();
    if let Some(rejection) = rejection {
        response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(rejection.error_type()));
    }
    response
}

/// A request id in API Gateway's shape (16 base64 characters).
fn new_request_id() -> String {
    BASE64.encode(rand::random::<[u8; 12]>())
}
