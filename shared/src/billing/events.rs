//! Stripe events as keyward reads them: the envelope (`id`, `type`, `created`) and, for the types
//! keyward acts on, the few fields it needs — from the basil-era shapes (API `2025-03-31.basil` and
//! later) and the older ones. Everything else in a payload is ignored.

use serde::Deserialize;
use serde_json::Value;

use crate::model::UserId;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the event is not a Stripe event: {0}")]
pub struct EventShapeError(pub &'static str);

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Value,
}

/// A verified event's envelope and its object.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub effect: Effect,
}

/// What an event asks keyward to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A paid (or free) checkout: credits, and the customer's link to the user.
    Purchase(Checkout),
    /// A checkout whose payment is still pending (`unpaid`): wait for `async_payment_succeeded`.
    PaymentPending {
        session_id: String,
    },
    Subscription(SubscriptionChange),
    /// A paid invoice of a subscription: that period's allowance.
    Allowance(PaidInvoice),
    Refund(RefundedCharge),
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub session_id: String,
    pub user: Option<UserId>,
    pub customer: Option<String>,
    /// `metadata.credits`: what the purchase grants (none for a subscription checkout).
    pub credits: Option<i64>,
    pub payment_intent: Option<String>,
    pub amount_total: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub subscription_id: String,
    pub customer: Option<String>,
    pub user: Option<UserId>,
    /// Stripe's status (`active`, `past_due`, `canceled`, …); `canceled` for a deleted subscription.
    pub status: String,
    pub price_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    pub invoice_id: String,
    pub customer: Option<String>,
    pub user: Option<UserId>,
    pub subscription_id: Option<String>,
    pub price_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundedCharge {
    pub charge_id: String,
    pub customer: Option<String>,
    pub user: Option<UserId>,
    pub payment_intent: Option<String>,
    /// The refunds as `(refund id, amount in the smallest currency unit)`: those a (pre-2022-11-15)
    /// charge lists, or the one of a `refund.*` event.
    pub refunds: Vec<(String, i64)>,
}

/// Parses a verified event body.
pub fn parse(body: &[u8]) -> Result<StripeEvent, EventShapeError> {
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|_| EventShapeError("no id, type, created and data.object"))?;
    if !envelope.id.starts_with("evt_") {
        return Err(EventShapeError("event ids start with evt_"));
    }
    let object = &envelope.data.object;
    let effect = match envelope.kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => checkout(object)?,
        "customer.subscription.created" | "customer.subscription.updated" | "customer.subscription.deleted" => {
            let deleted = envelope.kind.ends_with("deleted");
            Effect::Subscription(subscription(object, deleted)?)
        }
        "invoice.paid" => invoice(object)?,
        "charge.refunded" => Effect::Refund(charge(object)?),
        // Since API 2022-11-15 a charge no longer lists its refunds; each refund has its own event.
        "refund.created" | "refund.updated" => refund(object)?,
        _ => Effect::Ignored,
    };
    Ok(StripeEvent { id: envelope.id, kind: envelope.kind, created: envelope.created, effect })
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str().map(str::to_owned)
}

fn id_of(object: &Value, prefix: &'static str) -> Result<String, EventShapeError> {
    text(object, &["id"]).filter(|id| id.starts_with(prefix)).ok_or(EventShapeError("the object has no id of its type"))
}

/// An expandable field: the id itself, or the expanded object's id.
fn reference(object: &Value, field: &str) -> Option<String> {
    match object.get(field)? {
        Value::String(id) => Some(id.clone()),
        Value::Object(expanded) => expanded.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `metadata.user_id`, when it is a keyward user id.
fn metadata_user(metadata: Option<&Value>) -> Option<UserId> {
    metadata?.get("user_id")?.as_str().and_then(|raw| UserId::parse(raw).ok())
}

fn checkout(session: &Value) -> Result<Effect, EventShapeError> {
    let session_id = id_of(session, "cs_")?;
    match text(session, &["payment_status"]).as_deref() {
        Some("paid" | "no_payment_required") => {}
        Some("unpaid") => return Ok(Effect::PaymentPending { session_id }),
        _ => return Err(EventShapeError("a checkout session has a payment_status")),
    }
    let user = text(session, &["client_reference_id"])
        .and_then(|raw| UserId::parse(&raw).ok())
        .or_else(|| metadata_user(session.get("metadata")));
    let credits = match session.get("metadata").and_then(|m| m.get("credits")) {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_str()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|n| *n > 0)
                .ok_or(EventShapeError("metadata.credits is a positive whole number"))?,
        ),
    };
    Ok(Effect::Purchase(Checkout {
        session_id,
        user,
        customer: reference(session, "customer"),
        credits,
        payment_intent: reference(session, "payment_intent"),
        amount_total: session.get("amount_total").and_then(Value::as_i64).unwrap_or(0),
    }))
}

fn subscription(object: &Value, deleted: bool) -> Result<SubscriptionChange, EventShapeError> {
    let price_ids = object
        .get("items")
        .and_then(|items| items.get("data"))
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|item| text(item, &["price", "id"])).collect())
        .unwrap_or_default();
    let status = if deleted { Some("canceled".to_owned()) } else { text(object, &["status"]) };
    Ok(SubscriptionChange {
        subscription_id: id_of(object, "sub_")?,
        customer: reference(object, "customer"),
        user: metadata_user(object.get("metadata")),
        status: status.ok_or(EventShapeError("a subscription has a status"))?,
        price_ids,
    })
}

fn invoice(object: &Value) -> Result<Effect, EventShapeError> {
    // Basil moved the subscription under `parent.subscription_details`; older API versions have it
    // at the top (`subscription`, `subscription_details.metadata`).
    let details = object.get("parent").and_then(|p| p.get("subscription_details"));
    let subscription_id =
        details.and_then(|d| reference(d, "subscription")).or_else(|| reference(object, "subscription"));
    let Some(subscription_id) = subscription_id else {
        return Ok(Effect::Ignored);
    };
    let metadata = details
        .and_then(|d| d.get("metadata"))
        .or_else(|| object.get("subscription_details").and_then(|d| d.get("metadata")));
    let price_ids = object
        .get("lines")
        .and_then(|lines| lines.get("data"))
        .and_then(Value::as_array)
        .map(|lines| {
            lines
                .iter()
                .filter_map(|line| {
                    text(line, &["pricing", "price_details", "price"]).or_else(|| text(line, &["price", "id"]))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Effect::Allowance(PaidInvoice {
        invoice_id: id_of(object, "in_")?,
        customer: reference(object, "customer"),
        user: metadata_user(metadata),
        subscription_id: Some(subscription_id),
        price_ids,
    }))
}

fn refund(object: &Value) -> Result<Effect, EventShapeError> {
    let id = id_of(object, "re_")?;
    if !matches!(text(object, &["status"]).as_deref(), Some("succeeded" | "pending")) {
        return Ok(Effect::Ignored);
    }
    let amount = object.get("amount").and_then(Value::as_i64).ok_or(EventShapeError("a refund has an amount"))?;
    Ok(Effect::Refund(RefundedCharge {
        charge_id: reference(object, "charge").ok_or(EventShapeError("a refund names its charge"))?,
        customer: None,
        user: metadata_user(object.get("metadata")),
        payment_intent: reference(object, "payment_intent"),
        refunds: vec![(id, amount)],
    }))
}

fn charge(object: &Value) -> Result<RefundedCharge, EventShapeError> {
    let refunds = object
        .get("refunds")
        .and_then(|r| r.get("data"))
        .and_then(Value::as_array)
        .map(|refunds| {
            refunds
                .iter()
                .filter(|r| text(r, &["status"]).as_deref() != Some("failed"))
                .filter_map(|r| Some((text(r, &["id"])?, r.get("amount")?.as_i64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok(RefundedCharge {
        charge_id: id_of(object, "ch_")?,
        customer: reference(object, "customer"),
        user: metadata_user(object.get("metadata")),
        payment_intent: reference(object, "payment_intent"),
        refunds,
    })
}
