//! Credit balances, their immutable ledger, and exactly-once markers for Stripe events, Stripe
//! objects and idempotency keys.
//!
//! A change is one transaction: the balance item (guarded by its version), a new ledger entry
//! recording the balance after it, and a marker per once-key that must not exist yet. Either all
//! land or none does, so the balance always equals the sum of the ledger.

use std::time::Duration;

use super::table::{
    Attr, Changes, Condition, EXPIRES_AT, GSI1PK, GSI1SK, Index, Item, Key, Query, Table, Write, now_epoch,
};
use super::{Listing, StoreError, newest_first, random_id, user_from, user_pk};
use crate::model::UserId;

const ACCOUNT: &str = "CREDITS";
const LEDGER: &str = "LEDGER#";
const STRIPE_CUSTOMER: &str = "STRIPE_CUSTOMER";
const SUBSCRIPTION: &str = "SUBSCRIPTION";
/// Optimistic retries under contention before giving up with a retryable conflict.
const MAX_ATTEMPTS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Purchase,
    Allowance,
    Refund,
    Consume,
    Adjustment,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Allowance => "allowance",
            Self::Refund => "refund",
            Self::Consume => "consume",
            Self::Adjustment => "adjustment",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        [Self::Purchase, Self::Allowance, Self::Refund, Self::Consume, Self::Adjustment]
            .into_iter()
            .find(|k| k.as_str() == raw)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown ledger kind `{raw}`")))
    }
}

/// A change to apply: `amount` is signed (a consumption is negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditChange {
    pub kind: LedgerKind,
    pub amount: i64,
    /// What caused it: a Stripe event id, an idempotency key, …
    pub source: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub id: String,
    pub kind: LedgerKind,
    pub amount: i64,
    pub balance_after: i64,
    pub source: String,
    pub at: i64,
}

/// Something that may take effect only once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnceKey {
    StripeEvent(String),
    /// A Stripe object (checkout session, invoice, refund): Stripe can send two events for one change.
    StripeObject(String),
    /// A caller's idempotency key, per user.
    Idempotency(UserId, String),
}

impl OnceKey {
    fn key(&self) -> Key {
        let pk = match self {
            Self::StripeEvent(id) => format!("ONCE#stripe-event#{id}"),
            Self::StripeObject(id) => format!("ONCE#stripe-object#{id}"),
            Self::Idempotency(user, id) => format!("ONCE#idempotency#{user}#{id}"),
        };
        Key::new(pk, "ONCE")
    }

    /// How long the marker must outlive its effect. Stripe retries for 3 days and events can be
    /// resent by hand for 30; idempotency keys are a client's retry window.
    fn retention(&self) -> Duration {
        match self {
            Self::StripeEvent(_) | Self::StripeObject(_) => Duration::from_secs(400 * 86_400),
            Self::Idempotency(..) => Duration::from_secs(7 * 86_400),
        }
    }

    fn marker(&self, at: i64, ledger: Option<&LedgerEntry>) -> Item {
        Item::new(&self.key())
            .with("entity", Attr::S("once".into()))
            .with("at", Attr::N(at))
            // Retention runs from when the marker is written, not from the event's own time: a late
            // replay of an old event must still find its marker.
            .with(EXPIRES_AT, Attr::N(now_epoch() + self.retention().as_secs() as i64))
            .with_opt("ledger_id", ledger.map(|l| Attr::S(l.id.clone())))
            .with_opt("balance_after", ledger.map(|l| Attr::N(l.balance_after)))
    }
}

/// A user's balance and the version guarding it (0 before the first change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    pub balance: i64,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied(LedgerEntry),
    /// A once-key was already used; `balance_after` is what the first application left.
    Duplicate {
        balance_after: Option<i64>,
    },
    /// The change would take the balance below zero, which only a refund may do.
    Insufficient {
        balance: i64,
    },
}

/// A user's plan, as the newest subscription event applied set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: String,
    /// `free`, `pro`, `enterprise`.
    pub tier: String,
    /// Stripe's status (`active`, `past_due`, `canceled`, …).
    pub status: String,
    /// The `created` of the event that set it: an older event never overwrites a newer one.
    pub event_created: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionApplied {
    Applied,
    /// The event was applied before.
    Duplicate,
    /// A newer event set the plan already; this one is recorded and has no effect.
    Stale,
}

/// A paid checkout, kept so its refunds can be clawed back in proportion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub user: UserId,
    pub credits: i64,
    /// What was paid, in the currency's smallest unit.
    pub amount_total: i64,
}

pub struct Credits<'a>(pub(super) &'a dyn Table);

impl Credits<'_> {
    pub async fn account(&self, user: &UserId) -> Result<Account, StoreError> {
        match self.0.get(&Key::new(user_pk(user), ACCOUNT)).await? {
            None => Ok(Account::default()),
            Some(item) => Ok(Account { balance: item.n("balance")?, version: item.n("version")? }),
        }
    }

    /// Applies `change` once for all of `once`, atomically with its ledger entry.
    pub async fn apply(&self, user: &UserId, change: &CreditChange, once: &[OnceKey]) -> Result<Applied, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let account = self.account(user).await?;
            let balance_after = account.balance + change.amount;
            if balance_after < 0 && change.amount < 0 && change.kind != LedgerKind::Refund {
                return match self.first_used(once).await? {
                    Some(duplicate) => Ok(duplicate),
                    None => Ok(Applied::Insufficient { balance: account.balance }),
                };
            }
            let entry = LedgerEntry {
                id: random_id(),
                kind: change.kind,
                amount: change.amount,
                balance_after,
                source: change.source.clone(),
                at: change.at,
            };
            let mut writes = vec![
                Write::Update {
                    key: Key::new(user_pk(user), ACCOUNT),
                    changes: Changes::default()
                        .set("entity", Attr::S("credits".into()))
                        .set("balance", Attr::N(balance_after))
                        .set("version", Attr::N(account.version + 1)),
                    when: Some(match account.version {
                        0 => Condition::Absent,
                        v => Condition::Equals("version", Attr::N(v)),
                    }),
                },
                Write::Put { item: ledger_item(user, &entry), when: Some(Condition::Absent) },
            ];
            writes.extend(
                once.iter()
                    .map(|k| Write::Put { item: k.marker(change.at, Some(&entry)), when: Some(Condition::Absent) }),
            );
            match self.0.transact(writes).await {
                Ok(()) => return Ok(Applied::Applied(entry)),
                // Writes 0 and 1 are the balance and the ledger entry; a failure past them is a used once-key.
                Err(StoreError::ConditionFailed { failed }) if failed.iter().any(|i| *i >= 2) => {
                    let key = failed.iter().find(|i| **i >= 2).and_then(|i| once.get(i - 2));
                    let duplicate = match key {
                        Some(key) => self.used(key).await?,
                        None => None,
                    };
                    return Ok(duplicate.unwrap_or(Applied::Duplicate { balance_after: None }));
                }
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => backoff(attempt).await,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    /// Marks `key` used without a balance change (e.g. a Stripe event keyward ignores). Returns
    /// false if it was used already.
    pub async fn mark_once(&self, key: &OnceKey, at: i64) -> Result<bool, StoreError> {
        match self.0.put(key.marker(at, None), Some(Condition::Absent)).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records which user a Stripe customer is (from `client_reference_id`/metadata of their events).
    pub async fn link_customer(&self, customer: &str, user: &UserId) -> Result<(), StoreError> {
        let item = Item::new(&Key::new(user_pk(user), STRIPE_CUSTOMER))
            .with("entity", Attr::S("stripe-customer".into()))
            .with("customer_id", Attr::S(customer.to_owned()))
            .with("user_id", Attr::S(user.to_string()))
            .with(GSI1PK, Attr::S(format!("{STRIPE_CUSTOMER}#{customer}")))
            .with(GSI1SK, Attr::S(user_pk(user)));
        self.0.put(item, None).await
    }

    /// The user a Stripe customer belongs to, through the GSI.
    pub async fn user_for_customer(&self, customer: &str) -> Result<Option<UserId>, StoreError> {
        let query = Query::partition(Index::Gsi1, format!("{STRIPE_CUSTOMER}#{customer}")).limit(1);
        let page = self.0.query(&query).await?;
        page.items.first().map(|item| user_from(item.s("user_id")?)).transpose()
    }

    /// The user's plan, if a subscription event ever set one.
    pub async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError> {
        let Some(item) = self.0.get(&Key::new(user_pk(user), SUBSCRIPTION)).await? else { return Ok(None) };
        Ok(Some(Subscription {
            subscription_id: item.s("subscription_id")?.to_owned(),
            tier: item.s("tier")?.to_owned(),
            status: item.s("status")?.to_owned(),
            event_created: item.n("event_created")?,
        }))
    }

    /// Sets the plan from event `event_id` exactly once, and only if no newer event set it: the
    /// event's marker and the plan are one transaction.
    pub async fn apply_subscription(
        &self,
        user: &UserId,
        plan: &Subscription,
        event_id: &str,
    ) -> Result<SubscriptionApplied, StoreError> {
        let once = OnceKey::StripeEvent(event_id.to_owned());
        let writes = vec![
            Write::Put { item: once.marker(plan.event_created, None), when: Some(Condition::Absent) },
            Write::Update {
                key: Key::new(user_pk(user), SUBSCRIPTION),
                changes: Changes::default()
                    .set("entity", Attr::S("subscription".into()))
                    .set("subscription_id", Attr::S(plan.subscription_id.clone()))
                    .set("tier", Attr::S(plan.tier.clone()))
                    .set("status", Attr::S(plan.status.clone()))
                    .set("event_created", Attr::N(plan.event_created)),
                // Same-second events (Stripe's `created` is per second) apply in arrival order.
                when: Some(Condition::MissingOrBelow("event_created", plan.event_created + 1)),
            },
        ];
        match self.0.transact(writes).await {
            Ok(()) => Ok(SubscriptionApplied::Applied),
            Err(StoreError::ConditionFailed { failed }) if failed.contains(&0) => Ok(SubscriptionApplied::Duplicate),
            Err(StoreError::ConditionFailed { .. }) => {
                let first = self.mark_once(&once, plan.event_created).await?;
                Ok(if first { SubscriptionApplied::Stale } else { SubscriptionApplied::Duplicate })
            }
            Err(e) => Err(e),
        }
    }

    /// Remembers what a checkout's payment granted (keyed by its payment intent).
    pub async fn record_payment(&self, payment_intent: &str, payment: &Payment) -> Result<(), StoreError> {
        let item = Item::new(&payment_key(payment_intent))
            .with("entity", Attr::S("payment".into()))
            .with("user_id", Attr::S(payment.user.to_string()))
            .with("credits", Attr::N(payment.credits))
            .with("amount_total", Attr::N(payment.amount_total));
        self.0.put(item, None).await
    }

    pub async fn payment(&self, payment_intent: &str) -> Result<Option<Payment>, StoreError> {
        let Some(item) = self.0.get(&payment_key(payment_intent)).await? else { return Ok(None) };
        Ok(Some(Payment {
            user: user_from(item.s("user_id")?)?,
            credits: item.n("credits")?,
            amount_total: item.n("amount_total")?,
        }))
    }

    /// A user's ledger, newest first.
    pub async fn ledger(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Listing<LedgerEntry>, StoreError> {
        newest_first(self.0, user, LEDGER, limit, cursor, parse_entry).await
    }

    /// The answer for the first of `once` already used, if any.
    async fn first_used(&self, once: &[OnceKey]) -> Result<Option<Applied>, StoreError> {
        for key in once {
            if let Some(duplicate) = self.used(key).await? {
                return Ok(Some(duplicate));
            }
        }
        Ok(None)
    }

    /// `Duplicate` with what the first application left, if `key`'s marker exists.
    async fn used(&self, key: &OnceKey) -> Result<Option<Applied>, StoreError> {
        match self.0.get(&key.key()).await? {
            Some(marker) => Ok(Some(Applied::Duplicate { balance_after: marker.opt_n("balance_after")? })),
            None => Ok(None),
        }
    }
}

fn payment_key(payment_intent: &str) -> Key {
    Key::new(format!("PAYMENT#{payment_intent}"), "PAYMENT")
}

/// Jittered exponential backoff between optimistic retries (1 ms up to ~64 ms).
async fn backoff(attempt: u32) {
    let ceiling = 1u64 << attempt.min(6);
    tokio::time::sleep(Duration::from_millis(1 + rand::random::<u64>() % ceiling)).await;
}

fn ledger_item(user: &UserId, entry: &LedgerEntry) -> Item {
    Item::new(&Key::new(user_pk(user), format!("{LEDGER}{:012}#{}", entry.at, entry.id)))
        .with("entity", Attr::S("ledger".into()))
        .with("ledger_id", Attr::S(entry.id.clone()))
        .with("kind", Attr::S(entry.kind.as_str().into()))
        .with("amount", Attr::N(entry.amount))
        .with("balance_after", Attr::N(entry.balance_after))
        .with("source", Attr::S(entry.source.clone()))
        .with("at", Attr::N(entry.at))
}

fn parse_entry(item: &Item) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        id: item.s("ledger_id")?.to_owned(),
        kind: LedgerKind::parse(item.s("kind")?)?,
        amount: item.n("amount")?,
        balance_after: item.n("balance_after")?,
        source: item.s("source")?.to_owned(),
        at: item.n("at")?,
    })
}
