//! Signing a user in once Auth0 has vouched for them: the profile upsert, and keyward sessions —
//! the Auth0 refresh token sealed under the user, the client holding only a rotating handle.

use lambda_http::Request;
use lambda_http::http::header;
use sha2::{Digest, Sha256};

use crate::app::AppState;
use crate::auth::Identity;
use crate::auth::auth0::TokenSet;
use crate::crypto::{EncryptionContext, Purpose};
use crate::http::ApiError;
use crate::model::{ClientKind, UserId, random_secret};
use crate::secret::{RefreshToken, SessionHandle};
use crate::store::{ProfileUpdate, SessionFamily, UserProfile, now_epoch};

/// The cookie holding a browser's session handle (`__Host-`: Secure, Path=/, no Domain).
pub const SESSION_COOKIE: &str = "__Host-keyward-session";

/// The session handle in a request's cookie, if the browser sent one.
pub fn cookie_handle(req: &Request) -> Option<SessionHandle> {
    cookie_value(req, SESSION_COOKIE).map(SessionHandle::new)
}

/// The value of the cookie `name` a request carries, if not empty.
pub fn cookie_value(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What the store keeps of a handle.
pub fn handle_hash(handle: &SessionHandle) -> String {
    hex::encode(Sha256::digest(handle.expose().as_bytes()))
}

/// The encryption context of a session family's Auth0 refresh token.
pub fn refresh_context(user: &UserId, family: &str) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::Auth0Refresh, family)
}

/// Completes a sign-in from Auth0's tokens for `client`: verifies the ID token (issued to that
/// client), records the profile and opens a session; returns who signed in and their first handle.
pub async fn complete(
    state: &AppState,
    tokens: &TokenSet,
    client: ClientKind,
) -> Result<(Identity, SessionHandle), ApiError> {
    let id_token = tokens.id_token.as_ref().ok_or_else(|| ApiError::Internal("Auth0 sent no ID token".into()))?;
    let client_id = match client {
        ClientKind::Web => &state.auth0.settings().web_client_id,
        ClientKind::Device => &state.auth0.settings().device_client_id,
    };
    let identity = state.tokens.verify_id_token(id_token.expose(), client_id).await?;
    record_sign_in(state, &identity).await?;
    let refresh =
        tokens.refresh_token.as_ref().ok_or_else(|| ApiError::Internal("Auth0 sent no refresh token".into()))?;
    let handle = start(state, &identity.user, client, refresh).await?;
    tracing::info!(user = %identity.user, client = client.as_str(), "signed in");
    Ok((identity, handle))
}

/// Creates or refreshes the profile of a user who just signed in.
async fn record_sign_in(state: &AppState, identity: &Identity) -> Result<UserProfile, ApiError> {
    let update = ProfileUpdate {
        id: identity.user.clone(),
        email: identity.email.clone(),
        email_verified: identity.email_verified,
        name: identity.name.clone(),
        picture: identity.picture.clone(),
    };
    Ok(state.store.users().upsert(&update, now_epoch()).await?)
}

/// Seals `refresh` and opens a new session family for it; returns the first handle.
async fn start(
    state: &AppState,
    user: &UserId,
    client: ClientKind,
    refresh: &RefreshToken,
) -> Result<SessionHandle, ApiError> {
    let family = random_secret();
    let handle = SessionHandle::new(random_secret());
    let sealed = state.envelope.seal(refresh.expose().as_bytes(), &refresh_context(user, &family)).await?;
    let record = SessionFamily {
        id: family,
        user: user.clone(),
        client: client.as_str().to_owned(),
        sealed_refresh: sealed,
        current_handle: handle_hash(&handle),
        active: true,
    };
    state.store.sessions().create(&record, now_epoch()).await?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_cookie_headers_never_panic(
            values in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..200), 0..4),
            planted in "[A-Za-z0-9_-]{1,60}",
        ) {
            let mut builder = lambda_http::http::Request::builder();
            for value in &values {
                if let Ok(value) = header::HeaderValue::from_bytes(value) {
                    builder = builder.header(header::COOKIE, value);
                }
            }
            let with_handle = format!("a=b; {SESSION_COOKIE}={planted}; c=d");
            let request = builder.header(header::COOKIE, with_handle).body(lambda_http::Body::Empty).unwrap();
            // Whatever came first, a handle is found, and it is one a header carried.
            let handle = cookie_handle(&request);
            proptest::prop_assert!(handle.is_some());
            let handle = handle.unwrap();
            let carried = request.headers().get_all(header::COOKIE).iter().any(|v| {
                v.to_str().is_ok_and(|v| v.contains(&format!("{SESSION_COOKIE}={}", handle.expose())))
            });
            proptest::prop_assert!(carried);
        }
    }
}
