//! The OAuth redirects keyward starts (Auth0 sign-in, Google connect): a one-time random state,
//! a PKCE verifier kept sealed under it, and, for a sign-in, a binding to the browser that started
//! it. The state alone proves keyward issued the redirect; the binding proves the same browser
//! finishes it, so nobody can land a sign-in they started in someone else's browser (login CSRF).

use lambda_http::Request;
use secrecy::SecretString;
use subtle::ConstantTimeEq;

use crate::crypto::{CryptoError, EncryptionContext, Envelope, Purpose};
use crate::model::UserId;
use crate::model::random_secret;
use crate::oauth::Pkce;
use crate::session::cookie_value;
use crate::store::{OneTimeState, StatePurpose, Store, StoreError, state_digest};

/// How long a redirect may take between its start and its callback.
pub const STATE_TTL_SECS: i64 = 600;

/// A started redirect: what goes into the provider's URL, and the cookie that binds the browser.
pub struct Started {
    pub state: String,
    pub code_challenge: String,
    /// `Set-Cookie` for the starting browser, when the redirect is bound to it.
    pub browser_cookie: Option<String>,
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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// A verifier's context: the user who started the redirect (nobody yet, for a sign-in) and its state.
fn context(user: Option<&UserId>, state: &str) -> EncryptionContext {
    let user = user.cloned().unwrap_or_else(UserId::signing_in);
    EncryptionContext::new(&user, Purpose::OAuthState, state_digest(state))
}

/// The cookie binding one redirect's state to the browser (`__Host-`: Secure, Path=/, no Domain;
/// one per state, so two sign-ins in two tabs do not undo each other).
fn cookie_name(state: &str) -> String {
    format!("__Host-keyward-state-{}", &state_digest(state)[..16])
}

/// Starts a redirect for `purpose`.
pub async fn start(
    store: &Store,
    envelope: &Envelope,
    purpose: StatePurpose,
    user: Option<UserId>,
    return_to: Option<String>,
    bind_browser: bool,
    now: i64,
) -> Result<Started, RedirectError> {
    let state = random_secret();
    let pkce = Pkce::new();
    let sealed_verifier = envelope.seal(pkce.verifier.as_bytes(), &context(user.as_ref(), &state)).await?;
    let nonce = bind_browser.then(random_secret);
    let record = OneTimeState {
        purpose,
        user,
        return_to,
        sealed_verifier,
        browser: nonce.as_deref().map(state_digest),
        expires_at: now + STATE_TTL_SECS,
    };
    store.states().create(&state, &record).await?;
    let browser_cookie = nonce.map(|nonce| {
        format!("{}={nonce}; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age={STATE_TTL_SECS}", cookie_name(&state))
    });
    Ok(Started { code_challenge: pkce.challenge, state, browser_cookie })
}

/// Takes the state of a callback for `purpose` (once, whatever else the callback says), checks
/// the browser binding, and opens the verifier.
pub async fn finish(
    store: &Store,
    envelope: &Envelope,
    purpose: StatePurpose,
    state: &str,
    req: &Request,
) -> Result<Returned, RedirectError> {
    let taken = store.states().consume(state, purpose).await?.ok_or(RedirectError::InvalidState)?;
    if let Some(expected) = &taken.browser {
        let presented = cookie_value(req, &cookie_name(state)).map(|nonce| state_digest(&nonce));
        let same = presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.as_bytes())));
        if !same {
            tracing::info!("a callback came without the cookie of the browser that started it; refused");
            return Err(RedirectError::InvalidState);
        }
    }
    let verifier = envelope.open_text(&taken.sealed_verifier, &context(taken.user.as_ref(), state)).await?;
    Ok(Returned { user: taken.user, return_to: taken.return_to, verifier })
}

/// `Set-Cookie` that removes a callback's binding cookie from the browser.
pub fn clear_browser_cookie(state: &str) -> String {
    format!("{}=; HttpOnly; Secure; SameSite=Lax; Path=/; Max-Age=0", cookie_name(state))
}
