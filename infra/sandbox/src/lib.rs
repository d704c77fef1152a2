//! Loopback stand-ins for the third-party services keyward calls, each speaking its service's wire
//! format. Local mode starts them by default (sandbox mode) so every flow can be tried without
//! accounts; the tests use the same stand-ins, so each wire format is written once.
//!
//! Each service lives under its own prefix of one listener: `/auth0/`, `/google/`, `/microsoft/`, `/github/`, and one per LLM provider
//! (`/openai/v1`, `/anthropic/v1`, `/gemini/v1beta`, `/perplexity`, `/zai/…`, `/zai-china/…`, the
//! paths keyward's local-mode defaults point at).

pub mod auth0;
pub mod aws_proxy;
pub mod github;
pub mod google;
pub mod lambda_runtime;
pub mod microsoft;
pub mod providers;
mod web;

pub use web::issued;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The loopback port local mode expects the sandbox on (`keyward::config::SANDBOX_BASE_URL`).
pub const DEFAULT_PORT: u16 = 8701;

/// A running sandbox; it stops when dropped.
pub struct Sandbox {
    base_url: String,
    provider_calls: Arc<providers::CallCounts>,
    auth0_calls: Arc<RequestCounts>,
    google: Arc<google::GoogleControls>,
    google_calls: Arc<RequestCounts>,
    microsoft: Arc<microsoft::MicrosoftControls>,
    microsoft_calls: Arc<RequestCounts>,
    github: Arc<github::Signer>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Sandbox {
    /// Serves every stand-in on `addr` (port 0 picks a free port) with Auth0's own timings.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with(addr, auth0::DeviceTimings::default()).await
    }

    /// Serves every stand-in, with the device flow's interval and lifetime set (tests shorten them).
    pub async fn start_with(addr: SocketAddr, device: auth0::DeviceTimings) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let auth0_calls = Arc::new(RequestCounts::default());
        let auth0 = auth0::router(&format!("{base_url}/auth0/"), device)
            .map_err(std::io::Error::other)?
            .layer(middleware::from_fn_with_state(Arc::clone(&auth0_calls), count_request));
        let google_calls = Arc::new(RequestCounts::default());
        let (google, google_routes) = google::router();
        let google_routes =
            google_routes.layer(middleware::from_fn_with_state(Arc::clone(&google_calls), count_request));
        let microsoft_calls = Arc::new(RequestCounts::default());
        let (microsoft, microsoft_routes) = microsoft::router();
        let microsoft_routes =
            microsoft_routes.layer(middleware::from_fn_with_state(Arc::clone(&microsoft_calls), count_request));
        let (provider_calls, provider_routes) = providers::routers();
        let (github, github_routes) = github::router();
        let services = Router::new()
            .nest("/auth0", auth0)
            .nest("/google", google_routes)
            .nest("/microsoft", microsoft_routes)
            .nest("/github", github_routes);
        let app = provider_routes.into_iter().fold(services, |app, (prefix, routes)| app.nest(prefix, routes));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = served.await {
                tracing::error!(error = %e, "sandbox server failed");
            }
        });
        Ok(Self {
            base_url,
            provider_calls,
            auth0_calls,
            google,
            google_calls,
            microsoft,
            microsoft_calls,
            github,
            stop: Some(stop),
            task,
        })
    }

    /// The key GitHub's stand-in signs alerts with.
    pub fn github_signer(&self) -> &github::Signer {
        &self.github
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// How many validation calls each LLM provider stand-in has received.
    pub fn provider_calls(&self) -> &providers::CallCounts {
        &self.provider_calls
    }

    /// The requests the Auth0 stand-in has received, by method and path.
    pub fn auth0_calls(&self) -> &RequestCounts {
        &self.auth0_calls
    }

    /// The Google stand-in's knobs (down, token lifetime, latency).
    pub fn google(&self) -> &google::GoogleControls {
        &self.google
    }

    /// The requests the Google stand-in has received, by method and path.
    pub fn google_calls(&self) -> &RequestCounts {
        &self.google_calls
    }

    /// The Microsoft stand-in's knobs (down, token lifetime, revoked sessions).
    pub fn microsoft(&self) -> &microsoft::MicrosoftControls {
        &self.microsoft
    }

    /// The requests the Microsoft stand-in has received, by method and path.
    pub fn microsoft_calls(&self) -> &RequestCounts {
        &self.microsoft_calls
    }

    /// The issuer of the Auth0 stand-in, with Auth0's trailing slash.
    pub fn auth0_issuer(&self) -> String {
        format!("{}/auth0/", self.base_url)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// Requests counted by `METHOD /path` (the path inside the stand-in's prefix), for tests that state
/// how many calls a keyward route makes to a service.
#[derive(Default)]
pub struct RequestCounts(Mutex<BTreeMap<String, u64>>);

impl RequestCounts {
    /// The counts so far as `METHOD /path=n` joined by spaces (empty when none), and a fresh start.
    pub fn take(&self) -> String {
        let counts = self.0.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        counts.into_iter().map(|(request, n)| format!("{request}={n}")).collect::<Vec<_>>().join(" ")
    }

    fn count(&self, request: String) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(request).or_default() += 1;
        }
    }
}

async fn count_request(State(counts): State<Arc<RequestCounts>>, request: Request, next: Next) -> Response {
    counts.count(format!("{} {}", request.method(), request.uri().path()));
    next.run(request).await
}
