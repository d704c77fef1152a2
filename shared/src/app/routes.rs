//! Each function's routes, declared: API Gateway's route key, who may call it, and its handler.
//! Authentication runs here, before any handler, from the table — a handler of a user route gets
//! the verified claims, one of a service route the verified caller — and a test holds the tables
//! against `template.yaml` (every IAM route is a service route, and only those).
//!
//! The runtime loop serves a function's routes on Lambda; the local gateway mounts the same
//! [`service`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response, Service, service_fn};
use serde::Serialize;
use tracing::Instrument;

use super::AppState;
use crate::auth::{Access, Need, ServiceCaller, UserCaller};
use crate::config::Mode;
use crate::http::ApiError;
use crate::http::request::{path_param, route_key};
use crate::http::response::json_response;
use crate::model::{OAuthProvider, ProblemCode, Scope};

/// What a handler answers.
pub type Answer = Result<Response<Body>, ApiError>;
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;
type Authenticating<'a> = Pin<Box<dyn Future<Output = Result<UserCaller, ApiError>> + Send + 'a>>;
/// How a user route authenticates its caller. A pointer set by [`Routes::user`], so a function
/// with no user route never references the token verifiers and its binary leaves the JWT and JWKS
/// code out (`internal-keys`).
type Authenticate = for<'a> fn(&'a AppState, &'a Request, Access) -> Authenticating<'a>;
type UserHandler = for<'a> fn(&'a AppState, &'a Request, &'a UserCaller) -> Pending<'a>;

fn user_credential<'a>(state: &'a AppState, req: &'a Request, access: Access) -> Authenticating<'a> {
    Box::pin(state.user_caller(req, access))
}

impl Need {
    fn check(self, caller: &ServiceCaller, req: &Request) -> Result<(), ApiError> {
        let in_path = match self {
            Self::ConnectionInPath => Some(connection_provider(req)?),
            Self::Credits | Self::AnyLlmKey => None,
        };
        Ok(self.admits(caller, in_path)?)
    }
}

/// The connection provider a route's `{provider}` names, or 404.
pub fn connection_provider(req: &Request) -> Result<OAuthProvider, ApiError> {
    path_param(req, "provider").and_then(|raw| raw.parse().ok()).ok_or_else(|| {
        let slugs: Vec<&str> = OAuthProvider::ALL.iter().map(|p| p.slug()).collect();
        ApiError::new(ProblemCode::UnknownOauthProvider, format!("keyward connects accounts at {}.", slugs.join(", ")))
    })
}

enum Handler {
    Health,
    Public(for<'a> fn(&'a AppState, &'a Request) -> Pending<'a>),
    User(Access, Authenticate, UserHandler),
    Service(Need, for<'a> fn(&'a AppState, &'a Request, &'a ServiceCaller) -> Pending<'a>),
}

struct Route {
    key: String,
    handler: Handler,
}

impl Route {
    fn access(&self) -> Access {
        match self.handler {
            Handler::Health | Handler::Public(_) => Access::Public,
            Handler::User(access, ..) => access,
            Handler::Service(need, _) => Access::Service(need),
        }
    }
}

/// One function's routes, its health route among them.
pub struct Routes {
    function: &'static str,
    routes: Vec<Route>,
}

impl Routes {
    /// The routes of `function` (its name in `template.yaml`): `GET /health/<function>` to start.
    pub fn new(function: &'static str) -> Self {
        let health = Route { key: format!("GET /health/{function}"), handler: Handler::Health };
        Self { function, routes: vec![health] }
    }

    pub fn public(self, key: &str, handler: for<'a> fn(&'a AppState, &'a Request) -> Pending<'a>) -> Self {
        self.with(key, Handler::Public(handler))
    }

    /// A user route needing `scope` of the caller's credential.
    pub fn user(self, key: &str, scope: Scope, handler: UserHandler) -> Self {
        self.with(key, Handler::User(Access::User(scope), user_credential, handler))
    }

    /// A user route for a real sign-in only, never a personal access token.
    pub fn signed_in(self, key: &str, handler: UserHandler) -> Self {
        self.with(key, Handler::User(Access::SignedIn, user_credential, handler))
    }

    pub fn service(
        self,
        key: &str,
        need: Need,
        handler: for<'a> fn(&'a AppState, &'a Request, &'a ServiceCaller) -> Pending<'a>,
    ) -> Self {
        self.with(key, Handler::Service(need, handler))
    }

    fn with(mut self, key: &str, handler: Handler) -> Self {
        self.routes.push(Route { key: key.to_owned(), handler });
        self
    }

    pub fn function(&self) -> &'static str {
        self.function
    }

    /// Every route key and who may call it.
    pub fn table(&self) -> impl Iterator<Item = (&str, Access)> {
        self.routes.iter().map(|r| (r.key.as_str(), r.access()))
    }

    /// Serves one request: the route API Gateway matched, its caller authenticated as the table
    /// says, then its handler. Every error becomes its problem here.
    pub async fn serve(&self, state: &AppState, req: &Request) -> Response<Body> {
        let key = route_key(req);
        let Some(route) = self.routes.iter().find(|r| r.key == key) else {
            return ApiError::new(ProblemCode::RouteNotFound, "No such route.").into_response();
        };
        let answer = match &route.handler {
            Handler::Health => Ok(health(state, self.function)),
            Handler::Public(handler) => handler(state, req).await,
            Handler::User(access, authenticate, handler) => {
                let caller = authenticate(state, req, *access).await;
                match caller.and_then(|caller| access.admits(&caller).map(|()| caller).map_err(ApiError::from)) {
                    Ok(caller) => handler(state, req, &caller).await,
                    Err(e) => Err(e),
                }
            }
            Handler::Service(need, handler) => match state.config.internal_principals.caller(req) {
                Ok(caller) => match need.check(&caller, req) {
                    Ok(()) => handler(state, req, &caller).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            },
        };
        answer.unwrap_or_else(ApiError::into_response)
    }
}

/// `routes` as the service the Lambda runtime loop drives, serving each request in its own span.
pub fn service(
    state: Arc<AppState>,
    routes: Arc<Routes>,
) -> impl Service<Request, Response = Response<Body>, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
    service_fn(move |req: Request| {
        let (request_id, route) = request_labels(&req);
        let span = crate::telemetry::request_span(&request_id, &route);
        let refused = span.in_scope(|| refusal(&state, &req));
        let (state, routes) = (Arc::clone(&state), Arc::clone(&routes));
        async move {
            let response = match refused {
                Some(refused) => refused,
                None => routes.serve(&state, &req).instrument(span.clone()).await,
            };
            span.in_scope(|| tracing::info!(status = response.status().as_u16(), "served"));
            Ok(response)
        }
    })
}

/// Refuses, before any handler runs, an event that did not come through this stack's API: a direct
/// invoke naming whatever caller it likes ([`crate::auth::gateway`]). Logged with the `alarm` field
/// the template's metric filters count.
fn refusal(state: &AppState, req: &Request) -> Option<Response<Body>> {
    state.config.api_gateway.admit(req).err().map(|claimed| {
        tracing::warn!(
            alarm = "foreign_invocation",
            api_id = %claimed.api_id,
            stage = %claimed.stage,
            account_id = %claimed.account_id,
            "refused an event that did not come through this stack's API"
        );
        ApiError::new(
            ProblemCode::ForeignInvocation,
            "This function serves only its stack's API Gateway API; nothing was read or written.",
        )
        .into_response()
    })
}

/// The Lambda request id and API Gateway's route template of a request.
fn request_labels(req: &Request) -> (String, String) {
    let lambda_id = req.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty());
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => (
            lambda_id.or_else(|| ctx.request_id.clone()).unwrap_or_default(),
            ctx.route_key.clone().unwrap_or_default(),
        ),
        _ => (lambda_id.unwrap_or_default(), String::new()),
    }
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'a str,
    function: &'a str,
    mode: &'a str,
    store: &'a str,
    /// Third-party services answered by local stand-ins (empty when every one is real).
    sandbox: Vec<&'static str>,
    version: &'a str,
}

/// Liveness of a function: answers without touching any dependency.
fn health(state: &AppState, function: &str) -> Response<Body> {
    let mode = match state.config.mode {
        Mode::Aws { .. } => "aws",
        Mode::Local { .. } => "local",
    };
    json_response(
        StatusCode::OK,
        &Health {
            status: "ok",
            function,
            mode,
            store: state.store.backend(),
            sandbox: state.config.stand_ins(),
            version: env!("CARGO_PKG_VERSION"),
        },
    )
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::config::Config;

    const LAMBDA: [(&str, &str); 3] =
        [("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEKEYID"), ("AWS_SECRET_ACCESS_KEY", "x")];

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())
    }

    /// A state on AWS clients that are never called (the handlers below touch nothing).
    pub(in crate::app) fn idle_state(principals: &str) -> Arc<AppState> {
        let vars = [
            ("KEYWARD_MODE", "aws"),
            ("KEYWARD_TABLE_NAME", "keyward"),
            ("KEYWARD_KMS_KEY_ID", "alias/keyward"),
            ("KEYWARD_AUTH0_ISSUER", "http://127.0.0.1:9/"),
            ("KEYWARD_AUTH0_AUDIENCE", "https://api.keyward.dev"),
            ("KEYWARD_INTERNAL_PRINCIPALS", principals),
        ];
        let config = Config::from_lookup(lookup(&vars)).unwrap();
        Arc::new(AppState::on_lambda(config, lookup(&LAMBDA)).unwrap())
    }

    /// How often each test's handler ran (tests run in parallel: one counter each).
    static SERVED: AtomicUsize = AtomicUsize::new(0);
    static SERVED_UNGRANTED: AtomicUsize = AtomicUsize::new(0);

    fn counted<'a>(_: &'a AppState, _: &'a Request, _: &'a ServiceCaller) -> Pending<'a> {
        SERVED.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(json_response(StatusCode::OK, &serde_json::json!({}))) })
    }

    fn counted_ungranted<'a>(_: &'a AppState, _: &'a Request, _: &'a ServiceCaller) -> Pending<'a> {
        SERVED_UNGRANTED.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(json_response(StatusCode::OK, &serde_json::json!({}))) })
    }

    fn keys_route() -> Arc<Routes> {
        Arc::new(Routes::new("internal-keys").service("GET /internal/users/{uid}/llm-keys", Need::AnyLlmKey, counted))
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_event_of_another_api_stage_or_account_never_reaches_a_handler_and_raises_the_alarm() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber =
            tracing_subscriber::fmt().json().flatten_event(true).with_writer(move || writer.clone()).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let before = SERVED.load(Ordering::SeqCst);
        let state = idle_state(r#"{"arn:aws:iam::123456789012:role/notes": ["openai"]}"#);
        let mut service = service(state, keys_route());
        let (api, stage, account) = (crate::config::LOCAL_API_ID, "$default", crate::config::LOCAL_ACCOUNT_ID);
        let event = crate::auth::gateway::test_event;
        for forged in
            [event("a1b2c3d4e5", stage, account), event(api, "prod", account), event(api, stage, "123456789012")]
        {
            let response = service.call(forged).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN);
            let Body::Text(body) = response.body() else { panic!("a problem body") };
            assert!(body.contains("\"code\":\"foreign_invocation\""), "{body}");
        }
        assert_eq!(SERVED.load(Ordering::SeqCst), before, "no handler ran");
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let alarms: Vec<serde_json::Value> = logged
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["alarm"] == "foreign_invocation")
            .collect();
        assert_eq!(alarms.len(), 3, "{logged}");
        assert!(alarms.iter().all(|l| l["level"] == "WARN"));
        assert_eq!(alarms[0]["api_id"], "a1b2c3d4e5", "what the forged event claimed");
        // The stack's own API reaches the handler.
        assert_eq!(service.call(event(api, stage, account)).await.unwrap().status(), StatusCode::OK);
        assert_eq!(SERVED.load(Ordering::SeqCst), before + 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_service_route_runs_only_for_an_allowed_caller_with_the_grant_it_needs() {
        let (api, stage, account) = (crate::config::LOCAL_API_ID, "$default", crate::config::LOCAL_ACCOUNT_ID);
        let event = || crate::auth::gateway::test_event(api, stage, account);
        for (principals, status, code) in [
            (r#"{"arn:aws:iam::123456789012:role/notes": ["credits"]}"#, 403, "grant_missing"),
            (r#"{"arn:aws:iam::123456789012:role/other": ["openai"]}"#, 403, "principal_not_allowed"),
        ] {
            let routes = Routes::new("internal-keys").service(
                "GET /internal/users/{uid}/llm-keys",
                Need::AnyLlmKey,
                counted_ungranted,
            );
            let response = routes.serve(&idle_state(principals), &event()).await;
            assert_eq!(response.status().as_u16(), status);
            let Body::Text(body) = response.body() else { panic!("a problem body") };
            assert!(body.contains(&format!("\"code\":\"{code}\"")), "{body}");
            assert_eq!(SERVED_UNGRANTED.load(Ordering::SeqCst), 0, "the handler never ran");
        }
        let routes = keys_route();
        let table: Vec<(&str, Access)> = routes.table().collect();
        assert_eq!(
            table,
            [
                ("GET /health/internal-keys", Access::Public),
                ("GET /internal/users/{uid}/llm-keys", Access::Service(Need::AnyLlmKey))
            ],
            "the health route comes with every function"
        );
    }
}
