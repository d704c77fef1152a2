//! The signed-in session: keyward's session handle (which rotates on every refresh) and the
//! current access token, in `session.json` under the config folder, readable by the user only.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::{Method, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::CliError;
use crate::api::{Api, expect_json};

/// An access token this close to expiry is refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;

/// The folder holding `session.json`: `$KEYWARD_CONFIG_DIR`, else the platform's config folder.
fn config_dir() -> Result<PathBuf, CliError> {
    match std::env::var_os("KEYWARD_CONFIG_DIR") {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => dirs::config_dir()
            .map(|d| d.join("keyward"))
            .ok_or_else(|| CliError::Failed("no config folder; set KEYWARD_CONFIG_DIR".into())),
    }
}

fn session_path() -> Result<PathBuf, CliError> {
    Ok(config_dir()?.join("session.json"))
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The tokens keyward hands out on sign-in and on refresh (camelCase, as its API sends them).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tokens {
    pub access_token: SecretString,
    pub expires_in: i64,
    pub refresh_token: SecretString,
}

/// A signed-in session. Its secrets are redacted in Debug and zeroized on drop.
#[derive(Debug)]
pub struct Session {
    pub base_url: url::Url,
    handle: SecretString,
    access_token: SecretString,
    expires_at: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OnDisk<'a> {
    base_url: &'a str,
    refresh_token: &'a str,
    access_token: &'a str,
    expires_at: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FromDisk {
    base_url: url::Url,
    refresh_token: SecretString,
    access_token: SecretString,
    expires_at: i64,
}

impl Session {
    pub fn new(base_url: url::Url, tokens: Tokens) -> Self {
        Self {
            base_url,
            handle: tokens.refresh_token,
            access_token: tokens.access_token,
            expires_at: now() + tokens.expires_in,
        }
    }

    /// The stored session, if there is one.
    pub fn load() -> Result<Option<Self>, CliError> {
        let path = session_path()?;
        let text = match std::fs::read(&path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CliError::Failed(format!("cannot read {}: {e}", path.display()))),
        };
        let stored: FromDisk = serde_json::from_slice(&text).map_err(|_| {
            CliError::Failed(format!("{} is damaged; delete it and run `keyward login`", path.display()))
        })?;
        Ok(Some(Self {
            base_url: stored.base_url,
            handle: stored.refresh_token,
            access_token: stored.access_token,
            expires_at: stored.expires_at,
        }))
    }

    /// The stored session, or [`CliError::NotSignedIn`].
    pub fn require() -> Result<Self, CliError> {
        Self::load()?.ok_or(CliError::NotSignedIn)
    }

    /// Writes the session atomically: a new file created with mode 0600 in a 0700 folder, then
    /// renamed over the old one, so no reader ever sees a half-written or world-readable file.
    pub fn save(&self) -> Result<(), CliError> {
        let dir = config_dir()?;
        let failed =
            |e: std::io::Error| CliError::Failed(format!("cannot write the session in {}: {e}", dir.display()));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(failed)?;
        let json = Zeroizing::new(
            serde_json::to_vec(&OnDisk {
                base_url: self.base_url.as_str(),
                refresh_token: self.handle.expose_secret(),
                access_token: self.access_token.expose_secret(),
                expires_at: self.expires_at,
            })
            .map_err(|e| CliError::Failed(e.to_string()))?,
        );
        let temporary = dir.join(format!(".session.{}.tmp", std::process::id()));
        let mut file =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary).map_err(failed)?;
        let written = file.write_all(&json).and_then(|()| file.sync_all());
        drop(file);
        match written.and_then(|()| std::fs::rename(&temporary, dir.join("session.json"))) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&temporary);
                Err(failed(e))
            }
        }
    }

    /// Removes the stored session; `false` when there was none.
    pub fn forget() -> Result<bool, CliError> {
        let path = session_path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(CliError::Failed(format!("cannot remove {}: {e}", path.display()))),
        }
    }

    /// `{"refreshToken": handle}`, the body of keyward's refresh and logout routes.
    pub fn handle_body(&self) -> Result<Zeroizing<Vec<u8>>, CliError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct HandleBody<'a> {
            refresh_token: &'a str,
        }
        serde_json::to_vec(&HandleBody { refresh_token: self.handle.expose_secret() })
            .map(Zeroizing::new)
            .map_err(|e| CliError::Failed(e.to_string()))
    }

    /// Trades the session handle for a new access token and the next handle, and saves both at
    /// once: the old handle stops working the moment keyward answers.
    async fn refresh(&mut self, api: &Api) -> Result<(), CliError> {
        let body = self.handle_body()?;
        let response = api.send(Method::POST, "/auth/refresh", None, Some(body.to_vec())).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            Self::forget()?;
            return Err(CliError::SessionEnded);
        }
        let tokens: Tokens = expect_json(response).await?;
        *self = Self::new(self.base_url.clone(), tokens);
        self.save()
    }

    /// Sends an authenticated request, refreshing the access token first when it is about to
    /// expire, and once more if keyward refuses it anyway (revoked or rotated elsewhere).
    pub async fn send(
        &mut self,
        api: &Api,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Response, CliError> {
        if self.expires_at - now() < REFRESH_MARGIN_SECS {
            self.refresh(api).await?;
        }
        let response = api.send(method.clone(), path, Some(self.access_token.expose_secret()), json.clone()).await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        self.refresh(api).await?;
        api.send(method, path, Some(self.access_token.expose_secret()), json).await
    }
}

/// Who a command acts as: `KEYWARD_TOKEN` (a personal access token, for scripts and CI) when set,
/// else the signed-in session.
pub enum Caller {
    Token(Zeroizing<String>),
    Session(Box<Session>),
}

impl Caller {
    /// `KEYWARD_TOKEN`, else the saved session, else [`CliError::NotSignedIn`].
    pub fn require() -> Result<Self, CliError> {
        match std::env::var("KEYWARD_TOKEN") {
            Ok(token) if !token.trim().is_empty() => Ok(Self::Token(Zeroizing::new(token.trim().to_owned()))),
            _ => Session::require().map(|s| Self::Session(Box::new(s))),
        }
    }

    /// The session's API, when acting as one.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Self::Session(session) => Some(session),
            Self::Token(_) => None,
        }
    }

    /// Sends an authenticated request: the token as it is (a refused one is refused), or the
    /// session's access token, refreshed as needed.
    pub async fn send(
        &mut self,
        api: &Api,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Response, CliError> {
        match self {
            Self::Token(token) => api.send(method, path, Some(token.as_str()), json).await,
            Self::Session(session) => session.send(api, method, path, json).await,
        }
    }
}
