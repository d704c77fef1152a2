//! keyward as an Auth0 client: the authorization-code exchange (confidential web app, PKCE), the
//! device flow (native app), refresh with rotation, and revocation, over the shared OAuth plumbing
//! ([`crate::oauth`]): form-encoded requests, failures read by their OAuth `error` code.

use serde::Deserialize;
use url::Url;

use crate::model::ClientKind;
use crate::oauth::{Answer, OAuthFailure, post_form, refusal, tokens};
use crate::outbound::Outbound;
use crate::secret::{AccessToken, ClientSecret, DeviceCode, IdToken, RefreshToken};
use crate::secret_store::{SecretError, SecretReader, SecretSetting};

/// How keyward signs users in through Auth0.
#[derive(Debug, Clone)]
pub struct Auth0Settings {
    /// The tenant URL with Auth0's trailing slash (`https://tenant.eu.auth0.com/`).
    pub issuer: Url,
    /// The Regular Web App keyward's web sign-in uses (confidential: it has the client secret).
    pub web_client_id: String,
    pub client_secret: SecretSetting,
    /// The Native app the device flow uses (public: no secret).
    pub device_client_id: String,
    /// keyward's own `/auth/callback`, exactly as registered with Auth0.
    pub callback_url: Url,
    /// Origins `returnTo` may point at (`https://app.example.com`); anything else is refused.
    pub return_origins: Vec<String>,
}

/// The scope keyward asks for: an ID token, the profile, and a refresh token.
pub const SCOPE: &str = "openid profile email offline_access";

#[derive(Debug, thiserror::Error)]
pub enum Auth0Error {
    /// Auth0 answered with an OAuth error (`invalid_grant`, `authorization_pending`, …).
    #[error("Auth0 refused the request: {error}")]
    Refused { error: String },
    #[error("Auth0 could not be reached or answered unexpectedly: {0}")]
    Unavailable(String),
    #[error("the Auth0 client secret is unavailable: {0}")]
    Secret(#[from] SecretError),
}

impl From<OAuthFailure> for Auth0Error {
    fn from(failure: OAuthFailure) -> Self {
        match failure {
            OAuthFailure::Refused { error } => Self::Refused { error },
            OAuthFailure::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

/// Tokens from Auth0's token endpoint.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub id_token: Option<IdToken>,
    pub refresh_token: Option<RefreshToken>,
    pub expires_in: u64,
    pub token_type: String,
}

/// Auth0's answer to `POST /oauth/device/code`.
#[derive(Debug)]
pub struct DeviceAuthorization {
    pub device_code: DeviceCode,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: u64,
}

#[derive(Deserialize)]
struct RawDeviceAuthorization {
    device_code: secrecy::SecretString,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    /// RFC 8628 §3.2: clients must assume 5 seconds when absent.
    #[serde(default = "five")]
    interval: u64,
}

fn five() -> u64 {
    5
}

pub struct Auth0Client {
    http: Outbound,
    settings: Auth0Settings,
    audience: String,
    secret: SecretReader,
}

impl Auth0Client {
    pub fn new(http: Outbound, settings: Auth0Settings, audience: String, secret: SecretReader) -> Self {
        Self { http, settings, audience, secret }
    }

    pub fn settings(&self) -> &Auth0Settings {
        &self.settings
    }

    fn endpoint(&self, path: &str) -> Result<Url, Auth0Error> {
        self.settings.issuer.join(path).map_err(|e| Auth0Error::Unavailable(e.to_string()))
    }

    /// Where to send the browser: `/authorize` with the code flow, PKCE S256 and a one-time state.
    pub fn authorize_url(&self, state: &str, code_challenge: &str) -> Result<Url, Auth0Error> {
        let mut url = self.endpoint("authorize")?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.web_client_id)
            .append_pair("redirect_uri", self.settings.callback_url.as_str())
            .append_pair("scope", SCOPE)
            .append_pair("audience", &self.audience)
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(url)
    }

    /// Exchanges an authorization code with the PKCE verifier and the client secret.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<TokenSet, Auth0Error> {
        let secret = self.secret_for(ClientKind::Web).await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", self.settings.callback_url.as_str()),
        ];
        form.extend(self.credentials(ClientKind::Web, secret.as_ref()));
        self.token(&form).await
    }

    /// Uses a refresh token of the client that obtained it (web or device); Auth0 rotates it.
    pub async fn refresh(&self, token: &RefreshToken, client: ClientKind) -> Result<TokenSet, Auth0Error> {
        let secret = self.secret_for(client).await?;
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token.expose())];
        form.extend(self.credentials(client, secret.as_ref()));
        self.token(&form).await
    }

    /// Revokes a refresh token (and with it its rotation family).
    pub async fn revoke(&self, token: &RefreshToken, client: ClientKind) -> Result<(), Auth0Error> {
        let secret = self.secret_for(client).await?;
        let mut form = vec![("token", token.expose())];
        form.extend(self.credentials(client, secret.as_ref()));
        let response = self.post("oauth/revoke", &form).await?;
        if response.0 == 200 { Ok(()) } else { Err(refusal(response).into()) }
    }

    /// Starts the device flow for the native client.
    pub async fn device_code(&self) -> Result<DeviceAuthorization, Auth0Error> {
        let form =
            [("client_id", self.settings.device_client_id.as_str()), ("scope", SCOPE), ("audience", &self.audience)];
        let (status, body) = self.post("oauth/device/code", &form).await?;
        if status != 200 {
            return Err(refusal((status, body)).into());
        }
        let raw: RawDeviceAuthorization = serde_json::from_slice(&body)
            .map_err(|_| Auth0Error::Unavailable("malformed device code answer".into()))?;
        Ok(DeviceAuthorization {
            device_code: DeviceCode::from(raw.device_code),
            user_code: raw.user_code,
            verification_uri: raw.verification_uri,
            verification_uri_complete: raw.verification_uri_complete,
            expires_in: raw.expires_in,
            interval: raw.interval,
        })
    }

    /// One poll of the token endpoint for a device code.
    pub async fn poll_device(&self, device_code: &DeviceCode) -> Result<TokenSet, Auth0Error> {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("client_id", self.settings.device_client_id.as_str()),
            ("device_code", device_code.expose()),
        ];
        self.token(&form).await
    }

    /// The secret requests of `client` carry: the web app's; none for the public device client.
    async fn secret_for(&self, client: ClientKind) -> Result<Option<ClientSecret>, Auth0Error> {
        match client {
            ClientKind::Web => Ok(Some(self.secret.get().await?)),
            ClientKind::Device => Ok(None),
        }
    }

    /// `client_id`, and `client_secret` when the client has one, as form fields.
    fn credentials<'a>(&'a self, client: ClientKind, secret: Option<&'a ClientSecret>) -> Vec<(&'static str, &'a str)> {
        let client_id = match client {
            ClientKind::Web => self.settings.web_client_id.as_str(),
            ClientKind::Device => self.settings.device_client_id.as_str(),
        };
        let mut fields = vec![("client_id", client_id)];
        fields.extend(secret.map(|s| ("client_secret", s.expose())));
        fields
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenSet, Auth0Error> {
        let raw = tokens(self.post("oauth/token", form).await?)?;
        Ok(TokenSet {
            access_token: AccessToken::from(raw.access_token),
            id_token: raw.id_token.map(IdToken::from),
            refresh_token: raw.refresh_token.map(RefreshToken::from),
            expires_in: raw.expires_in,
            token_type: raw.token_type,
        })
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Result<Answer, Auth0Error> {
        Ok(post_form(&self.http, self.endpoint(path)?, form).await?)
    }
}
