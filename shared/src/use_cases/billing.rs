//! Stripe turned into credits and plan tiers, exactly once: [`receive`] verifies a delivery (its
//! signature, then its event) and [`apply`] makes the event's effect — each in one store transaction
//! together with the markers (event id, and the business object: checkout session, subscription period) that make
//! a second delivery, or a second event for the same change, a no-op.
//!
//! Money is taken back from what a payment's refunds and disputes add up to, never event by event:
//! the target clawback is recomputed from the payment's whole history on every event and only the
//! difference is booked, so partial refunds add up exactly, a failed refund gives back what it
//! took, and events may arrive in any order.

use crate::model::Clock;
use crate::model::{Tier, UserId};
use crate::secret_store::{SecretError, SecretReader};
use crate::store::{
    Actor, Applied, AuditAction, AuditEntry, CreditChange, CustomerLink, DisputeRecord, InvoiceGrant, LedgerKind,
    OnceKey, Payment, PaymentHistory, RefundRecord, Settled, Settlement, Store, StoreError, Subscription,
    SubscriptionApplied,
};
use crate::stripe::events::EventShapeError;
use crate::stripe::events::{
    BillingReason, Checkout, DisputeState, Effect, PaidInvoice, PaymentRef, RefundState, RefundedCharge, StripeEvent,
    SubscriptionChange,
};
use crate::stripe::signature::{self, SignatureError};
use crate::stripe::{StripeMode, StripeSettings};

/// Statuses in which a subscription's tier holds (`past_due` keeps it through Stripe's retries).
const LIVE_STATUSES: [&str; 3] = ["active", "trialing", "past_due"];
/// Settling one payment's event re-reads and retries this often when another event about the same
/// payment (or the same balance) landed in between.
const SETTLE_ATTEMPTS: u32 = 32;

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// The balance, a plan or a customer link changed.
    Applied,
    /// What the event says was recorded, and it moves no credits (a refund of a payment that
    /// granted none, a dispute won before keyward heard it opened).
    Recorded,
    /// This event, or another for the same change, was applied before.
    Duplicate,
    /// Recorded without effect: a type keyward does not act on, or nothing to do.
    Ignored,
    /// A newer subscription event set the plan already.
    Stale,
    /// A checkout still waiting for its payment.
    Pending,
    /// The event names a user other than the one its Stripe customer is linked to: nothing was
    /// applied, and both users' audit trails say so.
    Refused,
}

impl EventOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Recorded => "recorded",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Stale => "stale",
            Self::Pending => "pending",
            Self::Refused => "refused",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("Stripe is not configured on this deployment")]
    NotConfigured,
    /// No user could be found for the event yet (its checkout may still be on its way); Stripe
    /// retries a non-2xx answer for three days.
    #[error("no keyward user is linked to this event's Stripe customer yet")]
    UnknownUser,
    /// A refund, dispute or invoice payment of a payment whose own event has not arrived yet.
    #[error("keyward has not recorded the payment this event is about yet")]
    PaymentNotRecorded,
    #[error("this endpoint accepts {expected} events only")]
    WrongMode { expected: StripeMode },
    #[error("metadata.credits must be a whole number from 1 to {max}")]
    CreditsOutOfRange { max: i64 },
    /// Applying the event would overflow a balance or an amount.
    #[error("the event's amounts do not fit keyward's credit arithmetic")]
    Overflow,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    InvalidEvent(#[from] EventShapeError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The webhook endpoint: its settings and secrets, over the store.
pub struct Billing<'a> {
    pub store: &'a Store,
    pub settings: &'a StripeSettings,
    pub secrets: &'a SecretReader,
    pub clock: &'a dyn Clock,
}

impl Billing<'_> {
    /// Verifies a delivery on its raw bytes (`signature` is its `Stripe-Signature` header), reads
    /// its event and applies it exactly once.
    pub async fn receive(
        &self,
        body: &[u8],
        signature: Option<&str>,
    ) -> Result<(StripeEvent, EventOutcome), BillingError> {
        let secrets = signature::secrets_of(self.secrets.get().await?.expose());
        signature::verify(signature, body, &secrets, self.clock.now())?;
        let event = crate::stripe::events::parse(body)?;
        let outcome = apply(self.store, self.settings, &event).await.inspect_err(|e| {
            if matches!(e, BillingError::Overflow) {
                tracing::warn!(event = %event.id, "a Stripe event would overflow keyward's credit arithmetic; refused");
            }
        })?;
        tracing::info!(event = %event.id, kind = %event.kind, outcome = outcome.as_str(), "stripe event");
        Ok((event, outcome))
    }
}

/// Applies one verified event.
pub async fn apply(
    store: &Store,
    settings: &StripeSettings,
    event: &StripeEvent,
) -> Result<EventOutcome, BillingError> {
    let mode = if event.livemode { StripeMode::Live } else { StripeMode::Test };
    if mode != settings.mode {
        return Err(BillingError::WrongMode { expected: settings.mode });
    }
    match &event.effect {
        Effect::Purchase(checkout) => purchase(store, settings, event, checkout).await,
        Effect::Subscription(change) => subscription(store, settings, event, change).await,
        Effect::Allowance(invoice) => allowance(store, settings, event, invoice).await,
        Effect::InvoicePayment { invoice_id, payment } => invoice_payment(store, event, invoice_id, payment).await,
        Effect::ChargeRefunded(charge) => {
            settle(store, event, &charge.payment, |h| charge_refunded(h, charge, event)).await
        }
        Effect::Refund(refund) => match &refund.payment {
            Some(payment) => settle(store, event, payment, |h| refund_changed(h, refund, event)).await,
            None => Err(BillingError::PaymentNotRecorded),
        },
        Effect::Dispute(dispute) => {
            settle(store, event, &dispute.payment, |h| dispute_changed(h, dispute, event)).await
        }
        Effect::PaymentPending => mark(store, event, EventOutcome::Pending).await,
        Effect::Ignored => mark(store, event, EventOutcome::Ignored).await,
    }
}

fn event_key(event: &StripeEvent) -> OnceKey {
    OnceKey::StripeEvent(event.id.clone())
}

/// Records the event as seen, without effect.
async fn mark(store: &Store, event: &StripeEvent, outcome: EventOutcome) -> Result<EventOutcome, BillingError> {
    let first = store.credits().mark_once(&event_key(event), event.created).await?;
    Ok(if first { outcome } else { EventOutcome::Duplicate })
}

/// Who an event is about, from what it says (server-set metadata) and its customer's link.
enum Owner {
    User(UserId),
    /// The event names a user, but its customer belongs to another.
    Conflict {
        named: UserId,
        owner: UserId,
        customer: String,
    },
}

/// The user an event is about: named in its metadata (which links its customer to that user, once
/// and for good), or the one its customer was linked to before.
async fn owner_of(
    store: &Store,
    event: &StripeEvent,
    named: Option<&UserId>,
    customer: Option<&str>,
) -> Result<Owner, BillingError> {
    match (named, customer) {
        (Some(named), Some(customer)) => match store.credits().link_customer(customer, named, event.created).await? {
            CustomerLink::Linked => Ok(Owner::User(named.clone())),
            CustomerLink::Owned(owner) => {
                Ok(Owner::Conflict { named: named.clone(), owner, customer: customer.to_owned() })
            }
        },
        (Some(named), None) => Ok(Owner::User(named.clone())),
        (None, Some(customer)) => {
            store.credits().customer_owner(customer).await?.map(Owner::User).ok_or(BillingError::UnknownUser)
        }
        (None, None) => Err(BillingError::UnknownUser),
    }
}

/// The event's user, or (`Err`) the outcome of refusing it because its customer is someone else's.
async fn user_or_refusal(
    store: &Store,
    event: &StripeEvent,
    named: Option<&UserId>,
    customer: Option<&str>,
) -> Result<Result<UserId, EventOutcome>, BillingError> {
    Ok(match owner_of(store, event, named, customer).await? {
        Owner::User(user) => Ok(user),
        Owner::Conflict { named, owner, customer } => Err(refuse(store, event, &named, &owner, &customer).await?),
    })
}

/// A link to another user was asked for a customer that is someone's already: nothing is applied,
/// the event is marked (so Stripe's retries get the same answer), and both users' trails record it.
async fn refuse(
    store: &Store,
    event: &StripeEvent,
    named: &UserId,
    owner: &UserId,
    customer: &str,
) -> Result<EventOutcome, BillingError> {
    tracing::warn!(event = %event.id, customer = %customer, owner = %owner, named = %named,
        "a Stripe event names another user than its customer's; refused");
    if !store.credits().mark_once(&event_key(event), event.created).await? {
        return Ok(EventOutcome::Duplicate);
    }
    for user in [owner, named] {
        let entry = AuditEntry {
            at: event.created,
            actor: Actor::Stripe,
            action: AuditAction::StripeCustomerLink,
            target: Some(customer.to_owned()),
            outcome: "refused".into(),
        };
        store.audit().append(user, &entry).await?;
    }
    Ok(EventOutcome::Refused)
}

fn outcome_of(applied: Applied) -> Result<EventOutcome, BillingError> {
    match applied {
        Applied::Applied(_) => Ok(EventOutcome::Applied),
        Applied::Overflow => Err(BillingError::Overflow),
        // Credits only grow here, so nothing is insufficient, and Stripe events carry no fingerprint.
        Applied::Duplicate { .. } | Applied::Insufficient { .. } | Applied::Mismatch => Ok(EventOutcome::Duplicate),
    }
}

async fn purchase(
    store: &Store,
    settings: &StripeSettings,
    event: &StripeEvent,
    checkout: &Checkout,
) -> Result<EventOutcome, BillingError> {
    if let Some(credits) = checkout.credits.filter(|c| *c > settings.max_purchase_credits) {
        tracing::warn!(event = %event.id, credits, "metadata.credits is beyond the configured maximum; refused");
        return Err(BillingError::CreditsOutOfRange { max: settings.max_purchase_credits });
    }
    let user = match user_or_refusal(store, event, checkout.user.as_ref(), checkout.customer.as_deref()).await? {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    let Some(credits) = checkout.credits else {
        // A subscription checkout: the plan comes with the subscription's and invoices' events.
        return mark(store, event, EventOutcome::Ignored).await;
    };
    if checkout.amount_total <= 0 && !settings.grant_free_payments {
        // A 100% promotion code (`no_payment_required`): credits are sold, not given away, unless
        // the operator says free checkouts grant them, as for `$0` invoices.
        tracing::info!(event = %event.id, "a checkout that took no payment; no credits granted");
        return mark(store, event, EventOutcome::Ignored).await;
    }
    let records: Vec<_> = checkout
        .payment
        .iter()
        .map(|payment| Payment::new(&payment.0, &user, credits, checkout.amount_total).item())
        .collect();
    let change =
        CreditChange { kind: LedgerKind::Purchase, amount: credits, source: event.id.clone(), at: event.created };
    let once = [event_key(event), OnceKey::StripeObject(checkout.session_id.clone())];
    outcome_of(store.credits().apply(&user, &change, &once, &records).await?)
}

/// The tier of the first price with one (`None`: no price keyward knows).
fn tier_of(settings: &StripeSettings, price_ids: &[String]) -> Option<Tier> {
    price_ids.iter().find_map(|price| settings.price_tiers.get(price).copied())
}

async fn subscription(
    store: &Store,
    settings: &StripeSettings,
    event: &StripeEvent,
    change: &SubscriptionChange,
) -> Result<EventOutcome, BillingError> {
    let user = match user_or_refusal(store, event, change.user.as_ref(), change.customer.as_deref()).await? {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    let tier = match tier_of(settings, &change.price_ids) {
        Some(tier) if LIVE_STATUSES.contains(&change.status.as_str()) => tier,
        Some(_) => Tier::Free,
        None => {
            tracing::warn!(event = %event.id, "subscription with no configured price; ignored");
            return mark(store, event, EventOutcome::Ignored).await;
        }
    };
    let plan = Subscription {
        subscription_id: change.subscription_id.clone(),
        tier,
        status: change.status.clone(),
        event_created: event.created,
    };
    Ok(match store.credits().apply_subscription(&user, &plan, &event.id).await? {
        SubscriptionApplied::Applied => EventOutcome::Applied,
        SubscriptionApplied::Duplicate => EventOutcome::Duplicate,
        SubscriptionApplied::Stale => EventOutcome::Stale,
    })
}

/// The credits a paid invoice grants: its tier's monthly allowance, for the first invoice of a
/// subscription and each new period's, when something was paid (or `$0` invoices are allowed).
fn allowance_of(settings: &StripeSettings, invoice: &PaidInvoice) -> i64 {
    let reason = matches!(invoice.billing_reason, BillingReason::SubscriptionCreate | BillingReason::SubscriptionCycle);
    let paid = invoice.amount_paid > 0 || (invoice.amount_paid == 0 && settings.grant_free_payments);
    if !(reason && paid && invoice.subscription_id.is_some()) {
        return 0;
    }
    tier_of(settings, &invoice.price_ids).and_then(|tier| settings.monthly_allowances.get(&tier).copied()).unwrap_or(0)
}

async fn allowance(
    store: &Store,
    settings: &StripeSettings,
    event: &StripeEvent,
    invoice: &PaidInvoice,
) -> Result<EventOutcome, BillingError> {
    let user = match user_or_refusal(store, event, invoice.user.as_ref(), invoice.customer.as_deref()).await? {
        Ok(user) => user,
        Err(refused) => return Ok(refused),
    };
    let credits = allowance_of(settings, invoice);
    // Every paid invoice is recorded, granting or not, so a refund of it is never "unknown".
    let records = |credits: i64| {
        let grant = InvoiceGrant {
            invoice_id: invoice.invoice_id.clone(),
            user: user.clone(),
            credits,
            amount_paid: invoice.amount_paid,
        };
        let payment = invoice.payment.as_ref().map(|p| Payment::new(&p.0, &user, credits, invoice.amount_paid).item());
        std::iter::once(grant.item()).chain(payment).collect::<Vec<_>>()
    };
    let (Some(subscription), true) = (&invoice.subscription_id, credits > 0) else {
        let first = store.credits().record(&[event_key(event)], &records(0), event.created).await?;
        return Ok(if first { EventOutcome::Ignored } else { EventOutcome::Duplicate });
    };
    let change =
        CreditChange { kind: LedgerKind::Allowance, amount: credits, source: event.id.clone(), at: event.created };
    let period = OnceKey::Allowance { subscription: subscription.clone(), period_start: invoice.period_start };
    match store.credits().apply(&user, &change, &[event_key(event), period], &records(credits)).await? {
        // Another invoice granted this period's allowance: this one is recorded, granting nothing.
        Applied::Duplicate { .. } => {
            let first = store.credits().record(&[event_key(event)], &records(0), event.created).await?;
            Ok(if first { EventOutcome::Ignored } else { EventOutcome::Duplicate })
        }
        applied => outcome_of(applied),
    }
}

/// An invoice's payment, learnt after the invoice (basil and later): refunds of it can now find
/// what the invoice granted.
async fn invoice_payment(
    store: &Store,
    event: &StripeEvent,
    invoice_id: &str,
    payment: &PaymentRef,
) -> Result<EventOutcome, BillingError> {
    let grant = store.payments().invoice(invoice_id).await?.ok_or(BillingError::PaymentNotRecorded)?;
    let record = Payment::new(&payment.0, &grant.user, grant.credits, grant.amount_paid).item();
    let first = store.credits().record(&[event_key(event)], &[record], event.created).await?;
    Ok(if first { EventOutcome::Applied } else { EventOutcome::Duplicate })
}

/// What one event changes in a payment's history: the records it adds or replaces, and the charge's
/// cumulative refunds.
#[derive(Debug)]
struct Changes {
    refunds: Vec<RefundRecord>,
    disputes: Vec<DisputeRecord>,
    /// `(amount_refunded, as of)`.
    charge_refunded: Option<(i64, i64)>,
    /// What the ledger calls credits this event takes back (`Refund` or `Dispute`).
    kind: LedgerKind,
}

impl Changes {
    fn none() -> Self {
        Self { refunds: Vec::new(), disputes: Vec::new(), charge_refunded: None, kind: LedgerKind::Refund }
    }
}

/// A refund's new state, when it is news: the record kept only changes for a newer event.
fn refund_record(history: &PaymentHistory, refund: &RefundState, at: i64) -> Option<RefundRecord> {
    let known = history.refunds.iter().find(|r| r.id == refund.refund_id);
    if known.is_some_and(|r| r.seen_at > at || (r.takes_money == refund.takes_money && r.amount == refund.amount)) {
        return None;
    }
    Some(RefundRecord {
        id: refund.refund_id.clone(),
        amount: refund.amount,
        takes_money: refund.takes_money,
        created: refund.created,
        seen_at: at,
    })
}

fn charge_refunded(history: &PaymentHistory, charge: &RefundedCharge, event: &StripeEvent) -> Changes {
    let newer = event.created >= history.payment.charge_refunded_at;
    Changes {
        refunds: charge.refunds.iter().filter_map(|r| refund_record(history, r, event.created)).collect(),
        charge_refunded: newer.then_some((charge.amount_refunded, event.created)),
        ..Changes::none()
    }
}

fn refund_changed(history: &PaymentHistory, refund: &RefundState, event: &StripeEvent) -> Changes {
    let Some(record) = refund_record(history, refund, event.created) else { return Changes::none() };
    let payment = &history.payment;
    let was_counted = history.refunds.iter().find(|r| r.id == record.id).is_none_or(|r| r.takes_money);
    // A refund that failed or was canceled no longer counts in the charge's `amount_refunded`; the
    // last one keyward read still does if it was read after the refund was made and before it failed.
    let charge_refunded = (!record.takes_money
        && was_counted
        && payment.charge_refunded_at >= record.created
        && payment.charge_refunded_at < event.created)
        .then(|| ((payment.charge_refunded - record.amount).max(0), payment.charge_refunded_at));
    Changes { refunds: vec![record], charge_refunded, ..Changes::none() }
}

fn dispute_changed(history: &PaymentHistory, dispute: &DisputeState, event: &StripeEvent) -> Changes {
    let known = history.disputes.iter().find(|d| d.id == dispute.dispute_id);
    if known.is_some_and(|d| d.seen_at > event.created || d.holds_money == dispute.holds_money) {
        return Changes::none();
    }
    let record = DisputeRecord {
        id: dispute.dispute_id.clone(),
        amount: dispute.amount,
        holds_money: dispute.holds_money,
        seen_at: event.created,
    };
    Changes { disputes: vec![record], kind: LedgerKind::Dispute, ..Changes::none() }
}

/// The credits to have taken back from a payment: its credits in proportion to what was refunded
/// and disputed, rounded half up, never more than it granted. `None` when the numbers overflow.
fn clawback_target(payment: &Payment, refunded: i64, disputed: i64) -> Option<i64> {
    if payment.amount <= 0 || payment.credits <= 0 {
        return Some(0);
    }
    let taken = refunded.checked_add(disputed)?.clamp(0, payment.amount);
    let (credits, taken, amount) = (i128::from(payment.credits), i128::from(taken), i128::from(payment.amount));
    let target = (credits.checked_mul(taken)? + amount / 2) / amount;
    i64::try_from(target.min(credits)).ok()
}

/// Settles one event about a payment: reads its history, works out the new picture and the credits
/// to move, and writes both at once, again from a fresh read whenever another event got there first.
async fn settle(
    store: &Store,
    event: &StripeEvent,
    payment: &PaymentRef,
    changes_of: impl Fn(&PaymentHistory) -> Changes,
) -> Result<EventOutcome, BillingError> {
    for attempt in 0..SETTLE_ATTEMPTS {
        let history = store.payments().history(&payment.0).await?.ok_or(BillingError::PaymentNotRecorded)?;
        let changes = changes_of(&history);
        let current = &history.payment;
        let (charge_refunded, charge_refunded_at) =
            changes.charge_refunded.unwrap_or((current.charge_refunded, current.charge_refunded_at));
        if changes.refunds.is_empty() && changes.disputes.is_empty() && changes.charge_refunded.is_none() {
            return mark(store, event, EventOutcome::Duplicate).await;
        }
        // The history as it will be: changed records replace the ones they update.
        let refunds = merged(&history.refunds, &changes.refunds, |r| &r.id);
        let disputes = merged(&history.disputes, &changes.disputes, |d| &d.id);
        let live_refunds = refunds.iter().filter(|r| r.takes_money).try_fold(0i64, |sum, r| sum.checked_add(r.amount));
        let disputed = disputes.iter().filter(|d| d.holds_money).try_fold(0i64, |sum, d| sum.checked_add(d.amount));
        let (Some(live_refunds), Some(disputed)) = (live_refunds, disputed) else { return Err(BillingError::Overflow) };
        let refunded = live_refunds.max(charge_refunded);
        let target = clawback_target(current, refunded, disputed).ok_or(BillingError::Overflow)?;
        let delta = target.checked_sub(current.clawed_back).ok_or(BillingError::Overflow)?;
        let credit = (delta != 0).then(|| CreditChange {
            kind: if delta > 0 { changes.kind } else { LedgerKind::Reversal },
            amount: -delta,
            source: event.id.clone(),
            at: event.created,
        });
        let settlement = Settlement {
            event: event_key(event),
            at: event.created,
            clawed_back: target,
            charge_refunded,
            charge_refunded_at,
            refunds: changes.refunds,
            disputes: changes.disputes,
            credit,
        };
        match store.payments().settle(&history, &settlement).await? {
            Settled::Applied(Some(_)) => return Ok(EventOutcome::Applied),
            Settled::Applied(None) => return Ok(EventOutcome::Recorded),
            Settled::Duplicate => return Ok(EventOutcome::Duplicate),
            Settled::Overflow => return Err(BillingError::Overflow),
            Settled::Contended => crate::store::backoff(attempt).await,
        }
    }
    Err(BillingError::Store(StoreError::Conflict))
}

/// `old` with each of `new` replacing the record of the same id, or added.
fn merged<T: Clone>(old: &[T], new: &[T], id: impl Fn(&T) -> &String) -> Vec<T> {
    let mut all: Vec<T> = old.iter().filter(|o| !new.iter().any(|n| id(n) == id(o))).cloned().collect();
    all.extend(new.iter().cloned());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(credits: i64, amount: i64) -> Payment {
        Payment::new("pi_1", &UserId::parse("auth0|ada").unwrap(), credits, amount)
    }

    #[test]
    fn clawbacks_are_in_proportion_rounded_half_up_and_capped() {
        assert_eq!(clawback_target(&payment(500, 2000), 500, 0), Some(125));
        assert_eq!(clawback_target(&payment(500, 2000), 1500, 0), Some(375));
        assert_eq!(clawback_target(&payment(3, 1000), 500, 0), Some(2), "1.5 rounds up");
        assert_eq!(clawback_target(&payment(3, 1000), 499, 0), Some(1));
        assert_eq!(clawback_target(&payment(500, 2000), 1500, 2000), Some(500), "never more than granted");
        assert_eq!(clawback_target(&payment(500, 0), 10, 0), Some(0), "a free payment has nothing to refund");
        // Products past 64 bits are worked out in 128.
        assert_eq!(clawback_target(&payment(i64::MAX, i64::MAX), i64::MAX / 2, 0), Some(i64::MAX / 2));
        assert_eq!(clawback_target(&payment(10, 100), i64::MAX, 1), None);
    }

    #[test]
    fn a_failed_refund_leaves_the_charges_total_only_when_it_was_counted_in_it() {
        let mut history = PaymentHistory { payment: payment(100, 1000), refunds: vec![], disputes: vec![] };
        history.payment.charge_refunded = 300;
        history.payment.charge_refunded_at = 50;
        let failed =
            |created| RefundState { refund_id: "re_1".into(), payment: None, amount: 300, takes_money: false, created };
        let event = |created| StripeEvent {
            id: "evt_1".into(),
            kind: "refund.failed".into(),
            created,
            livemode: false,
            effect: Effect::Ignored,
        };
        // Made at 40, counted in the charge read at 50, failed at 60: the total drops.
        assert_eq!(refund_changed(&history, &failed(40), &event(60)).charge_refunded, Some((0, 50)));
        // Made at 55, after the charge was read: it was never in that total.
        assert_eq!(refund_changed(&history, &failed(55), &event(60)).charge_refunded, None);
    }
}
