//! What a signed-in user's account allows. Operations that hand keyward someone's secrets or act
//! for them elsewhere (storing or testing a key, connecting Google) need an email address Auth0
//! has verified: the access token says so, or the profile recorded at sign-in does.

use crate::auth::Claims;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("Verify your email address with the identity provider first, then sign in again.")]
    EmailUnverified,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `Ok` when the user's email address is verified, by the token or by the stored profile.
pub async fn require_verified_email(store: &Store, claims: &Claims) -> Result<(), AccountError> {
    if claims.email_verified == Some(true) {
        return Ok(());
    }
    match store.users().get(&claims.user).await? {
        Some(profile) if profile.email_verified => Ok(()),
        _ => Err(AccountError::EmailUnverified),
    }
}
