//! The OAuth redirects keyward starts (an Auth0 sign-in, a connect link, a provider's consent): a
//! one-time random state, a PKCE verifier kept sealed under it, and, where a browser starts it, a
//! binding to that browser. The state alone proves keyward issued the redirect; the binding proves
//! the same browser finishes it, so nobody can land a flow they started in someone else's browser
//! (login CSRF). Where a redirect may end is checked here too: only on a configured origin.

use secrecy::SecretString;
use subtle::ConstantTimeEq;

use crate::crypto::{CryptoError, EncryptionContext, Envelope};
use crate::model::{Clock, Cookie, UserId, random_secret};
use crate::oauth::Pkce;
use crate::secret::digest;
use crate::store::{OneTimeState, StatePurpose, Store, StoreError, verifier_context};

/// How long a redirect may take between its start and its callback.
pub const STATE_TTL_SECS: i64 = 600;

/// A started redirect: what goes into the provider's URL, and the cookie that binds the browser.
pub struct Started {
    pub state: String,
    pub code_challenge: String,
    /// For the starting browser, when the redirect is bound to it.
    pub browser_cookie: Option<Cookie>,
}

/// A redirect back, its state consumed: who started it, where to return, the PKCE verifier.
pub struct Returned {
    pub user: Option<UserId>,
    pub return_to: Option<String>,
    pub verifier: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    /// No live state, a state of another purpose or made for another browser: the callback is
    /// refused and nothing else happens.
    #[error("this link was already used, has expired or was started elsewhere")]
    InvalidState,
    #[error("`returnTo` must be an absolute URL on one of keyward's allowed origins")]
    InvalidReturnTo,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A `returnTo` on one of `origins` (exactly: scheme, host and port), without credentials. No open
/// redirect: nothing else is ever a redirect's end.
pub fn allowed_return_to(origins: &[String], raw: &str) -> Result<String, RedirectError> {
    let url = url::Url::parse(raw).map_err(|_| RedirectError::InvalidReturnTo)?;
    let origin = url.origin().ascii_serialization();
    let allowed = origins.contains(&origin) && url.username().is_empty() && url.password().is_none();
    if allowed { Ok(url.to_string()) } else { Err(RedirectError::InvalidReturnTo) }
}

/// The cookie binding one redirect's state to the browser (one per state, so two flows in two
/// tabs do not undo each other).
pub fn browser_cookie_name(state: &str) -> String {
    format!("__Host-keyward-state-{}", &digest(state)[..16])
}

/// The cookie that removes a callback's binding from the browser.
pub fn clear_browser_cookie(state: &str) -> Cookie {
    Cookie::cleared(browser_cookie_name(state))
}

/// A verifier's context: the user who started the redirect (nobody yet, for a sign-in) and its state.
fn context(user: Option<&UserId>, state: &str) -> EncryptionContext {
    verifier_context(user, &digest(state))
}

/// Redirects, over the store and the envelope.
pub struct Redirects<'a> {
    pub store: &'a Store,
    pub envelope: &'a Envelope,
    pub clock: &'a dyn Clock,
}

impl Redirects<'_> {
    /// Starts a redirect for `purpose`, bound to the browser that follows it when `bind_browser`.
    pub async fn start(
        &self,
        purpose: StatePurpose,
        user: Option<UserId>,
        return_to: Option<String>,
        bind_browser: bool,
    ) -> Result<Started, RedirectError> {
        let state = random_secret();
        let pkce = Pkce::new();
        let sealed_verifier = self.envelope.seal(pkce.verifier.as_bytes(), &context(user.as_ref(), &state)).await?;
        let nonce = bind_browser.then(random_secret);
        let record = OneTimeState {
            purpose,
            user,
            return_to,
            sealed_verifier,
            browser: nonce.as_deref().map(digest),
            expires_at: self.clock.now() + STATE_TTL_SECS,
        };
        self.store.states().create(&state, &record).await?;
        let browser_cookie = nonce.map(|nonce| Cookie::new(browser_cookie_name(&state), nonce, STATE_TTL_SECS));
        Ok(Started { code_challenge: pkce.challenge, state, browser_cookie })
    }

    /// Takes the state of a callback for `purpose` (once, whatever else the callback says), checks
    /// the browser binding against the nonce the browser presented, and opens the verifier.
    pub async fn finish(
        &self,
        purpose: StatePurpose,
        state: &str,
        browser_nonce: Option<&str>,
    ) -> Result<Returned, RedirectError> {
        let taken = self.store.states().consume(state, purpose).await?.ok_or(RedirectError::InvalidState)?;
        if let Some(expected) = &taken.browser {
            let presented = browser_nonce.map(digest);
            let same = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
            if !same {
                tracing::info!("a callback came without the cookie of the browser that started it; refused");
                return Err(RedirectError::InvalidState);
            }
        }
        let verifier = self.envelope.open_text(&taken.sealed_verifier, &context(taken.user.as_ref(), state)).await?;
        Ok(Returned { user: taken.user, return_to: taken.return_to, verifier })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::model::{ManualClock, OAuthProvider, SystemClock};
    use crate::use_cases::testing::Fixture;

    #[test]
    fn return_to_must_be_on_an_allowed_origin() {
        let origins = ["https://app.example.com".to_owned()];
        assert_eq!(
            allowed_return_to(&origins, "https://app.example.com/done?x=1").unwrap(),
            "https://app.example.com/done?x=1"
        );
        for bad in [
            "https://app.example.com.evil.example/",
            "https://evil.example/?https://app.example.com",
            "http://app.example.com/",
            "https://user:pw@app.example.com/",
            "//app.example.com/",
            "javascript:alert(1)",
        ] {
            assert!(matches!(allowed_return_to(&origins, bad), Err(RedirectError::InvalidReturnTo)), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_state_works_once_for_its_purpose_in_its_browser_until_it_expires() {
        let fixture = Fixture::new().await;
        let redirects = fixture.redirects();
        let started = redirects.start(StatePurpose::Auth0Login, None, Some("https://app/".into()), true).await.unwrap();
        let nonce = started.browser_cookie.clone().unwrap().value;
        let wrong = redirects.finish(StatePurpose::Auth0Login, &started.state, Some("another-browser")).await;
        assert!(matches!(wrong, Err(RedirectError::InvalidState)), "another browser");
        let again = redirects.finish(StatePurpose::Auth0Login, &started.state, Some(&nonce)).await;
        assert!(matches!(again, Err(RedirectError::InvalidState)), "consumed by the refused attempt");

        let started = redirects.start(StatePurpose::Auth0Login, None, None, true).await.unwrap();
        let nonce = started.browser_cookie.clone().unwrap().value;
        let returned = redirects.finish(StatePurpose::Auth0Login, &started.state, Some(&nonce)).await.unwrap();
        assert_eq!(crate::oauth::challenge_of(returned.verifier.expose_secret()), started.code_challenge);

        let user = UserId::parse("auth0|ada").unwrap();
        let link = redirects
            .start(StatePurpose::ConnectLink(OAuthProvider::Google), Some(user.clone()), None, false)
            .await
            .unwrap();
        let other = redirects.finish(StatePurpose::Auth0Login, &link.state, None).await;
        assert!(matches!(other, Err(RedirectError::InvalidState)), "another purpose");
        // Started longer ago than a state lives (the store reads items' expiry on the system clock).
        let long_ago = ManualClock::at(SystemClock.now() - STATE_TTL_SECS - 1);
        let earlier = Redirects { clock: &long_ago, ..fixture.redirects() };
        let link = earlier
            .start(StatePurpose::ConnectLink(OAuthProvider::Google), Some(user.clone()), None, false)
            .await
            .unwrap();
        let expired = redirects.finish(StatePurpose::ConnectLink(OAuthProvider::Google), &link.state, None).await;
        assert!(matches!(expired, Err(RedirectError::InvalidState)), "expired");
    }
}
