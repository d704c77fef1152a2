//! Users' connected accounts at an OAuth provider (Google, Microsoft), and fresh access tokens for
//! internal services.
//!
//! Connecting happens in the user's browser, as an integrating app expects: the app asks for a
//! link (`link`) and opens it; the link first makes sure that browser is signed in to keyward as
//! the user who asked for it — through Auth0, silently when Auth0 already knows the browser — and
//! only then shows the provider's consent screen (`open_link`). A link opened by anybody else
//! attaches nothing: this is what keeps account-linking CSRF closed. The provider's callback
//! (`finish`) completes only in the browser the consent was started in, and always ends back at
//! the app, with `?connected=<provider>` or `?error=<code>`.
//!
//! Tokens are sealed per user, provider and token (`refresh-token`, `access-token`); a refresh is
//! serialised per connection by a short lease, so concurrent callers cause one call to the
//! provider, not many.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::accounts::{AccountError, Accounts};
use super::redirects::{RedirectError, Redirects, allowed_return_to, clear_browser_cookie};
use super::sessions::{SessionError, Sessions};
use super::throttle::ClientAddress;
use crate::auth::{ServiceCaller, UserCaller};
use crate::crypto::{CryptoError, Sealed};
use crate::model::{Cookie, OAuthProvider, UserId};
use crate::oauth::connection::{ConnectionClient, ConnectionError, ConnectionTokens};
use crate::secret::{RefreshToken, SessionHandle};
use crate::store::{
    Actor, AuditAction, AuditEntry, ConnectionStatus, ConnectionToken, OAuthConnection, StatePurpose, StoreError,
    connection_token_context,
};

/// How long one caller may hold the refresh of a connection: longer than a provider call may take
/// (the outbound client gives up after 10 s), so a lease outlives its holder only if that one died.
const LEASE_SECS: i64 = 15;
/// How often a caller waiting for another's refresh looks at the connection again.
const WAIT_STEP: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    #[error("there is no app to send the browser back to: pass `returnTo`")]
    NoReturnOrigin,
    #[error("this user has not connected an account at {0}")]
    NotConnected(OAuthProvider),
    #[error("{0} no longer accepts this user's grant; the user must connect again")]
    ReconnectRequired(OAuthProvider),
    /// Another caller's refresh failed just now.
    #[error("refreshing the {0} access token failed just now")]
    RefreshBusy(OAuthProvider),
    #[error("connections to {0} are not configured on this deployment")]
    NotConfigured(OAuthProvider),
    #[error("{0}: {1}")]
    Provider(OAuthProvider, ConnectionError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Where a browser goes next in a connect.
#[derive(Debug)]
pub enum Next {
    /// To the provider's consent screen; the cookie binds the consent to this browser.
    Consent { url: Url, cookie: Cookie },
    /// To Auth0 first, to sign this browser in; it comes back to the link afterwards.
    SignIn { url: Url, cookie: Cookie },
    /// Back to the app, the result in the URL (`?connected=google`, `?error=account_mismatch`).
    Back { url: String, cookies: Vec<Cookie> },
}

/// What the provider sent the browser back with.
pub struct ConsentCallback<'a> {
    pub state: Option<&'a str>,
    /// The value of the browser's binding cookie for `state`, if it sent one.
    pub browser_nonce: Option<&'a str>,
    /// The browser's keyward session, if it holds one.
    pub browser: Option<&'a SessionHandle>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// An access token for an internal service, valid for at least the refresh margin.
pub struct FreshToken {
    pub access_token: SecretString,
    pub expires_at: i64,
    pub scopes: Vec<String>,
    /// The connected account's address.
    pub email: String,
    /// Whether the provider vouched for it.
    pub email_verified: bool,
}

/// Whether disconnecting reached the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disconnected {
    /// Nothing was connected.
    Nothing,
    /// The grant was revoked at the provider, and the tokens forgotten.
    Revoked,
    /// The provider revokes no single grant: the tokens were forgotten (the access token lives until
    /// it expires) and the user withdraws the consent at the provider's page.
    Forgotten,
}

pub struct Connections<'a> {
    pub client: &'a ConnectionClient,
    pub sessions: Sessions<'a>,
}

/// The encryption context of one of a connection's tokens, so neither can be opened as the other,
/// nor as another user's or another provider's.
/// `url` with `pairs` added to its query.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    match Url::parse(url) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(pairs);
            url.into()
        }
        Err(_) => url.to_owned(),
    }
}

impl Connections<'_> {
    fn provider(&self) -> OAuthProvider {
        self.client.spec().provider()
    }

    fn redirects(&self) -> Redirects<'_> {
        let s = &self.sessions;
        Redirects { store: s.store, envelope: s.envelope, clock: s.clock }
    }

    fn origins(&self) -> &[String] {
        &self.sessions.auth0.settings().return_origins
    }

    /// A link that connects the user's account when the user opens it in a browser, ending at
    /// `return_to` (an allowed origin; the first one by default).
    pub async fn link(&self, caller: &UserCaller, return_to: Option<&str>) -> Result<Url, ConnectError> {
        Accounts { store: self.sessions.store, clock: self.sessions.clock }.require_verified_email(caller).await?;
        let return_to = match return_to {
            Some(raw) => allowed_return_to(self.origins(), raw)?,
            None => self.origins().first().map(|o| format!("{o}/")).ok_or(ConnectError::NoReturnOrigin)?,
        };
        self.link_for(&caller.user, return_to).await
    }

    async fn link_for(&self, user: &UserId, return_to: String) -> Result<Url, ConnectError> {
        let purpose = StatePurpose::ConnectLink(self.provider());
        let started = self.redirects().start(purpose, Some(user.clone()), Some(return_to), false).await?;
        // The link opens beside the callback: `…/oauth/<provider>/start`.
        let mut url = self.client.settings().redirect_url.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop().push("start");
        }
        url.set_query(None);
        url.query_pairs_mut().append_pair("link", &started.state);
        Ok(url)
    }

    /// A browser opening a link: on to the consent screen when it is signed in as the link's user,
    /// to Auth0 first when it is signed in as nobody, back to the app when it is someone else.
    pub async fn open_link(
        &self,
        client: &ClientAddress,
        link: Option<&str>,
        browser: Option<&SessionHandle>,
    ) -> Result<Next, ConnectError> {
        let provider = self.provider();
        let opened = match link {
            Some(link) => self.redirects().finish(StatePurpose::ConnectLink(provider), link, None).await,
            None => Err(RedirectError::InvalidState),
        };
        let opened = match opened {
            Ok(opened) => opened,
            Err(RedirectError::InvalidState) => return self.back_without_state(),
            Err(e) => return Err(e.into()),
        };
        let (Some(user), Some(return_to)) = (opened.user, opened.return_to) else {
            return self.back_without_state();
        };
        let holder = match browser {
            Some(handle) => self.sessions.holder(handle).await?,
            None => None,
        };
        match holder {
            Some(holder) if holder == user => {
                let purpose = StatePurpose::Connect(provider);
                let started = self.redirects().start(purpose, Some(user), Some(return_to), true).await?;
                let cookie = started.browser_cookie.ok_or(SessionError::IncompleteAnswer("browser binding"))?;
                Ok(Next::Consent { url: self.client.authorize_url(&started.state, &started.code_challenge), cookie })
            }
            Some(_) => {
                tracing::warn!(user = %user, provider = %provider, "a connect link was opened in another user's browser");
                self.audit(
                    &user,
                    Actor::User { user: user.clone(), via: None },
                    AuditAction::Connect(provider),
                    "account_mismatch",
                )
                .await?;
                Ok(self.back(&return_to, Err("account_mismatch"), Vec::new()))
            }
            None => {
                let resume = self.link_for(&user, return_to).await?;
                let login = self.sessions.begin_login_to(client, Some(resume.into())).await?;
                Ok(Next::SignIn { url: login.authorize_url, cookie: login.browser_cookie })
            }
        }
    }

    /// The provider sending the browser back from its consent screen. The state is consumed first,
    /// whatever else the callback says, so it works once.
    pub async fn finish(&self, callback: &ConsentCallback<'_>) -> Result<Next, ConnectError> {
        let provider = self.provider();
        let Some(state) = callback.state else { return self.back_without_state() };
        let returned =
            match self.redirects().finish(StatePurpose::Connect(provider), state, callback.browser_nonce).await {
                Ok(returned) => returned,
                Err(RedirectError::InvalidState) => return self.back_without_state(),
                Err(e) => return Err(e.into()),
            };
        let cookies = vec![clear_browser_cookie(state)];
        let (Some(user), Some(return_to)) = (returned.user, returned.return_to) else {
            return self.back_without_state();
        };
        let outcome = self.connect(&user, callback, returned.verifier.expose_secret()).await?;
        let code = outcome.as_ref().map_or_else(|code| *code, |()| "ok");
        self.audit(&user, Actor::User { user: user.clone(), via: None }, AuditAction::Connect(provider), code).await?;
        if outcome.is_ok() {
            tracing::info!(user = %user, provider = %provider, "account connected");
        }
        Ok(self.back(&return_to, outcome, cookies))
    }

    /// The connect itself; `Err(code)` for every way it can fail that the app should hear of.
    async fn connect(
        &self,
        user: &UserId,
        callback: &ConsentCallback<'_>,
        verifier: &str,
    ) -> Result<Result<(), &'static str>, ConnectError> {
        let provider = self.provider();
        // Only the browser of the user who asked for the link completes it.
        let holder = match callback.browser {
            Some(handle) => self.sessions.holder(handle).await?,
            None => None,
        };
        if holder.as_ref() != Some(user) {
            return Ok(Err("session_mismatch"));
        }
        if let Some(error) = callback.error {
            return Ok(Err(if error == "access_denied" { "access_denied" } else { "provider_error" }));
        }
        let Some(code) = callback.code else { return Ok(Err("missing_code")) };
        let tokens = match self.client.exchange_code(code, verifier).await {
            Ok(tokens) => tokens,
            Err(ConnectionError::Refused { .. }) => return Ok(Err("code_rejected")),
            Err(e) => {
                tracing::warn!(provider = %provider, error = %e, "the code exchange failed");
                return Ok(Err("provider_unavailable"));
            }
        };
        let account = match self.client.account(&tokens).await {
            Ok(account) => account,
            Err(e) => {
                tracing::warn!(provider = %provider, error = %e, "the account lookup failed");
                return Ok(Err("provider_unavailable"));
            }
        };
        let (Some(email), Some(account_id)) = (account.address().map(str::to_owned), account.id()) else {
            return Ok(Err("provider_unavailable"));
        };
        let connections = self.sessions.store.oauth_connections(provider);
        let existing = connections.get(user).await?;
        let refresh_token = match (&tokens.refresh_token, &existing) {
            (Some(fresh), _) => Some(self.seal(user, ConnectionToken::Refresh, fresh.expose()).await?),
            // No offline access granted this time; the stored grant still serves the same account.
            (None, Some(stored))
                if stored.account_id.as_ref() == Some(&account_id) && stored.refresh_token.is_some() =>
            {
                stored.refresh_token.clone()
            }
            (None, _) => return Ok(Err("consent_required")),
        };
        let now = self.sessions.clock.now();
        let connection = OAuthConnection {
            user: user.clone(),
            provider,
            email,
            email_verified: account.address_verified(),
            account_id: Some(account_id),
            scopes: tokens.scopes.clone().unwrap_or_else(|| self.client.settings().scopes.clone()),
            refresh_token,
            access_token: self.seal(user, ConnectionToken::Access, tokens.access_token.expose()).await?,
            access_expires_at: now + expires_in(&tokens),
            status: ConnectionStatus::Connected,
            connected_at: now,
            last_refreshed_at: None,
            version: 0,
            refresh_lease_until: None,
        };
        Ok(match connections.save(&connection, existing.map(|c| c.version)).await? {
            Some(_) => Ok(()),
            None => Err("concurrent_change"),
        })
    }

    /// The app's `return_to`, with the result.
    fn back(&self, return_to: &str, outcome: Result<(), &str>, cookies: Vec<Cookie>) -> Next {
        let provider = self.provider().slug();
        let url = match outcome {
            Ok(()) => with_query(return_to, &[("connected", provider)]),
            Err(code) => with_query(return_to, &[("error", code), ("connection", provider)]),
        };
        Next::Back { url, cookies }
    }

    /// A link or callback whose state is unknown, spent or expired: back to the first allowed origin.
    fn back_without_state(&self) -> Result<Next, ConnectError> {
        let origin = self.origins().first().ok_or(RedirectError::InvalidState)?;
        Ok(self.back(&format!("{origin}/"), Err("invalid_state"), Vec::new()))
    }

    /// The user's connection, if any (never its tokens).
    pub async fn status(&self, user: &UserId) -> Result<Option<OAuthConnection>, ConnectError> {
        Ok(self.sessions.store.oauth_connections(self.provider()).get(user).await?)
    }

    /// Revokes the grant at the provider (where it can), then forgets it. Idempotent. While the
    /// provider is unreachable the connection is kept, so the revocation can be retried, not lost.
    pub async fn disconnect(&self, caller: &UserCaller) -> Result<Disconnected, ConnectError> {
        let user = &caller.user;
        let provider = self.provider();
        let connections = self.sessions.store.oauth_connections(provider);
        let Some(connection) = connections.get(user).await? else { return Ok(Disconnected::Nothing) };
        // Revoking either token revokes the grant; the refresh token outlives the access token.
        let token = match &connection.refresh_token {
            Some(sealed) => self.open(user, ConnectionToken::Refresh, sealed).await?,
            None => self.open(user, ConnectionToken::Access, &connection.access_token).await?,
        };
        let disconnected = match self.client.revoke(token.expose_secret()).await {
            Ok(true) => Disconnected::Revoked,
            Ok(false) => Disconnected::Forgotten,
            Err(ConnectionError::Refused { error }) => {
                // Retrying cannot help; the user can still remove keyward at the provider.
                tracing::warn!(user = %user, provider = %provider, error = %error, "revocation refused; forgetting the connection");
                Disconnected::Forgotten
            }
            Err(e) => {
                self.audit(user, caller.actor(), AuditAction::Disconnect(provider), "provider_unavailable").await?;
                return Err(ConnectError::Provider(provider, e));
            }
        };
        connections.delete(user).await?;
        self.audit(user, caller.actor(), AuditAction::Disconnect(provider), "ok").await?;
        tracing::info!(user = %user, provider = %provider, "account disconnected");
        Ok(disconnected)
    }

    /// An access token valid for at least the refresh margin, refreshed first when needed — by one
    /// caller at a time; the others wait for its result.
    pub async fn fresh_token(&self, caller: &ServiceCaller, user: &UserId) -> Result<FreshToken, ConnectError> {
        let provider = self.provider();
        let actor = Actor::Service(caller.arn.clone());
        let margin = self.client.settings().refresh_margin.as_secs() as i64;
        let give_up_at = Instant::now() + Duration::from_secs(LEASE_SECS as u64 + 2);
        let connections = self.sessions.store.oauth_connections(provider);
        // The version whose refresh this caller saw leased to another.
        let mut waited_on = None;
        loop {
            let now = self.sessions.clock.now();
            let connection = connections.get(user).await?.ok_or(ConnectError::NotConnected(provider))?;
            if connection.status == ConnectionStatus::ReconnectRequired {
                return Err(ConnectError::ReconnectRequired(provider));
            }
            // A token another caller refreshed while this one waited is handed out as long as it is
            // valid: refreshing it again would only repeat what the provider just answered.
            let refreshed_meanwhile = waited_on.is_some_and(|version| version != connection.version);
            let needed_secs = if refreshed_meanwhile { 0 } else { margin };
            if connection.access_expires_at - now > needed_secs {
                let access_token = self.open(user, ConnectionToken::Access, &connection.access_token).await?;
                self.audit(user, actor, AuditAction::ConnectionTokenFetch(provider), "ok").await?;
                return Ok(FreshToken {
                    access_token,
                    expires_at: connection.access_expires_at,
                    scopes: connection.scopes,
                    email: connection.email,
                    email_verified: connection.email_verified,
                });
            }
            if connection.is_leased(now) {
                if Instant::now() >= give_up_at {
                    return Err(ConnectError::RefreshBusy(provider));
                }
                waited_on = Some(connection.version);
                tokio::time::sleep(WAIT_STEP).await;
                continue;
            }
            if waited_on == Some(connection.version) {
                // The refresher gave its lease back without a new token: the provider failed it.
                return Err(ConnectError::RefreshBusy(provider));
            }
            if connections.take_refresh_lease(user, connection.version, now, now + LEASE_SECS).await? {
                let refreshed = self.refresh(&connection, &actor).await;
                if refreshed.is_err() {
                    connections.release_refresh_lease(user, connection.version).await?;
                }
                return refreshed;
            }
            // Another caller took the lease between the read and the take: wait for its result.
        }
    }

    /// Refreshes the access token of `connection` (whose lease this caller holds).
    async fn refresh(&self, connection: &OAuthConnection, actor: &Actor) -> Result<FreshToken, ConnectError> {
        let provider = self.provider();
        let user = &connection.user;
        let Some(sealed_refresh) = &connection.refresh_token else {
            self.mark_reconnect_required(connection).await?;
            return Err(ConnectError::ReconnectRequired(provider));
        };
        let refresh_token =
            RefreshToken::new(self.open(user, ConnectionToken::Refresh, sealed_refresh).await?.expose_secret());
        let tokens = match self.client.refresh(&refresh_token).await {
            Ok(tokens) => tokens,
            Err(ConnectionError::Refused { error })
                if self.client.spec().reconnect_errors().contains(&error.as_str()) =>
            {
                self.mark_reconnect_required(connection).await?;
                self.audit(user, actor.clone(), AuditAction::ConnectionRefresh(provider), "invalid_grant").await?;
                return Err(ConnectError::ReconnectRequired(provider));
            }
            Err(e) => {
                let outcome = if matches!(e, ConnectionError::Refused { .. }) {
                    "provider_refused"
                } else {
                    "provider_unavailable"
                };
                self.audit(user, actor.clone(), AuditAction::ConnectionRefresh(provider), outcome).await?;
                return Err(ConnectError::Provider(provider, e));
            }
        };
        let now = self.sessions.clock.now();
        let updated = OAuthConnection {
            access_token: self.seal(user, ConnectionToken::Access, tokens.access_token.expose()).await?,
            // A provider that rotates refresh tokens sends a new one every time; one that does not
            // sends one only when it replaces the old.
            refresh_token: match &tokens.refresh_token {
                Some(fresh) => Some(self.seal(user, ConnectionToken::Refresh, fresh.expose()).await?),
                None => connection.refresh_token.clone(),
            },
            access_expires_at: now + expires_in(&tokens),
            scopes: tokens.scopes.clone().unwrap_or_else(|| connection.scopes.clone()),
            last_refreshed_at: Some(now),
            ..connection.clone()
        };
        // `None`: the lease ran out and another caller saved first; this token is just as valid.
        self.sessions.store.oauth_connections(provider).save(&updated, Some(connection.version)).await?;
        self.audit(user, actor.clone(), AuditAction::ConnectionTokenFetch(provider), "refreshed").await?;
        tracing::info!(user = %user, provider = %provider, "access token refreshed");
        Ok(FreshToken {
            access_token: SecretString::from(tokens.access_token.expose().to_owned()),
            expires_at: updated.access_expires_at,
            scopes: updated.scopes,
            email: updated.email,
            email_verified: updated.email_verified,
        })
    }

    /// The provider refused the refresh token for good: only the user reconnecting helps.
    async fn mark_reconnect_required(&self, connection: &OAuthConnection) -> Result<(), ConnectError> {
        let marked = OAuthConnection { status: ConnectionStatus::ReconnectRequired, ..connection.clone() };
        self.sessions.store.oauth_connections(self.provider()).save(&marked, Some(connection.version)).await?;
        tracing::info!(user = %connection.user, provider = %self.provider(), "refresh token refused; reconnect required");
        Ok(())
    }

    async fn seal(&self, user: &UserId, which: ConnectionToken, token: &str) -> Result<Sealed, ConnectError> {
        Ok(self
            .sessions
            .envelope
            .seal(token.as_bytes(), &connection_token_context(user, self.provider(), which))
            .await?)
    }

    async fn open(&self, user: &UserId, which: ConnectionToken, sealed: &Sealed) -> Result<SecretString, ConnectError> {
        Ok(self.sessions.envelope.open_text(sealed, &connection_token_context(user, self.provider(), which)).await?)
    }

    async fn audit(&self, user: &UserId, actor: Actor, action: AuditAction, outcome: &str) -> Result<(), ConnectError> {
        let entry = AuditEntry {
            at: self.sessions.clock.now(),
            actor,
            action,
            target: Some(self.provider().slug().into()),
            outcome: outcome.into(),
        };
        Ok(self.sessions.store.audit().append(user, &entry).await?)
    }
}

fn expires_in(tokens: &ConnectionTokens) -> i64 {
    i64::try_from(tokens.expires_in).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests;
