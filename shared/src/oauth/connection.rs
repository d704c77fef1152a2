//! A connection provider: a service whose accounts users connect with OAuth for web-server apps
//! (authorization code, PKCE S256, offline access). What differs between providers is data —
//! endpoints, scopes, the consent URL's extra parameters, where the account's address comes from,
//! whether refresh tokens rotate and whether grants can be revoked — so one client serves them all.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use url::Url;

use super::{OAuthFailure, TokenAnswer, post_form, read, refusal, tokens};
use crate::endpoints::EndpointSetting;
use crate::model::{OAuthProvider, ProblemCode};
use crate::outbound::Outbound;
use crate::secret::{AccessToken, IdToken, RefreshToken};
use crate::secret_store::{SecretError, SecretReader, SecretSetting};

/// Where a provider tells who the connected account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountSource {
    /// OpenID Connect's userinfo endpoint, with the access token.
    Userinfo,
    /// The ID token of the code exchange. It came straight from the token endpoint over TLS, which
    /// OpenID Connect Core §3.1.3.7 accepts in place of checking its signature.
    IdToken,
}

/// How a grant is given up on disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// RFC 7009 revocation at the provider's endpoint; a token it no longer knows counts as revoked.
    Endpoint,
    /// The provider revokes no single grant: keyward forgets (crypto-shreds) the tokens, and the
    /// user withdraws the consent at the provider's page.
    ForgetOnly,
}

/// The endpoint settings of a provider: authorize and token always; revoke and userinfo when its
/// revocation and account source use them.
pub struct EndpointSettings {
    pub authorize: EndpointSetting,
    pub token: EndpointSetting,
    pub revoke: Option<EndpointSetting>,
    pub userinfo: Option<EndpointSetting>,
}

/// The configuration variables of a provider's connection.
pub struct SettingVars {
    pub client_id: &'static str,
    pub client_secret_arn: &'static str,
    /// Local mode only: the secret itself.
    pub client_secret: &'static str,
    pub redirect_url: &'static str,
    pub scopes: &'static str,
    pub refresh_margin_secs: &'static str,
}

/// The problem codes of a provider's connections (`google_not_connected`, …), which clients
/// switch on.
pub struct ProblemCodes {
    pub not_configured: ProblemCode,
    pub not_connected: ProblemCode,
    pub reconnect_required: ProblemCode,
    pub unavailable: ProblemCode,
    pub refused: ProblemCode,
}

/// What keyward knows about one connection provider; each provider's module holds one value.
pub trait ConnectionSpec: Sync {
    fn provider(&self) -> OAuthProvider;

    /// The name users know it by.
    fn display_name(&self) -> &'static str;

    fn vars(&self) -> SettingVars;

    fn problem_codes(&self) -> ProblemCodes;

    fn endpoints(&self) -> EndpointSettings;

    /// What keyward asks for unless configured otherwise (space-separated).
    fn default_scopes(&self) -> &'static str;

    /// The sandbox's OAuth client (public by design: it works only against the loopback stand-in).
    fn sandbox_client(&self) -> (&'static str, &'static str);

    /// Parameters the consent URL carries besides the standard ones (offline access, consent).
    fn authorize_params(&self) -> &'static [(&'static str, &'static str)];

    fn account_source(&self) -> AccountSource;

    fn revocation(&self) -> Revocation;

    /// Where the user sees, and can withdraw, the apps they granted access.
    fn consent_page(&self) -> &'static str;

    /// The OAuth errors of a refresh that only the user reconnecting can fix.
    fn reconnect_errors(&self) -> &'static [&'static str] {
        &["invalid_grant"]
    }
}

/// How keyward connects users' accounts at one provider.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub client_id: String,
    pub client_secret: SecretSetting,
    /// keyward's own `/oauth/<provider>/callback`, exactly as registered with the provider.
    pub redirect_url: Url,
    pub endpoints: Endpoints,
    /// What keyward asks for.
    pub scopes: Vec<String>,
    /// An access token expiring sooner than this is refreshed before it is handed out.
    pub refresh_margin: Duration,
}

/// A provider's endpoints: the official ones in aws mode, loopback stand-ins in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub authorize: Url,
    pub token: Url,
    pub revoke: Option<Url>,
    pub userinfo: Option<Url>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The provider answered with an OAuth error (`invalid_grant`, `invalid_client`, …).
    #[error("the provider refused the request: {error}")]
    Refused { error: String },
    #[error("the provider could not be reached or answered unexpectedly: {0}")]
    Unavailable(String),
    #[error("the client secret is unavailable: {0}")]
    Secret(#[from] SecretError),
}

impl From<OAuthFailure> for ConnectionError {
    fn from(failure: OAuthFailure) -> Self {
        match failure {
            OAuthFailure::Refused { error } => Self::Refused { error },
            OAuthFailure::Unavailable(why) => Self::Unavailable(why),
        }
    }
}

/// Tokens from a provider's token endpoint.
#[derive(Debug)]
pub struct ConnectionTokens {
    pub access_token: AccessToken,
    /// Sent with a first consent, with every forced one, and (where they rotate) on every refresh.
    pub refresh_token: Option<RefreshToken>,
    pub id_token: Option<IdToken>,
    pub expires_in: u64,
    /// What the user granted, which may be less than asked.
    pub scopes: Option<Vec<String>>,
}

/// The claims of an account that keyward reads: its address, whether the provider verified it,
/// and its stable id.
#[derive(Debug, Deserialize)]
pub struct Account {
    #[serde(default)]
    pub email: Option<String>,
    /// Microsoft's sign-in name, the address when `email` is absent.
    #[serde(default)]
    preferred_username: Option<String>,
    /// Google's verdict on `email`.
    #[serde(default)]
    email_verified: Option<bool>,
    /// Microsoft's optional claim: the address's domain is verified as the tenant's own.
    #[serde(default)]
    xms_edov: Option<bool>,
    /// Google's stable subject (Microsoft's `sub` is pairwise per application, also stable).
    #[serde(default)]
    sub: Option<String>,
    /// Microsoft's object id and tenant id: together the account, whatever its address becomes.
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
}

impl Account {
    /// The address the account goes by.
    pub fn address(&self) -> Option<&str> {
        self.email.as_deref().or(self.preferred_username.as_deref()).filter(|a| !a.is_empty())
    }

    /// Whether the provider vouches for the address: Google's `email_verified`, Microsoft's
    /// `xms_edov`. Microsoft's `email` and `preferred_username` are otherwise whatever a tenant's
    /// administrator (or the user) typed, and change.
    pub fn address_verified(&self) -> bool {
        self.email.is_some() && (self.email_verified == Some(true) || self.xms_edov == Some(true))
    }

    /// The account's stable identity: Microsoft's `tid`+`oid`, else the `sub`. Addresses change
    /// and can be reassigned; this does not.
    pub fn id(&self) -> Option<String> {
        match (&self.tid, &self.oid, &self.sub) {
            (Some(tid), Some(oid), _) if !tid.is_empty() && !oid.is_empty() => Some(format!("{tid}/{oid}")),
            (_, _, Some(sub)) if !sub.is_empty() => Some(sub.clone()),
            _ => None,
        }
    }
}

/// keyward as an OAuth client of one provider.
pub struct ConnectionClient {
    spec: &'static dyn ConnectionSpec,
    http: Outbound,
    settings: ConnectionSettings,
    secret: SecretReader,
}

impl ConnectionClient {
    pub fn new(
        spec: &'static dyn ConnectionSpec,
        http: Outbound,
        settings: ConnectionSettings,
        secret: SecretReader,
    ) -> Self {
        Self { spec, http, settings, secret }
    }

    pub fn spec(&self) -> &'static dyn ConnectionSpec {
        self.spec
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    /// The consent screen: the asked scopes, PKCE S256, the one-time state.
    pub fn authorize_url(&self, state: &str, code_challenge: &str) -> Url {
        let mut url = self.settings.endpoints.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", self.settings.redirect_url.as_str())
            .append_pair("scope", &self.settings.scopes.join(" "))
            .extend_pairs(self.spec.authorize_params())
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges an authorization code with the PKCE verifier and the client secret.
    pub async fn exchange_code(&self, code: &str, verifier: &str) -> Result<ConnectionTokens, ConnectionError> {
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

    /// A new access token for a stored refresh token.
    pub async fn refresh(&self, refresh_token: &RefreshToken) -> Result<ConnectionTokens, ConnectionError> {
        let secret = self.secret.get().await?;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.expose()),
            ("client_id", self.settings.client_id.as_str()),
            ("client_secret", secret.expose()),
        ];
        self.token(&form).await
    }

    /// Who the tokens of a code exchange belong to.
    pub async fn account(&self, tokens: &ConnectionTokens) -> Result<Account, ConnectionError> {
        match self.spec.account_source() {
            AccountSource::IdToken => {
                let token = tokens.id_token.as_ref().ok_or_else(|| unexpected("no ID token"))?;
                let payload = token.expose().split('.').nth(1).ok_or_else(|| unexpected("a malformed ID token"))?;
                let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| unexpected("a malformed ID token"))?;
                serde_json::from_slice(&json).map_err(|_| unexpected("a malformed ID token"))
            }
            AccountSource::Userinfo => {
                let url = self.settings.endpoints.userinfo.clone().ok_or_else(|| unexpected("no userinfo endpoint"))?;
                let http = self.http.client().map_err(|e| ConnectionError::Unavailable(e.to_string()))?;
                let response = http
                    .get(url)
                    .bearer_auth(tokens.access_token.expose())
                    .send()
                    .await
                    .map_err(|e| ConnectionError::Unavailable(e.without_url().to_string()))?;
                let (status, body) = read(response).await?;
                if status != 200 {
                    return Err(refusal((status, body)).into());
                }
                serde_json::from_slice(&body).map_err(|_| unexpected("a malformed userinfo answer"))
            }
        }
    }

    /// Revokes a token and with it the whole grant, where the provider can (`Ok(false)`: it cannot,
    /// and only forgetting the tokens is left). A token the provider no longer knows
    /// (`invalid_token`: already revoked or expired) counts as revoked.
    pub async fn revoke(&self, token: &str) -> Result<bool, ConnectionError> {
        let (Revocation::Endpoint, Some(url)) = (self.spec.revocation(), self.settings.endpoints.revoke.clone()) else {
            return Ok(false);
        };
        match post_form(&self.http, url, &[("token", token)]).await? {
            (200, _) => Ok(true),
            answer => match refusal(answer) {
                OAuthFailure::Refused { error } if error == "invalid_token" => Ok(true),
                other => Err(other.into()),
            },
        }
    }

    async fn token(&self, form: &[(&str, &str)]) -> Result<ConnectionTokens, ConnectionError> {
        let raw: TokenAnswer = tokens(post_form(&self.http, self.settings.endpoints.token.clone(), form).await?)?;
        Ok(ConnectionTokens {
            access_token: AccessToken::from(raw.access_token),
            refresh_token: raw.refresh_token.map(RefreshToken::from),
            id_token: raw.id_token.map(IdToken::from),
            expires_in: raw.expires_in,
            scopes: raw.scope.map(|s| s.split_whitespace().map(str::to_owned).collect()),
        })
    }
}

fn unexpected(what: &str) -> ConnectionError {
    ConnectionError::Unavailable(format!("the provider sent {what}"))
}

#[cfg(test)]
mod account_tests {
    use super::Account;

    fn account(claims: serde_json::Value) -> Account {
        serde_json::from_value(claims).unwrap()
    }

    /// An address changes and can be handed to someone else; the tenant and object ids (or
    /// Google's subject) name the account for good.
    #[test]
    fn an_account_is_its_stable_id_and_only_a_vouched_for_address_is_verified() {
        let microsoft = account(serde_json::json!({
            "preferred_username": "ada@contoso.com", "email": "ada@contoso.com",
            "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": "9188040d-6c67-4c5b-b112-36a304b66dad",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"
        }));
        assert_eq!(
            microsoft.id().as_deref(),
            Some("9188040d-6c67-4c5b-b112-36a304b66dad/00000000-0000-0000-66f3-3332eca7ea81")
        );
        assert!(!microsoft.address_verified(), "Microsoft's email claim is whatever was typed");
        let edov = account(serde_json::json!({"email": "ada@contoso.com", "xms_edov": true, "oid": "o", "tid": "t"}));
        assert!(edov.address_verified());
        let google = account(
            serde_json::json!({"sub": "104875632109876543210", "email": "ada@gmail.com", "email_verified": true}),
        );
        assert_eq!((google.id().as_deref(), google.address_verified()), (Some("104875632109876543210"), true));
        let unverified = account(serde_json::json!({"sub": "1", "email": "ada@gmail.com", "email_verified": false}));
        assert!(!unverified.address_verified());
        assert_eq!(account(serde_json::json!({"email": "ada@gmail.com"})).id(), None, "no id, no connection");
    }
}
