//! Every sealed value in the table, with the context it opens under: the one home of which context
//! binds which item's secret. The use cases seal and open with these contexts; the keyring's
//! rewrap job sweeps the table with [`SealedValues`] and re-seals in place.

use super::table::{Attr, Changes, Condition, Cursor, Item, Key, Table};
use super::{StoreError, sealed_from, user_from};
use crate::crypto::{EncryptionContext, Purpose, Sealed};
use crate::model::{OAuthProvider, Provider, UserId};

/// A user's key of one LLM provider.
pub fn llm_key_context(user: &UserId, provider: Provider) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::LlmKey, provider.slug())
}

/// The Auth0 refresh token of one session family while `handle_hash` is its current handle: every
/// rotation re-seals it, so it opens only for the handle it was sealed with, and a handle item or a
/// `current` planted in the table by someone without the key opens nothing.
pub fn refresh_token_context(user: &UserId, family: &str, handle_hash: &str) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::Auth0Refresh, format!("{family}/{handle_hash}"))
}

/// The MAC that binds session family `family` to `user`: whoever holds its current handle is
/// signed in as `user`, which a table writer without the key cannot make anyone be.
pub fn session_binding_context(user: &UserId, family: &str) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::Session, family)
}

/// Which token of a connected account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionToken {
    Access,
    Refresh,
}

impl ConnectionToken {
    fn name(self) -> &'static str {
        match self {
            Self::Access => "access-token",
            Self::Refresh => "refresh-token",
        }
    }
}

/// A token of a user's connected account at `provider`.
pub fn connection_token_context(user: &UserId, provider: OAuthProvider, token: ConnectionToken) -> EncryptionContext {
    EncryptionContext::new(user, Purpose::Connection(provider), token.name())
}

/// The PKCE verifier of a redirect in flight, by the digest of its state (what its item's key
/// holds); `None` before anyone has signed in.
pub fn verifier_context(user: Option<&UserId>, state_digest: &str) -> EncryptionContext {
    let user = user.cloned().unwrap_or_else(UserId::signing_in);
    EncryptionContext::new(&user, Purpose::OAuthState, state_digest)
}

/// One sealed value found in the table.
#[derive(Debug, Clone)]
pub struct SealedValue {
    pub key: Key,
    pub attribute: &'static str,
    pub context: EncryptionContext,
    pub sealed: Sealed,
    /// The item's `version`, where its writers guard saves by one (connections): a replacement
    /// moves it on.
    pub version: Option<i64>,
}

/// A page of a sweep over the table's sealed values.
#[derive(Debug)]
pub struct SealedPage {
    pub values: Vec<SealedValue>,
    /// Where the sweep goes on; `None` when the table has been read to its end.
    pub next: Option<String>,
}

pub struct SealedValues<'a>(pub(super) &'a dyn Table);

impl SealedValues<'_> {
    /// The sealed values of one page of the table, from `after` (a previous page's `next`).
    pub async fn page(&self, after: Option<&str>, limit: u32) -> Result<SealedPage, StoreError> {
        let after = after.map(Cursor::decode_scan).transpose()?;
        let page = self.0.scan(after.as_ref(), limit).await?;
        let mut values = Vec::new();
        for item in &page.items {
            values.extend(sealed_in(item)?);
        }
        Ok(SealedPage { values, next: page.next.map(|c| c.encode()) })
    }

    /// Replaces one sealed value with `with`, only if the item still holds the value read (a
    /// concurrent write wins, and its value is already current). A versioned item's version moves
    /// too, so a writer that read the item before cannot save the old value back over this one.
    /// Returns whether it replaced it.
    pub async fn replace(&self, value: &SealedValue, with: &Sealed) -> Result<bool, StoreError> {
        let when = Condition::Equals(value.attribute, Attr::B(value.sealed.to_bytes()));
        let mut changes = Changes::default().set(value.attribute, Attr::B(with.to_bytes()));
        // Added, not set: an item's other sealed values are replaced by their own writes.
        if value.version.is_some() {
            changes = changes.add("version", 1);
        }
        match self.0.update(&value.key, changes, Some(when)).await {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The sealed values of one item, by its entity.
fn sealed_in(item: &Item) -> Result<Vec<SealedValue>, StoreError> {
    let key = item.key()?;
    let entity = item.opt_s("entity")?.unwrap_or_default();
    let found: Vec<(&'static str, EncryptionContext)> = match entity {
        "llm-key" => {
            let user = user_from(key.pk.strip_prefix("USER#").unwrap_or_default())?;
            let raw = key.sk.strip_prefix("LLMKEY#").unwrap_or_default();
            let provider = raw.parse().map_err(|_| StoreError::Corrupt(format!("unknown provider `{raw}`")))?;
            vec![("sealed", llm_key_context(&user, provider))]
        }
        "session" => {
            // The user is in no key of a family: an edited `user_id` (or `current`) opens nothing.
            let user = user_from(item.s("user_id")?)?;
            let family = key.pk.strip_prefix("SESSION#").unwrap_or_default();
            vec![("sealed", refresh_token_context(&user, family, item.s("current")?))]
        }
        "oauth-connection" => {
            let user = user_from(key.pk.strip_prefix("USER#").unwrap_or_default())?;
            let raw = key.sk.strip_prefix("OAUTH#").unwrap_or_default();
            let provider: OAuthProvider =
                raw.parse().map_err(|_| StoreError::Corrupt(format!("unknown connection provider `{raw}`")))?;
            [("access_token", ConnectionToken::Access), ("refresh_token", ConnectionToken::Refresh)]
                .into_iter()
                .map(|(attribute, token)| (attribute, connection_token_context(&user, provider, token)))
                .collect()
        }
        "state" => {
            let user = item.opt_s("user_id")?.map(user_from).transpose()?;
            let digest = key.pk.strip_prefix("STATE#").unwrap_or_default();
            vec![("sealed_verifier", verifier_context(user.as_ref(), digest))]
        }
        _ => Vec::new(),
    };
    let mut values = Vec::with_capacity(found.len());
    for (attribute, context) in found {
        if let Some(bytes) = item.opt_b(attribute)? {
            let version = item.opt_n("version")?;
            values.push(SealedValue { key: key.clone(), attribute, context, sealed: sealed_from(bytes)?, version });
        }
    }
    Ok(values)
}
