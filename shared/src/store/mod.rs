//! Storage at the domain level: users, LLM keys, OAuth connections, one-time states, Stripe events
//! with the credit ledger, audit entries and the keyring's branch keys, all in one single table.
//!
//! Handlers see only the repositories ([`Store::users`], [`Store::llm_keys`], …). Each repository
//! is written once over the [`table::Table`] primitives, which three adapters implement: DynamoDB
//! ([`DynamoTable`]); with the `embedded-store` feature, an embedded SQLite file (`EmbeddedTable`)
//! for local mode; and a map in memory ([`MemoryTable`]) for the capacity model and benches. The
//! key schema is documented in `docs/storage.md`.

mod access_tokens;
mod audit;
mod credits;
mod devices;
mod dynamo;
#[cfg(any(test, feature = "embedded-store"))]
mod embedded;
mod keyring;
mod limits;
mod llm_keys;
mod memory;
mod oauth;
mod payments;
mod sealed_values;
mod sessions;
mod states;
pub mod table;
mod users;

use std::sync::Arc;

pub use access_tokens::{AccessTokens, ListedToken, TokenGrant};
pub use audit::{Actor, Audit, AuditAction, AuditEntry};
pub(crate) use credits::backoff;
pub use credits::{
    Account, Applied, CreditChange, Credits, CustomerLink, LedgerEntry, LedgerKind, OnceKey, Subscription,
    SubscriptionApplied,
};
pub use devices::{DeviceGrant, Devices};
pub use dynamo::{DynamoTable, create_table};
#[cfg(any(test, feature = "embedded-store"))]
pub use embedded::EmbeddedTable;
pub use keyring::{Keyring, RewrapProgress, RewrapProgresses};
pub use limits::{Allowance, Limits};
pub use llm_keys::{KeyStatus, LlmKeys, NewLlmKey, StoredLlmKey, TestResult};
pub use memory::MemoryTable;
pub use oauth::{ConnectionStatus, OAuthConnection, OAuthConnections};
pub use payments::{DisputeRecord, InvoiceGrant, Payment, PaymentHistory, Payments, RefundRecord, Settled, Settlement};
pub use sealed_values::{
    ConnectionToken, SealedPage, SealedValue, SealedValues, connection_token_context, llm_key_context,
    refresh_token_context, session_binding_context, verifier_context,
};
pub use sessions::{SESSION_IDLE_SECS, SessionFamily, Sessions};
pub use states::{OneTimeState, StatePurpose, States};
pub use table::{Cursor, Table, now_epoch, now_epoch_millis};
pub use users::{ProfileUpdate, UserProfile, Users};

use crate::crypto::Sealed;
use crate::model::{OAuthProvider, UserId};
use table::Key;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold; `failed` lists the failing writes of a transaction.
    #[error("condition not met")]
    ConditionFailed { failed: Vec<usize> },
    /// Another transaction was changing the same items; retrying helps.
    #[error("conflicting concurrent transaction")]
    Conflict,
    #[error("the store is throttling requests")]
    Throttled,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is malformed: {0}")]
    Corrupt(String),
    /// A request the store refused as invalid: a bug in keyward, never user input.
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// A client's paging cursor that does not continue the listing it was given for.
    #[error("the paging cursor does not belong to this listing")]
    InvalidCursor,
    /// An item whose attribute disagrees with what its key says: keyward never writes one, so
    /// someone with table access did. Its content is never trusted.
    #[error("item {key} was tampered with: its `{attribute}` disagrees with its key")]
    Tampered { key: String, attribute: &'static str },
}

/// A page of domain records and the opaque cursor of the next page.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// keyward's storage: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Store {
    table: Arc<dyn Table>,
}

impl Store {
    pub fn new(table: Arc<dyn Table>) -> Self {
        Self { table }
    }

    pub fn backend(&self) -> &'static str {
        self.table.backend()
    }

    pub fn users(&self) -> Users<'_> {
        Users(self.table.as_ref())
    }

    pub fn llm_keys(&self) -> LlmKeys<'_> {
        LlmKeys(self.table.as_ref())
    }

    /// The users' connected accounts at `provider`.
    pub fn oauth_connections(&self, provider: OAuthProvider) -> OAuthConnections<'_> {
        OAuthConnections(self.table.as_ref(), provider)
    }

    pub fn states(&self) -> States<'_> {
        States(self.table.as_ref())
    }

    pub fn credits(&self) -> Credits<'_> {
        Credits(self.table.as_ref())
    }

    pub fn payments(&self) -> Payments<'_> {
        Payments(self.table.as_ref())
    }

    pub fn sessions(&self) -> Sessions<'_> {
        Sessions(self.table.as_ref())
    }

    pub fn devices(&self) -> Devices<'_> {
        Devices(self.table.as_ref())
    }

    pub fn limits(&self) -> Limits<'_> {
        Limits(self.table.as_ref())
    }

    pub fn access_tokens(&self) -> AccessTokens<'_> {
        AccessTokens(self.table.as_ref())
    }

    pub fn audit(&self) -> Audit<'_> {
        Audit(self.table.as_ref())
    }

    pub fn keyring(&self) -> Keyring<'_> {
        Keyring(self.table.as_ref())
    }

    /// The table itself, for maintenance and for tests that play someone editing items directly.
    pub fn table(&self) -> &dyn Table {
        self.table.as_ref()
    }

    /// Every sealed value in the table, for the keyring's rewrap job.
    pub fn sealed_values(&self) -> SealedValues<'_> {
        SealedValues(self.table.as_ref())
    }
}

/// The partition holding everything of one user.
fn user_pk(user: &UserId) -> String {
    format!("USER#{user}")
}

fn sealed_attr(sealed: &Sealed) -> table::Attr {
    table::Attr::B(sealed.to_bytes())
}

fn sealed_from(bytes: &[u8]) -> Result<Sealed, StoreError> {
    Sealed::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// One page of a user's time-ordered entries under `prefix`, newest first. A cursor made for
/// another listing (another user's, say) is refused, so a client can never page into someone
/// else's items.
async fn newest_first<T>(
    table: &dyn Table,
    user: &UserId,
    prefix: &str,
    limit: u32,
    cursor: Option<&str>,
    parse: fn(&table::Item) -> Result<T, StoreError>,
) -> Result<Listing<T>, StoreError> {
    let query = table::Query::partition(table::Index::Table, user_pk(user)).prefix(prefix).descending().limit(limit);
    let after = cursor.map(|c| Cursor::decode(c, &query)).transpose()?;
    let query = query.after(after);
    let page = table.query(&query).await?;
    Ok(Listing { items: page.items.iter().map(parse).collect::<Result<_, _>>()?, next: page.next.map(|c| c.encode()) })
}

/// Sets an existing item's `last_used_at` to `now` unless it was set within `min_interval` seconds;
/// whether it did. The item's existence is said with key attributes only and nothing is read back,
/// so a role that may name no attribute but `last_used_at` can make the mark.
async fn mark_used(table: &dyn Table, key: &Key, now: i64, min_interval: i64) -> Result<bool, StoreError> {
    use table::{Attr, Changes, Condition, SK};
    let exists = Condition::Equals(SK, Attr::S(key.sk.clone()));
    let when = Condition::All(vec![exists, Condition::MissingOrBelow("last_used_at", now - min_interval + 1)]);
    match table.update_blind(key, Changes::default().set("last_used_at", Attr::N(now)), Some(when)).await {
        Ok(()) => Ok(true),
        Err(StoreError::ConditionFailed { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Checks that an item's `attribute` says what its key says (`expected`), or refuses the item.
fn bound_to_key(item: &table::Item, attribute: &'static str, expected: &str) -> Result<(), StoreError> {
    if item.opt_s(attribute)? == Some(expected) {
        return Ok(());
    }
    let key = item.key().map_or_else(|_| "?".to_owned(), |k| loggable_key(&k));
    Err(StoreError::Tampered { key, attribute })
}

/// A key as logs may show it: a user's partition names the user (an identifier); any other
/// partition only its kind, since some (`HANDLE#`, `STATE#`) are digests of credentials.
fn loggable_key(key: &Key) -> String {
    match key.pk.strip_prefix("USER#") {
        Some(_) => format!("{}/{}", key.pk, key.sk),
        None => format!("{}#…/{}", key.pk.split('#').next().unwrap_or_default(), key.sk),
    }
}

/// A read whose item was tampered with, refused as if it were absent (and logged at WARN); other
/// errors stay errors.
fn refuse_tampered<T>(parsed: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match parsed {
        Ok(value) => Ok(Some(value)),
        Err(StoreError::Tampered { key, attribute }) => {
            tracing::warn!(item = %key, attribute, "refused an item whose attributes disagree with its key");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn user_from(raw: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}
