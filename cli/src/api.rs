//! The HTTP side: one client, keyward's problem+json errors turned into [`CliError`]s.

use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::CliError;

/// The local run's address, used when neither `--url` nor a session names one.
pub const LOCAL_URL: &str = "http://127.0.0.1:8700";

/// A keyward API at one base URL.
pub struct Api {
    base: url::Url,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Problem {
    code: Option<String>,
    detail: Option<String>,
}

impl Api {
    pub fn new(base: url::Url) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            // A key check waits for the provider (up to 10 s at keyward), so leave room.
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("keyward-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Failed(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { base, http })
    }

    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// Sends `method path` with an optional bearer token and JSON body bytes.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Response, CliError> {
        let url = self.base.join(path.trim_start_matches('/')).map_err(|e| CliError::Failed(e.to_string()))?;
        let mut request = self.http.request(method, url);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = json {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        request.send().await.map_err(|e| CliError::Unreachable {
            url: self.base.to_string(),
            // Without the URL: reqwest's message would repeat it, query and all.
            reason: e.without_url().to_string(),
        })
    }
}

/// The body of a successful response, or the problem it carries.
pub async fn expect_json<T: DeserializeOwned>(response: Response) -> Result<T, CliError> {
    let response = expect_success(response).await?;
    response.json().await.map_err(|e| CliError::Failed(format!("keyward sent an unexpected answer: {e}")))
}

/// `Ok` for a 2xx response; otherwise the problem+json it carries as [`CliError::Refused`].
pub async fn expect_success(response: Response) -> Result<Response, CliError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after =
        response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let problem: Option<Problem> = response.json().await.ok();
    let code = problem.as_ref().and_then(|p| p.code.clone()).unwrap_or_else(|| "http_error".into());
    let mut detail = problem.and_then(|p| p.detail).unwrap_or_else(|| format!("keyward answered {status}"));
    if let Some(secs) = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()) {
        detail.push_str(&format!(" (retry in {secs} s)"));
    }
    Err(CliError::Refused { status: status.as_u16(), code, detail })
}
