//! Stripe turned into credits and plan tiers, exactly once: [`signature`] verifies a delivery,
//! [`events`] reads it, and [`apply`] makes its effect — each in one store transaction together with
//! the markers (event id, and the business object: checkout session, invoice, refund) that make a
//! second delivery, or a second event for the same change, a no-op.

pub mod events;
pub mod signature;

use crate::config::StripeSettings;
use crate::model::UserId;
use crate::store::{
    Applied, CreditChange, LedgerKind, OnceKey, Payment, Store, StoreError, Subscription, SubscriptionApplied,
};
use events::{Checkout, Effect, PaidInvoice, RefundedCharge, StripeEvent, SubscriptionChange};

/// A plan tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Free,
    Pro,
    Enterprise,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Free, Self::Pro, Self::Enterprise].into_iter().find(|t| t.as_str() == raw)
    }
}

/// Statuses in which a subscription's tier holds (`past_due` keeps it through Stripe's retries).
const LIVE_STATUSES: [&str; 3] = ["active", "trialing", "past_due"];

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// This event, or another for the same change, was applied before.
    Duplicate,
    /// Recorded without effect: a type keyward does not act on, or nothing to do.
    Ignored,
    /// A newer subscription event set the plan already.
    Stale,
    /// A checkout still waiting for its payment.
    Pending,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Stale => "stale",
            Self::Pending => "pending",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// No user could be found for the event yet (its checkout may still be on its way); Stripe
    /// retries a non-2xx answer for three days.
    #[error("no keyward user is linked to this Stripe customer yet")]
    UnknownUser,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one verified event.
pub async fn apply(store: &Store, settings: &StripeSettings, event: &StripeEvent) -> Result<Outcome, BillingError> {
    match &event.effect {
        Effect::Purchase(checkout) => purchase(store, event, checkout).await,
        Effect::Subscription(change) => subscription(store, settings, event, change).await,
        Effect::Allowance(invoice) => allowance(store, settings, event, invoice).await,
        Effect::Refund(charge) => refund(store, event, charge).await,
        Effect::PaymentPending { .. } => mark(store, event, Outcome::Pending).await,
        Effect::Ignored => mark(store, event, Outcome::Ignored).await,
    }
}

/// Records the event as seen, without effect.
async fn mark(store: &Store, event: &StripeEvent, outcome: Outcome) -> Result<Outcome, BillingError> {
    let first = store.credits().mark_once(&OnceKey::StripeEvent(event.id.clone()), event.created).await?;
    Ok(if first { outcome } else { Outcome::Duplicate })
}

/// The user an event is about: named in it, or linked to its customer before.
async fn user_of(store: &Store, named: Option<&UserId>, customer: Option<&str>) -> Result<UserId, BillingError> {
    if let Some(user) = named {
        if let Some(customer) = customer {
            store.credits().link_customer(customer, user).await?;
        }
        return Ok(user.clone());
    }
    match customer {
        Some(customer) => store.credits().user_for_customer(customer).await?.ok_or(BillingError::UnknownUser),
        None => Err(BillingError::UnknownUser),
    }
}

fn outcome_of(applied: Applied) -> Outcome {
    match applied {
        Applied::Applied(_) => Outcome::Applied,
        // Credits only grow here, and a clawback may go below zero, so neither is ever refused.
        Applied::Duplicate { .. } | Applied::Insufficient { .. } => Outcome::Duplicate,
    }
}

async fn purchase(store: &Store, event: &StripeEvent, checkout: &Checkout) -> Result<Outcome, BillingError> {
    let user = user_of(store, checkout.user.as_ref(), checkout.customer.as_deref()).await?;
    let Some(credits) = checkout.credits else {
        // A subscription checkout: the plan comes with the subscription's and invoices' events.
        return mark(store, event, Outcome::Ignored).await;
    };
    if let Some(payment_intent) = &checkout.payment_intent {
        let payment = Payment { user: user.clone(), credits, amount_total: checkout.amount_total };
        store.credits().record_payment(payment_intent, &payment).await?;
    }
    let change =
        CreditChange { kind: LedgerKind::Purchase, amount: credits, source: event.id.clone(), at: event.created };
    let once = [OnceKey::StripeEvent(event.id.clone()), OnceKey::StripeObject(checkout.session_id.clone())];
    Ok(outcome_of(store.credits().apply(&user, &change, &once).await?))
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
) -> Result<Outcome, BillingError> {
    let user = user_of(store, change.user.as_ref(), change.customer.as_deref()).await?;
    let tier = match tier_of(settings, &change.price_ids) {
        Some(tier) if LIVE_STATUSES.contains(&change.status.as_str()) => tier,
        Some(_) => Tier::Free,
        None => {
            tracing::warn!(event = %event.id, "subscription with no configured price; ignored");
            return mark(store, event, Outcome::Ignored).await;
        }
    };
    let plan = Subscription {
        subscription_id: change.subscription_id.clone(),
        tier: tier.as_str().to_owned(),
        status: change.status.clone(),
        event_created: event.created,
    };
    Ok(match store.credits().apply_subscription(&user, &plan, &event.id).await? {
        SubscriptionApplied::Applied => Outcome::Applied,
        SubscriptionApplied::Duplicate => Outcome::Duplicate,
        SubscriptionApplied::Stale => Outcome::Stale,
    })
}

async fn allowance(
    store: &Store,
    settings: &StripeSettings,
    event: &StripeEvent,
    invoice: &PaidInvoice,
) -> Result<Outcome, BillingError> {
    let user = user_of(store, invoice.user.as_ref(), invoice.customer.as_deref()).await?;
    let amount = tier_of(settings, &invoice.price_ids).and_then(|tier| settings.monthly_allowances.get(&tier).copied());
    let Some(amount) = amount.filter(|a| *a > 0) else {
        return mark(store, event, Outcome::Ignored).await;
    };
    let change = CreditChange { kind: LedgerKind::Allowance, amount, source: event.id.clone(), at: event.created };
    let once = [OnceKey::StripeEvent(event.id.clone()), OnceKey::StripeObject(invoice.invoice_id.clone())];
    Ok(outcome_of(store.credits().apply(&user, &change, &once).await?))
}

/// Claws back, per refund id, the share of the purchase's credits each refund returns.
async fn refund(store: &Store, event: &StripeEvent, charge: &RefundedCharge) -> Result<Outcome, BillingError> {
    let payment = match &charge.payment_intent {
        Some(payment_intent) => store.credits().payment(payment_intent).await?,
        None => None,
    };
    let Some(payment) = payment.filter(|p| p.amount_total > 0) else {
        // Not a credit purchase (a subscription's charge, say): nothing to claw back.
        return mark(store, event, Outcome::Ignored).await;
    };
    let mut applied = false;
    for (refund_id, amount) in &charge.refunds {
        // Rounded half up; each refund is its own ledger entry, so partial refunds add up.
        let credits = (payment.credits * amount + payment.amount_total / 2) / payment.amount_total;
        let change =
            CreditChange { kind: LedgerKind::Refund, amount: -credits, source: event.id.clone(), at: event.created };
        let once = [OnceKey::StripeObject(refund_id.clone())];
        applied |= outcome_of(store.credits().apply(&payment.user, &change, &once).await?) == Outcome::Applied;
    }
    let first = store.credits().mark_once(&OnceKey::StripeEvent(event.id.clone()), event.created).await?;
    Ok(match (applied, first) {
        (true, _) => Outcome::Applied,
        (false, true) if charge.refunds.is_empty() => Outcome::Ignored,
        (false, _) => Outcome::Duplicate,
    })
}
