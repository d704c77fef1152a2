//! Stripe events as keyward reads them: the envelope (`id`, `type`, `created`, `livemode`) and, for
//! the types keyward acts on, the few fields it needs — from the basil-era shapes (API
//! `2025-03-31.basil` and later) and the older ones. Everything else in a payload is ignored.
//!
//! Who an event is about comes only from metadata keyward's own server sets when it creates the
//! checkout session or the subscription (`metadata.user_id`); `client_reference_id` travels
//! through the buyer's browser and never decides who gets credits.

use serde::Deserialize;
use serde_json::Value;

use crate::model::UserId;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the event is not a Stripe event keyward can read: {0}")]
pub struct EventShapeError(pub &'static str);

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    livemode: bool,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: Value,
}

/// A verified event's envelope and what it asks keyward to do.
#[derive(Debug, Clone)]
pub struct StripeEvent {
    pub id: String,
    pub kind: String,
    pub created: i64,
    /// Whether Stripe sent it in live mode (else test mode).
    pub livemode: bool,
    pub effect: Effect,
}

/// What an event asks keyward to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A paid (or free) checkout: credits, and the customer's link to the user.
    Purchase(Checkout),
    /// A checkout whose payment is still pending (`unpaid`): wait for `async_payment_succeeded`.
    PaymentPending,
    Subscription(SubscriptionChange),
    /// A paid invoice of a subscription: maybe that period's allowance.
    Allowance(PaidInvoice),
    /// Which payment an invoice was paid with (`invoice_payment.paid`, API basil and later, whose
    /// invoices no longer name their payment intent).
    InvoicePayment {
        invoice_id: String,
        payment: PaymentRef,
    },
    /// A charge's refunds: cumulative, and each refund it lists (older API versions).
    ChargeRefunded(RefundedCharge),
    /// One refund, in whatever state it is now.
    Refund(RefundState),
    /// A dispute opened or closed.
    Dispute(DisputeState),
    Ignored,
}

/// Which payment something is about: its payment intent, else its charge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PaymentRef(pub String);

impl PaymentRef {
    fn of(object: &Value) -> Option<Self> {
        reference(object, "payment_intent").or_else(|| reference(object, "charge")).map(Self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    pub session_id: String,
    /// `metadata.user_id`, set by keyward's server when it created the session.
    pub user: Option<UserId>,
    pub customer: Option<String>,
    /// `metadata.credits`: what the purchase grants (none for a subscription checkout). Checked
    /// against the configured maximum when applied.
    pub credits: Option<i64>,
    pub payment: Option<PaymentRef>,
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

/// Why Stripe made an invoice (`billing_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingReason {
    /// `subscription_create`: the first period of a new subscription.
    SubscriptionCreate,
    /// `subscription_cycle`: a subscription advanced into a new period.
    SubscriptionCycle,
    /// Anything else: prorations (`subscription_update`), thresholds, manual invoices, …
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidInvoice {
    pub invoice_id: String,
    pub customer: Option<String>,
    /// `metadata.user_id` of the subscription (the invoice's snapshot of it).
    pub user: Option<UserId>,
    pub subscription_id: Option<String>,
    pub billing_reason: BillingReason,
    /// What was paid, in the currency's smallest unit.
    pub amount_paid: i64,
    /// The start of the subscription period the invoice bills (its subscription line's period).
    pub period_start: i64,
    pub price_ids: Vec<String>,
    /// The payment, when the invoice names it (API versions before basil, or an expanded list).
    pub payment: Option<PaymentRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundedCharge {
    pub payment: PaymentRef,
    /// What the charge has had refunded so far, all refunds together (`amount_refunded`).
    pub amount_refunded: i64,
    /// The refunds the charge lists (API versions before 2022-11-15 list them).
    pub refunds: Vec<RefundState>,
}

/// A refund as Stripe last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    pub refund_id: String,
    pub payment: Option<PaymentRef>,
    pub amount: i64,
    /// `pending`, `requires_action` and `succeeded` take money back; `failed` and `canceled` do not.
    pub takes_money: bool,
    /// When the refund was created (Stripe's `created`).
    pub created: i64,
}

/// A dispute as Stripe last described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeState {
    pub dispute_id: String,
    pub payment: PaymentRef,
    pub amount: i64,
    /// Whether the money is held or lost: every status but `won`, `warning_closed` and `prevented`.
    pub holds_money: bool,
}

/// Parses a verified event body.
pub fn parse(body: &[u8]) -> Result<StripeEvent, EventShapeError> {
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|_| EventShapeError("an event has an id, a type, created, livemode and data.object"))?;
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
        "invoice_payment.paid" => invoice_payment(object)?,
        "charge.refunded" => Effect::ChargeRefunded(charge(object)?),
        // Since API 2022-11-15 a charge no longer lists its refunds; each refund has its own events.
        "refund.created" | "refund.updated" | "refund.failed" | "charge.refund.updated" => {
            Effect::Refund(refund(object)?)
        }
        "charge.dispute.created" | "charge.dispute.updated" | "charge.dispute.closed" => {
            Effect::Dispute(dispute(object)?)
        }
        _ => Effect::Ignored,
    };
    Ok(StripeEvent {
        id: envelope.id,
        kind: envelope.kind,
        created: envelope.created,
        livemode: envelope.livemode,
        effect,
    })
}

fn text(value: &Value, path: &[&str]) -> Option<String> {
    path.iter().try_fold(value, |v, key| v.get(key))?.as_str().map(str::to_owned)
}

fn id_of(object: &Value, prefixes: &[&str]) -> Result<String, EventShapeError> {
    text(object, &["id"])
        .filter(|id| prefixes.iter().any(|p| id.starts_with(p)))
        .ok_or(EventShapeError("the object has no id of its type"))
}

/// An amount in the currency's smallest unit: a whole number, never negative.
fn amount(object: &Value, field: &str) -> Result<i64, EventShapeError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value.as_i64().filter(|n| *n >= 0).ok_or(EventShapeError("an amount is a whole number")),
    }
}

/// An expandable field: the id itself, or the expanded object's id.
fn reference(object: &Value, field: &str) -> Option<String> {
    match object.get(field)? {
        Value::String(id) if !id.is_empty() => Some(id.clone()),
        Value::Object(expanded) => expanded.get("id")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `metadata.user_id`, when it is a keyward user id.
fn metadata_user(metadata: Option<&Value>) -> Option<UserId> {
    metadata?.get("user_id")?.as_str().and_then(|raw| UserId::parse(raw).ok())
}

fn checkout(session: &Value) -> Result<Effect, EventShapeError> {
    let session_id = id_of(session, &["cs_"])?;
    match text(session, &["payment_status"]).as_deref() {
        Some("paid" | "no_payment_required") => {}
        Some("unpaid") => return Ok(Effect::PaymentPending),
        _ => return Err(EventShapeError("a checkout session has a payment_status")),
    }
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
        user: metadata_user(session.get("metadata")),
        customer: reference(session, "customer"),
        credits,
        payment: reference(session, "payment_intent").map(PaymentRef),
        amount_total: amount(session, "amount_total")?,
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
        subscription_id: id_of(object, &["sub_"])?,
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
    let metadata = details
        .and_then(|d| d.get("metadata"))
        .or_else(|| object.get("subscription_details").and_then(|d| d.get("metadata")));
    let lines: &[Value] =
        object.get("lines").and_then(|l| l.get("data")).and_then(Value::as_array).map_or(&[], Vec::as_slice);
    // The period a subscription invoice bills is its subscription lines' (prorations bill parts of
    // other periods); the invoice's own `period_end` is the same instant for creates and cycles.
    let proration = |line: &Value| {
        line.get("parent")
            .and_then(|p| p.get("subscription_item_details"))
            .and_then(|d| d.get("proration"))
            .or_else(|| line.get("proration"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let start_of = |line: &Value| line.get("period")?.get("start")?.as_i64();
    let billed: Vec<&Value> = lines.iter().filter(|line| !proration(line)).collect();
    let period_start = billed
        .iter()
        .filter_map(|line| start_of(line))
        .min()
        .or_else(|| object.get("period_end").and_then(Value::as_i64))
        .unwrap_or(0);
    // The plan paid for is that of the billed period's own lines: a proration line (an upgrade
    // or downgrade just before renewal) prices another plan for part of another period.
    let price_ids = billed
        .iter()
        .filter(|line| start_of(line).is_none_or(|start| start == period_start))
        .filter_map(|line| text(line, &["pricing", "price_details", "price"]).or_else(|| text(line, &["price", "id"])))
        .collect();
    let billing_reason = match text(object, &["billing_reason"]).as_deref() {
        Some("subscription_create") => BillingReason::SubscriptionCreate,
        Some("subscription_cycle") => BillingReason::SubscriptionCycle,
        _ => BillingReason::Other,
    };
    let listed_payment = object
        .get("payments")
        .and_then(|p| p.get("data"))
        .and_then(Value::as_array)
        .and_then(|payments| payments.iter().find_map(|p| p.get("payment").and_then(PaymentRef::of)));
    Ok(Effect::Allowance(PaidInvoice {
        invoice_id: id_of(object, &["in_"])?,
        customer: reference(object, "customer"),
        user: metadata_user(metadata),
        subscription_id,
        billing_reason,
        amount_paid: amount(object, "amount_paid")?,
        period_start,
        price_ids,
        payment: PaymentRef::of(object).or(listed_payment),
    }))
}

fn invoice_payment(object: &Value) -> Result<Effect, EventShapeError> {
    let invoice_id = reference(object, "invoice").ok_or(EventShapeError("an invoice payment names its invoice"))?;
    let payment = object
        .get("payment")
        .and_then(PaymentRef::of)
        .ok_or(EventShapeError("an invoice payment names its payment intent or charge"))?;
    Ok(Effect::InvoicePayment { invoice_id, payment })
}

fn refund(object: &Value) -> Result<RefundState, EventShapeError> {
    let status = text(object, &["status"]).ok_or(EventShapeError("a refund has a status"))?;
    Ok(RefundState {
        refund_id: id_of(object, &["re_", "pyr_"])?,
        payment: PaymentRef::of(object),
        amount: amount(object, "amount")?,
        takes_money: matches!(status.as_str(), "pending" | "requires_action" | "succeeded"),
        created: object.get("created").and_then(Value::as_i64).unwrap_or(0),
    })
}

fn charge(object: &Value) -> Result<RefundedCharge, EventShapeError> {
    let charge_id = id_of(object, &["ch_", "py_"])?;
    let refunds = object
        .get("refunds")
        .and_then(|r| r.get("data"))
        .and_then(Value::as_array)
        .map(|refunds| refunds.iter().map(refund).collect::<Result<Vec<_>, _>>())
        .transpose()?
        .unwrap_or_default();
    Ok(RefundedCharge {
        payment: reference(object, "payment_intent").map_or(PaymentRef(charge_id), PaymentRef),
        amount_refunded: amount(object, "amount_refunded")?,
        refunds,
    })
}

fn dispute(object: &Value) -> Result<DisputeState, EventShapeError> {
    let status = text(object, &["status"]).ok_or(EventShapeError("a dispute has a status"))?;
    Ok(DisputeState {
        dispute_id: id_of(object, &["dp_", "du_"])?,
        payment: PaymentRef::of(object).ok_or(EventShapeError("a dispute names its charge"))?,
        amount: amount(object, "amount")?,
        holds_money: !matches!(status.as_str(), "won" | "warning_closed" | "prevented"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(kind: &str, object: Value) -> Vec<u8> {
        json!({"id": "evt_1", "type": kind, "created": 1_000, "livemode": false, "data": {"object": object}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn only_server_set_metadata_names_the_user() {
        let session = json!({"id": "cs_1", "payment_status": "paid", "client_reference_id": "auth0|mallory",
                             "metadata": {"credits": "10"}, "amount_total": 100});
        let Effect::Purchase(checkout) = parse(&event("checkout.session.completed", session)).unwrap().effect else {
            panic!("a purchase")
        };
        assert_eq!(checkout.user, None, "client_reference_id decides nothing");
        let session = json!({"id": "cs_1", "payment_status": "paid", "client_reference_id": "auth0|mallory",
                             "metadata": {"credits": "10", "user_id": "auth0|ada"}});
        let Effect::Purchase(checkout) = parse(&event("checkout.session.completed", session)).unwrap().effect else {
            panic!("a purchase")
        };
        assert_eq!(checkout.user, Some(UserId::parse("auth0|ada").unwrap()));
    }

    #[test]
    fn an_invoice_bills_its_subscription_lines_period_and_says_why() {
        let invoice = json!({
            "id": "in_1", "billing_reason": "subscription_update", "amount_paid": 250,
            "subscription": "sub_1", "charge": "ch_1", "payment_intent": "pi_1", "period_end": 5_000,
            "lines": {"data": [
                {"proration": true, "period": {"start": 4_000}, "price": {"id": "price_a"}},
                {"proration": false, "period": {"start": 4_500}, "price": {"id": "price_b"}}
            ]}
        });
        let Effect::Allowance(paid) = parse(&event("invoice.paid", invoice)).unwrap().effect else { panic!() };
        assert_eq!(paid.billing_reason, BillingReason::Other);
        assert_eq!((paid.period_start, paid.amount_paid), (4_500, 250));
        assert_eq!(paid.payment, Some(PaymentRef("pi_1".into())), "the payment intent before the charge");
        let bare =
            json!({"id": "in_2", "billing_reason": "subscription_cycle", "subscription": "sub_1", "period_end": 9_000});
        let Effect::Allowance(paid) = parse(&event("invoice.paid", bare)).unwrap().effect else { panic!() };
        assert_eq!(
            (paid.billing_reason, paid.period_start, paid.payment),
            (BillingReason::SubscriptionCycle, 9_000, None)
        );
    }

    /// A downgrade from enterprise to pro just before renewal: the renewal invoice carries the
    /// proration lines of both plans first, then the new period's pro line. The plan paid for is pro.
    #[test]
    fn a_renewal_is_priced_by_its_period_lines_never_by_prorations() {
        let invoice = json!({
            "id": "in_1", "billing_reason": "subscription_cycle", "amount_paid": 1_900, "subscription": "sub_1",
            "lines": {"data": [
                {"amount": -9_000, "period": {"start": 1_000}, "price": {"id": "price_enterprise"},
                 "parent": {"subscription_item_details": {"proration": true}}},
                {"amount": 400, "period": {"start": 1_000}, "price": {"id": "price_pro"},
                 "parent": {"subscription_item_details": {"proration": true}}},
                {"amount": 1_900, "period": {"start": 2_000}, "pricing": {"price_details": {"price": "price_pro"}},
                 "parent": {"subscription_item_details": {"proration": false}}}
            ]}
        });
        let Effect::Allowance(paid) = parse(&event("invoice.paid", invoice)).unwrap().effect else { panic!() };
        assert_eq!((paid.period_start, paid.price_ids), (2_000, vec!["price_pro".to_owned()]));
    }

    #[test]
    fn refunds_and_disputes_say_whether_they_take_money() {
        for (status, takes) in [("pending", true), ("succeeded", true), ("failed", false), ("canceled", false)] {
            let refund = json!({"id": "re_1", "status": status, "amount": 5, "charge": "ch_1", "created": 7});
            let Effect::Refund(state) = parse(&event("refund.updated", refund)).unwrap().effect else { panic!() };
            assert_eq!((state.takes_money, state.payment), (takes, Some(PaymentRef("ch_1".into()))), "{status}");
        }
        for (status, holds) in [("needs_response", true), ("lost", true), ("won", false), ("warning_closed", false)] {
            let dispute =
                json!({"id": "dp_1", "status": status, "amount": 5, "charge": "ch_1", "payment_intent": "pi_1"});
            let Effect::Dispute(state) = parse(&event("charge.dispute.closed", dispute)).unwrap().effect else {
                panic!()
            };
            assert_eq!((state.holds_money, state.payment), (holds, PaymentRef("pi_1".into())), "{status}");
        }
    }

    #[test]
    fn malformed_amounts_and_envelopes_are_refused() {
        for bad in [
            event("charge.refunded", json!({"id": "ch_1", "amount_refunded": -5})),
            event("charge.refunded", json!({"id": "ch_1", "amount_refunded": 1.5})),
            event(
                "checkout.session.completed",
                json!({"id": "cs_1", "payment_status": "paid", "metadata": {"credits": "-3"}}),
            ),
            event(
                "checkout.session.completed",
                json!({"id": "cs_1", "payment_status": "paid", "metadata": {"credits": "99999999999999999999"}}),
            ),
            br#"{"id": "evt_1", "type": "x", "created": 1, "data": {"object": {}}}"#.to_vec(),
        ] {
            assert!(parse(&bad).is_err(), "{}", String::from_utf8_lossy(&bad));
        }
    }
}
