//! Payments keyward granted credits for, and what happened to them since: refunds and disputes.
//!
//! A payment (keyed by its payment intent, or its charge) lives in a partition of its own with one
//! record per refund and per dispute Stripe told keyward about. Every change to that partition
//! bumps the payment's version in the same transaction as the credits it claws back or gives back,
//! so two events about one payment never settle on a stale picture of it.

use super::credits::{CreditChange, Credits, LedgerEntry, OnceKey};
use super::table::{Attr, Changes, Condition, Index, Item, Key, Query, Table, Write};
use super::{StoreError, user_from};
use crate::model::UserId;

const PAYMENT: &str = "PAYMENT";
const REFUND: &str = "REFUND#";
const DISPUTE: &str = "DISPUTE#";
const INVOICE: &str = "INVOICE";

/// A payment and what it granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// The payment intent (`pi_…`), or the charge (`ch_…`) of a payment without one.
    pub reference: String,
    pub user: UserId,
    /// The credits it granted.
    pub credits: i64,
    /// What was paid, in the currency's smallest unit.
    pub amount: i64,
    /// The credits taken back so far (refunds and disputes together).
    pub clawed_back: i64,
    /// The charge's cumulative `amount_refunded` as of `charge_refunded_at` (an event's `created`).
    pub charge_refunded: i64,
    pub charge_refunded_at: i64,
    pub version: i64,
}

impl Payment {
    pub fn new(reference: impl Into<String>, user: &UserId, credits: i64, amount: i64) -> Self {
        Self {
            reference: reference.into(),
            user: user.clone(),
            credits,
            amount,
            clawed_back: 0,
            charge_refunded: 0,
            charge_refunded_at: 0,
            version: 1,
        }
    }

    /// The item of a new payment, to write with the grant that made it.
    pub fn item(&self) -> Item {
        Item::new(&payment_key(&self.reference))
            .with("entity", Attr::S("payment".into()))
            .with("user_id", Attr::S(self.user.to_string()))
            .with("credits", Attr::N(self.credits))
            .with("amount", Attr::N(self.amount))
            .with("clawed_back", Attr::N(self.clawed_back))
            .with("charge_refunded", Attr::N(self.charge_refunded))
            .with("charge_refunded_at", Attr::N(self.charge_refunded_at))
            .with("version", Attr::N(self.version))
    }
}

/// A refund as keyward last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: String,
    pub amount: i64,
    pub takes_money: bool,
    /// When Stripe created the refund.
    pub created: i64,
    /// The `created` of the event this state came from: an older event never overwrites it.
    pub seen_at: i64,
}

/// A dispute as keyward last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeRecord {
    pub id: String,
    pub amount: i64,
    pub holds_money: bool,
    pub seen_at: i64,
}

/// A payment with every refund and dispute recorded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentHistory {
    pub payment: Payment,
    pub refunds: Vec<RefundRecord>,
    pub disputes: Vec<DisputeRecord>,
}

/// What a paid invoice granted, kept until its payment is known (`invoice_payment.paid`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceGrant {
    pub invoice_id: String,
    pub user: UserId,
    pub credits: i64,
    pub amount_paid: i64,
}

impl InvoiceGrant {
    pub fn item(&self) -> Item {
        Item::new(&Key::new(format!("{INVOICE}#{}", self.invoice_id), INVOICE))
            .with("entity", Attr::S("invoice".into()))
            .with("user_id", Attr::S(self.user.to_string()))
            .with("credits", Attr::N(self.credits))
            .with("amount_paid", Attr::N(self.amount_paid))
    }
}

/// A new picture of a payment, from one event.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The event's own marker.
    pub event: OnceKey,
    pub at: i64,
    pub clawed_back: i64,
    pub charge_refunded: i64,
    pub charge_refunded_at: i64,
    /// The refund and dispute records the event changed.
    pub refunds: Vec<RefundRecord>,
    pub disputes: Vec<DisputeRecord>,
    /// What moves the balance (credits taken back, or given back), if anything.
    pub credit: Option<CreditChange>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Recorded, with the ledger entry when the balance moved.
    Applied(Option<LedgerEntry>),
    /// The event was settled before.
    Duplicate,
    /// The payment or the balance changed since they were read: read again and settle again.
    Contended,
    /// The balance would not fit in a 64-bit integer; nothing changed.
    Overflow,
}

pub struct Payments<'a>(pub(super) &'a dyn Table);

impl Payments<'_> {
    /// A payment and its refunds and disputes, in one strongly consistent read of its partition.
    pub async fn history(&self, reference: &str) -> Result<Option<PaymentHistory>, StoreError> {
        let query = Query::partition(Index::Table, payment_key(reference).pk).limit(1000);
        let page = self.0.query(&query).await?;
        let mut payment = None;
        let (mut refunds, mut disputes) = (Vec::new(), Vec::new());
        for item in &page.items {
            let sk = item.s(super::table::SK)?;
            if sk == PAYMENT {
                payment = Some(Payment {
                    reference: reference.to_owned(),
                    user: user_from(item.s("user_id")?)?,
                    credits: item.n("credits")?,
                    amount: item.n("amount")?,
                    clawed_back: item.n("clawed_back")?,
                    charge_refunded: item.n("charge_refunded")?,
                    charge_refunded_at: item.n("charge_refunded_at")?,
                    version: item.n("version")?,
                });
            } else if let Some(id) = sk.strip_prefix(REFUND) {
                refunds.push(RefundRecord {
                    id: id.to_owned(),
                    amount: item.n("amount")?,
                    takes_money: item.bool("takes_money")?,
                    created: item.n("created")?,
                    seen_at: item.n("seen_at")?,
                });
            } else if let Some(id) = sk.strip_prefix(DISPUTE) {
                disputes.push(DisputeRecord {
                    id: id.to_owned(),
                    amount: item.n("amount")?,
                    holds_money: item.bool("holds_money")?,
                    seen_at: item.n("seen_at")?,
                });
            }
        }
        Ok(payment.map(|payment| PaymentHistory { payment, refunds, disputes }))
    }

    pub async fn invoice(&self, invoice_id: &str) -> Result<Option<InvoiceGrant>, StoreError> {
        let key = Key::new(format!("{INVOICE}#{invoice_id}"), INVOICE);
        let Some(item) = self.0.get(&key).await? else { return Ok(None) };
        Ok(Some(InvoiceGrant {
            invoice_id: invoice_id.to_owned(),
            user: user_from(item.s("user_id")?)?,
            credits: item.n("credits")?,
            amount_paid: item.n("amount_paid")?,
        }))
    }

    /// Writes `settlement` of `history`'s payment in one transaction: the event's marker, the
    /// payment (guarded by the version read), the records, and the balance move with its entry.
    pub async fn settle(&self, history: &PaymentHistory, settlement: &Settlement) -> Result<Settled, StoreError> {
        let payment = &history.payment;
        let mut moved = None;
        if let Some(change) = &settlement.credit {
            let account = Credits(self.0).account(&payment.user).await?;
            match account.moved(&payment.user, change) {
                Some(writes) => moved = Some(writes),
                None => return Ok(Settled::Overflow),
            }
        }
        let entry = moved.as_ref().map(|(entry, _)| entry.clone());
        let mut writes = vec![
            settlement.event.write(settlement.at, entry.as_ref()),
            Write::Update {
                key: payment_key(&payment.reference),
                changes: Changes::default()
                    .set("clawed_back", Attr::N(settlement.clawed_back))
                    .set("charge_refunded", Attr::N(settlement.charge_refunded))
                    .set("charge_refunded_at", Attr::N(settlement.charge_refunded_at))
                    .set("version", Attr::N(payment.version + 1)),
                when: Some(Condition::Equals("version", Attr::N(payment.version))),
            },
        ];
        let pk = payment_key(&payment.reference).pk;
        for refund in &settlement.refunds {
            let item = Item::new(&Key::new(pk.clone(), format!("{REFUND}{}", refund.id)))
                .with("entity", Attr::S("refund".into()))
                .with("amount", Attr::N(refund.amount))
                .with("takes_money", Attr::Bool(refund.takes_money))
                .with("created", Attr::N(refund.created))
                .with("seen_at", Attr::N(refund.seen_at));
            writes.push(Write::Put { item, when: None });
        }
        for dispute in &settlement.disputes {
            let item = Item::new(&Key::new(pk.clone(), format!("{DISPUTE}{}", dispute.id)))
                .with("entity", Attr::S("dispute".into()))
                .with("amount", Attr::N(dispute.amount))
                .with("holds_money", Attr::Bool(dispute.holds_money))
                .with("seen_at", Attr::N(dispute.seen_at));
            writes.push(Write::Put { item, when: None });
        }
        writes.extend(moved.map(|(_, writes)| writes).into_iter().flatten());
        match self.0.transact(writes).await {
            Ok(()) => Ok(Settled::Applied(entry)),
            Err(StoreError::ConditionFailed { failed }) if failed.contains(&0) => Ok(Settled::Duplicate),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Ok(Settled::Contended),
            Err(e) => Err(e),
        }
    }
}

fn payment_key(reference: &str) -> Key {
    Key::new(format!("{PAYMENT}#{reference}"), PAYMENT)
}
