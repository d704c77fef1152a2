//! Google OAuth for web-server apps (`protocols-security.md` §4): the consent URL (offline access,
//! forced consent, PKCE), the code exchange, refresh, the account's email, and revocation.

use serde::Deserialize;
use url::Url;

use super::{OAuthFailure, post_form, read, refusal, tokens};
use crate::config::GoogleSettings;
use crate::outbound::Outbound;
use crate::secret::{AccessToken, RefreshToken};
use crate::secrets::{SecretError, SecretReader};

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// Google answered with an OAuth error (`invalid_grant`, `invalid_client`, …).
    #[error("Google refused the request: {error}")]
    Refused { error: String },
    #[error("Google could not be reached or answered unexpectedly: {0}")]
    Unavailable(String),
    #[error("the Google client secret is unavailable: {0}")]
    Secret(#[from] SecretError),
}

impl From<OAuthFailure> for GoogleError {
    fn from(failure: OAuthFailure) -> Self {
        match failure {
            OAuthFailure::Refused { error } => Self::Refused { error },
            OAuthFailure::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

/// Tokens from Google's token endpoint.
#[derive(Debug)]
pub struct GoogleTokens {
    pub access_token: AccessToken,
    /// Sent on the first consent (and on every forced one); absent on refresh.
    pub refresh_token: Option<RefreshToken>,
    pub expires_in: u64,
    /// What the user granted, which may be less than asked.
    pub scopes: Option<Vec<String>>,
}

/// The connected Google account, from the OpenID Connect userinfo endpoint.
#[derive(Debug, Deserialize)]
pub struct GoogleAccount {
    pub sub: String,
    pub email: String,
    #[serde(default)]
    pub email_verified: bool,
}

pub struct GoogleClient {
    http: Outbound,
    settings: GoogleSettings,
    secret: SecretReader,
}

impl GoogleClient {
    pub fn new(http: Outbound, settings: GoogleSettings, secret: SecretReader) -> Self {
        Self { http, settings, secret }
    }

    pub fn settings(&self) -> &GoogleSettings {
        &self.settings
    }

    /// Google's consent screen: a refresh token (offline, forced consent), earlier grants included.
    pub fn authorize_url(&self, state: &str, code_challenge: &str) -> Url {
        let mut url = self.settings.endpoints.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", self.settings.redirect_url.as_str())
            .append_pair("scope", &self.settings.scopes.join(" "))
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("include_granted_scopes", "true")
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges an authorization code with the PKCE verifier and the client secret.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<GoogleTokens, GoogleError> {
        let secret = self.secret.get().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", verifier),
            ("redirect_uri", self.settings.redirect_url.as_str()),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", secret.expose()),
        ];
        self.token(&form).await
    }

    /// A new access token for a stored refresh token (Google does not rotate refresh tokens).
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<GoogleTokens, GoogleError> {
        let secret = self.secret.get().await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", secret.expose()),
        ];
        self.token(&form).await
    }

    /// Who the access token belongs to.
    pub async fn account(&self, access_token: &AccessToken) -> Result<GoogleAccount, GoogleError> {
        let http = self.http.client().map_err(|e| GoogleError::Unavailable(e.to_string()))?;
        let response = http
            .get(self.settings.endpoints.userinfo.clone())
            .bearer_auth(access_token.expose())
            .send()
            .await
            .map_err(|e| GoogleError::Unavailable(e.without_url().to_string()))?;
        let (status, body) = read(response).await?;
        if status != 200 {
            return Err(refusal((status, body)).into());
        }
        serde_json::from_slice(&body).map_err(|_| GoogleError::Unavailable("malformed userinfo answer".into()))
    }

    /// Revokes a token and with it the whole grant. A token Google no longer knows
    /// (`invalid_token`: already revoked or expired) counts as revoked.
    pub async fn revoke(&self, token: &str) -> Result<(), GoogleError> {
        match post_form(&self.http, self.settings.endpoints.revoke.clone(), &[("token", token)]).await? {
            (200, _) => Ok(()),
            answer => match refusal(answer) {
                OAuthFailure::Refused { error } if error == "invalid_token" => Ok(()),
                other => Err(other.into()),
            },
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<GoogleTokens, GoogleError> {
        let raw = tokens(post_form(&self.http, self.settings.endpoints.token.clone(), form).await?)?;
        Ok(GoogleTokens {
            access_token: AccessToken::from(raw.access_token),
            refresh_token: raw.refresh_token.map(RefreshToken::from),
            expires_in: raw.expires_in,
            scopes: raw.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()),
        })
    }
}
