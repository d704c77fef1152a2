//! `keyward-local`: the whole API on one loopback port, as API Gateway would serve it.
//!
//! - [`template`] reads the routes from `template.yaml` and selects one per request;
//! - [`sigv4`] does API Gateway's IAM authorization for routes the template marks `AWS_IAM`;
//! - [`gateway`] builds each function's HTTP API (v2) event and serves its answer.
//!
//! The functions run in-process: [`functions`] mounts each crate's routes exactly as its
//! `main.rs` hands them to `keyward::app::run`.

pub mod gateway;
pub mod sigv4;
pub mod template;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use keyward::app::{self, AppState, Routes};
use keyward::model::OAuthProvider;
use lambda_http::{Body, BoxFuture, Request, Response, Service};

pub use gateway::Gateway;
pub use sigv4::Credentials;
pub use template::RouteTable;

/// The port the README's run command serves on.
pub const DEFAULT_PORT: u16 = 8700;

tokio::task_local! {
    /// The function serving the current request (its binary name, `internal-keys`): tests
    /// attribute each AWS call to the role that would make it in AWS.
    pub static SERVING: &'static str;
}

/// One function's entry point, as the gateway invokes it.
pub type FunctionHandler = Arc<dyn Fn(Request) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("route {route} names function {function}, which the gateway does not mount")]
    UnknownFunction { route: String, function: String },
}

/// Every function's routes, as its `main.rs` serves them.
pub fn all_routes() -> [Routes; 7] {
    [
        login_callback::routes(),
        device_auth::routes(),
        llm_keys::routes(),
        internal_keys::routes(),
        oauth_refresh::routes(),
        stripe_webhook::routes(),
        access_tokens::routes(),
    ]
}

/// Every function of the workspace, by the binary name `template.yaml` gives it.
pub fn functions(state: &Arc<AppState>) -> HashMap<String, FunctionHandler> {
    all_routes()
        .into_iter()
        .map(|routes| {
            let function = routes.function();
            (function.to_owned(), mount(function, app::service(Arc::clone(state), Arc::new(routes))))
        })
        .collect()
}

fn mount<S>(function: &'static str, service: S) -> FunctionHandler
where
    S: Service<Request, Response = Response<Body>, Error = Infallible, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static,
{
    Arc::new(move |request| {
        // `service_fn` services are always ready, so each call may go straight to `call`.
        let mut service = service.clone();
        Box::pin(SERVING.scope(function, async move {
            match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }))
    })
}

/// What points keyward at the sandbox's stand-ins when it serves at `keyward`: every LLM
/// provider's endpoint, and each connection provider's client, callback and endpoints.
pub fn sandbox_settings(sandbox: &str, keyward: &str) -> Vec<(&'static str, String)> {
    let mut settings: Vec<(&'static str, String)> = keyward::providers::endpoint_settings()
        .map(|endpoint| (endpoint.var, format!("{sandbox}{}", endpoint.sandbox_path)))
        .collect();
    for &provider in OAuthProvider::ALL {
        let spec = keyward::oauth::connection_spec(provider);
        let vars = spec.vars();
        settings.push((vars.client_id, spec.sandbox_client().0.to_owned()));
        settings.push((vars.redirect_url, format!("{keyward}/oauth/{provider}/callback")));
        let endpoints = spec.endpoints();
        let all = [
            Some(&endpoints.authorize),
            Some(&endpoints.token),
            endpoints.revoke.as_ref(),
            endpoints.userinfo.as_ref(),
        ];
        settings.extend(all.into_iter().flatten().map(|e| (e.var, format!("{sandbox}{}", e.sandbox_path))));
    }
    let github = &keyward::config::GITHUB_KEYS;
    settings.push((github.var, format!("{sandbox}{}", github.sandbox_path)));
    settings
}

/// The project's `template.yaml`: the working directory's when it has one, else the one this crate
/// was built from.
pub fn default_template_path() -> std::path::PathBuf {
    let here = std::path::PathBuf::from("template.yaml");
    if here.exists() { here } else { std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml") }
}

#[cfg(test)]
mod tests {
    /// The sandbox listens by default where local-mode configuration looks for it.
    #[test]
    fn sandbox_default_port_matches_the_local_configuration() {
        assert_eq!(keyward::config::SANDBOX_BASE_URL, format!("http://127.0.0.1:{}", keyward_sandbox::DEFAULT_PORT));
    }
}
