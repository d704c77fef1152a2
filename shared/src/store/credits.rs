//! Credit balances, their immutable ledger, exactly-once markers (Stripe events, Stripe objects,
//! subscription periods, idempotency keys), Stripe customers' links to users, and plans.
//!
//! A change is one transaction: the balance item (guarded by its version), a new ledger entry
//! recording the balance after it, a marker per once-key that must not exist yet, and any records
//! that must land with it (a payment and what it granted). Either all land or none does, so the
//! balance always equals the sum of the ledger.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::table::{Attr, Changes, Condition, EXPIRES_AT, Item, Key, Table, Write, now_epoch};
use super::{Listing, StoreError, newest_first, user_from, user_pk};
use crate::model::{Tier, UserId, random_id};

const ACCOUNT: &str = "CREDITS";
const LEDGER: &str = "LEDGER#";
const CUSTOMER: &str = "CUSTOMER";
const SUBSCRIPTION: &str = "SUBSCRIPTION";
/// Optimistic retries under contention before giving up with a retryable conflict.
const MAX_ATTEMPTS: u32 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Purchase,
    Allowance,
    /// Credits taken back because their payment was refunded.
    Refund,
    /// Credits taken back because their payment was disputed.
    Dispute,
    /// Credits given back: a refund that failed, a dispute that was won.
    Reversal,
    Consume,
}

impl LedgerKind {
    const ALL: [Self; 6] =
        [Self::Purchase, Self::Allowance, Self::Refund, Self::Dispute, Self::Reversal, Self::Consume];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Purchase => "purchase",
            Self::Allowance => "allowance",
            Self::Refund => "refund",
            Self::Dispute => "dispute",
            Self::Reversal => "reversal",
            Self::Consume => "consume",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        Self::ALL
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
    /// What caused it: a Stripe event id, a consumption's reason, …
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
    /// A Stripe object (checkout session, invoice): Stripe can send two events for one change.
    StripeObject(String),
    /// A subscription's allowance for the period starting at `period_start`, whichever invoice
    /// bills it.
    Allowance {
        subscription: String,
        period_start: i64,
    },
    /// A caller's idempotency key, scoped to the caller and the user, and bound to the request it
    /// first came with (`fingerprint`): the same key with another request is no repeat.
    Idempotency {
        caller: String,
        user: UserId,
        key: String,
        fingerprint: String,
    },
}

impl OnceKey {
    /// `caller`'s idempotency `key` for `user`, bound to the `request` it first came with.
    pub fn idempotency(caller: &str, user: &UserId, key: &str, request: &str) -> Self {
        Self::Idempotency {
            caller: caller.to_owned(),
            user: user.clone(),
            key: key.to_owned(),
            fingerprint: hex::encode(Sha256::digest(request.as_bytes())),
        }
    }

    fn key(&self) -> Key {
        let pk = match self {
            Self::StripeEvent(id) => format!("ONCE#stripe-event#{id}"),
            Self::StripeObject(id) => format!("ONCE#stripe-object#{id}"),
            Self::Allowance { subscription, period_start } => format!("ONCE#allowance#{subscription}#{period_start}"),
            Self::Idempotency { caller, user, key, .. } => format!("ONCE#idempotency#{caller}#{user}#{key}"),
        };
        Key::new(pk, "ONCE")
    }

    /// How long the marker must outlive its effect. Stripe retries for 3 days and events can be
    /// resent by hand for 30; idempotency keys are a client's retry window.
    fn retention(&self) -> Duration {
        match self {
            Self::StripeEvent(_) | Self::StripeObject(_) | Self::Allowance { .. } => Duration::from_secs(400 * 86_400),
            Self::Idempotency { .. } => Duration::from_secs(7 * 86_400),
        }
    }

    fn fingerprint(&self) -> Option<&str> {
        match self {
            Self::Idempotency { fingerprint, .. } => Some(fingerprint),
            _ => None,
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
            .with_opt("fingerprint", self.fingerprint().map(|f| Attr::S(f.to_owned())))
    }

    /// The marker's write in a transaction: it must not exist yet.
    pub(super) fn write(&self, at: i64, ledger: Option<&LedgerEntry>) -> Write {
        Write::Put { item: self.marker(at, ledger), when: Some(Condition::Absent) }
    }
}

/// A user's balance and the version guarding it (0 before the first change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    pub balance: i64,
    pub version: i64,
}

impl Account {
    /// The writes that move this balance by `change` (the balance guarded by its version, and the
    /// ledger entry), or `None` when the new balance does not fit.
    pub(super) fn moved(&self, user: &UserId, change: &CreditChange) -> Option<(LedgerEntry, [Write; 2])> {
        let balance_after = self.balance.checked_add(change.amount)?;
        let entry = LedgerEntry {
            id: random_id(),
            kind: change.kind,
            amount: change.amount,
            balance_after,
            source: change.source.clone(),
            at: change.at,
        };
        let balance = Write::Update {
            key: Key::new(user_pk(user), ACCOUNT),
            changes: Changes::default()
                .set("entity", Attr::S("credits".into()))
                .set("balance", Attr::N(balance_after))
                .set("version", Attr::N(self.version + 1)),
            when: Some(match self.version {
                0 => Condition::Absent,
                v => Condition::Equals("version", Attr::N(v)),
            }),
        };
        let ledger = Write::Put { item: ledger_item(user, &entry), when: Some(Condition::Absent) };
        Some((entry, [balance, ledger]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Applied(LedgerEntry),
    /// A once-key was already used (or a record it writes exists); `balance_after` is what the first
    /// application left.
    Duplicate {
        balance_after: Option<i64>,
    },
    /// An idempotency key that was first used with another request; nothing changed.
    Mismatch,
    /// The change would take the balance below zero, which only a consumption is refused for.
    Insufficient {
        balance: i64,
    },
    /// The new balance would not fit in a 64-bit integer; nothing changed.
    Overflow,
}

/// Who a Stripe customer belongs to, after a link was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerLink {
    /// The customer is (now, or already) this user's.
    Linked,
    /// The customer was linked to another user first; the link stands.
    Owned(UserId),
}

/// A user's plan, as the newest subscription event applied set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: String,
    pub tier: Tier,
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

pub struct Credits<'a>(pub(super) &'a dyn Table);

impl Credits<'_> {
    pub async fn account(&self, user: &UserId) -> Result<Account, StoreError> {
        match self.0.get(&Key::new(user_pk(user), ACCOUNT)).await? {
            None => Ok(Account::default()),
            Some(item) => Ok(Account { balance: item.n("balance")?, version: item.n("version")? }),
        }
    }

    /// Applies `change` once for all of `once`, atomically with its ledger entry and `records`
    /// (each of which must not exist yet).
    pub async fn apply(
        &self,
        user: &UserId,
        change: &CreditChange,
        once: &[OnceKey],
        records: &[Item],
    ) -> Result<Applied, StoreError> {
        for attempt in 0..MAX_ATTEMPTS {
            let account = self.account(user).await?;
            let Some((entry, moved)) = account.moved(user, change) else { return Ok(Applied::Overflow) };
            if entry.balance_after < 0 && change.kind == LedgerKind::Consume {
                return match self.first_used(once).await? {
                    Some(duplicate) => Ok(duplicate),
                    None => Ok(Applied::Insufficient { balance: account.balance }),
                };
            }
            let mut writes = Vec::from(moved);
            writes.extend(once.iter().map(|k| k.write(change.at, Some(&entry))));
            writes.extend(records.iter().map(|item| Write::Put { item: item.clone(), when: Some(Condition::Absent) }));
            match self.0.transact(writes).await {
                Ok(()) => return Ok(Applied::Applied(entry)),
                // Writes 0 and 1 are the balance and the ledger entry; a failure past them is a used
                // once-key or an existing record.
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

    /// Marks `once` used and writes `records` (each new), together, without a balance change.
    /// Returns false, changing nothing, if any was used or written before.
    pub async fn record(&self, once: &[OnceKey], records: &[Item], at: i64) -> Result<bool, StoreError> {
        let mut writes: Vec<Write> = once.iter().map(|k| k.write(at, None)).collect();
        writes.extend(records.iter().map(|item| Write::Put { item: item.clone(), when: Some(Condition::Absent) }));
        match self.0.transact(writes).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
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

    /// Links a Stripe customer to `user`, once: the first link wins and is never moved to another
    /// user. A user may own several customers. (A returning customer costs one read.)
    pub async fn link_customer(&self, customer: &str, user: &UserId, at: i64) -> Result<CustomerLink, StoreError> {
        let owned = |owner: UserId| if &owner == user { CustomerLink::Linked } else { CustomerLink::Owned(owner) };
        if let Some(owner) = self.customer_owner(customer).await? {
            return Ok(owned(owner));
        }
        let item = Item::new(&customer_key(customer))
            .with("entity", Attr::S("stripe-customer".into()))
            .with("customer_id", Attr::S(customer.to_owned()))
            .with("user_id", Attr::S(user.to_string()))
            .with("linked_at", Attr::N(at));
        match self.0.put(item, Some(Condition::Absent)).await {
            Ok(()) => Ok(CustomerLink::Linked),
            // Another event linked it in between: that link stands.
            Err(StoreError::ConditionFailed { .. }) => {
                self.customer_owner(customer).await?.map(owned).ok_or(StoreError::Conflict)
            }
            Err(e) => Err(e),
        }
    }

    /// The user a Stripe customer was linked to, if any.
    pub async fn customer_owner(&self, customer: &str) -> Result<Option<UserId>, StoreError> {
        let Some(item) = self.0.get(&customer_key(customer)).await? else { return Ok(None) };
        Ok(Some(user_from(item.s("user_id")?)?))
    }

    /// The user's plan, if a subscription event ever set one.
    pub async fn subscription(&self, user: &UserId) -> Result<Option<Subscription>, StoreError> {
        let Some(item) = self.0.get(&Key::new(user_pk(user), SUBSCRIPTION)).await? else { return Ok(None) };
        Ok(Some(Subscription {
            subscription_id: item.s("subscription_id")?.to_owned(),
            tier: Tier::parse(item.s("tier")?).ok_or_else(|| StoreError::Corrupt("unknown tier".into()))?,
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
            once.write(plan.event_created, None),
            Write::Update {
                key: Key::new(user_pk(user), SUBSCRIPTION),
                changes: Changes::default()
                    .set("entity", Attr::S("subscription".into()))
                    .set("subscription_id", Attr::S(plan.subscription_id.clone()))
                    .set("tier", Attr::S(plan.tier.as_str().into()))
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
    pub(super) async fn first_used(&self, once: &[OnceKey]) -> Result<Option<Applied>, StoreError> {
        for key in once {
            if let Some(duplicate) = self.used(key).await? {
                return Ok(Some(duplicate));
            }
        }
        Ok(None)
    }

    /// What `key`'s marker says, if it exists: a repeat with what the first application left, or
    /// an idempotency key first used with another request.
    async fn used(&self, key: &OnceKey) -> Result<Option<Applied>, StoreError> {
        let Some(marker) = self.0.get(&key.key()).await? else { return Ok(None) };
        if key.fingerprint().is_some() && marker.opt_s("fingerprint")? != key.fingerprint() {
            return Ok(Some(Applied::Mismatch));
        }
        Ok(Some(Applied::Duplicate { balance_after: marker.opt_n("balance_after")? }))
    }
}

fn customer_key(customer: &str) -> Key {
    Key::new(format!("{CUSTOMER}#{customer}"), CUSTOMER)
}

/// Jittered exponential backoff between optimistic retries (1 ms up to ~64 ms).
pub(crate) async fn backoff(attempt: u32) {
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
