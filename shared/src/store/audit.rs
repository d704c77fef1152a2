//! Audit entries: who did what to a user's secrets or money, and how it ended. Never the secret.
//!
//! A user's entries are spread over [`SHARDS`] partitions of their own (`AUDIT#{user}#{shard}`), so
//! a busy user's fetches are not capped at one partition's write limit (1,000 writes a second;
//! `docs/capacity.md`); a listing merges them, with the entries written before the split (in the
//! user's partition) as one more source.

use std::time::{SystemTime, UNIX_EPOCH};

use super::table::{Attr, Cursor, Index, Item, Key, PK, Query, SK, Table};
use super::{Listing, StoreError, user_pk};
use crate::model::{Credential, OAuthProvider, UserId, random_id};

const PREFIX: &str = "AUDIT#";
/// Partitions per user's audit trail.
pub const SHARDS: u32 = 8;

fn shard_pk(user: &UserId, shard: u32) -> String {
    format!("{PREFIX}{user}#{shard}")
}

/// Where a user's entries are: every shard, and the user's own partition (entries from before the split).
fn sources(user: &UserId) -> impl Iterator<Item = String> + '_ {
    std::iter::once(user_pk(user)).chain((0..SHARDS).map(move |shard| shard_pk(user, shard)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A user, with the credential they acted by; `None` for a redirect they started (an OAuth
    /// callback) and for entries written before credentials were recorded.
    User {
        user: UserId,
        via: Option<Credential>,
    },
    /// An internal service, by its IAM principal ARN.
    Service(String),
    Stripe,
    System,
}

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    LlmKeyPut,
    LlmKeyTest,
    LlmKeyDelete,
    LlmKeyDeleteAll,
    /// An internal service read the user's keys.
    LlmKeyFetch,
    Connect(OAuthProvider),
    Disconnect(OAuthProvider),
    /// keyward refreshed a connection's access token (and failed, when the outcome says so).
    ConnectionRefresh(OAuthProvider),
    /// An internal service read a connection's access token.
    ConnectionTokenFetch(OAuthProvider),
    /// A Stripe event tried to link a customer to another user than its own.
    StripeCustomerLink,
    PersonalTokenCreate,
    PersonalTokenRevoke,
    /// A token reported leaked (by GitHub's secret scanning) and revoked for it.
    PersonalTokenLeaked,
}

impl AuditAction {
    /// The stored name (`llm_key.put`, `google.connect`, `microsoft_token.fetch`).
    pub fn name(self) -> String {
        match self {
            Self::LlmKeyPut => "llm_key.put".into(),
            Self::LlmKeyTest => "llm_key.test".into(),
            Self::LlmKeyDelete => "llm_key.delete".into(),
            Self::LlmKeyDeleteAll => "llm_key.delete_all".into(),
            Self::LlmKeyFetch => "llm_key.fetch".into(),
            Self::Connect(provider) => format!("{provider}.connect"),
            Self::Disconnect(provider) => format!("{provider}.disconnect"),
            Self::ConnectionRefresh(provider) => format!("{provider}.refresh"),
            Self::ConnectionTokenFetch(provider) => format!("{provider}_token.fetch"),
            Self::StripeCustomerLink => "stripe.customer_link".into(),
            Self::PersonalTokenCreate => "personal_token.create".into(),
            Self::PersonalTokenRevoke => "personal_token.revoke".into(),
            Self::PersonalTokenLeaked => "personal_token.leaked".into(),
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        let fixed = [
            Self::LlmKeyPut,
            Self::LlmKeyTest,
            Self::LlmKeyDelete,
            Self::LlmKeyDeleteAll,
            Self::LlmKeyFetch,
            Self::StripeCustomerLink,
            Self::PersonalTokenCreate,
            Self::PersonalTokenRevoke,
            Self::PersonalTokenLeaked,
        ];
        let per_provider = OAuthProvider::ALL.iter().flat_map(|&p| {
            [Self::Connect(p), Self::Disconnect(p), Self::ConnectionRefresh(p), Self::ConnectionTokenFetch(p)]
        });
        fixed
            .into_iter()
            .chain(per_provider)
            .find(|action| action.name() == raw)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action `{raw}`")))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: Actor,
    pub action: AuditAction,
    /// What it happened to, e.g. a provider.
    pub target: Option<String>,
    /// How it ended: `ok`, or the code of what went wrong (`invalid_key`, `invalid_grant`).
    pub outcome: String,
}

pub struct Audit<'a>(pub(super) &'a dyn Table);

impl Audit<'_> {
    pub async fn append(&self, user: &UserId, entry: &AuditEntry) -> Result<(), StoreError> {
        self.0.put(item(user, entry), None).await
    }

    /// A user's audit trail, newest first. The cursor names the user's partition and the last
    /// entry's sort key, so one made for another user's trail is refused.
    pub async fn list(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing<AuditEntry>, StoreError> {
        let home = Query::partition(Index::Table, user_pk(user)).prefix(PREFIX).descending().limit(limit);
        let below =
            cursor.map(|c| Cursor::decode(c, &home)).transpose()?.map(|c| c.0.get(SK).cloned().unwrap_or_default());
        let pages = sources(user).map(|partition| {
            let start =
                below.clone().map(|sk| Cursor([(PK.to_owned(), partition.clone()), (SK.to_owned(), sk)].into()));
            let query = Query { partition, ..home.clone() }.after(start);
            async move { self.0.query(&query).await }
        });
        let mut more = false;
        let mut items = Vec::new();
        for page in futures::future::try_join_all(pages).await? {
            more |= page.next.is_some();
            items.extend(page.items);
        }
        items.sort_by(|a, b| b.s(SK).unwrap_or_default().cmp(a.s(SK).unwrap_or_default()));
        more |= items.len() > home.limit as usize;
        items.truncate(home.limit as usize);
        let next = match items.last() {
            Some(last) if more => {
                Some(Cursor([(PK.to_owned(), user_pk(user)), (SK.to_owned(), last.s(SK)?.to_owned())].into()).encode())
            }
            _ => None,
        };
        Ok(Listing { items: items.iter().map(parse).collect::<Result<_, _>>()?, next })
    }
}

fn parse(item: &Item) -> Result<AuditEntry, StoreError> {
    let id = item.s("actor_id")?;
    let actor = match item.s("actor_kind")? {
        "user" => Actor::User { user: super::user_from(id)?, via: item.opt_s("via")?.and_then(Credential::parse) },
        "service" => Actor::Service(id.to_owned()),
        "stripe" => Actor::Stripe,
        _ => Actor::System,
    };
    Ok(AuditEntry {
        at: item.n("at")?,
        actor,
        action: AuditAction::parse(item.s("action")?)?,
        target: item.opt_s("target")?.map(str::to_owned),
        outcome: item.s("outcome")?.to_owned(),
    })
}

/// The item of one audit entry; also a write of another repository's transaction, so an action
/// and its audit entry are stored together or not at all.
pub(super) fn item(user: &UserId, entry: &AuditEntry) -> Item {
    let (actor_kind, actor_id) = match &entry.actor {
        Actor::User { user, .. } => ("user", user.to_string()),
        Actor::Service(arn) => ("service", arn.clone()),
        Actor::Stripe => ("stripe", String::new()),
        Actor::System => ("system", String::new()),
    };
    let sk = sort_key(entry.at, SystemTime::now());
    Item::new(&Key::new(shard_pk(user, rand::random_range(0..SHARDS)), sk))
        .with("entity", Attr::S("audit".into()))
        .with("at", Attr::N(entry.at))
        .with("actor_kind", Attr::S(actor_kind.into()))
        .with("actor_id", Attr::S(actor_id))
        .with_opt(
            "via",
            match &entry.actor {
                Actor::User { via, .. } => via.as_ref().map(|v| Attr::S(v.stored())),
                _ => None,
            },
        )
        .with("action", Attr::S(entry.action.name()))
        .with_opt("target", entry.target.clone().map(Attr::S))
        .with("outcome", Attr::S(entry.outcome.clone()))
}

/// Entries sort by their time, then by when they were written: the whole wall-clock microsecond,
/// not its fraction of a second, so an entry whose write crosses into the next second still sorts
/// after those written before it.
fn sort_key(at: i64, written: SystemTime) -> String {
    let micros = written.duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default();
    format!("{PREFIX}{at:012}.{micros:016}#{}", random_id())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_of_one_second_sort_in_the_order_they_were_written() {
        let at = 1_800_000_000;
        let end_of_second = UNIX_EPOCH + Duration::from_micros(1_800_000_000_999_999);
        let writes = [end_of_second, end_of_second + Duration::from_micros(2), end_of_second + Duration::from_secs(1)];
        let keys = writes.map(|written| sort_key(at, written));
        assert!(keys.is_sorted(), "{keys:?}");
        assert!(sort_key(at - 1, writes[2]) < keys[0], "an earlier time sorts first, however late written");
    }
}
