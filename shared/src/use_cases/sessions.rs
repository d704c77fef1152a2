//! Signing users in through Auth0, and keyward sessions. A session family keeps the user's Auth0
//! refresh token sealed and the hash of its one current handle; the client holds only the handle,
//! which rotates on every use. A handle that is no longer current (reuse: a stolen copy, or a race)
//! ends the family here and at Auth0.

use secrecy::ExposeSecret;
use url::Url;

use super::accounts::Accounts;
use super::redirects::{RedirectError, Redirects, allowed_return_to, clear_browser_cookie};
use super::throttle::{AnonymousAction, AnonymousLimits, ClientAddress, Throttle, ThrottleError};
use crate::auth::auth0::{Auth0Client, Auth0Error, TokenSet};
use crate::auth::{AuthError, Identity, TokenVerifier, UserCaller};
use crate::crypto::{CryptoError, Envelope, Tag, framed};
use crate::model::{ClientKind, Clock, Cookie, UserId, random_secret};
use crate::secret::{AccessToken, RefreshToken, SessionHandle, digest};
use crate::store::{
    SESSION_IDLE_SECS, SessionFamily, StatePurpose, Store, StoreError, refresh_token_context, session_binding_context,
};

/// The cookie holding a browser's session handle (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-keyward-session";

/// The cookie that keeps `handle` in a browser.
pub fn session_cookie(handle: &SessionHandle) -> Cookie {
    Cookie::new(SESSION_COOKIE, handle.expose(), SESSION_IDLE_SECS)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Limited(#[from] ThrottleError),
    #[error(transparent)]
    Redirect(#[from] RedirectError),
    /// Auth0 sent the browser back with an `error`: `access_denied`, or another one.
    #[error("sign-in was cancelled or refused at Auth0")]
    Cancelled { denied: bool },
    #[error("the callback carries no authorization code")]
    MissingCode,
    #[error("Auth0 rejected the sign-in code")]
    CodeRejected,
    #[error("the session is unknown or has expired")]
    UnknownSession,
    #[error("the session has ended")]
    Revoked,
    /// A handle that was already rotated: the family is ended.
    #[error("a rotated session handle was used again")]
    Reused,
    /// Two uses of one handle at once: the family is ended.
    #[error("a session handle was used twice at once")]
    ReusedConcurrently,
    #[error("Auth0 no longer accepts this session")]
    ReauthenticationRequired,
    /// A session cookie sent by a page of another origin (or of none): cross-site request forgery.
    #[error("the session cookie came with a foreign or missing Origin")]
    ForeignOrigin,
    #[error("Auth0 sent no {0}")]
    IncompleteAnswer(&'static str),
    #[error(transparent)]
    Auth0(#[from] Auth0Error),
    #[error(transparent)]
    Token(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A web sign-in on its way to Auth0.
pub struct WebLogin {
    pub authorize_url: Url,
    /// Binds the sign-in to this browser: the callback completes only with it.
    pub browser_cookie: Cookie,
}

/// What Auth0 sent the browser back with.
pub struct LoginCallback<'a> {
    pub state: Option<&'a str>,
    /// The value of the browser's binding cookie for `state`, if it sent one.
    pub browser_nonce: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
}

/// A finished web sign-in.
pub struct SignedIn {
    pub user: UserId,
    pub handle: SessionHandle,
    /// The session cookie, and the one clearing the sign-in's browser binding.
    pub cookies: [Cookie; 2],
    pub return_to: Option<String>,
}

/// How a client presented its session handle.
pub enum Presented<'a> {
    /// In the session cookie, which a browser sends with any site's request: honoured only with
    /// an `Origin` among the return origins.
    Cookie { handle: SessionHandle, origin: Option<&'a str> },
    /// In the body (a CLI), which no other site can make a browser send.
    Body(SessionHandle),
}

impl Presented<'_> {
    /// Whether the next handle goes back in the cookie (out of any script's reach).
    pub fn via_cookie(&self) -> bool {
        matches!(self, Self::Cookie { .. })
    }
}

/// A refreshed session: a fresh Auth0 access token and the handle that replaces the presented one.
pub struct Refreshed {
    pub access_token: AccessToken,
    pub expires_in: u64,
    pub token_type: String,
    pub next: SessionHandle,
}

pub struct Sessions<'a> {
    pub store: &'a Store,
    pub envelope: &'a Envelope,
    pub auth0: &'a Auth0Client,
    pub tokens: &'a TokenVerifier,
    pub limits: &'a AnonymousLimits,
    pub clock: &'a dyn Clock,
}

impl Sessions<'_> {
    fn throttle(&self) -> Throttle<'_> {
        Throttle { store: self.store, limits: self.limits, clock: self.clock }
    }

    fn redirects(&self) -> Redirects<'_> {
        Redirects { store: self.store, envelope: self.envelope, clock: self.clock }
    }

    fn accounts(&self) -> Accounts<'_> {
        Accounts { store: self.store, clock: self.clock }
    }

    /// Starts a web sign-in that ends at `return_to` (an allowed origin), or at the first allowed
    /// origin's root.
    pub async fn begin_web_login(
        &self,
        client: &ClientAddress,
        return_to: Option<&str>,
    ) -> Result<WebLogin, SessionError> {
        let origins = &self.auth0.settings().return_origins;
        let return_to = match return_to {
            Some(raw) => Some(allowed_return_to(origins, raw)?),
            None => origins.first().map(|origin| format!("{origin}/")),
        };
        self.begin_login_to(client, return_to).await
    }

    /// Starts a web sign-in that ends at `target`, a URL keyward made (a connect link to resume).
    pub async fn begin_login_to(
        &self,
        client: &ClientAddress,
        target: Option<String>,
    ) -> Result<WebLogin, SessionError> {
        self.throttle().admit(client, AnonymousAction::Login).await?;
        let started = self.redirects().start(StatePurpose::Auth0Login, None, target, true).await?;
        let authorize_url = self.auth0.authorize_url(&started.state, &started.code_challenge)?;
        let browser_cookie = started.browser_cookie.ok_or(SessionError::IncompleteAnswer("browser binding"))?;
        Ok(WebLogin { authorize_url, browser_cookie })
    }

    /// Finishes a web sign-in in the browser that started it: the state is consumed first,
    /// whatever else the callback says, so it works once.
    pub async fn finish_web_login(&self, callback: &LoginCallback<'_>) -> Result<SignedIn, SessionError> {
        let state = callback.state.ok_or(RedirectError::InvalidState)?;
        let login = self.redirects().finish(StatePurpose::Auth0Login, state, callback.browser_nonce).await?;
        if let Some(error) = callback.error {
            tracing::info!(
                error = if error == "access_denied" { "access_denied" } else { "other" },
                "Auth0 sign-in refused"
            );
            return Err(SessionError::Cancelled { denied: error == "access_denied" });
        }
        let code = callback.code.ok_or(SessionError::MissingCode)?;
        let tokens = self.auth0.exchange_code(code, login.verifier.expose_secret()).await.map_err(|e| match e {
            Auth0Error::Refused { .. } => SessionError::CodeRejected,
            other => other.into(),
        })?;
        let (identity, handle) = self.complete(&tokens, ClientKind::Web).await?;
        Ok(SignedIn {
            user: identity.user,
            cookies: [session_cookie(&handle), clear_browser_cookie(state)],
            handle,
            return_to: login.return_to,
        })
    }

    /// Completes a sign-in from Auth0's tokens for `client`: verifies the ID token (issued to that
    /// client), records the profile and opens a session; returns who signed in and their first handle.
    pub async fn complete(
        &self,
        tokens: &TokenSet,
        client: ClientKind,
    ) -> Result<(Identity, SessionHandle), SessionError> {
        let id_token = tokens.id_token.as_ref().ok_or(SessionError::IncompleteAnswer("ID token"))?;
        let client_id = match client {
            ClientKind::Web => &self.auth0.settings().web_client_id,
            ClientKind::Device => &self.auth0.settings().device_client_id,
        };
        let identity = self.tokens.verify_id_token(id_token.expose(), client_id).await?;
        self.accounts().record_sign_in(&identity).await?;
        let refresh = tokens.refresh_token.as_ref().ok_or(SessionError::IncompleteAnswer("refresh token"))?;
        let handle = self.open_family(&identity.user, client, refresh).await?;
        tracing::info!(user = %identity.user, client = client.as_str(), "signed in");
        Ok((identity, handle))
    }

    /// Seals `refresh` and opens a new session family for it; returns the first handle.
    async fn open_family(
        &self,
        user: &UserId,
        client: ClientKind,
        refresh: &RefreshToken,
    ) -> Result<SessionHandle, SessionError> {
        let family = random_secret();
        let handle = SessionHandle::new(random_secret());
        let current_handle = digest(handle.expose());
        let context = refresh_token_context(user, &family, &current_handle);
        let sealed = self.envelope.seal(refresh.expose().as_bytes(), &context).await?;
        let binding = self.holders().bind(user, &family, client, &current_handle).await?;
        let record = SessionFamily {
            id: family,
            user: user.clone(),
            client,
            sealed_refresh: sealed,
            current_handle,
            binding: None,
            active: true,
        };
        self.store.sessions().create(&record, &binding, self.clock.now()).await?;
        Ok(handle)
    }

    /// The handle of a presentation; a cookie only from a page of one of the return origins.
    fn handle_of<'p>(&self, presented: &'p Presented<'_>) -> Result<&'p SessionHandle, SessionError> {
        match presented {
            Presented::Body(handle) => Ok(handle),
            Presented::Cookie { handle, origin } => {
                from_allowed_origin(&self.auth0.settings().return_origins, *origin)?;
                Ok(handle)
            }
        }
    }

    /// A new access token for a presented session handle, which rotates. A handle that was
    /// rotated before ends its family; so does Auth0 refusing the refresh token.
    pub async fn refresh(&self, client: &ClientAddress, presented: &Presented<'_>) -> Result<Refreshed, SessionError> {
        let handle = self.handle_of(presented)?;
        self.throttle().admit(client, AnonymousAction::Refresh).await?;
        let presented = digest(handle.expose());
        let family = self.store.sessions().find(&presented).await?.ok_or(SessionError::UnknownSession)?;
        if !family.active {
            return Err(SessionError::Revoked);
        }
        if family.current_handle != presented {
            self.end_family(&family).await?;
            tracing::warn!(user = %family.user, "a rotated session handle was reused; session family revoked");
            return Err(SessionError::Reused);
        }
        let current = self.refresh_token(&family).await?.ok_or(SessionError::UnknownSession)?;
        let tokens = match self.auth0.refresh(&current, family.client).await {
            Ok(tokens) => tokens,
            Err(Auth0Error::Refused { error }) => {
                self.store.sessions().revoke(&family.id, self.clock.now()).await?;
                tracing::info!(user = %family.user, error = %error, "Auth0 refused the refresh; session ended");
                return Err(SessionError::ReauthenticationRequired);
            }
            Err(e) => return Err(e.into()),
        };
        // Auth0 rotates refresh tokens; without rotation the old one stays valid and is kept.
        let next_refresh = tokens.refresh_token.as_ref().unwrap_or(&current);
        let next = SessionHandle::new(random_secret());
        let next_hash = digest(next.expose());
        let context = refresh_token_context(&family.user, &family.id, &next_hash);
        let sealed = self.envelope.seal(next_refresh.expose().as_bytes(), &context).await?;
        let binding = self.holders().bind(&family.user, &family.id, family.client, &next_hash).await?;
        let next_state = (next_hash.as_str(), &sealed, &binding);
        let rotated = self.store.sessions().rotate(&family, &presented, next_state, self.clock.now()).await?;
        if !rotated {
            self.end_family(&family).await?;
            return Err(SessionError::ReusedConcurrently);
        }
        Ok(Refreshed {
            access_token: tokens.access_token,
            expires_in: tokens.expires_in,
            token_type: tokens.token_type,
            next,
        })
    }

    /// Ends the session of a presented handle, here and at Auth0. Idempotent.
    pub async fn logout(&self, presented: &Presented<'_>) -> Result<(), SessionError> {
        let handle = self.handle_of(presented)?;
        if let Some(family) = self.store.sessions().find(&digest(handle.expose())).await?.filter(|f| f.active) {
            self.end_family(&family).await?;
            tracing::info!(user = %family.user, "signed out");
        }
        Ok(())
    }

    /// The user whose live, current session `handle` is: who a browser is signed in as.
    pub async fn holder(&self, handle: &SessionHandle) -> Result<Option<UserId>, SessionError> {
        self.holders().holder(handle).await
    }

    fn holders(&self) -> SessionHolders<'_> {
        SessionHolders { store: self.store, envelope: self.envelope }
    }

    /// The family's Auth0 refresh token, which opens only under its current handle; `None` when it
    /// does not (the family's items were edited in the table: refused, and logged).
    async fn refresh_token(&self, family: &SessionFamily) -> Result<Option<RefreshToken>, SessionError> {
        let context = refresh_token_context(&family.user, &family.id, &family.current_handle);
        match self.envelope.open_text(&family.sealed_refresh, &context).await {
            Ok(token) => Ok(Some(RefreshToken::new(token.expose_secret()))),
            Err(CryptoError::Refused) => {
                tracing::warn!(user = %family.user, "a session's refresh token was not sealed for its current handle; refused");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Ends a session family here and at Auth0 (revoking its refresh token, and so its Auth0 family).
    async fn end_family(&self, family: &SessionFamily) -> Result<(), SessionError> {
        self.store.sessions().revoke(&family.id, self.clock.now()).await?;
        let Some(token) = self.refresh_token(family).await? else { return Ok(()) };
        if let Err(e) = self.auth0.revoke(&token, family.client).await {
            // The session is already dead here; Auth0's token expires on its own schedule.
            tracing::warn!(error = %e, "Auth0 revocation failed");
        }
        Ok(())
    }
}

/// A session cookie rides along with any site's request, so one that changes something is
/// honoured only with an `Origin` among the return origins (cross-site request forgery).
fn from_allowed_origin(origins: &[String], origin: Option<&str>) -> Result<(), SessionError> {
    match origin {
        Some(origin) if origins.iter().any(|allowed| allowed == origin) => Ok(()),
        _ => Err(SessionError::ForeignOrigin),
    }
}

/// Who holds a session handle: the session cookie as a credential, and the browser a connect
/// must finish in. A family's MAC (the `session` purpose's branch key, which any function with user
/// routes may unwrap) binds it to its user, client and current handle, so a family or handle
/// planted or edited in the table signs nobody in, and checking one needs no Auth0 refresh token.
pub struct SessionHolders<'a> {
    pub store: &'a Store,
    pub envelope: &'a Envelope,
}

impl SessionHolders<'_> {
    /// The user whose live, current session `handle` is; `None` for an unknown, ended, rotated or
    /// unbound one. Two `GetItem`s and a MAC (no KMS call while the branch key is cached).
    pub async fn holder(&self, handle: &SessionHandle) -> Result<Option<UserId>, SessionError> {
        let hash = digest(handle.expose());
        let Some(family) = self.store.sessions().find(&hash).await? else { return Ok(None) };
        if !family.active || family.current_handle != hash {
            return Ok(None);
        }
        let Some(binding) = &family.binding else {
            tracing::warn!(user = %family.user, "a session family without a binding MAC was presented; refused");
            return Ok(None);
        };
        let message = bound(&family.id, &family.user, family.client, &family.current_handle);
        match self.envelope.check_tag(&message, &session_binding_context(&family.user, &family.id), binding).await {
            Ok(()) => Ok(Some(family.user)),
            Err(CryptoError::Refused | CryptoError::UnknownBranchKey { .. }) => {
                tracing::warn!(user = %family.user, "a session family whose MAC fails was presented; refused");
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The caller a session cookie stands for: every scope, as a real sign-in. A request that
    /// `changes` something must carry an `Origin` among `origins`; reading needs none (a foreign
    /// page cannot read the answer).
    pub async fn caller(
        &self,
        handle: &SessionHandle,
        origin: Option<&str>,
        changes: bool,
        origins: &[String],
    ) -> Result<UserCaller, SessionError> {
        if changes {
            from_allowed_origin(origins, origin)?;
        }
        let user = self.holder(handle).await?.ok_or(SessionError::UnknownSession)?;
        Ok(UserCaller::by_session(user))
    }

    /// The MAC that binds family `id` of `user` to its current handle.
    async fn bind(&self, user: &UserId, id: &str, client: ClientKind, handle_hash: &str) -> Result<Tag, CryptoError> {
        self.envelope.tag(&bound(id, user, client, handle_hash), &session_binding_context(user, id)).await
    }
}

fn bound(id: &str, user: &UserId, client: ClientKind, handle_hash: &str) -> Vec<u8> {
    framed("keyward/session/v1", &[id, user.as_str(), client.as_str(), handle_hash])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::use_cases::testing::{Fixture, at_auth0};

    fn client() -> ClientAddress {
        ClientAddress::from_source_ip(Some("203.0.113.7"))
    }

    fn body(handle: &SessionHandle) -> Presented<'static> {
        Presented::Body(handle.clone())
    }

    #[tokio::test]
    async fn a_web_sign_in_completes_once_and_only_in_the_browser_that_started_it() {
        let fixture = Fixture::with_sandbox().await;
        let sessions = fixture.sessions();
        let login = sessions.begin_web_login(&client(), Some("http://127.0.0.1:8700/done")).await.unwrap();
        let (state, code) = at_auth0(&login.authorize_url, "ada@example.com").await;
        let nonce = login.browser_cookie.value.as_str();
        let callback =
            |browser_nonce| LoginCallback { state: Some(&state), browser_nonce, code: Some(&code), error: None };
        let signed_in = sessions.finish_web_login(&callback(Some(nonce))).await.unwrap();
        assert_eq!(signed_in.return_to.as_deref(), Some("http://127.0.0.1:8700/done"));
        assert_eq!(signed_in.cookies[0].name, SESSION_COOKIE);
        assert_eq!(signed_in.cookies[1], clear_browser_cookie(&state));
        assert_eq!(sessions.holder(&signed_in.handle).await.unwrap(), Some(signed_in.user.clone()));
        let replayed = sessions.finish_web_login(&callback(Some(nonce))).await;
        assert!(matches!(replayed, Err(SessionError::Redirect(RedirectError::InvalidState))), "a state works once");

        let login = sessions.begin_web_login(&client(), None).await.unwrap();
        let (state, code) = at_auth0(&login.authorize_url, "ada@example.com").await;
        let elsewhere = LoginCallback { state: Some(&state), browser_nonce: None, code: Some(&code), error: None };
        let refused = sessions.finish_web_login(&elsewhere).await;
        assert!(matches!(refused, Err(SessionError::Redirect(RedirectError::InvalidState))), "no browser binding");
        let outside = sessions.begin_web_login(&client(), Some("https://evil.example/")).await;
        assert!(matches!(outside, Err(SessionError::Redirect(RedirectError::InvalidReturnTo))));
    }

    #[tokio::test]
    async fn handles_rotate_and_a_reused_one_ends_the_family() {
        let fixture = Fixture::with_sandbox().await;
        let sessions = fixture.sessions();
        let first = fixture.signed_in("ada@example.com").await;
        let refreshed = sessions.refresh(&client(), &body(&first)).await.unwrap();
        assert!(!refreshed.access_token.expose().is_empty());
        assert_eq!(sessions.holder(&first).await.unwrap(), None, "the presented handle is spent");
        let reused = sessions.refresh(&client(), &body(&first)).await;
        assert!(matches!(reused, Err(SessionError::Reused)));
        let after = sessions.refresh(&client(), &body(&refreshed.next)).await;
        assert!(matches!(after, Err(SessionError::Revoked)), "the whole family ended");
        let unknown = sessions.refresh(&client(), &body(&SessionHandle::new("never-issued"))).await;
        assert!(matches!(unknown, Err(SessionError::UnknownSession)));
    }

    #[tokio::test]
    async fn two_uses_of_one_handle_at_once_end_the_family() {
        let fixture = Fixture::with_sandbox().await;
        let sessions = fixture.sessions();
        let handle = fixture.signed_in("ada@example.com").await;
        let address = client();
        let presented = body(&handle);
        let (one, other) = tokio::join!(sessions.refresh(&address, &presented), sessions.refresh(&address, &presented));
        let outcomes = [one, other];
        let won: Vec<&Refreshed> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        assert!(won.len() <= 1, "at most one rotation wins");
        for next in won {
            assert!(sessions.refresh(&client(), &body(&next.next)).await.is_err(), "the family ended for both");
        }
    }

    #[tokio::test]
    async fn logout_ends_the_session_and_is_idempotent() {
        let fixture = Fixture::with_sandbox().await;
        let sessions = fixture.sessions();
        let handle = fixture.signed_in("ada@example.com").await;
        sessions.logout(&body(&handle)).await.unwrap();
        sessions.logout(&body(&handle)).await.unwrap();
        assert!(matches!(sessions.refresh(&client(), &body(&handle)).await, Err(SessionError::Revoked)));
    }

    /// A session cookie rides along with any site's request: a page of another origin (or a
    /// request naming none, or `null`) neither refreshes nor ends the session.
    #[tokio::test]
    async fn a_cookie_counts_only_from_a_return_origin() {
        let fixture = Fixture::with_sandbox().await;
        let sessions = fixture.sessions();
        let handle = fixture.signed_in("ada@example.com").await;
        let cookie = |origin| Presented::Cookie { handle: handle.clone(), origin };
        for origin in [None, Some("null"), Some("https://evil.example"), Some("http://127.0.0.1:8700/")] {
            assert!(matches!(sessions.logout(&cookie(origin)).await, Err(SessionError::ForeignOrigin)), "{origin:?}");
            let refused = sessions.refresh(&client(), &cookie(origin)).await;
            assert!(matches!(refused, Err(SessionError::ForeignOrigin)), "{origin:?}");
        }
        assert!(sessions.holder(&handle).await.unwrap().is_some(), "the session is untouched");
        let refreshed = sessions.refresh(&client(), &cookie(Some("http://127.0.0.1:8700"))).await.unwrap();
        sessions
            .logout(&Presented::Cookie { handle: refreshed.next, origin: Some("http://127.0.0.1:8700") })
            .await
            .unwrap();
    }

    /// The cookie is a sign-in only for its family's user while the family's MAC checks; every
    /// edit a table writer can make (another user, another client, a planted handle, a made-up or
    /// missing MAC) signs nobody in. A write needs an allowed `Origin`; a read needs none.
    #[tokio::test]
    async fn a_session_cookie_signs_in_only_a_bound_family_and_writes_only_from_a_return_origin() {
        use crate::model::Credential;
        use crate::store::table::{Attr, Key};

        let fixture = Fixture::with_sandbox().await;
        let handle = fixture.signed_in("ada@example.com").await;
        let holders = SessionHolders { store: &fixture.store, envelope: &fixture.envelope };
        let origins = ["http://127.0.0.1:8700".to_owned()];
        let caller = holders.caller(&handle, None, false, &origins).await.unwrap();
        assert_eq!(caller.credential, Credential::SessionCookie);
        let foreign = holders.caller(&handle, Some("https://evil.example"), true, &origins).await;
        assert!(matches!(foreign, Err(SessionError::ForeignOrigin)));
        assert!(matches!(holders.caller(&handle, None, true, &origins).await, Err(SessionError::ForeignOrigin)));
        assert!(holders.caller(&handle, Some("http://127.0.0.1:8700"), true, &origins).await.is_ok());

        let family = fixture.store.sessions().find(&digest(handle.expose())).await.unwrap().unwrap();
        let table = fixture.store.table();
        let family_key = Key::new(format!("SESSION#{}", family.id), "FAMILY");
        let original = table.get(&family_key).await.unwrap().unwrap();
        let edited = |name: &str, value: Option<Attr>| {
            let item = original.clone();
            match value {
                Some(value) => item.with(name, value),
                None => crate::store::table::Item(item.0.into_iter().filter(|(n, _)| n != name).collect()),
            }
        };
        for (what, forged) in [
            ("another user", edited("user_id", Some(Attr::S("auth0|mallory".into())))),
            ("another client", edited("client", Some(Attr::S("device".into())))),
            ("a made-up MAC", edited("mac", Some(Attr::B(vec![7; 32])))),
            ("no MAC", edited("mac", None)),
        ] {
            table.put(forged, None).await.unwrap();
            let refused = holders.caller(&handle, None, false, &origins).await;
            assert!(matches!(refused, Err(SessionError::UnknownSession)), "{what}");
        }
        table.put(original, None).await.unwrap();
        assert_eq!(holders.holder(&handle).await.unwrap(), Some(family.user), "the family as keyward wrote it");
    }
}
