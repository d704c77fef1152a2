//! A signed-in user's account: the profile keyward keeps, and what the account allows. Operations
//! that hand keyward someone's secrets or act for them elsewhere (storing or testing a key,
//! connecting an account) need an email address Auth0 has verified: the access token says so, or
//! the profile recorded at sign-in does.

use crate::auth::{Identity, UserCaller};
use crate::model::Clock;
use crate::store::{ProfileUpdate, Store, StoreError, UserProfile};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("Verify your email address with the identity provider first, then sign in again.")]
    EmailUnverified,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Accounts<'a> {
    pub store: &'a Store,
    pub clock: &'a dyn Clock,
}

impl Accounts<'_> {
    /// The caller's profile, created on first sight of a valid token.
    pub async fn profile(&self, caller: &UserCaller) -> Result<UserProfile, AccountError> {
        if let Some(profile) = self.store.users().get(&caller.user).await? {
            return Ok(profile);
        }
        let update = ProfileUpdate {
            id: caller.user.clone(),
            email: caller.email.clone(),
            email_verified: caller.email_verified.unwrap_or(false),
            name: None,
            picture: None,
        };
        Ok(self.store.users().upsert(&update, self.clock.now()).await?)
    }

    /// Creates or refreshes the profile of a user who just signed in.
    pub async fn record_sign_in(&self, identity: &Identity) -> Result<UserProfile, StoreError> {
        let update = ProfileUpdate {
            id: identity.user.clone(),
            email: identity.email.clone(),
            email_verified: identity.email_verified,
            name: identity.name.clone(),
            picture: identity.picture.clone(),
        };
        self.store.users().upsert(&update, self.clock.now()).await
    }

    /// `Ok` when the user's email address is verified. The token decides when it says either way
    /// (it is newer than any profile: an address changed at Auth0 is unverified again); only a
    /// token that says nothing falls back on the profile recorded at sign-in.
    pub async fn require_verified_email(&self, caller: &UserCaller) -> Result<(), AccountError> {
        let verified = match caller.email_verified {
            Some(said) => said,
            None => self.store.users().get(&caller.user).await?.is_some_and(|p| p.email_verified),
        };
        if verified { Ok(()) } else { Err(AccountError::EmailUnverified) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;
    use crate::use_cases::testing::Fixture;

    fn claims(verified: Option<bool>) -> UserCaller {
        UserCaller::signed_in(UserId::parse("auth0|ada").unwrap(), Some("ada@example.com".into()), verified)
    }

    #[tokio::test]
    async fn a_verified_email_comes_from_the_token_or_the_profile_recorded_at_sign_in() {
        let fixture = Fixture::new().await;
        let accounts = fixture.accounts();
        assert!(accounts.require_verified_email(&claims(Some(true))).await.is_ok());
        for unsaid in [None, Some(false)] {
            let refused = accounts.require_verified_email(&claims(unsaid)).await;
            assert!(matches!(refused, Err(AccountError::EmailUnverified)), "{unsaid:?}");
        }
        let identity = Identity {
            user: claims(None).user,
            email: Some("ada@example.com".into()),
            email_verified: true,
            name: Some("Ada".into()),
            picture: None,
        };
        accounts.record_sign_in(&identity).await.unwrap();
        assert!(accounts.require_verified_email(&claims(None)).await.is_ok(), "the profile says so");
        let refused = accounts.require_verified_email(&claims(Some(false))).await;
        assert!(matches!(refused, Err(AccountError::EmailUnverified)), "a token saying false beats a stale profile");
    }

    #[tokio::test]
    async fn a_profile_is_made_on_first_sight_and_kept_after() {
        let fixture = Fixture::new().await;
        let accounts = fixture.accounts();
        let first = accounts.profile(&claims(Some(true))).await.unwrap();
        assert_eq!((first.email.as_deref(), first.email_verified), (Some("ada@example.com"), true));
        fixture.clock.advance(60);
        let later = accounts.profile(&claims(Some(false))).await.unwrap();
        assert_eq!(later, first, "a token's claims do not rewrite the stored profile");
    }
}
