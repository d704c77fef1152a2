//! One-time states of OAuth redirects (an Auth0 sign-in, a connect link, a connection's consent):
//! created with a TTL,
//! consumed atomically exactly once. Only a hash of the state value is stored, the PKCE verifier
//! only sealed.

use super::table::{Attr, Condition, Item, Key, Table};
use super::{StoreError, sealed_attr, sealed_from, user_from};
use crate::crypto::Sealed;
use crate::model::{OAuthProvider, UserId};
use crate::secret::digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePurpose {
    Auth0Login,
    /// A link to connect an account at the provider, made for a signed-in user and opened in a
    /// browser.
    ConnectLink(OAuthProvider),
    /// The provider's consent screen, on its way back to keyward.
    Connect(OAuthProvider),
}

impl StatePurpose {
    fn stored(self) -> String {
        match self {
            Self::Auth0Login => "auth0-login".into(),
            Self::ConnectLink(provider) => format!("{provider}-link"),
            Self::Connect(provider) => format!("{provider}-connect"),
        }
    }
}

/// What a redirect's state stands for.
#[derive(Debug, Clone)]
pub struct OneTimeState {
    pub purpose: StatePurpose,
    /// The user who started the flow, when one was signed in.
    pub user: Option<UserId>,
    pub return_to: Option<String>,
    pub sealed_verifier: Sealed,
    /// The SHA-256 of the nonce the starting browser got in a cookie, when the flow is bound to it.
    pub browser: Option<String>,
    pub expires_at: i64,
}

pub struct States<'a>(pub(super) &'a dyn Table);

fn key(state: &str) -> Key {
    Key::new(format!("STATE#{}", digest(state)), "STATE")
}

impl States<'_> {
    /// Stores a new state. A collision with a live state (practically impossible for 128-bit
    /// random values) is refused rather than overwritten.
    pub async fn create(&self, state: &str, record: &OneTimeState) -> Result<(), StoreError> {
        let item = Item::new(&key(state))
            .with("entity", Attr::S("state".into()))
            .with("purpose", Attr::S(record.purpose.stored()))
            .with_opt("user_id", record.user.as_ref().map(|u| Attr::S(u.to_string())))
            .with_opt("return_to", record.return_to.clone().map(Attr::S))
            .with("sealed_verifier", sealed_attr(&record.sealed_verifier))
            .with_opt("browser", record.browser.clone().map(Attr::S))
            .with(super::table::EXPIRES_AT, Attr::N(record.expires_at));
        self.0.put(item, Some(Condition::Absent)).await
    }

    /// Takes a state for `purpose` exactly once: the first caller gets it, every later one (and any
    /// caller after expiry, or with a state made for another purpose) gets `None`.
    pub async fn consume(&self, state: &str, purpose: StatePurpose) -> Result<Option<OneTimeState>, StoreError> {
        let when = Condition::All(vec![Condition::Present, Condition::Equals("purpose", Attr::S(purpose.stored()))]);
        match self.0.delete(&key(state), Some(when)).await {
            Ok(Some(item)) => Ok(Some(OneTimeState {
                purpose,
                user: item.opt_s("user_id")?.map(user_from).transpose()?,
                return_to: item.opt_s("return_to")?.map(str::to_owned),
                sealed_verifier: sealed_from(item.b("sealed_verifier")?)?,
                browser: item.opt_s("browser")?.map(str::to_owned),
                expires_at: item.n(super::table::EXPIRES_AT)?,
            })),
            Ok(None) | Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
