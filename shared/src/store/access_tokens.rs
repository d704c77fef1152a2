//! Personal access tokens. Each is two items written together: the one a request's bearer finds by
//! the token's SHA-256 (`PAT#{hash}`), bound by a MAC under the keyring (the use case checks it) and
//! holding `last_used_at`, and its line in the user's list (`USER#{user}` / `PAT#{id}`), which holds
//! what the list shows. The token itself is never stored.

use std::collections::HashMap;

use super::audit::{AuditEntry, item as audit_item};
use super::table::{Attr, Condition, EXPIRES_AT, Index, Item, Key, PK, Query, SK, Table, Write};
use super::{StoreError, mark_used, user_from, user_pk};
use crate::model::UserId;

const PREFIX: &str = "PAT#";

fn bearer_key(hash: &str) -> Key {
    Key::new(format!("{PREFIX}{hash}"), "PAT")
}

fn listed_key(user: &UserId, id: &str) -> Key {
    Key::new(user_pk(user), format!("{PREFIX}{id}"))
}

/// The user's list version: every create moves it on, conditionally on the version its count read,
/// so two creates that counted the same list cannot both pass the per-user limit.
fn list_version_key(user: &UserId) -> Key {
    Key::new(user_pk(user), "PATLIST")
}

/// The version of a user's token list a count was read at (`None` before the first token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListVersion(Option<i64>);

/// The user's live tokens as a create counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveCount {
    pub live: usize,
    pub version: ListVersion,
}

/// What a bearer's hash finds: everything its MAC covers, and the MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub id: String,
    pub user: UserId,
    /// Scope names, sorted.
    pub scopes: Vec<String>,
    pub expires_at: i64,
    /// The branch key version and the MAC, as the keyring made them.
    pub mac_version: String,
    pub mac: Vec<u8>,
    pub last_used_at: Option<i64>,
}

/// A token as its owner's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedToken {
    pub id: String,
    pub name: String,
    /// The prefix and the last four characters.
    pub preview: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
}

pub struct AccessTokens<'a>(pub(super) &'a dyn Table);

impl AccessTokens<'_> {
    /// Stores a new token's two items and its audit entry, or none of them; `false` (nothing
    /// stored) when another create moved the list on since `counted` was read.
    pub async fn create(
        &self,
        hash: &str,
        grant: &TokenGrant,
        listed: &ListedToken,
        entry: &AuditEntry,
        counted: ListVersion,
    ) -> Result<bool, StoreError> {
        let bearer = Item::new(&bearer_key(hash))
            .with("entity", Attr::S("personal-token".into()))
            .with("token_id", Attr::S(grant.id.clone()))
            .with("user_id", Attr::S(grant.user.to_string()))
            .with("scopes", Attr::L(grant.scopes.clone()))
            .with("mac_version", Attr::S(grant.mac_version.clone()))
            .with("mac", Attr::B(grant.mac.clone()))
            .with(EXPIRES_AT, Attr::N(grant.expires_at));
        let line = Item::new(&listed_key(&grant.user, &grant.id))
            .with("entity", Attr::S("personal-token-line".into()))
            .with("hash", Attr::S(hash.to_owned()))
            .with("name", Attr::S(listed.name.clone()))
            .with("preview", Attr::S(listed.preview.clone()))
            .with("scopes", Attr::L(listed.scopes.clone()))
            .with("created_at", Attr::N(listed.created_at))
            .with(EXPIRES_AT, Attr::N(listed.expires_at));
        let ListVersion(read) = counted;
        let version = Item::new(&list_version_key(&grant.user))
            .with("entity", Attr::S("personal-token-list".into()))
            .with("version", Attr::N(read.unwrap_or(0) + 1));
        let unchanged = match read {
            Some(v) => Condition::Equals("version", Attr::N(v)),
            None => Condition::Absent,
        };
        let written = self
            .0
            .transact(vec![
                Write::Put { item: version, when: Some(unchanged) },
                Write::Put { item: bearer, when: Some(Condition::Absent) },
                Write::Put { item: line, when: Some(Condition::Absent) },
                Write::Put { item: audit_item(&grant.user, entry), when: None },
            ])
            .await;
        match written {
            Ok(()) => Ok(true),
            // Another create moved the list on, or is moving it now (DynamoDB's transaction conflict).
            Err(StoreError::ConditionFailed { failed }) if failed == [0] => Ok(false),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The grant a bearer's hash names, if it is live: one strongly consistent `GetItem`.
    pub async fn find(&self, hash: &str) -> Result<Option<TokenGrant>, StoreError> {
        let Some(item) = self.0.get(&bearer_key(hash)).await? else { return Ok(None) };
        Ok(Some(TokenGrant {
            id: item.s("token_id")?.to_owned(),
            user: user_from(item.s("user_id")?)?,
            scopes: item.list("scopes")?.to_vec(),
            expires_at: item.n(EXPIRES_AT)?,
            mac_version: item.s("mac_version")?.to_owned(),
            mac: item.b("mac")?.to_vec(),
            last_used_at: item.opt_n("last_used_at")?,
        }))
    }

    /// The user's tokens, oldest first, each with when its bearer item says it was last used.
    pub async fn list(&self, user: &UserId) -> Result<Vec<ListedToken>, StoreError> {
        let lines = self.lines(user).await?;
        let keys: Vec<Key> = lines.iter().map(|(hash, _)| bearer_key(hash)).collect();
        let mut used = HashMap::new();
        for item in self.0.get_many(&keys).await? {
            used.insert(item.s(PK)?.to_owned(), item.opt_n("last_used_at")?);
        }
        Ok(lines
            .into_iter()
            .map(|(hash, line)| ListedToken {
                last_used_at: used.get(&bearer_key(&hash).pk).copied().flatten(),
                ..line
            })
            .collect())
    }

    /// How many of the user's tokens expire after `now` (their lines alone, no record read), and
    /// the list's version, read first: a create after that bumps it.
    pub async fn count_live(&self, user: &UserId, now: i64) -> Result<LiveCount, StoreError> {
        let version = match self.0.get(&list_version_key(user)).await? {
            Some(item) => ListVersion(Some(item.n("version")?)),
            None => ListVersion(None),
        };
        let live = self.lines(user).await?.iter().filter(|(_, line)| line.expires_at > now).count();
        Ok(LiveCount { live, version })
    }

    /// The user's list lines, oldest first, each with its record's hash.
    async fn lines(&self, user: &UserId) -> Result<Vec<(String, ListedToken)>, StoreError> {
        let mut lines = Vec::new();
        let mut after = None;
        loop {
            let query = Query::partition(Index::Table, user_pk(user)).prefix(PREFIX).limit(100).after(after);
            let page = self.0.query(&query).await?;
            for item in &page.items {
                lines.push((item.s("hash")?.to_owned(), parse_line(item)?));
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(lines),
            }
        }
    }

    /// Deletes a token's two items, writing `entry` with them; `false` when the user has no live
    /// token of that id.
    pub async fn revoke(&self, user: &UserId, id: &str, entry: &AuditEntry) -> Result<bool, StoreError> {
        let line_key = listed_key(user, id);
        let Some(line) = self.0.get(&line_key).await? else { return Ok(false) };
        let hash = line.s("hash")?.to_owned();
        let gone = self
            .0
            .transact(vec![
                // The line must be the one just read (its sort key is its own), so a racing revoke
                // of the same token finds nothing the second time.
                Write::Delete {
                    key: line_key.clone(),
                    when: Some(Condition::Equals(SK, Attr::S(line_key.sk.clone()))),
                },
                Write::Delete { key: bearer_key(&hash), when: None },
                Write::Put { item: audit_item(user, entry), when: None },
            ])
            .await;
        match gone {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Marks the token of `hash` used at `now`, unless it was within `min_interval` seconds.
    pub async fn touch_last_used(&self, hash: &str, now: i64, min_interval: i64) -> Result<bool, StoreError> {
        mark_used(self.0, &bearer_key(hash), now, min_interval).await
    }
}

fn parse_line(item: &Item) -> Result<ListedToken, StoreError> {
    let sk = item.s(SK)?;
    Ok(ListedToken {
        // The id comes from the key, not from an attribute.
        id: sk.strip_prefix(PREFIX).unwrap_or(sk).to_owned(),
        name: item.s("name")?.to_owned(),
        preview: item.s("preview")?.to_owned(),
        scopes: item.list("scopes")?.to_vec(),
        created_at: item.n("created_at")?,
        expires_at: item.n(EXPIRES_AT)?,
        last_used_at: None,
    })
}
