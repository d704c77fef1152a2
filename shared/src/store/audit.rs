//! Audit entries: who did what to a user's secrets or money, and how it ended. Never the secret.

use super::table::{Attr, Item, Key, Table};
use super::{Listing, StoreError, newest_first, user_pk};
use crate::model::{OAuthProvider, UserId, random_id};

const PREFIX: &str = "AUDIT#";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
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

    /// A user's audit trail, newest first.
    pub async fn list(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing<AuditEntry>, StoreError> {
        newest_first(self.0, user, PREFIX, limit, cursor, parse).await
    }
}

fn parse(item: &Item) -> Result<AuditEntry, StoreError> {
    let id = item.s("actor_id")?;
    let actor = match item.s("actor_kind")? {
        "user" => Actor::User(super::user_from(id)?),
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
        Actor::User(id) => ("user", id.to_string()),
        Actor::Service(arn) => ("service", arn.clone()),
        Actor::Stripe => ("stripe", String::new()),
        Actor::System => ("system", String::new()),
    };
    // Entries of one second sort by the microsecond they were written, so a trail reads in order.
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or_default();
    let sk = format!("{PREFIX}{:012}.{micros:06}#{}", entry.at, random_id());
    Item::new(&Key::new(user_pk(user), sk))
        .with("entity", Attr::S("audit".into()))
        .with("at", Attr::N(entry.at))
        .with("actor_kind", Attr::S(actor_kind.into()))
        .with("actor_id", Attr::S(actor_id))
        .with("action", Attr::S(entry.action.name()))
        .with_opt("target", entry.target.clone().map(Attr::S))
        .with("outcome", Attr::S(entry.outcome.clone()))
}
