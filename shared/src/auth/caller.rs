//! Who is calling, in one vocabulary: a user (by an Auth0 access token, a signed-in browser's
//! session cookie or a personal access token, with the scopes the credential carries) or an
//! internal service (by SigV4, with its grants, [`ServiceCaller`]). Routes declare what they need
//! as an [`Access`]; [`Access::admits`] and [`Need::admits`] are the checks.

use std::collections::BTreeSet;

use super::{AuthError, Grant, ServiceCaller};
use crate::model::{Credential, OAuthProvider, Provider, Scope, UserId};
use crate::store::Actor;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A user whose credential carries the scope.
    User(Scope),
    /// A user by a real sign-in (an Auth0 access token or the session cookie), never by a personal
    /// access token: creating and revoking tokens, connecting and disconnecting accounts.
    SignedIn,
    /// An internal service signing with IAM (the route's `AWS_IAM` authorization), with a grant.
    Service(Need),
}

/// The grant a service route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Credits,
    /// Keys of at least one provider; which keys it gets is the keys use case's rule.
    AnyLlmKey,
    /// The tokens of the connection provider the path's `{provider}` names.
    ConnectionInPath,
}

impl Need {
    /// Whether `caller` holds the grant; `in_path` is the connection provider the route's path
    /// names, for [`Need::ConnectionInPath`].
    pub fn admits(self, caller: &ServiceCaller, in_path: Option<OAuthProvider>) -> Result<(), AuthError> {
        let granted = match (self, in_path) {
            (Self::Credits, _) => caller.may(Grant::Credits),
            (Self::AnyLlmKey, _) => Provider::ALL.iter().any(|p| caller.may(Grant::LlmKey(*p))),
            (Self::ConnectionInPath, Some(provider)) => caller.may(Grant::Connection(provider)),
            (Self::ConnectionInPath, None) => false,
        };
        if granted { Ok(()) } else { Err(AuthError::GrantMissing) }
    }
}

/// The scopes a user credential carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// A sign-in: every scope there is.
    Every,
    Only(BTreeSet<Scope>),
}

impl Scopes {
    pub fn has(&self, scope: Scope) -> bool {
        match self {
            Self::Every => true,
            Self::Only(scopes) => scopes.contains(&scope),
        }
    }
}

/// A user calling, and by what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserCaller {
    pub user: UserId,
    pub email: Option<String>,
    /// `None` when the credential does not say (an Auth0 token without the claim, a personal
    /// access token): the stored profile decides.
    pub email_verified: Option<bool>,
    pub credential: Credential,
    pub scopes: Scopes,
}

impl UserCaller {
    /// A user signed in through Auth0, by its access token.
    pub fn signed_in(user: UserId, email: Option<String>, email_verified: Option<bool>) -> Self {
        Self { user, email, email_verified, credential: Credential::AccessToken, scopes: Scopes::Every }
    }

    /// A user signed in through Auth0 in this browser, by the session cookie keyward set then.
    pub fn by_session(user: UserId) -> Self {
        Self { user, email: None, email_verified: None, credential: Credential::SessionCookie, scopes: Scopes::Every }
    }

    /// A user by a personal access token carrying `scopes`.
    pub fn by_token(user: UserId, token_id: String, scopes: BTreeSet<Scope>) -> Self {
        let credential = Credential::PersonalToken(token_id);
        Self { user, email: None, email_verified: None, credential, scopes: Scopes::Only(scopes) }
    }

    /// Who the audit trail names.
    pub fn actor(&self) -> Actor {
        Actor::User { user: self.user.clone(), via: Some(self.credential.clone()) }
    }

    fn is_sign_in(&self) -> bool {
        matches!(self.credential, Credential::AccessToken | Credential::SessionCookie)
    }
}

impl Access {
    /// Whether `caller`, a user, may use a route of this access. A missing scope is
    /// [`AuthError::MissingScopes`]; a personal access token on a sign-in route,
    /// [`AuthError::SignInRequired`].
    pub fn admits(self, caller: &UserCaller) -> Result<(), AuthError> {
        match self {
            Self::User(scope) if !caller.scopes.has(scope) => {
                Err(AuthError::MissingScopes(vec![scope.as_str().into()]))
            }
            Self::SignedIn if !caller.is_sign_in() => Err(AuthError::SignInRequired),
            Self::Public | Self::User(_) | Self::SignedIn => Ok(()),
            Self::Service(_) => Err(AuthError::NoServiceIdentity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reaches_only_its_scopes_and_never_a_sign_in_route() {
        let user = UserId::parse("auth0|ada").unwrap();
        let token = UserCaller::by_token(user.clone(), "tok1".into(), [Scope::KeysRead].into());
        assert_eq!(Access::User(Scope::KeysRead).admits(&token), Ok(()));
        assert_eq!(
            Access::User(Scope::KeysWrite).admits(&token),
            Err(AuthError::MissingScopes(vec!["keys:write".into()]))
        );
        assert_eq!(Access::SignedIn.admits(&token), Err(AuthError::SignInRequired));

        let signed_in = UserCaller::signed_in(user, None, Some(true));
        for scope in Scope::ALL {
            assert_eq!(Access::User(scope).admits(&signed_in), Ok(()));
        }
        assert_eq!(Access::SignedIn.admits(&signed_in), Ok(()));
        assert_eq!(signed_in.actor(), Actor::User { user: signed_in.user.clone(), via: Some(Credential::AccessToken) });
    }
}
